"""What staff read for a step's state: one word per state, the same on every page.

A scheduled step moves to STARTED when its MPPS arrives (``mpps.rules``); a step with an
MPPS still IN PROGRESS reads "In progress" whatever the step's own state says, so the
board never lags behind the scanner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mpps.status import MPPSStatus
from worklist.status import SPSStatus


@dataclass(frozen=True)
class StatusWord:
    word: str  # what the page shows
    css: str  # the badge's class


SCHEDULED = StatusWord("Scheduled", "scheduled")
ARRIVED = StatusWord("Arrived", "arrived")
IN_PROGRESS = StatusWord("In progress", "in-progress")
COMPLETED = StatusWord("Completed", "completed")
DISCONTINUED = StatusWord("Discontinued", "discontinued")
CANCELED = StatusWord("Canceled", "canceled")

WORDS: dict[str, StatusWord] = {
    SPSStatus.SCHEDULED: SCHEDULED,
    SPSStatus.ARRIVED: ARRIVED,
    # READY (prepared for the scanner) is still waiting, as ARRIVED is, for the staff.
    SPSStatus.READY: ARRIVED,
    SPSStatus.STARTED: IN_PROGRESS,
    SPSStatus.COMPLETED: COMPLETED,
    SPSStatus.DISCONTINUED: DISCONTINUED,
    SPSStatus.CANCELED: CANCELED,
}


def step_word(step_status: str, mpps_statuses: Iterable[str] = ()) -> StatusWord:
    """The word for a step in ``step_status`` whose linked MPPS are in ``mpps_statuses``."""
    if MPPSStatus.IN_PROGRESS in set(mpps_statuses):
        return IN_PROGRESS
    return WORDS.get(step_status, StatusWord(step_status.title(), "other"))
