"""Running one routing job: claim it, send what it still has to send, record the outcome.

Safe with any number of workers and with workers that die:

- A job is claimed by a conditional UPDATE (SCHEDULED and due, or IN_PROCESS with an
  expired lease) that sets a lease with this worker's token; two workers never send
  the same job at once. While it sends, the worker renews the lease; a worker killed
  with SIGKILL simply stops renewing it, and the periodic check queues the job again
  once the lease has expired.
- Each instance's result is written as soon as the destination answers (those that
  came in while the previous ones were written go together in one transaction), so a
  job taken over after a crash sends only what was not confirmed.
- The job's status is the worst per-instance outcome; only failed instances are tried
  again, after a backoff that doubles; a permanent association rejection fails the job
  at once. A destination's jobs never hold up another destination's: each job is its
  own task, and per destination at most ``max_associations`` jobs run at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from pydicom.uid import generate_uid

from routing import commitment, sender, services, spool
from routing.models import Destination, JobItem, RoutingJob
from routing.status import ItemState, JobStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    status: str  # the job's status afterwards, or "" when it was not claimed
    sent: int = 0
    failed: int = 0


def _lease(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=settings.ROUTING_LEASE_SECONDS)


def _claim(job_id: int, owner: str) -> RoutingJob | None:
    now = timezone.now()
    with transaction.atomic():
        job = RoutingJob.objects.filter(pk=job_id).select_related("destination").first()
        if job is None:
            return None
        # Lock the destination row: claims for one destination are counted one at a time.
        destination = Destination.objects.select_for_update().get(pk=job.destination_id)
        if not destination.enabled or destination.paused:
            return None
        busy = (
            RoutingJob.objects.filter(
                destination=destination, status=JobStatus.IN_PROCESS, lease_until__gte=now
            )
            .exclude(pk=job_id)
            .count()
        )
        if busy >= max(destination.max_associations, 1):
            return None
        claimable = Q(status=JobStatus.SCHEDULED) & (
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
        ) | Q(status=JobStatus.IN_PROCESS, lease_until__lt=now)
        claimed = RoutingJob.objects.filter(claimable, pk=job_id).update(
            status=JobStatus.IN_PROCESS,
            lease_until=_lease(now),
            lease_owner=owner,
            attempts=job.attempts + 1,
            started_at=now,
            updated_at=now,
        )
        if claimed != 1:
            # Not due, finished, or another worker holds it.
            return None
        job.refresh_from_db()
        job.destination = destination
        return job
    return None


def _items(
    job: RoutingJob, states: tuple[str, ...] = (ItemState.PENDING, ItemState.FAILED)
) -> list[sender.Item]:
    rows = (
        JobItem.objects.filter(job=job, state__in=states).select_related("instance").order_by("pk")
    )
    items = []
    missing_files = []
    for row in rows:
        instance = row.instance
        if instance is None:
            missing_files.append(row.pk)
            continue
        items.append(
            sender.Item(
                item_id=row.pk,
                sop_class_uid=instance.sop_class_uid,
                sop_instance_uid=instance.sop_instance_uid,
                transfer_syntax_uid=instance.transfer_syntax_uid,
                path=spool.absolute(instance.path),
            )
        )
    if missing_files:
        JobItem.objects.filter(pk__in=missing_files).update(
            state=ItemState.FAILED, error="no longer in the spool"
        )
    return items


def _target(destination: Destination, others_running: int) -> sender.Target:
    return sender.Target(
        ae_title=destination.ae_title,
        host=destination.host,
        port=destination.port,
        use_tls=destination.use_tls,
        transfer_syntaxes=tuple(destination.transfer_syntaxes or ()),
        associations=max(1, destination.max_associations - others_running),
    )


class _Recorder:
    """Writes each result at once, and renews the lease while the job is sent."""

    def __init__(self, job: RoutingJob, owner: str) -> None:
        self.job = job
        self.owner = owner
        self.sent = 0
        self.failed = 0
        self.renew_every = settings.ROUTING_LEASE_SECONDS / 3
        self.renewed = time.monotonic()

    def __call__(self, results: list[sender.Result]) -> bool:
        now = timezone.now()
        delivered = [r for r in results if r.delivered]
        with transaction.atomic():
            by_code: dict[int | None, list[int]] = {}
            for result in delivered:
                by_code.setdefault(result.status_code, []).append(result.item_id)
            for code, ids in by_code.items():
                JobItem.objects.filter(pk__in=ids).update(
                    state=ItemState.SENT, status_code=code, error="", sent_at=now
                )
            for result in results:
                if not result.delivered:
                    JobItem.objects.filter(pk=result.item_id).update(
                        state=ItemState.FAILED, status_code=result.status_code, error=result.error
                    )
        self.sent += len(delivered)
        self.failed += len(results) - len(delivered)
        if time.monotonic() - self.renewed >= self.renew_every:
            return self.renew()
        return True

    def renew(self) -> bool:
        """Extend the lease; False when the job was canceled or taken over."""
        self.renewed = time.monotonic()
        now = timezone.now()
        return (
            RoutingJob.objects.filter(
                pk=self.job.pk, status=JobStatus.IN_PROCESS, lease_owner=self.owner
            ).update(lease_until=_lease(now), updated_at=now)
            == 1
        )


def job_run(job_id: int) -> RunResult:
    """Claim the job and send its undelivered instances over one association (or up to
    the destination's maximum in parallel); record the job's new status."""
    owner = uuid.uuid4().hex
    job = _claim(job_id, owner)
    if job is None:
        return RunResult("")
    destination = job.destination
    others = (
        RoutingJob.objects.filter(destination=destination, status=JobStatus.IN_PROCESS)
        .exclude(pk=job.pk)
        .filter(lease_until__gte=timezone.now())
        .count()
    )
    recorder = _Recorder(job, owner)
    outcome = sender.Outcome()
    passes = 0
    while passes < 3:
        passes += 1
        items = _items(job)
        if not items:
            break
        outcome = sender.send(_target(destination, others), items, recorder)
        if outcome.error or outcome.permanent:
            break
        # Instances added to this job while it was being sent go on a second pass.
        if not JobItem.objects.filter(job=job, state=ItemState.PENDING).exists():
            break
    if destination.storage_commitment and not outcome.permanent:
        _commit(job, destination, others)
    status = _finish(job, owner, outcome)
    logger.info(
        "routing job %s: study %s to %s: %s (%d sent, %d failed, attempt %d)%s",
        job.pk,
        job.study_instance_uid,
        destination.name,
        status or "left to its new owner",
        recorder.sent,
        recorder.failed,
        job.attempts,
        f": {outcome.error}" if outcome.error else "",
    )
    return RunResult(status, recorder.sent, recorder.failed)


def _commit(job: RoutingJob, destination: Destination, others: int) -> None:
    """Ask the destination to commit what it stored; record its answer per instance.

    The request is recorded first: the report may come on a new association to the
    listener (even before the N-ACTION response), which applies it there."""
    stored = _items(job, (ItemState.SENT,))
    if not stored:
        return
    transaction_uid = generate_uid(prefix=settings.BROKER_UID_ROOT)
    commitment.requested(job.pk, transaction_uid, [item.sop_instance_uid for item in stored])
    answer = sender.commit(
        _target(destination, others),
        stored,
        wait=settings.ROUTING_TIMEOUT,
        transaction_uid=transaction_uid,
        reported_elsewhere=lambda: commitment.reported(transaction_uid),
    )
    if answer.error:
        RoutingJob.objects.filter(pk=job.pk).update(last_error=answer.error)
        return
    if answer.results:
        commitment.record(
            commitment.Report(
                transaction_uid,
                committed=tuple(uid for uid, ok in answer.results.items() if ok is True),
                failed=tuple(
                    (uid, str(ok)) for uid, ok in answer.results.items() if ok is not True
                ),
            )
        )


def _finish(job: RoutingJob, owner: str, outcome: sender.Outcome) -> str:
    """Set the job's status from its items: the worst per-instance outcome."""
    now = timezone.now()
    with transaction.atomic():
        current = RoutingJob.objects.select_for_update().filter(pk=job.pk).first()
        if (
            current is None
            or current.status != JobStatus.IN_PROCESS
            or current.lease_owner != owner
        ):
            # Canceled meanwhile, or the lease expired and another worker took over.
            return current.status if current is not None else ""
        states = set(JobItem.objects.filter(job=job).values_list("state", flat=True))
        failed_error = (
            JobItem.objects.filter(job=job, state=ItemState.FAILED)
            .exclude(error="")
            .values_list("error", flat=True)
            .first()
        )
        commitment_error = ""
        if job.destination.storage_commitment and ItemState.SENT in states:
            commitment_error = (
                RoutingJob.objects.filter(pk=job.pk).values_list("last_error", flat=True).first()
                or "waiting for storage commitment"
            )
        error = outcome.error or failed_error or commitment_error
        values: dict[str, object] = {
            "lease_until": None,
            "lease_owner": "",
            "updated_at": now,
            "last_error": error,
        }
        undelivered = states & {ItemState.PENDING, ItemState.FAILED}
        if job.destination.storage_commitment:
            # Stored is not enough: the destination must have committed every instance.
            undelivered |= states & {ItemState.SENT}
        if outcome.permanent:
            JobItem.objects.filter(job=job, state=ItemState.PENDING).update(
                state=ItemState.FAILED, error=outcome.error[:255]
            )
            values.update(status=JobStatus.FAILED, finished_at=now)
        elif not undelivered:
            if current.missing_uids:
                values["last_error"] = (
                    f"{len(current.missing_uids)} instance(s) listed by the MPPS never arrived"
                )
                values.update(status=JobStatus.WARNING, finished_at=now)
            else:
                values.update(status=JobStatus.COMPLETED, finished_at=now)
        elif ItemState.FAILED not in states and not outcome.error and outcome.not_attempted == 0:
            # Only instances added while it was sent are left: go again now.
            values.update(status=JobStatus.SCHEDULED, next_attempt_at=now)
            services.queue_job(job.pk)
        elif current.attempts >= settings.ROUTING_MAX_ATTEMPTS:
            values.update(status=JobStatus.FAILED, finished_at=now)
        else:
            delay = services.backoff(current.attempts)
            values.update(
                status=JobStatus.SCHEDULED, next_attempt_at=now + dt.timedelta(seconds=delay)
            )
        RoutingJob.objects.filter(pk=job.pk).update(**values)
        return str(values["status"])
