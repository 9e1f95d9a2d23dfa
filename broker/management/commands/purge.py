"""``manage.py purge``: remove what is past its retention (see ``broker.retention``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from broker.retention import purge


class Command(BaseCommand):
    help = (
        "Delete HL7 messages, MPPS datasets, RIS attempts, sessions and heartbeats past retention."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        done = purge()
        self.stdout.write(", ".join(f"{kind}: {count}" for kind, count in done.items()))
