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
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from django.db import IntegrityError, connection, models, transaction

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
