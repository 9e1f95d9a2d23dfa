"""What performed steps mean for scheduled steps and orders: pure functions over states."""

from __future__ import annotations

from collections.abc import Iterable

from mpps.status import MPPSStatus, OrderStatus
from worklist.status import FINAL, SPSStatus

_WAITING = (SPSStatus.SCHEDULED, SPSStatus.ARRIVED, SPSStatus.READY)
# Where a linked scheduled step may come from when its performed steps move it to a new
# state. CANCELED (by the RIS) is never left; a DISCONTINUED step becomes COMPLETED when
# another performed step for it completes (append case).
STEP_SOURCES: dict[str, tuple[str, ...]] = {
    SPSStatus.STARTED: _WAITING,
    SPSStatus.COMPLETED: (*_WAITING, SPSStatus.STARTED, SPSStatus.DISCONTINUED),
    SPSStatus.DISCONTINUED: (*_WAITING, SPSStatus.STARTED),
}


def step_target(mpps_statuses: Iterable[str]) -> str | None:
    """The scheduled step state implied by the performed steps linked to it.

    STARTED while any is in progress; then COMPLETED if any completed, else DISCONTINUED.
    """
    statuses = set(mpps_statuses)
    if not statuses:
        return None
    if MPPSStatus.IN_PROGRESS in statuses:
        return SPSStatus.STARTED
    if MPPSStatus.COMPLETED in statuses:
        return SPSStatus.COMPLETED
    return SPSStatus.DISCONTINUED


def order_status_of(steps: Iterable[tuple[str, Iterable[str]]]) -> str | None:
    """The ORC-5 of an order from its steps: (step status, statuses of its MPPS) pairs.

    A performed step counts with the state its MPPS imply (so a step the RIS canceled but
    the modality performed still counts as performed); the others with their own state.
    None until some step was performed; IP while anything is started or still to do;
    when everything is final, CM if anything completed, else DC.
    """
    effective: list[str] = []
    performed = False
    for step_status, mpps_statuses in steps:
        target = step_target(mpps_statuses)
        performed = performed or target is not None
        effective.append(target or step_status)
    if not performed:
        return None
    if all(s in FINAL for s in effective):
        return (
            OrderStatus.COMPLETED if SPSStatus.COMPLETED in effective else OrderStatus.DISCONTINUED
        )
    return OrderStatus.IN_PROCESS


def statuses_to_queue(last_queued: list[str], wanted: str | None) -> list[str]:
    """Which statuses to add after ``last_queued`` (oldest first) to reach ``wanted``.

    Nothing when it is already the latest; an IP first when a CM or DC would be the
    first status of the order (an MPPS linked after it finished); no IP once the order
    was reported finished (an appended MPPS does not reopen it).
    """
    if wanted is None or (last_queued and last_queued[-1] == wanted):
        return []
    if wanted == OrderStatus.IN_PROCESS:
        return [] if last_queued else [wanted]
    if OrderStatus.IN_PROCESS not in last_queued:
        return [OrderStatus.IN_PROCESS, wanted]
    return [wanted]
