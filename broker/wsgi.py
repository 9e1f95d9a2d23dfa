"""WSGI entry point for gunicorn: ``gunicorn broker.wsgi``."""

from __future__ import annotations

import os
import sys

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
application = get_wsgi_application()

from broker.checks import configuration_errors  # noqa: E402  (needs the apps loaded)

_problems = configuration_errors()
if _problems:
    for _line in _problems:
        print(f"error: {_line}", file=sys.stderr)
    raise SystemExit(2)
