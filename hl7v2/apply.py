"""Apply a mapped HL7 message to the worklist: parsed and mapped message -> worklist services.

Called by :mod:`hl7v2.intake` inside the transaction that stores the message, so that
the message row and everything it changes commit (or roll back) together. Raises
``MappingError`` (AE with its ERR segment) when the message cannot be applied; every
field position in those errors comes from the mapping's tables.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.db import models
from pydicom.uid import generate_uid

from core.fastpath import select_rows
from hl7v2 import mapping
from hl7v2.errors import (
    APPLICATION_INTERNAL_ERROR,
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    UNKNOWN_KEY_IDENTIFIER,
    MappingError,
)
from hl7v2.msh import Header
from worklist import services as worklist
from worklist.models import (
    Device,
    Order,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
)
from worklist.status import FINAL, DeviceRole, SPSStatus

STATION_FROM_MESSAGE = "message"
STATION_FROM_REGISTRY = "registry"

# Columns that identify something: too long is an error, never a silent truncation.
KEY_LIMITS = {"accession_number": 16, "requested_procedure_id": 16, "sps_id": 16}
AE_TITLE_MAX = 16


def apply(plan: mapping.OrderMessage | mapping.AdtMessage, header: Header) -> None:
    """Apply ``plan`` inside the caller's transaction."""
    if isinstance(plan, mapping.AdtMessage):
        _apply_adt(plan)
    else:
        _apply_order(plan, header)


def mapping_config() -> mapping.MappingConfig:
    return _mapping_config_for(settings.HL7_ORDER_STATUS_TABLE)


# --- orders -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _mapping_config_for(status_table: str) -> mapping.MappingConfig:
    return mapping.MappingConfig(status_table=mapping.status_table_parse(status_table))


def placer_application(header: Header) -> str:
    """MSH-3 and MSH-4 of the order's sender, as ``MSH-3|MSH-4`` (for status messages)."""
    return f"{header.sending_application}|{header.sending_facility}"[:180]


def _apply_order(plan: mapping.OrderMessage, header: Header) -> None:
    patient: Patient | None = None
    if plan.patient is not None:
        patient = worklist.patient_upsert(
            patient_id=plan.patient.patient_id,
            issuer=plan.patient.issuer,
            fields=_fit(Patient, plan.patient.fields),
        )
        patient = worklist.patient_current(patient)
    for step in plan.steps:
        if step.order_control in (mapping.ORDER_CONTROL_NEW, mapping.ORDER_CONTROL_CHANGE):
            _schedule(step, patient, header)
        else:
            _change_status(step)


def _key_error(
    step: mapping.StepUpdate,
    text: str,
    key: str,
    code: str = DATA_TYPE_ERROR,
    level: str = mapping.KEY,
) -> MappingError:
    """An error about the step's key ``key``, naming the field it was read from."""
    source = mapping.key_field(step.structure, key, level)
    return MappingError(
        text,
        segment=source.segment,
        field=source.field,
        occurrence=step.key_segment.occurrence,
        code=code,
    )


def _check_keys(step: mapping.StepUpdate, procedure_id: str, sps_id: str) -> None:
    for key, value, label in (
        ("accession_number", step.accession_number, "Accession Number"),
        ("requested_procedure_id", procedure_id, "Requested Procedure ID"),
        ("sps_id", sps_id, "Scheduled Procedure Step ID"),
    ):
        limit = KEY_LIMITS[key]
        if len(value) > limit:
            raise _key_error(step, f"{label} is longer than {limit} characters", key)


