"""Routing listens to the core's events (sent after commit); it never needs the apps
that publish them to know about it."""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app

from core import events
from mpps.status import MPPS_FINAL
from routing.services import MPPS_TASK

logger = logging.getLogger(__name__)


def on_mpps_changed(sender: Any, *, mpps_id: int, status: str, **_: Any) -> None:
    """A final MPPS: queue the completeness check. If the queue is down, the periodic
    check finds the MPPS in the database later."""
    if status not in MPPS_FINAL:
        return
    try:
        current_app.send_task(MPPS_TASK, args=(mpps_id,))
    except Exception:
        logger.exception("could not queue the routing check of MPPS %s", mpps_id)


def connect() -> None:
    events.mpps_changed.connect(on_mpps_changed, dispatch_uid="routing.mpps_changed")
