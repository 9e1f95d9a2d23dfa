"""Domain events: the one way the core tells the rest of the system what happened.

Services publish with :func:`publish`, which sends the signal only after the current
database transaction commits, so listeners (routing, dashboards, RIS status) never see
a change that was rolled back. Receivers take plain ids and values and should queue
Celery tasks rather than do slow work inline.

    from core import events
    events.step_status_changed.connect(my_receiver)
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

# kwargs: patient_id (pk)
patient_changed = Signal()
# kwargs: surviving_patient_id, merged_patient_id
patients_merged = Signal()
# kwargs: order_id
order_changed = Signal()
# kwargs: step_id, old_status, new_status
step_status_changed = Signal()
# kwargs: mpps_id, status
mpps_changed = Signal()
# kwargs: message_id, outcome
hl7_message_processed = Signal()


def publish(signal: Signal, **kwargs: Any) -> None:
    """Send ``signal`` once the surrounding transaction has committed."""

    def send() -> None:
        for receiver, response in signal.send_robust(sender=None, **kwargs):
            if isinstance(response, Exception):
                logger.error(
                    "event receiver %r failed", receiver, exc_info=(type(response), response, None)
                )

    transaction.on_commit(send)
