"""The broker's periodic tasks, run by Celery beat (``CELERY_BEAT_SCHEDULE``)."""

from __future__ import annotations

import datetime as dt
import logging
import socket

from celery import current_app, shared_task
from django.conf import settings
from django.utils import timezone

from broker import retention
from broker.models import WorkerHeartbeat
from mpps import outbox, selectors

logger = logging.getLogger(__name__)


@shared_task(name="broker.heartbeat")
def heartbeat() -> None:
    """Proves that a worker takes tasks from the queue and reaches the database."""
    WorkerHeartbeat.objects.update_or_create(
        worker=socket.gethostname(), defaults={"seen_at": timezone.now()}
    )


@shared_task(name="broker.requeue_lost")
def requeue_lost() -> int:
    """Queue a send again for each order whose pending RIS message lost its task.

    A second task for an order is harmless: the sender claims each message with a
    lease, so it is never sent twice at once, and it keeps the order's sequence.
    """
    order_ids = selectors.ris_stalled_order_ids(
        older_than=dt.timedelta(seconds=settings.RIS_REQUEUE_AFTER)
    )
    for order_id in order_ids:
        current_app.send_task(outbox.SEND_TASK, args=(order_id,))
    if order_ids:
        logger.warning(
            "re-queued the RIS status messages of %d order(s) whose send task was lost",
            len(order_ids),
        )
    return len(order_ids)


@shared_task(name="broker.purge")
def purge() -> dict[str, int]:
    """Daily: remove what is past its retention."""
    done = retention.purge()
    logger.info("retention purge: %s", ", ".join(f"{k}={v}" for k, v in done.items()))
    return done
