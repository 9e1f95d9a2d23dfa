"""Writes of routing: recording received instances, deciding when a study is complete,
creating jobs, operator actions, the periodic checks and the spool clean-up.

Sending a job is ``routing.jobs``. Tasks are queued by name after commit
(``routing.tasks`` registers them), so nothing here imports the tasks.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone

from mpps.models import PerformedInstance, PerformedProcedureStep, ScheduledReference
from mpps.status import MPPS_FINAL, MPPSStatus
from routing import selectors, sender, spool
from routing.dataset import Header
from routing.models import CompletenessWait, Destination, JobItem, RoutingJob, StoredInstance
from routing.rules import rule_matches
from routing.status import DELIVERED, OPEN, ItemState, JobStatus, Trigger

logger = logging.getLogger(__name__)

SEND_TASK = "routing.job_send"
MPPS_TASK = "routing.mpps_ended"
# SQLite allows 999 parameters per statement in old builds: stay well under.
_CHUNK = 500


def _chunks(values: list[str], size: int = _CHUNK) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def queue_job(job_id: int) -> None:
    """Queue a send of the job once the transaction commits (robust: with the queue down
    the job stays SCHEDULED in the database and the periodic check queues it again)."""
    transaction.on_commit(lambda: current_app.send_task(SEND_TASK, args=(job_id,)), robust=True)


# --- receiving -----------------------------------------------------------------------


@dataclass(frozen=True)
class Spooled:
    """An instance written to the spool, to be recorded."""

    header: Header
    transfer_syntax_uid: str
    calling_ae_title: str
    size: int
    digest: str
    path: str


NEW, IDENTICAL, REPLACED = "new", "identical", "replaced"


def instance_record(spooled: Spooled) -> str:
    """Record a spooled instance: one row per SOP Instance UID.

    An identical copy (same digest) changes nothing; a changed one replaces the row's
    file and is routed again; the old file goes once the new row is committed. Returns
    NEW, IDENTICAL or REPLACED.
    """
    header = spooled.header
    values = {
        "sop_class_uid": header.sop_class_uid,
        "study_instance_uid": header.study_instance_uid,
        "series_instance_uid": header.series_instance_uid,
        "transfer_syntax_uid": spooled.transfer_syntax_uid[:64],
        "modality": header.modality,
        "body_part": header.body_part,
        "study_description": header.study_description,
        "calling_ae_title": spooled.calling_ae_title[:16],
        "size": spooled.size,
        "digest": spooled.digest,
        "path": spooled.path,
        "received_at": timezone.now(),
        "routed": False,
    }
    if not transaction.get_connection().in_atomic_block:
        # The usual case, a new instance: one INSERT, atomic on its own.
        try:
            StoredInstance.objects.create(sop_instance_uid=header.sop_instance_uid, **values)
            return NEW
        except IntegrityError:
            pass  # it is there already: identical or changed
    for _ in range(3):
        try:
            with transaction.atomic():
                current = (
                    StoredInstance.objects.select_for_update()
                    .filter(sop_instance_uid=header.sop_instance_uid)
                    .only("pk", "digest", "path")
                    .first()
                )
                if current is None:
                    StoredInstance.objects.create(
                        sop_instance_uid=header.sop_instance_uid, **values
                    )
                    return NEW
                if current.digest == spooled.digest:
                    return IDENTICAL
                StoredInstance.objects.filter(pk=current.pk).update(**values)
                old = current.path
                if old != spooled.path:
                    transaction.on_commit(lambda old=old: spool.remove(old))  # type: ignore[misc]
                return REPLACED
        except IntegrityError:
            # Two associations stored the same new instance at once: read it again.
            continue
    raise RuntimeError(f"instance {header.sop_instance_uid} could not be recorded")


# --- deciding that a study is complete ----------------------------------------------


def mpps_ended(mpps_id: int) -> CompletenessWait | None:
    """A final MPPS (COMPLETED or DISCONTINUED): wait for the instances it lists, and
    route at once if they are all there already."""
    mpps = PerformedProcedureStep.objects.filter(pk=mpps_id, status__in=MPPS_FINAL).first()
    if mpps is None:
        return None
    expected = sorted(
        set(
            PerformedInstance.objects.filter(series__mpps=mpps).values_list(
                "sop_instance_uid", flat=True
            )
        )
    )
    studies = sorted(
        set(
            ScheduledReference.objects.filter(mpps=mpps)
            .exclude(study_instance_uid="")
            .values_list("study_instance_uid", flat=True)
        )
    )
    deadline = timezone.now() + dt.timedelta(seconds=settings.ROUTING_COMPLETENESS_TIMEOUT)
    try:
        wait, created = CompletenessWait.objects.get_or_create(
            mpps=mpps,
            defaults={"expected": expected, "study_uids": studies, "deadline": deadline},
        )
    except IntegrityError:
        wait, created = CompletenessWait.objects.get(mpps=mpps), False
    if created:
        logger.info(
            "MPPS %s %s: waiting for %d instance(s) of %d study(ies)",
            mpps.sop_instance_uid,
            mpps.status,
            len(expected),
            len(studies),
        )
    wait_check(wait)
    return wait


def _present(uids: list[str]) -> dict[str, str]:
    """SOP Instance UID -> Study Instance UID of those in the spool."""
    found: dict[str, str] = {}
    for chunk in _chunks(uids):
        found.update(
            StoredInstance.objects.filter(sop_instance_uid__in=chunk).values_list(
                "sop_instance_uid", "study_instance_uid"
            )
        )
    return found


def wait_check(wait: CompletenessWait, *, now: dt.datetime | None = None) -> bool:
    """Route the MPPS's studies if every listed instance arrived, or what is there once
    the deadline has passed (with the missing UIDs on the jobs). True when routed."""
    now = now or timezone.now()
    present = _present(list(wait.expected))
    missing = sorted(set(wait.expected) - set(present))
    if missing and now < wait.deadline:
        return False
    with transaction.atomic():
        # Claimed by a conditional update: two workers never route the same wait.
        claimed = CompletenessWait.objects.filter(pk=wait.pk, done_at__isnull=True).update(
            done_at=now, missing=missing
        )
        if claimed != 1:
            return False
        studies = sorted(set(wait.study_uids) | set(present.values()))
        trigger = Trigger.TIMEOUT if missing else Trigger.MPPS
        for study_uid in studies:
            route_study(study_uid, trigger=trigger, missing=missing)
    if missing:
        logger.warning(
            "MPPS %s: %d of %d listed instance(s) never arrived; routing what is there",
            wait.mpps_id,
            len(missing),
            len(wait.expected),
        )
    return True


def _mpps_in_progress(study_uid: str) -> bool:
    return PerformedProcedureStep.objects.filter(
        status=MPPSStatus.IN_PROGRESS, scheduled_references__study_instance_uid=study_uid
    ).exists()


def stable_studies(*, now: dt.datetime | None = None) -> list[str]:
    """Studies to route by the quiet period: instances not routed yet, none received for
    ROUTING_STABLE_SECONDS, and neither an MPPS in progress nor a final MPPS waiting for
    them. (An MPPS left in progress holds a study back at most
    ROUTING_COMPLETENESS_TIMEOUT more seconds.)"""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.ROUTING_STABLE_SECONDS)
    quiet = (
        StoredInstance.objects.filter(routed=False)
        .values("study_instance_uid")
        .annotate(last=Max("received_at"))
        .filter(last__lte=cutoff)
        .values_list("study_instance_uid", "last")
    )
    waiting: set[str] = set()
    expected: set[str] = set()
    for study_uids, uids in CompletenessWait.objects.filter(done_at__isnull=True).values_list(
        "study_uids", "expected"
    ):
        waiting.update(study_uids)
        expected.update(uids)
    overdue = now - dt.timedelta(
        seconds=settings.ROUTING_STABLE_SECONDS + settings.ROUTING_COMPLETENESS_TIMEOUT
    )
    studies = []
    for study_uid, last in quiet:
        if study_uid in waiting:
            continue
        if (
            expected
            and StoredInstance.objects.filter(
                study_instance_uid=study_uid, routed=False, sop_instance_uid__in=expected
            ).exists()
        ):
            continue
        if last > overdue and _mpps_in_progress(study_uid):
            continue
        studies.append(study_uid)
    return studies


# --- jobs ------------------------------------------------------------------------------


def destinations_for(study_uid: str) -> list[Destination]:
    facts = selectors.study_facts(study_uid)
    chosen: dict[int, Destination] = {}
    for rule in selectors.enabled_rules():
        conditions = {
            "modality": rule.modality,
            "calling_ae_title": rule.calling_ae_title,
            "station_ae_title": rule.station_ae_title,
            "procedure_code": rule.procedure_code,
            "body_part": rule.body_part,
            "study_description": rule.study_description,
        }
        if rule_matches(conditions, facts):
            for destination in rule.destinations.all():
                if destination.enabled:
                    chosen[destination.pk] = destination
    return [chosen[pk] for pk in sorted(chosen)]


@transaction.atomic
def route_study(
    study_uid: str, *, trigger: str = Trigger.STABLE, missing: Iterable[str] = ()
) -> list[int]:
    """Put the study's instances that are not routed yet into one job per destination.

    Steps: lock those instances; find the destinations of every matching rule; add
    the instances to the open job of each (study, destination), or create one (at most
    one is open: a partial unique constraint); mark the instances routed; queue the
    jobs after commit. Returns the job ids.
    """
    pending = list(
        StoredInstance.objects.select_for_update()
        .filter(study_instance_uid=study_uid, routed=False)
        .only("pk", "sop_instance_uid")
        .order_by("pk")
    )
    missing = sorted(set(missing))
    if not pending:
        return []
    job_ids = []
    for destination in destinations_for(study_uid):
        job = (
            RoutingJob.objects.select_for_update()
            .filter(study_instance_uid=study_uid, destination=destination, status__in=OPEN)
            .first()
        )
        if job is None:
            job = RoutingJob.objects.create(
                study_instance_uid=study_uid,
                destination=destination,
                trigger=trigger,
                missing_uids=missing,
            )
        elif missing:
            job.missing_uids = sorted(set(job.missing_uids) | set(missing))
            job.save(update_fields=["missing_uids", "updated_at"])
        uids = [i.sop_instance_uid for i in pending]
        JobItem.objects.bulk_create(
            [JobItem(job=job, instance=i, sop_instance_uid=i.sop_instance_uid) for i in pending],
            ignore_conflicts=True,
        )
        # A replaced copy of an instance this open job already sent goes again.
        for chunk in _chunks(uids):
            JobItem.objects.filter(job=job, sop_instance_uid__in=chunk).exclude(
                state=ItemState.PENDING
            ).update(state=ItemState.PENDING, status_code=None, error="")
        job_ids.append(job.pk)
        queue_job(job.pk)
    StoredInstance.objects.filter(pk__in=[i.pk for i in pending]).update(routed=True)
    logger.info(
        "study %s (%s): %d instance(s) routed to %d destination(s)",
        study_uid,
        trigger,
        len(pending),
        len(job_ids),
    )
    return job_ids


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: doubling, capped."""
    delay: float = settings.ROUTING_RETRY_DELAY * (2 ** max(attempts - 1, 0))
    return float(min(delay, settings.ROUTING_RETRY_MAX_DELAY))


