"""Celery tasks of the MPPS app: delivering order status messages to the RIS."""

from __future__ import annotations

import logging

from celery import Task, shared_task

from mpps import outbox

logger = logging.getLogger(__name__)


@shared_task(name=outbox.SEND_TASK, bind=True, max_retries=None, acks_late=True)
def ris_order_send(self: Task, order_id: int) -> int:
    """Send the order's pending status messages in order; retry later if one failed."""
    result = outbox.order_send(order_id)
    if result.retry_in is not None:
        raise self.retry(countdown=max(result.retry_in, 0.0))
    return result.sent


@shared_task
def ris_pending_send() -> int:
    """Queue a send for every order with unsent messages (after an outage of the queue)."""
    order_ids = outbox.pending_order_ids()
    for order_id in order_ids:
        ris_order_send.delay(order_id)
    return len(order_ids)


@shared_task(acks_late=True)
def ris_order_follow(step_id: int) -> None:
    """The order of ``step_id`` changed outside MPPS: queue its new status for the RIS."""
    outbox.step_order_follow(step_id)
