"""What the MPPS app does when others change the worklist: the RIS hears of it.

A step that becomes final outside MPPS (front desk, REST API, admin, HL7) can finish an
order whose other steps were performed: the RIS must then get its CM or DC, as it would
had the last step been performed. The receiver runs after the change committed and
queues a task with the step's id; the task recomputes the order's status in the outbox
(``outbox.order_status_follow``), which queues nothing when nothing changed (an MPPS's
own changes were queued in its transaction already).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from mpps import tasks
from worklist.status import FINAL


def step_status_changed(*, step_id: int, new_status: str, **_: Any) -> None:
    if settings.RIS_HL7_HOST and new_status in FINAL:
        tasks.ris_order_follow.delay(step_id)