@transaction.atomic
def job_retry(job_id: int) -> bool:
    """Operator: send a FAILED, WARNING or CANCELED job's undelivered instances again now.

    Refused (False) while another job of the same study and destination is open."""
    job = RoutingJob.objects.select_for_update().filter(pk=job_id).first()
    if job is None or job.status in OPEN:
        return False
    if RoutingJob.objects.filter(
        study_instance_uid=job.study_instance_uid,
        destination_id=job.destination_id,
        status__in=OPEN,
    ).exists():
        return False
    job.items.exclude(state__in=DELIVERED).update(state=ItemState.PENDING, error="")
    RoutingJob.objects.filter(pk=job.pk).update(
        status=JobStatus.SCHEDULED,
        attempts=0,
        next_attempt_at=None,
        lease_until=None,
        lease_owner="",
        finished_at=None,
        updated_at=timezone.now(),
    )
    queue_job(job.pk)
    logger.info("routing job %s retried by an operator", job.pk)
    return True


def job_cancel(job_id: int) -> bool:
    """Operator: stop a job (a worker sending it stops at the next instance)."""
    updated = (
        RoutingJob.objects.filter(pk=job_id)
        .exclude(status__in=(JobStatus.COMPLETED, JobStatus.CANCELED))
        .update(
            status=JobStatus.CANCELED,
            lease_until=None,
            lease_owner="",
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
    )
    if updated:
        logger.info("routing job %s canceled by an operator", job_id)
    return updated == 1


# --- periodic work -----------------------------------------------------------------------


def due_jobs(*, now: dt.datetime | None = None) -> list[int]:
    """Jobs to queue: scheduled and due, or in process with an expired lease (the worker
    died), on destinations that are enabled and not paused."""
    now = now or timezone.now()
    return list(
        RoutingJob.objects.filter(destination__enabled=True, destination__paused=False)
        .filter(
            Q(status=JobStatus.SCHEDULED)
            & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            | Q(status=JobStatus.IN_PROCESS, lease_until__lt=now)
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:1000]
    )


def spool_clean(*, now: dt.datetime | None = None) -> int:
    """Remove instances no job needs any more, received ROUTING_RETENTION_HOURS ago.

    An instance is still needed by an item that is not delivered (or delivered but not
    committed, where the destination requires commitment) of a job not canceled.
    """
    now = now or timezone.now()
    cutoff = now - dt.timedelta(hours=settings.ROUTING_RETENTION_HOURS)
    needed = (
        JobItem.objects.filter(instance=OuterRef("pk"))
        .exclude(job__status=JobStatus.CANCELED)
        .filter(
            ~Q(state__in=DELIVERED)
            | Q(state=ItemState.SENT, job__destination__storage_commitment=True)
        )
    )
    removed = 0
    while True:
        batch = list(
            StoredInstance.objects.filter(routed=True, received_at__lt=cutoff)
            .filter(~Exists(needed))
            .values_list("pk", "path")[:_CHUNK]
        )
        if not batch:
            break
        with transaction.atomic():
            StoredInstance.objects.filter(pk__in=[pk for pk, _ in batch]).delete()
        for _, path in batch:
            spool.remove(path)
        removed += len(batch)
    if removed:
        logger.info("spool: %d instance(s) past retention removed", removed)
    return removed


def _mpps_without_wait(now: dt.datetime) -> list[int]:
    """Final MPPS of the last day that routing has not seen (their task was lost)."""
    since = now - dt.timedelta(days=1)
    return list(
        PerformedProcedureStep.objects.filter(
            status__in=MPPS_FINAL, updated_at__gte=since, routing_wait__isnull=True
        ).values_list("pk", flat=True)[:100]
    )


def tick(*, now: dt.datetime | None = None) -> dict[str, int]:
    """The periodic check (Celery beat): completeness, quiet periods, due jobs, spool."""
    now = now or timezone.now()
    counts = {"mpps": 0, "complete": 0, "stable": 0, "queued": 0, "removed": 0}
    for mpps_id in _mpps_without_wait(now):
        mpps_ended(mpps_id)
        counts["mpps"] += 1
    for wait in CompletenessWait.objects.filter(done_at__isnull=True).order_by("pk"):
        counts["complete"] += int(wait_check(wait, now=now))
    for study_uid in stable_studies(now=now):
        # A study that matches no rule is marked routed too: nothing to send.
        route_study(study_uid, trigger=Trigger.STABLE)
        counts["stable"] += 1
    for job_id in due_jobs(now=now):
        current_app.send_task(SEND_TASK, args=(job_id,))
        counts["queued"] += 1
    counts["removed"] = spool_clean(now=now)
    spool.remove_stale_temporaries(older_than=3600)
    return counts


# --- destinations and rules (admin and API) ---------------------------------------------


def destination_echo(destination: Destination) -> tuple[int | None, str]:
    """C-ECHO the destination: (status, "") when it answers, else (None, why not)."""
    return sender.echo(
        sender.Target(
            ae_title=destination.ae_title,
            host=destination.host,
            port=destination.port,
            use_tls=destination.use_tls,
        )
    )
