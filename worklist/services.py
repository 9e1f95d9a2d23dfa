"""Writes of the scheduling domain. Every write of patients, orders, procedures and steps
goes through here, so that events are published once and after commit.

Field maps: a key that is absent leaves the stored value unchanged; a key present with
``None`` or ``""`` clears it (HL7's ``""``).

The four upserts open no savepoint of their own (HL7 intake calls them many times per
message, and each savepoint is two round trips): when one raises inside a caller's
transaction, that transaction can only be rolled back, not continued. Callers (HL7 intake, the worklist importer,
the admin, MPPS) convert their input into these maps.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone
from pydicom.uid import generate_uid

from audit.services import audit_record, snapshot
from core import events
from core.fastpath import insert_row, select_rows
from worklist.models import (
    Order,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
    StationAETitle,
)
from worklist.status import FINAL, SPSStatus

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=models.Model)


class DomainError(Exception):
    """A request the domain cannot apply; the message says why (shown to the sender)."""


def _concrete_field(model: type[models.Model] | models.Model, name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field), f"{name} is not a column"
    return field


def _apply(instance: models.Model, fields: Mapping[str, Any]) -> bool:
    """Set ``fields`` on ``instance``; return True if anything changed."""
    changed = False
    for name, value in fields.items():
        field = _concrete_field(instance, name)
        if value is None and not field.null:
            value = field.get_default()
        if getattr(instance, name) != value:
            setattr(instance, name, value)
            changed = True
    return changed


def _lock_row(model: type[M], lookup: Mapping[str, Any]) -> M | None:
    """``select_for_update().filter(**lookup).first()``, compiled once (``select_rows``).

    ``lookup`` holds plain values or model instances (foreign keys), as the upserts use.
    """
    names = tuple(sorted(lookup))  # Q(**kwargs) orders its conditions by name
    params = [v.pk if isinstance(v, models.Model) else v for v in (lookup[n] for n in names)]
    found = select_rows(
        model,
        ("lock", names),
        params,
        lambda: model._default_manager.select_for_update().filter(**lookup)[:1],
    )
    return found[0] if found else None


def _insert_if_absent(instance: models.Model) -> bool:
    """INSERT the new ``instance`` unless a unique key is taken; True if inserted."""
    return insert_row(instance, ignore_conflicts=True)


def _get_or_create(
    model: type[M],
    lookup: Mapping[str, Any],
    defaults: Mapping[str, Any],
    *,
    parent_created: bool = False,
    likely_new: bool = False,
) -> tuple[M, bool]:
    """get_or_create that survives a concurrent insert of the same unique key.

    Two connections may both miss the row and both insert; the unique constraint lets
    one win, and the loser reads the winner's row instead of creating a duplicate.
    The row is read with ``SELECT ... FOR UPDATE`` (kept locked until the caller's
    transaction ends); a missing row is inserted with ``INSERT ... ON CONFLICT DO
    NOTHING``: when a concurrent transaction inserted the same key, PostgreSQL waits for
    it, inserts nothing, and the row is then read again, locked (under READ COMMITTED
    a new statement sees the winner's committed row). ``likely_new`` tries the INSERT
    first (one statement for a new row, two for an existing one). Backends without
    INSERT ... RETURNING use Django's get_or_create (SELECT, then INSERT in a savepoint).
    The caller must be inside a transaction for the row lock to last.
    """
    if parent_created:
        # The parent row was inserted by this very transaction: nobody else can see it,
        # so no child can exist under it yet and nobody else can insert one. One INSERT
        # instead of SELECT + SAVEPOINT + INSERT + RELEASE.
        instance = model(**lookup, **defaults)
        insert_row(instance)
        return instance, True
    manager = model._default_manager
    if connection.features.can_return_columns_from_insert:
        if not likely_new:
            found = _lock_row(model, lookup)
            if found is not None:
                return found, False
        instance = model(**lookup, **defaults)
        if _insert_if_absent(instance):
            return instance, True
    return manager.select_for_update().get_or_create(**lookup, defaults=dict(defaults))


@transaction.atomic(savepoint=False)
def patient_upsert(*, patient_id: str, issuer: str = "", fields: Mapping[str, Any]) -> Patient:
    """Create the patient or update the given demographics.

    Works on the row with this identifier even if it was merged; callers attaching
    orders take ``patient_current()`` of the result (the survivor of merges).
    """
    if not patient_id:
        raise DomainError("Patient ID is empty")
    patient, created = _get_or_create(
        Patient, {"patient_id": patient_id, "issuer": issuer}, _creatable(Patient, fields)
    )
    if not created and _apply(patient, fields):
        patient.save()
    if created or fields:
        events.publish(events.patient_changed, patient_id=patient.pk)
    return patient


def _creatable(model: type[models.Model], fields: Mapping[str, Any]) -> dict[str, Any]:
    """Field values for a new row: cleared values take the column default."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        field = _concrete_field(model, name)
        out[name] = field.get_default() if value is None and not field.null else value
    return out


def patient_current(patient: Patient) -> Patient:
    """The surviving patient after any merges."""
    seen = {patient.pk}
    while patient.merged_into_id is not None:
        patient = Patient.objects.get(pk=patient.merged_into_id)
        if patient.pk in seen:  # a merge loop must never hang a listener
            break
        seen.add(patient.pk)
    return patient


@transaction.atomic(savepoint=False)
def order_upsert(
    *,
    patient: Patient,
    accession_number: str,
    accession_issuer: str = "",
    fields: Mapping[str, Any],
    likely_new: bool = False,
) -> tuple[Order, bool]:
    """Create or update the order with this accession number; returns (order, created).

    ``likely_new``: the caller expects a new order (HL7 NW); one statement less then.
    """
    if not accession_number:
        raise DomainError("Accession Number is empty")
    order, created = _get_or_create(
        Order,
        {"accession_number": accession_number, "accession_issuer": accession_issuer},
        {"patient": patient, **_creatable(Order, fields)},
        likely_new=likely_new,
    )
    if not created:
        changed = _apply(order, fields)
        if order.patient_id != patient.pk:
            order.patient = patient
            changed = True
        if changed:
            order.save()
    events.publish(events.order_changed, order_id=order.pk)
    return order, created


@transaction.atomic(savepoint=False)
def procedure_upsert(
    *,
    order: Order,
    requested_procedure_id: str,
    study_instance_uid: str,
    fields: Mapping[str, Any],
    parent_created: bool = False,
) -> RequestedProcedure:
    """Create or update a requested procedure.

    ``parent_created``: the caller created ``order`` in the current transaction (a
    shortcut for bulk intake; the procedure is then certainly new).
    """
    if not requested_procedure_id:
        raise DomainError("Requested Procedure ID is empty")
    lookup = {"order": order, "requested_procedure_id": requested_procedure_id}
    defaults = {"study_instance_uid": study_instance_uid, **_creatable(RequestedProcedure, fields)}
    if parent_created and connection.features.can_return_columns_from_insert:
        # A new order has no procedure yet: the INSERT can only be refused for a Study
        # Instance UID that is taken, which the check below then reports.
        procedure = RequestedProcedure(**lookup, **defaults)
        if _insert_if_absent(procedure):
            return procedure
    uid_owner = (
        RequestedProcedure.objects.filter(study_instance_uid=study_instance_uid)
        .values_list("order_id", "requested_procedure_id")
        .first()
    )
    if uid_owner is not None and uid_owner != (order.pk, requested_procedure_id):
        raise DomainError(
            f"Study Instance UID {study_instance_uid} already belongs to another procedure"
        )
    procedure, created = _get_or_create(
        RequestedProcedure, lookup, defaults, parent_created=parent_created
    )
    if not created:
        changed = _apply(procedure, fields)
        if study_instance_uid and procedure.study_instance_uid != study_instance_uid:
            procedure.study_instance_uid = study_instance_uid
            changed = True
        if changed:
            procedure.save()
    return procedure


@transaction.atomic(savepoint=False)
def step_upsert(
    *,
    procedure: RequestedProcedure,
    sps_id: str,
    fields: Mapping[str, Any],
    station_ae_titles: Iterable[str] | None = None,
    parent_created: bool = False,
) -> ScheduledProcedureStep:
    """Create or update a scheduled step. ``station_ae_titles=None`` leaves them as they are.

    ``parent_created``: the caller created ``procedure`` in the current transaction.
    """
    if not sps_id:
        raise DomainError("Scheduled Procedure Step ID is empty")
    fields = dict(fields)
    new_status = fields.pop("status", None)
    step, created = _get_or_create(
        ScheduledProcedureStep,
        {"procedure": procedure, "sps_id": sps_id},
        _creatable(ScheduledProcedureStep, {**fields, "status": new_status or SPSStatus.SCHEDULED}),
        parent_created=parent_created,
    )
    if created:
        events.publish(
            events.step_status_changed, step_id=step.pk, old_status="", new_status=step.status
        )
    else:
        if _apply(step, fields):
            step.save()
        if (
            new_status
            and new_status != step.status
            and not step_set_status(step=step, new_status=new_status)
        ):
            raise DomainError(
                f"Scheduled Procedure Step {sps_id} is {step.status}; it cannot become {new_status}"
            )
    if station_ae_titles is not None:
        titles = list(dict.fromkeys(t for t in station_ae_titles if t))
        have: set[str] = set()
        if not created:
            step.station_ae_titles.exclude(ae_title__in=titles).delete()
            have = set(step.station_ae_titles.values_list("ae_title", flat=True))
        rows = [StationAETitle(step=step, ae_title=t) for t in titles if t not in have]
        if len(rows) == 1:
            insert_row(rows[0])
        elif rows:
            StationAETitle.objects.bulk_create(rows)
    return step


@transaction.atomic(savepoint=False)
def step_set_status(
    *,
    step: ScheduledProcedureStep,
    new_status: str,
    expected: Iterable[str] | None = None,
    current: str | None = None,
) -> bool:
    """Move a step to ``new_status`` if it is still in one of ``expected`` states.

    Race-safe: the old state is part of the UPDATE's filter, so of two concurrent
    transitions exactly one applies. Returns False if the step was not in an expected
    state (``expected=None`` allows any state that is not final, or the same).
    ``current``: the state the caller read, tried first without reading it again; if the
    step has moved on since, it is read and decided on again.
    """
    allowed = (
        list(expected) if expected is not None else [s for s in SPSStatus.values if s not in FINAL]
    )
    old = current
    for _ in range(2):
        if old is None:
            old = (
                ScheduledProcedureStep.objects.filter(pk=step.pk)
                .values_list("status", flat=True)
                .first()
            )
            if old is None:
                raise DomainError("scheduled step no longer exists")
            current = None  # read now: no second try
        if old == new_status:
            step.status = new_status
            return True
        if old not in allowed:
            # The step is in a state this transition may not leave.
            return False
        updated = ScheduledProcedureStep.objects.filter(pk=step.pk, status=old).update(
            status=new_status
        )
        if updated == 1:
            step.status = new_status
            events.publish(
                events.step_status_changed, step_id=step.pk, old_status=old, new_status=new_status
            )
            return True
        if current is None:
            # Nothing changed: the step left ``old`` under us (or is gone).
            return False
        old = None  # the caller's state was stale: read it and decide again
    return False


@transaction.atomic
def patient_change_identifier(
    *, patient_id: str, issuer: str, new_patient_id: str, new_issuer: str
) -> Patient | None:
    """Give the patient known as ``patient_id``/``issuer`` a new identifier (HL7 A47).

    Returns the renamed patient, or None if no patient had the old identifier (nothing to
    change; a repeated A47 arrives here). Refuses when the new identifier already
    belongs to another patient: that is a merge, not a change of identifier.
    """
    if not new_patient_id:
        raise DomainError("the new Patient ID is empty")
    if (patient_id, issuer) == (new_patient_id, new_issuer):
        return Patient.objects.filter(patient_id=patient_id, issuer=issuer).first()
    patient = (
        Patient.objects.select_for_update().filter(patient_id=patient_id, issuer=issuer).first()
    )
    if patient is None:
        return None
    if Patient.objects.filter(patient_id=new_patient_id, issuer=new_issuer).exists():
        raise DomainError("the new patient identifier already belongs to another patient")
    patient.patient_id = new_patient_id
    patient.issuer = new_issuer
    try:
        with transaction.atomic():
            patient.save(update_fields=["patient_id", "issuer", "updated_at"])
    except IntegrityError:
        # Created by a concurrent message between the check and the update.
        raise DomainError("the new patient identifier already belongs to another patient") from None
    events.publish(events.patient_changed, patient_id=patient.pk)
    return patient


@transaction.atomic
def patients_merge(*, surviving: Patient, merged: Patient) -> int:
    """Move every order of ``merged`` to ``surviving``; returns the number moved."""
    if surviving.pk == merged.pk:
        raise DomainError("a patient cannot be merged into itself")
    surviving = patient_current(surviving)
    if surviving.pk == merged.pk:
        raise DomainError("the surviving patient was itself merged into the other one")
    moved = Order.objects.filter(patient=merged).update(patient=surviving)
    if merged.merged_into_id != surviving.pk:
        merged.merged_into = surviving
        merged.save(update_fields=["merged_into", "updated_at"])
    events.publish(
        events.patients_merged, surviving_patient_id=surviving.pk, merged_patient_id=merged.pk
    )
    return moved


# --- Front-desk and MWL-RS writes (pages, REST API, admin) ---------------------------
# Each runs in one transaction, publishes its events after commit (through the upserts
# and step_set_status above), and writes one audit entry per changed object. ``actor``
# is the Django user making the change (None for a system change).

_PATIENT_IDENTIFIER = {"patient_id", "issuer", "merged_into", "merged_into_id", "name_key"}
_STEP_KEYS = {"sps_id", "station_ae_title", "station_ae_titles"}


def _step_snapshot(step: ScheduledProcedureStep) -> dict[str, Any]:
    titles = sorted(step.station_ae_titles.values_list("ae_title", flat=True))
    return snapshot(
        step,
        extra={"station_ae_titles": titles},
        skip=("start_date", "start_time", "performing_physician_key"),
    )


def _patient_snapshot(patient: Patient) -> dict[str, Any]:
    return snapshot(patient, skip=("name_key",))


def _order_snapshot(order: Order) -> dict[str, Any]:
    return snapshot(order, skip=("referring_physician_key",))


def _new_accession_number() -> str:
    """``A`` + local date + 8 random digits (15 characters, Accession Number is SH 16)."""
    day = timezone.localdate().strftime("%y%m%d")
    while True:
        candidate = f"A{day}{secrets.randbelow(10**8):08d}"
        if not Order.objects.filter(accession_number=candidate).exists():
            return candidate


def _next_free(prefix: str, taken: Iterable[str]) -> str:
    used = set(taken)
    n = 1
    while f"{prefix}{n}" in used:
        n += 1
    return f"{prefix}{n}"


def _check_fields(model: type[models.Model], fields: Mapping[str, Any], *, what: str) -> None:
    names = {f.name for f in model._meta.concrete_fields}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise DomainError(f"unknown {what} field(s): {', '.join(unknown)}")


def _aware(start: Any) -> None:
    if start is not None and timezone.is_naive(start):
        raise DomainError("the scheduled start needs a time zone")


@transaction.atomic
def order_enter(
    *,
    actor: Any,
    patient: Mapping[str, Any],
    order: Mapping[str, Any],
    procedures: Sequence[Mapping[str, Any]],
) -> Order:
    """Manual order entry (front desk) and MWL-RS create/update.

    1. The patient by (patient_id, issuer): created, or its given demographics updated.
    2. The order by accession number (generated when empty), attached to the surviving
       patient of any merge.
    3. Each procedure by requested procedure ID (generated when empty; an existing one
       is also found by its Study Instance UID), with a Study Instance UID generated
       under BROKER_UID_ROOT when none is given.
    4. Each step by SPS ID (generated when empty): SCHEDULED, in the worklist once this
       returns.
    """
    patient_fields = dict(patient)
    patient_id = str(patient_fields.pop("patient_id", "") or "").strip()
    issuer = str(patient_fields.pop("issuer", "") or "")
    if not patient_id:
        raise DomainError("Patient ID is required")
    _check_fields(Patient, patient_fields, what="patient")
    if set(patient_fields) & _PATIENT_IDENTIFIER:
        raise DomainError("the patient identifier cannot be set here")
    existing_patient = Patient.objects.filter(patient_id=patient_id, issuer=issuer).first()
    before = _patient_snapshot(existing_patient) if existing_patient else None
    stored = patient_upsert(patient_id=patient_id, issuer=issuer, fields=patient_fields)
    audit_record(
        actor=actor,
        action="order_enter",
        instance=stored,
        before=before,
        after=_patient_snapshot(stored),
    )
    current = patient_current(stored)

    order_fields = dict(order)
    accession = str(order_fields.pop("accession_number", "") or "").strip()
    accession_issuer = str(order_fields.pop("accession_issuer", "") or "")
    order_fields.pop("patient", None)
    _check_fields(Order, order_fields, what="order")
    existing_order = (
        Order.objects.filter(accession_number=accession, accession_issuer=accession_issuer).first()
        if accession
        else None
    )
    before = _order_snapshot(existing_order) if existing_order else None
    entered, created = order_upsert(
        patient=current,
        accession_number=accession or _new_accession_number(),
        accession_issuer=accession_issuer,
        fields=order_fields,
    )
    audit_record(
        actor=actor,
        action="order_enter",
        instance=entered,
        before=before,
        after=_order_snapshot(entered),
    )
    if created and not procedures:
        raise DomainError("an order needs at least one requested procedure")
    for procedure_map in procedures:
        _procedure_enter(actor=actor, order=entered, data=procedure_map)
    return entered


def _procedure_enter(*, actor: Any, order: Order, data: Mapping[str, Any]) -> None:
    fields = dict(data)
    steps = list(fields.pop("steps", None) or [])
    rp_id = str(fields.pop("requested_procedure_id", "") or "").strip()
    study_uid = str(fields.pop("study_instance_uid", "") or "").strip()
    _check_fields(RequestedProcedure, fields, what="procedure")
    existing = None
    if rp_id:
        existing = RequestedProcedure.objects.filter(
            order=order, requested_procedure_id=rp_id
        ).first()
    elif study_uid:
        existing = RequestedProcedure.objects.filter(
            order=order, study_instance_uid=study_uid
        ).first()
    if existing is not None:
        rp_id = existing.requested_procedure_id
        study_uid = study_uid or existing.study_instance_uid
    if not rp_id:
        rp_id = _next_free("RP", order.procedures.values_list("requested_procedure_id", flat=True))
    if not study_uid:
        study_uid = generate_uid(prefix=settings.BROKER_UID_ROOT)
    before = snapshot(existing) if existing else None
    procedure = procedure_upsert(
        order=order, requested_procedure_id=rp_id, study_instance_uid=study_uid, fields=fields
    )
    audit_record(
        actor=actor,
        action="order_enter",
        instance=procedure,
        before=before,
        after=snapshot(procedure),
    )
    if existing is None and not steps:
        raise DomainError("a requested procedure needs at least one scheduled step")
    for step_map in steps:
        _step_enter(actor=actor, procedure=procedure, data=step_map)


def _step_enter(*, actor: Any, procedure: RequestedProcedure, data: Mapping[str, Any]) -> None:
    fields = dict(data)
    sps_id = str(fields.pop("sps_id", "") or "").strip()
    titles: list[str] | None = None
    if "station_ae_titles" in fields:
        titles = [str(t) for t in fields.pop("station_ae_titles") or []]
    if "station_ae_title" in fields:
        title = fields.pop("station_ae_title")
        titles = [str(title)] if title else []
    _check_fields(ScheduledProcedureStep, fields, what="step")
    _aware(fields.get("start"))
    existing = (
        ScheduledProcedureStep.objects.filter(procedure=procedure, sps_id=sps_id).first()
        if sps_id
        else None
    )
    if existing is not None and existing.status in FINAL and fields:
        raise DomainError(f"Scheduled Procedure Step {sps_id} is {existing.status}")
    if not sps_id:
        sps_id = _next_free("SPS", procedure.steps.values_list("sps_id", flat=True))
    before = _step_snapshot(existing) if existing else None
    step = step_upsert(procedure=procedure, sps_id=sps_id, fields=fields, station_ae_titles=titles)
    audit_record(
        actor=actor,
        action="order_enter",
        instance=step,
        before=before,
        after=_step_snapshot(step),
    )


def _locked_step(step_id: int) -> ScheduledProcedureStep:
    step = ScheduledProcedureStep.objects.select_for_update().filter(pk=step_id).first()
    if step is None:
        raise DomainError("this scheduled procedure step does not exist")
    return step


def _refuse_final(step: ScheduledProcedureStep, wanted: str) -> None:
    if step.status in FINAL:
        raise DomainError(
            f"Scheduled Procedure Step {step.sps_id} is {step.status.lower()}; "
            f"it cannot become {wanted.lower()}"
        )


@transaction.atomic
def step_change_status(*, actor: Any, step_id: int, new_status: str) -> ScheduledProcedureStep:
    """Move a step to any SPS status; a final step (completed, discontinued, canceled)
    refuses. Through ``step_set_status``, so the event is the same as for HL7 and MPPS."""
    if new_status not in SPSStatus.values:
        raise DomainError(f"{new_status!r} is not a Scheduled Procedure Step Status")
    step = _locked_step(step_id)
    old = step.status
    if old == new_status:
        return step
    _refuse_final(step, new_status)
    # The row is locked: the status just read is the one the UPDATE will find.
    if not step_set_status(step=step, new_status=new_status, expected=[old], current=old):
        raise DomainError(f"Scheduled Procedure Step {step.sps_id} changed meanwhile; try again")
    audit_record(
        actor=actor,
        action="step_change_status",
        instance=step,
        before={"status": old},
        after={"status": new_status},
    )
    return step


def step_mark_arrived(*, actor: Any, step_id: int) -> ScheduledProcedureStep:
    return step_change_status(actor=actor, step_id=step_id, new_status=SPSStatus.ARRIVED)


def step_cancel(*, actor: Any, step_id: int) -> ScheduledProcedureStep:
    return step_change_status(actor=actor, step_id=step_id, new_status=SPSStatus.CANCELED)


def step_discontinue(*, actor: Any, step_id: int) -> ScheduledProcedureStep:
    return step_change_status(actor=actor, step_id=step_id, new_status=SPSStatus.DISCONTINUED)


@transaction.atomic
def step_reschedule(
    *, actor: Any, step_id: int, start: datetime, station_ae_title: str | None = None
) -> ScheduledProcedureStep:
    """A new start (and, if given, a new station: its AE title replaces the old ones;
    ``""`` clears them). The local DA/TM columns follow ``start`` (the model's save)."""
    if start is None:
        raise DomainError("a new scheduled start is required")
    _aware(start)
    step = _locked_step(step_id)
    _refuse_final(step, "rescheduled")
    before = _step_snapshot(step)
    step.start = start
    step.save(update_fields=["start", "start_date", "start_time", "updated_at"])
    if station_ae_title is not None:
        step.station_ae_titles.exclude(ae_title=station_ae_title).delete()
        if station_ae_title:
            step.station_ae_titles.get_or_create(ae_title=station_ae_title)
    audit_record(
        actor=actor,
        action="step_reschedule",
        instance=step,
        before=before,
        after=_step_snapshot(step),
    )
    events.publish(events.order_changed, order_id=step.procedure.order_id)
    return step


@transaction.atomic
def patient_correct(*, actor: Any, patient_pk: int, fields: Mapping[str, Any]) -> Patient:
    """Correct demographics (name, birth date, sex, ...). The identifier is changed only
    by ``patient_change_identifier``."""
    fields = dict(fields)
    if set(fields) & _PATIENT_IDENTIFIER:
        raise DomainError("the patient identifier cannot be corrected here")
    _check_fields(Patient, fields, what="patient")
    patient = Patient.objects.select_for_update().filter(pk=patient_pk).first()
    if patient is None:
        raise DomainError("this patient does not exist")
    before = _patient_snapshot(patient)
    if _apply(patient, fields):
        patient.save()
        audit_record(
            actor=actor,
            action="patient_correct",
            instance=patient,
            before=before,
            after=_patient_snapshot(patient),
        )
        events.publish(events.patient_changed, patient_id=patient.pk)
    return patient


@transaction.atomic
def step_remove(*, actor: Any, step_id: int) -> None:
    """Take a step out of the worklist (MWL-RS DELETE), keeping the row and its history:
    a step that is not final becomes CANCELED; a final one is already out of it."""
    step = _locked_step(step_id)
    old = step.status
    if old in FINAL:
        return
    if not step_set_status(step=step, new_status=SPSStatus.CANCELED, expected=[old], current=old):
        raise DomainError(f"Scheduled Procedure Step {step.sps_id} changed meanwhile; try again")
    audit_record(
        actor=actor,
        action="step_remove",
        instance=step,
        before={"status": old},
        after={"status": SPSStatus.CANCELED},
    )