def _schedule(step: mapping.StepUpdate, patient: Patient | None, header: Header) -> None:
    """NW / XO: create or update the order, its requested procedure and the step."""
    order = None
    if step.order_control == mapping.ORDER_CONTROL_CHANGE or patient is None:
        order = Order.objects.filter(
            accession_number=step.accession_number, accession_issuer=""
        ).first()
    if order is None and step.order_control == mapping.ORDER_CONTROL_CHANGE:
        raise _key_error(
            step,
            f"unknown order: no order with Accession Number {step.accession_number}",
            "accession_number",
            UNKNOWN_KEY_IDENTIFIER,
        )
    if patient is None:
        if order is None:
            raise MappingError(
                "PID segment is missing (a new order needs its patient)",
                segment="PID",
                code=SEGMENT_SEQUENCE_ERROR,
            )
        patient = worklist.patient_current(order.patient)
    # Many RIS leave the procedure and step IDs empty when an order has one of each;
    # the accession number then identifies both.
    procedure_id = step.requested_procedure_id or step.accession_number
    sps_id = step.sps_id or procedure_id
    _check_keys(step, procedure_id, sps_id)
    order_fields = {**step.order_fields, "placer_application": placer_application(header)}
    order, order_created = worklist.order_upsert(
        patient=patient,
        accession_number=step.accession_number,
        fields=_fit(Order, order_fields),
        likely_new=step.order_control == mapping.ORDER_CONTROL_NEW,
    )
    uid = step.study_instance_uid or _existing_or_new_uid(order, procedure_id, step, order_created)
    procedure = worklist.procedure_upsert(
        order=order,
        requested_procedure_id=procedure_id,
        study_instance_uid=uid,
        fields=_fit(RequestedProcedure, step.procedure_fields),
        parent_created=order_created,
    )
    step_fields = dict(step.step_fields)
    if not order_created and step_fields.get("status") == SPSStatus.SCHEDULED:
        current = (
            ScheduledProcedureStep.objects.filter(procedure=procedure, sps_id=sps_id)
            .values_list("status", flat=True)
            .first()
        )
        if current is not None and current not in FINAL:
            # NW/XO with SC describe the order, not a step going back: a step the
            # modality has started (or that arrived, or is ready) keeps its state.
            del step_fields["status"]
    titles = _station(step, step_fields, procedure, sps_id)
    worklist.step_upsert(
        procedure=procedure,
        sps_id=sps_id,
        fields=_fit(ScheduledProcedureStep, step_fields),
        station_ae_titles=titles,
        parent_created=order_created,
    )


def _existing_or_new_uid(
    order: Order, procedure_id: str, step: mapping.StepUpdate, order_created: bool
) -> str:
    existing = (
        None
        if order_created
        else RequestedProcedure.objects.filter(order=order, requested_procedure_id=procedure_id)
        .values_list("study_instance_uid", flat=True)
        .first()
    )
    if existing:
        return existing
    if settings.HL7_STUDY_UID_POLICY == "reject":
        source = mapping.key_field(step.structure, "study_instance_uid")
        raise MappingError(
            "Study Instance UID is missing and HL7_STUDY_UID_POLICY is reject",
            segment=source.segment,
            field=source.field,
            code=REQUIRED_FIELD_MISSING,
        )
    # Derived from the order's keys, so reprocessing or resending gives the same UID.
    return str(
        generate_uid(
            prefix=settings.BROKER_UID_ROOT,
            entropy_srcs=[order.accession_number, order.accession_issuer, procedure_id],
        )
    )


def _station(
    step: mapping.StepUpdate,
    step_fields: dict[str, Any],
    procedure: RequestedProcedure,
    sps_id: str,
) -> list[str] | None:
    """The Scheduled Station AE Titles (None: unchanged); fills station name and location.

    1. ORC-18 / IPC-9 if the message names stations and the source allows it; the
       registry supplies station name and location for a single known device.
    2. Else the registry: the active modalities of the step's modality, narrowed by the
       IPC-8 location when that leaves any; name and location if exactly one.
    """
    source = settings.HL7_STATION_AE_SOURCE
    titles = [t for t in step.station_ae_titles if t]
    for title in titles:
        if len(title) > AE_TITLE_MAX:
            raise _key_error(
                step,
                f"station AE title {title!r} is longer than {AE_TITLE_MAX}",
                "station_ae_titles",
            )
    if titles and source != STATION_FROM_REGISTRY:
        devices = select_rows(
            Device,
            ("stations", len(titles)),
            list(titles),
            lambda: Device.objects.filter(ae_title__in=titles, is_active=True),
        )
        _registry_details(devices, step_fields)
        return titles
    if source == STATION_FROM_MESSAGE:
        return None
    modality = step_fields.get("modality") or (
        ScheduledProcedureStep.objects.filter(procedure=procedure, sps_id=sps_id)
        .values_list("modality", flat=True)
        .first()
    )
    if not modality:
        return None
    devices = select_rows(
        Device,
        "modality",
        [modality, DeviceRole.MODALITY],
        lambda: Device.objects.filter(role=DeviceRole.MODALITY, is_active=True, modality=modality),
    )
    location = step_fields.get("location")
    if location:
        devices = [d for d in devices if d.location == location] or devices
    if not devices:
        return None
    _registry_details(devices, step_fields)
    return sorted(d.ae_title for d in devices)


def _registry_details(devices: list[Device], step_fields: dict[str, Any]) -> None:
    if len(devices) != 1:
        return
    device = devices[0]
    if device.station_name and "station_name" not in step_fields:
        step_fields["station_name"] = device.station_name
    if device.location and "location" not in step_fields:
        step_fields["location"] = device.location


