from __future__ import annotations

import socket

from celery import shared_task
from django.utils import timezone

from broker.models import WorkerHeartbeat


@shared_task(name="broker.heartbeat")
def heartbeat() -> None:
    """Proves that a worker takes tasks from the queue and reaches the database."""
    WorkerHeartbeat.objects.update_or_create(
        worker=socket.gethostname(), defaults={"seen_at": timezone.now()}
    )
