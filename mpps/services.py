"""Writes of performed procedure steps: N-CREATE, N-SET, linking to the worklist.

Every write runs in one transaction that also moves the linked scheduled steps (through
``worklist.services.step_set_status``) and queues the order status for the RIS in the
outbox; events and Celery tasks go out only after it commits.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone
from pydicom.dataset import Dataset

from core import events, fastpath
from mpps import dataset as mpps_dataset
from mpps import outbox, rules, validation
from mpps.models import (
    PerformedInstance,
    PerformedProcedureStep,
    PerformedSeries,
    ScheduledReference,
    StepLink,
)
from mpps.status import MPPSStatus
from mpps.validation import Refusal
from worklist.models import ScheduledProcedureStep
from worklist.services import step_set_status

logger = logging.getLogger(__name__)

# N-SETs racing on one instance: how often to re-read before giving up.
_SET_RETRIES = 5


@dataclass(frozen=True)
class Outcome:
    """What the SCP answers: the instance on success, else the refusal."""

    mpps: PerformedProcedureStep | None = None
    refusal: Refusal | None = None


def find_steps(refs: Iterable[mpps_dataset.StepReference]) -> list[ScheduledProcedureStep]:
    """The scheduled steps an MPPS's Scheduled Step Attributes Sequence points at.

    Steps, per item: Study Instance UID + SPS ID; else Accession Number + Requested
    Procedure ID (narrowed by the SPS ID when given); else, when the modality sent no
    SPS ID, the only step of the procedure with that Study Instance UID.
    """
    found: dict[int, ScheduledProcedureStep] = {}
    base = ScheduledProcedureStep.objects.select_related("procedure__order")
    for ref in refs:
        matches: list[ScheduledProcedureStep] = []
        if ref.study_instance_uid and ref.sps_id:
            matches = list(
                base.filter(procedure__study_instance_uid=ref.study_instance_uid, sps_id=ref.sps_id)
            )
        if not matches and ref.accession_number and ref.requested_procedure_id:
            query = base.filter(
                procedure__order__accession_number=ref.accession_number,
                procedure__requested_procedure_id=ref.requested_procedure_id,
            )
            if ref.sps_id:
                query = query.filter(sps_id=ref.sps_id)
            matches = list(query)
        if not matches and ref.study_instance_uid and not ref.sps_id:
            candidates = list(base.filter(procedure__study_instance_uid=ref.study_instance_uid)[:2])
            matches = candidates if len(candidates) == 1 else []
        for step in matches:
            found[step.pk] = step
    return [found[pk] for pk in sorted(found)]


def _replace_series(
    mpps: PerformedProcedureStep, series: list[mpps_dataset.Series], *, new: bool = False
) -> None:
    """Store the Performed Series Sequence; each N-SET carrying it replaces it whole."""
    if not new:
        mpps.series.all().delete()
    # A modality repeating a series in the sequence gets it stored once.
    by_uid = {item.series_instance_uid: item for item in series}
    for item in by_uid.values():
        row = PerformedSeries.objects.create(
            mpps=mpps,
            series_instance_uid=item.series_instance_uid,
            series_description=item.series_description,
            protocol_name=item.protocol_name,
            retrieve_ae_title=item.retrieve_ae_title,
        )
        unique = {i.sop_instance_uid: i for i in item.instances}
        PerformedInstance.objects.bulk_create(
            [
                PerformedInstance(
                    series=row, sop_class_uid=i.sop_class_uid, sop_instance_uid=i.sop_instance_uid
                )
                for i in unique.values()
            ]
        )


def _follow_up(mpps: PerformedProcedureStep, steps: Iterable[ScheduledProcedureStep]) -> None:
    """Inside the transaction: the linked steps follow, the RIS hears of it, the event goes
    out. ``steps`` come with their procedure (for the order) and the status read.

    1. Lock the orders, in id order, as HL7 intake takes them (order, then steps): an
       MPPS and an order update on PostgreSQL cannot deadlock.
    2. Read the statuses of every performed step linked to these steps, in one query.
    3. Move each step to the state they imply (race-safe: tried from the status read with
       the step, read again if it moved on meanwhile).
    4. Queue the orders' status for the RIS, publish the event after commit.
    """
    steps = sorted(steps, key=lambda s: s.pk)
    orders = outbox.lock_orders({s.procedure.order_id for s in steps})
    performed: dict[int, list[str]] = defaultdict(list)
    for step_id, status in StepLink.objects.filter(step__in=[s.pk for s in steps]).values_list(
        "step_id", "mpps__status"
    ):
        performed[step_id].append(status)
    for step in steps:
        target = rules.step_target(performed[step.pk])
        if target is not None:
            step_set_status(
                step=step,
                new_status=target,
                expected=rules.STEP_SOURCES[target],
                current=step.status,
            )
    outbox.locked_status_follow(orders, mpps_id=mpps.pk)
    events.publish(events.mpps_changed, mpps_id=mpps.pk, status=mpps.status)


def mpps_create(*, sop_instance_uid: str, ds: Dataset, calling_ae_title: str = "") -> Outcome:
    """Apply an N-CREATE: check it, store it, link it, move the steps, queue the status."""
    if not validation.is_uid(sop_instance_uid):
        return Outcome(refusal=validation.invalid_instance(sop_instance_uid))
    refusal = validation.check_create(ds)
    if refusal is not None:
        return Outcome(refusal=refusal)
    try:
        with transaction.atomic():
            # A duplicate SOP Instance UID fails this insert on the unique column.
            mpps = PerformedProcedureStep(
                sop_instance_uid=sop_instance_uid,
                calling_ae_title=calling_ae_title[:16],
                dataset=mpps_dataset.to_json(ds),
                **mpps_dataset.columns(ds),
            )
            # SQL compiled once (core.fastpath): the same INSERT for every N-CREATE.
            fastpath.insert_row(mpps)
            refs = mpps_dataset.step_references(ds)
            ScheduledReference.objects.bulk_create(
                [
                    ScheduledReference(
                        mpps=mpps,
                        study_instance_uid=r.study_instance_uid[:64],
                        accession_number=r.accession_number[:16],
                        requested_procedure_id=r.requested_procedure_id[:16],
                        sps_id=r.sps_id[:16],
                    )
                    for r in refs
                ]
            )
            _replace_series(mpps, mpps_dataset.performed_series(ds) or [], new=True)
            steps = find_steps(refs)
            StepLink.objects.bulk_create([StepLink(mpps=mpps, step=s) for s in steps])
            _follow_up(mpps, steps)
    except IntegrityError:
        # The instance exists (or two N-CREATEs of it raced and the other one won).
        if PerformedProcedureStep.objects.filter(sop_instance_uid=sop_instance_uid).exists():
            return Outcome(refusal=validation.duplicate_instance(sop_instance_uid))
        raise
    logger.info(
        "MPPS %s created (%s) from %s, %d scheduled step(s) linked",
        sop_instance_uid,
        mpps.status,
        calling_ae_title or "?",
        len(steps),
    )
    return Outcome(mpps=mpps)


def mpps_set(*, sop_instance_uid: str, modification: Dataset) -> Outcome:
    """Apply an N-SET, race-safe.

    Steps: read the instance and its version; check the modification against it;
    write with ``WHERE version = read version AND status = 'IN PROGRESS'``. If another
    N-SET got there first, read again: a final instance now refuses (0x0110/0xA710),
    an interim update is merged with.
    """
    for _ in range(_SET_RETRIES):
        with transaction.atomic():
            # The UID is unique: at most one row. SQL compiled once (core.fastpath).
            found = fastpath.select_rows(
                PerformedProcedureStep,
                "mpps_set",
                [sop_instance_uid],
                lambda: PerformedProcedureStep.objects.filter(sop_instance_uid=sop_instance_uid),
            )
            current = found[0] if found else None
            if current is None:
                return Outcome(refusal=validation.unknown_instance(sop_instance_uid))
            stored = mpps_dataset.from_json(current.dataset)
            merged = mpps_dataset.merged(stored, modification)
            refusal = validation.check_set(
                modification, current_status=current.status, merged=merged
            )
            if refusal is not None:
                return Outcome(refusal=refusal)
            values = {
                **mpps_dataset.columns(merged),
                "version": current.version + 1,
                "dataset": mpps_dataset.to_json(merged),
                "updated_at": timezone.now(),
            }
            updated = PerformedProcedureStep.objects.filter(
                pk=current.pk, version=current.version, status=MPPSStatus.IN_PROGRESS
            ).update(**values)
            if updated != 1:
                # Another N-SET committed in between: decide again on what it left.
                continue
            for name, value in values.items():
                setattr(current, name, value)
            series = mpps_dataset.performed_series(modification)
            if series is not None:
                _replace_series(current, series)
            _follow_up(
                current,
                ScheduledProcedureStep.objects.filter(mpps_links__mpps=current).select_related(
                    "procedure"
                ),
            )
        logger.info("MPPS %s set (%s)", sop_instance_uid, current.status)
        return Outcome(mpps=current)
    # Still losing to other N-SETs of the same instance after several tries: let the
    # modality send it again rather than wait here.
    return Outcome(refusal=validation.busy(sop_instance_uid))


@transaction.atomic
def mpps_link(*, mpps: PerformedProcedureStep, steps: Iterable[ScheduledProcedureStep]) -> int:
    """Link a performed step to scheduled steps later (the unscheduled case); returns how
    many links are new. The steps and the RIS then follow as if linked at N-CREATE."""
    have = set(mpps.links.values_list("step_id", flat=True))
    new = [s for s in steps if s.pk not in have]
    StepLink.objects.bulk_create([StepLink(mpps=mpps, step=s) for s in new], ignore_conflicts=True)
    if new:
        _follow_up(mpps, new)
        logger.info("MPPS %s linked to %d scheduled step(s)", mpps.sop_instance_uid, len(new))
    return len(new)
