"""``manage.py ris_resend``: queue a send for every order with unsent RIS status messages.

For after an outage of the task queue (a status queued while it was down stays pending in
the outbox); safe to run at any time, e.g. from cron: the sender never sends a message
twice at once and keeps each order's order.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from mpps.tasks import ris_pending_send


class Command(BaseCommand):
    help = "Queue the RIS status messages that are still unsent."

    def handle(self, *args: Any, **options: Any) -> None:
        count = ris_pending_send()
        self.stdout.write(f"queued a send for {count} order(s) with unsent RIS status messages")
