#!/usr/bin/env python
"""Django's command-line utility for the worklist broker."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
    import django
    from django.core.management import execute_from_command_line

    django.setup()
    from broker.checks import configuration_errors

    problems = configuration_errors()
    # `check` reports the same problems itself, with ids; every other command refuses.
    if problems and sys.argv[1:2] != ["check"]:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
