"""Storage commitment results (PS3.4 J.3.3), whichever association they come on.

A request is recorded (its Transaction UID, its job, the instances it lists) before its
N-ACTION goes out, so that its N-EVENT-REPORT can be matched whenever it arrives: on the
requesting association (the sender hands it here) or on a new association the destination
opens to the broker's listener (``routing.dimse``). Applying a report twice changes
nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from routing.models import CommitmentRequest, JobItem, RoutingJob
from routing.status import ItemState, JobStatus

_CHUNK = 500


@dataclass(frozen=True)
class Report:
    """What an N-EVENT-REPORT said: committed instances, and failed ones with why."""

    transaction_uid: str
    committed: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def requested(job_id: int, transaction_uid: str, sop_instance_uids: list[str]) -> None:
    CommitmentRequest.objects.create(
        job_id=job_id,
        transaction_uid=transaction_uid,
        sop_instance_uids=sop_instance_uids,
        requested_at=timezone.now(),
    )


def reported(transaction_uid: str) -> bool:
    return CommitmentRequest.objects.filter(
        transaction_uid=transaction_uid, reported_at__isnull=False
    ).exists()


def _finish_waiting(job: RoutingJob, now: dt.datetime) -> None:
    """A job no worker holds (waiting for its retry, or given up on) whose instances are
    now all committed is COMPLETED (WARNING when its MPPS listed instances that never
    came). One a worker holds is left to it: it sets the status from the items."""
    if job.status not in (JobStatus.SCHEDULED, JobStatus.FAILED):
        return
    states = set(JobItem.objects.filter(job=job).values_list("state", flat=True))
    if not states or states != {ItemState.COMMITTED}:
        return
    values: dict[str, object] = {
        "status": JobStatus.COMPLETED,
        "finished_at": now,
        "updated_at": now,
        "next_attempt_at": None,
        "last_error": "",
    }
    if job.missing_uids:
        values["status"] = JobStatus.WARNING
        values["last_error"] = (
            f"{len(job.missing_uids)} instance(s) listed by the MPPS never arrived"
        )
    RoutingJob.objects.filter(pk=job.pk).update(**values)


def record(report: Report) -> str | None:
    """Apply a report to its job's items; the job's status afterwards, or None when no
    request of this broker has this Transaction UID.

    Only instances the request listed count. A committed instance is COMMITTED; a failed
    one still SENT becomes FAILED (sent again on the job's next attempt); an instance
    already committed stays so.
    """
    now = timezone.now()
    with transaction.atomic():
        request = (
            CommitmentRequest.objects.select_for_update()
            .filter(transaction_uid=report.transaction_uid)
            .first()
        )
        if request is None:
            return None
        job = RoutingJob.objects.select_for_update().get(pk=request.job_id)
        asked = set(request.sop_instance_uids)
        committed = sorted({uid for uid in report.committed if uid in asked})
        failed = {uid: why for uid, why in report.failed if uid in asked}
        for chunk in _chunks(committed):
            JobItem.objects.filter(job=job, sop_instance_uid__in=chunk).exclude(
                state=ItemState.COMMITTED
            ).update(state=ItemState.COMMITTED, error="")
        for uid, why in failed.items():
            JobItem.objects.filter(job=job, sop_instance_uid=uid, state=ItemState.SENT).update(
                state=ItemState.FAILED, error=why[:255]
            )
        CommitmentRequest.objects.filter(pk=request.pk).update(
            reported_at=now, committed=len(committed), failed=len(failed)
        )
        if failed and job.status == JobStatus.SCHEDULED:
            RoutingJob.objects.filter(pk=job.pk).update(
                last_error=f"{len(failed)} instance(s) not committed by the destination",
                updated_at=now,
            )
        _finish_waiting(job, now)
        return str(RoutingJob.objects.values_list("status", flat=True).get(pk=job.pk))
