"""``manage.py heartbeat``: queue one heartbeat task (for monitoring the workers)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from broker.tasks import heartbeat


class Command(BaseCommand):
    help = "Queue a heartbeat task; /health/ shows when a worker last ran one."

    def handle(self, *args: Any, **options: Any) -> None:
        heartbeat.delay()
        self.stdout.write("heartbeat queued")