def _change_status(step: mapping.StepUpdate) -> None:
    """CA / DC / SC...: move the order's steps (or the named one) to the table's status."""
    orders = Order.objects.all()
    if step.accession_number:
        orders = orders.filter(accession_number=step.accession_number)
    elif step.placer_order_number:
        orders = orders.filter(placer_order_number=step.placer_order_number)
    else:
        orders = orders.filter(filler_order_number=step.filler_order_number)
    order = orders.first()
    if order is None:
        text = f"unknown order for ORC-1 {step.order_control}: no order with these numbers"
        if step.accession_number:
            raise _key_error(step, text, "accession_number", UNKNOWN_KEY_IDENTIFIER)
        number = "placer_order_number" if step.placer_order_number else "filler_order_number"
        raise _key_error(step, text, number, UNKNOWN_KEY_IDENTIFIER, level=mapping.ORDER)
    steps = ScheduledProcedureStep.objects.filter(procedure__order=order)
    if step.requested_procedure_id:
        steps = steps.filter(procedure__requested_procedure_id=step.requested_procedure_id)
    if step.sps_id:
        steps = steps.filter(sps_id=step.sps_id)
    found = list(steps.order_by("pk"))
    if not found:
        raise _key_error(
            step,
            "unknown order: no scheduled step matches the procedure / step IDs",
            "sps_id",
            UNKNOWN_KEY_IDENTIFIER,
        )
    for sps in found:
        if not worklist.step_set_status(step=sps, new_status=step.sps_status):
            sps.refresh_from_db(fields=["status"])
            raise MappingError(
                f"step {sps.sps_id} is {sps.status}; ORC-1/ORC-5 "
                f"{step.order_control}/{step.order_status} cannot change it",
                segment=mapping.ORDER_CONTROL.segment,
                field=mapping.ORDER_CONTROL.field,
                occurrence=step.orc.occurrence,
                code=APPLICATION_INTERNAL_ERROR,
            )


# --- patients ----------------------------------------------------------------------


def _apply_adt(plan: mapping.AdtMessage) -> None:
    if plan.event in mapping.ADT_DEMOGRAPHICS:
        worklist.patient_upsert(
            patient_id=plan.patient.patient_id,
            issuer=plan.patient.issuer,
            fields=_fit(Patient, plan.patient.fields),
        )
        return
    if not plan.merges:
        raise MappingError(
            f"ADT^{plan.event} needs an MRG segment", segment="MRG", code=SEGMENT_SEQUENCE_ERROR
        )
    for merge in plan.merges:
        if plan.event == mapping.ADT_MERGE:
            _merge(merge)
        else:
            _change_identifier(merge)


def _mrg_error(merge: mapping.Merge, text: str) -> MappingError:
    source = mapping.PRIOR_PATIENT_IDENTIFIER
    return MappingError(
        text,
        segment=source.segment,
        field=source.field,
        occurrence=merge.mrg.occurrence,
        code=UNKNOWN_KEY_IDENTIFIER,
    )


def _merge(merge: mapping.Merge) -> None:
    """A40: the prior patient's orders move to the PID patient.

    A repeated merge finds the prior patient already merged and moves nothing more; an
    unknown prior patient is recorded as merged, so that later orders under the old
    identifier land on the survivor.
    """
    new = merge.patient
    if (merge.prior_id, merge.prior_issuer) == (new.patient_id, new.issuer):
        raise _mrg_error(merge, "MRG-1 names the same patient as PID-3: nothing to merge")
    surviving = worklist.patient_upsert(
        patient_id=new.patient_id, issuer=new.issuer, fields=_fit(Patient, new.fields)
    )
    merged = worklist.patient_upsert(
        patient_id=merge.prior_id, issuer=merge.prior_issuer, fields={}
    )
    try:
        worklist.patients_merge(surviving=surviving, merged=merged)
    except worklist.DomainError as exc:
        raise _mrg_error(merge, str(exc)) from None


def _change_identifier(merge: mapping.Merge) -> None:
    """A47: the patient known by MRG-1 is known by PID-3 from now on."""
    new = merge.patient
    try:
        worklist.patient_change_identifier(
            patient_id=merge.prior_id,
            issuer=merge.prior_issuer,
            new_patient_id=new.patient_id,
            new_issuer=new.issuer,
        )
    except worklist.DomainError as exc:
        source = mapping.PATIENT_IDENTIFIER
        raise MappingError(
            str(exc), segment=source.segment, field=source.field, code=UNKNOWN_KEY_IDENTIFIER
        ) from None
    worklist.patient_upsert(
        patient_id=new.patient_id, issuer=new.issuer, fields=_fit(Patient, new.fields)
    )


# --- helpers ------------------------------------------------------------------------------


def _fit(model: type[models.Model], fields: dict[str, Any]) -> dict[str, Any]:
    """Cut text to its column's length (DICOM LO/SH limits); keys are checked before."""
    out = dict(fields)
    for name, value in fields.items():
        if isinstance(value, str):
            column = model._meta.get_field(name)
            limit = getattr(column, "max_length", None)
            if limit and len(value) > limit:
                out[name] = value[:limit]
    return out
