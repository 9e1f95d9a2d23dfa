"""Writes of the HL7 interface: store every message, apply it, acknowledge it.

``message_receive`` is what the MLLP listener calls for each frame; ``message_reprocess``
applies a failed message again, as received or corrected. Both return the ACK only after
the transaction that stored (and applied) the message has committed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import (
    DataError,
    IntegrityError,
    OperationalError,
    close_old_connections,
    connection,
    models,
    transaction,
)
from django.utils import timezone
from pydicom.uid import generate_uid

from core import events
from hl7v2 import mapping
from hl7v2.ack import ErrorDetail, build_ack
from hl7v2.charsets import ack_codec, decode
from hl7v2.errors import (
    APPLICATION_INTERNAL_ERROR,
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    UNKNOWN_KEY_IDENTIFIER,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    UNSUPPORTED_VERSION_ID,
    MappingError,
)
from hl7v2.models import InboundMessage
from hl7v2.msh import Header, MSHError, read_header
from hl7v2.parser import parse
from hl7v2.status import Outcome
from worklist import services as worklist
from worklist.models import (
    Device,
    Order,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
)
from worklist.status import FINAL, DeviceRole, SPSStatus

logger = logging.getLogger(__name__)

ADT = "ADT"
ORDER_VERSIONS_V2 = frozenset({"2.3", "2.3.1", "2.4"})
ORDER_VERSIONS_V25 = frozenset({"2.5", "2.5.1"})
ADT_VERSIONS = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1"})
ADT_DEMOGRAPHICS = frozenset({"A01", "A04", "A05", "A08", "A31"})
ADT_MERGE = "A40"
ADT_CHANGE_ID = "A47"

# (MSH-9.1, MSH-9.2) -> (structure for the mapping, versions accepted)
SUPPORTED: dict[tuple[str, str], tuple[str, frozenset[str]]] = {
    ("ORM", "O01"): (mapping.ORM, ORDER_VERSIONS_V2),
    ("OMG", "O19"): (mapping.ORM, ORDER_VERSIONS_V25),
    ("OMI", "O23"): (mapping.OMI, ORDER_VERSIONS_V25),
    **{
        ("ADT", event): (ADT, ADT_VERSIONS)
        for event in (*ADT_DEMOGRAPHICS, ADT_MERGE, ADT_CHANGE_ID)
    },
}

# A deadlock or a busy database is retried with the whole message; after that the
# listener sends no ACK, and the sender sends the message again.
ATTEMPTS = 4
RETRY_DELAY = 0.05

STATION_FROM_MESSAGE = "message"
STATION_FROM_REGISTRY = "registry"

# Columns that identify something: too long is an error, never a silent truncation.
KEY_LIMITS = {"accession_number": 16, "requested_procedure_id": 16, "sps_id": 16}
AE_TITLE_MAX = 16


@dataclass(frozen=True)
class Reply:
    ack: bytes
    outcome: str
    message_id: int
    message_type: str = ""
    control_id: str = ""


# --- receive -----------------------------------------------------------------------------


def message_receive(raw: bytes, *, peer: str) -> Reply:
    """Store and apply ``raw``; return the ACK to send, after the commit."""
    return _with_retries(lambda: _process(raw, peer=peer, existing=None))


def message_oversized(head: bytes, size: int, max_size: int, *, peer: str) -> Reply:
    """A frame larger than the limit: stored truncated, answered AR."""
    try:
        header: Header | None = read_header(head)
    except MSHError:
        header = None
    error = ErrorDetail(
        f"message of {size} bytes is larger than the {max_size} bytes allowed "
        "(HL7_MAX_MESSAGE_BYTES); stored truncated",
        segment="MSH",
        code=APPLICATION_INTERNAL_ERROR,
    )
    return _with_retries(lambda: _store(head, peer, header, Outcome.REJECTED, error, None))


def message_reprocess(message_id: int, corrected_raw: bytes | None = None) -> Reply:
    """Apply a stored message that failed, as it was or as corrected by an operator.

    The same row is updated (outcome, error, ACK); a corrected message replaces ``raw``
    and the first version is kept in ``original_raw``. A message that was applied is not
    applied again.
    """
    message = InboundMessage.objects.get(pk=message_id)
    if message.outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE):
        raise worklist.DomainError(f"message {message_id} was already applied")
    raw = corrected_raw if corrected_raw is not None else bytes(message.raw)
    return _with_retries(lambda: _process(raw, peer=message.peer, existing=message))


# SQLite has one writer at a time (BEGIN IMMEDIATE). Queueing this process's threads on
# a lock is fairer and much faster than SQLite's sleeping busy handler; other processes
# still meet the busy timeout.
_sqlite_writer = threading.Lock()


def _writer_turn() -> AbstractContextManager[Any]:
    return _sqlite_writer if connection.vendor == "sqlite" else contextlib.nullcontext()


def _with_retries(work: Any) -> Reply:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with _writer_turn():
                reply: Reply = work()
            return reply
        except OperationalError as exc:
            if attempt == ATTEMPTS or connection.in_atomic_block:
                raise
            logger.warning(
                "HL7 database busy, deadlock or connection lost (%s), attempt %d; retrying",
                type(exc).__name__,
                attempt,
            )
            close_old_connections()  # drops a broken connection; the retry opens a new one
            time.sleep(RETRY_DELAY * attempt)
    raise AssertionError("unreachable")


def _process(raw: bytes, *, peer: str, existing: InboundMessage | None) -> Reply:
    """The steps for one message.

    1. Read MSH; unreadable -> AR. Unsupported type, event or version -> AR.
    2. Same sender + MSH-10 already applied -> AA, stored as DUPLICATE, nothing applied
       (checked here for a message being reprocessed, in step 4 for a new one).
    3. Decode per MSH-18, split, map (pure); a problem -> AE with its ERR (or DUPLICATE,
       if a copy was applied).
    4. In one transaction: store the message as AA first, then apply it. The unique
       "applied once" constraint refuses the row of a copy that was applied, or that
       another connection is applying (PostgreSQL waits for it) -> DUPLICATE, nothing
       applied.
    5. An application error rolls that whole transaction back (nothing half-applied);
       the message is then stored as AE, with its ERR, in a transaction of its own.
    """
    try:
        header = read_header(raw)
    except MSHError as exc:
        error = ErrorDetail(str(exc), segment="MSH", code=SEGMENT_SEQUENCE_ERROR)
        return _store(raw, peer, None, Outcome.REJECTED, error, existing)
    rejection = _rejection(header)
    if rejection is not None:
        return _store(raw, peer, header, Outcome.REJECTED, rejection, existing)
    # A new message is checked for "already applied" by the unique constraint, when its
    # row is inserted first thing in the transaction that applies it (step 4); a stored
    # message being reprocessed is checked here.
    if existing is not None and _already_applied(header):
        return _store(raw, peer, header, Outcome.DUPLICATE, None, existing)
    try:
        structure = SUPPORTED[_type_key(header)][0]
        message = parse(decode(raw, header.charset))
        plan: mapping.OrderMessage | mapping.AdtMessage
        if structure == ADT:
            plan = mapping.adt_message(message, _type_key(header)[1])
        else:
            plan = mapping.order_message(message, structure, _mapping_config())
    except MappingError as exc:
        if existing is None and _already_applied(header):
            return _store(raw, peer, header, Outcome.DUPLICATE, None, existing)
        return _store(raw, peer, header, Outcome.ERROR, ErrorDetail.from_error(exc), existing)
    try:
        with transaction.atomic():
            if existing is None:
                # The row first: a copy already applied (or being applied by another
                # connection, which PostgreSQL waits for) is refused by the "applied
                # once" constraint before anything is applied.
                stored = _write(raw, peer, header, Outcome.ACCEPTED, None, None, publish=False)
            if isinstance(plan, mapping.AdtMessage):
                _apply_adt(plan)
            else:
                _apply_order(plan, header)
            if existing is not None:
                stored = _write(raw, peer, header, Outcome.ACCEPTED, None, existing)
            else:
                _publish_processed(stored)
        _log(stored, peer, None)
        return stored
    except _AlreadyApplied:
        # A copy of this message was applied and committed by another connection
        # meanwhile; this copy's changes were rolled back.
        return _store(raw, peer, header, Outcome.DUPLICATE, None, existing)
    except OperationalError:
        raise  # retried by _with_retries
    except MappingError as exc:
        failure = ErrorDetail.from_error(exc)
    except worklist.DomainError as exc:
        failure = ErrorDetail(str(exc), code=APPLICATION_INTERNAL_ERROR)
    except (IntegrityError, DataError) as exc:
        # The database's text may quote patient data: only its kind is logged.
        logger.warning(
            "HL7 %s %s: database refused the values (%s)",
            header.message_type,
            header.control_id,
            type(exc).__name__,
        )
        failure = ErrorDetail(f"database refused the values: {type(exc).__name__}")
    except Exception as exc:  # a bug must not kill the connection; it is stored and ACKed
        logger.exception("HL7 %s %s: internal error", header.message_type, header.control_id)
        failure = ErrorDetail(f"internal error ({type(exc).__name__})")
    # Everything the message applied was rolled back with its transaction; the message
    # is stored with its error in a transaction of its own.
    return _store(raw, peer, header, Outcome.ERROR, failure, existing)


class _AlreadyApplied(Exception):
    """The "applied once" constraint refused the message row."""


def _type_key(header: Header) -> tuple[str, str]:
    parts = header.message_type.split(header.component_sep)
    return (parts[0].upper(), parts[1].upper() if len(parts) > 1 else "")


def _rejection(header: Header) -> ErrorDetail | None:
    kind, event = _type_key(header)
    entry = SUPPORTED.get((kind, event))
    if entry is None:
        known = {k for k, _ in SUPPORTED}
        code = UNSUPPORTED_EVENT_CODE if kind in known else UNSUPPORTED_MESSAGE_TYPE
        return ErrorDetail(
            f"message type {header.message_type or '(empty)'} is not supported",
            segment="MSH",
            field=9,
            code=code,
        )
    if header.version not in entry[1]:
        return ErrorDetail(
            f"version {header.version or '(empty)'} is not supported for {kind}^{event} "
            f"(supported: {', '.join(sorted(entry[1]))})",
            segment="MSH",
            field=12,
            code=UNSUPPORTED_VERSION_ID,
        )
    return None


def _already_applied(header: Header) -> bool:
    if not header.control_id:
        return False
    return InboundMessage.objects.filter(
        sending_application=header.sending_application,
        sending_facility=header.sending_facility,
        control_id=header.control_id,
        outcome=Outcome.ACCEPTED,
    ).exists()


def _store(
    raw: bytes,
    peer: str,
    header: Header | None,
    outcome: str,
    error: ErrorDetail | None,
    existing: InboundMessage | None,
) -> Reply:
    reply = _write(raw, peer, header, outcome, error, existing)
    _log(reply, peer, error)
    return reply


def _write(
    raw: bytes,
    peer: str,
    header: Header | None,
    outcome: str,
    error: ErrorDetail | None,
    existing: InboundMessage | None,
    *,
    publish: bool = True,
) -> Reply:
    """Insert (or, reprocessing, update) the message row with its ACK.

    ``publish=False``: the caller publishes the event, with ``_publish_processed``,
    once the message has been applied.
    """
    code = Outcome.ACCEPTED if outcome == Outcome.DUPLICATE else outcome
    text = build_ack(header, code, error)
    ack = text.encode(ack_codec(header.charset if header else ""), errors="replace")
    now = timezone.now()
    values: dict[str, Any] = {
        "raw": raw,
        "peer": peer[:64],
        "sending_application": header.sending_application[:180] if header else "",
        "sending_facility": header.sending_facility[:180] if header else "",
        "control_id": header.control_id[:64] if header else "",
        "message_type": header.message_type[:32] if header else "",
        "version": header.version[:16] if header else "",
        "outcome": outcome,
        "error": error.summary() if error else "",
        "ack": ack,
        "processed_at": now,
    }
    # No savepoint: a refused row must roll back the whole message with it.
    with transaction.atomic(savepoint=False):
        try:
            if existing is None:
                message = InboundMessage(**values)
                worklist.insert_row(message)
            else:
                message = existing
                if bytes(existing.raw) != raw and existing.original_raw is None:
                    message.original_raw = bytes(existing.raw)
                for name, value in values.items():
                    if name != "peer":
                        setattr(message, name, value)
                message.reprocessed_at = now
                message.save()
        except IntegrityError as exc:
            raise _AlreadyApplied from exc
        reply = Reply(
            ack=ack,
            outcome=outcome,
            message_id=message.pk,
            message_type=message.message_type,
            control_id=message.control_id,
        )
        if publish:
            _publish_processed(reply)
    return reply


def _publish_processed(reply: Reply) -> None:
    events.publish(events.hl7_message_processed, message_id=reply.message_id, outcome=reply.outcome)


def _log(reply: Reply, peer: str, error: ErrorDetail | None) -> None:
    where = f" ({error.code} {error.summary().split(':')[0]})" if error and error.segment else ""
    logger.info(
        "HL7 %s %s from %s: %s%s",
        reply.message_type or "?",
        reply.control_id or "?",
        peer,
        reply.outcome,
        where,
    )


# --- apply: orders ------------------------------------------------------------------------


def _mapping_config() -> mapping.MappingConfig:
    return _mapping_config_for(settings.HL7_ORDER_STATUS_TABLE)


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


def _key_error(step: mapping.StepUpdate, text: str, field_omi: int, field_orm: int) -> MappingError:
    seg = step.key_segment
    return MappingError(
        text,
        segment=seg.name,
        field=field_omi if seg.name == "IPC" else field_orm,
        occurrence=seg.occurrence,
        code=DATA_TYPE_ERROR,
    )


def _check_keys(step: mapping.StepUpdate, procedure_id: str, sps_id: str) -> None:
    for value, limit, omi, orm, label in (
        (step.accession_number, KEY_LIMITS["accession_number"], 1, 18, "Accession Number"),
        (procedure_id, KEY_LIMITS["requested_procedure_id"], 2, 19, "Requested Procedure ID"),
        (sps_id, KEY_LIMITS["sps_id"], 4, 20, "Scheduled Procedure Step ID"),
    ):
        if len(value) > limit:
            raise _key_error(step, f"{label} is longer than {limit} characters", omi, orm)


def _schedule(step: mapping.StepUpdate, patient: Patient | None, header: Header) -> None:
    """NW / XO: create or update the order, its requested procedure and the step."""
    order = None
    if step.order_control == mapping.ORDER_CONTROL_CHANGE or patient is None:
        order = Order.objects.filter(
            accession_number=step.accession_number, accession_issuer=""
        ).first()
    if order is None and step.order_control == mapping.ORDER_CONTROL_CHANGE:
        raise MappingError(
            f"unknown order: no order with Accession Number {step.accession_number}",
            segment=step.key_segment.name,
            field=1 if step.key_segment.name == "IPC" else 18,
            occurrence=step.key_segment.occurrence,
            code=UNKNOWN_KEY_IDENTIFIER,
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
        ipc = step.key_segment.name == "IPC"
        raise MappingError(
            "Study Instance UID is missing and HL7_STUDY_UID_POLICY is reject",
            segment="IPC" if ipc else "ZDS",
            field=3 if ipc else 1,
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
            raise _key_error(step, f"station AE title {title!r} is longer than 16", 9, 18)
    if titles and source != STATION_FROM_REGISTRY:
        devices = worklist.select_rows(
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
    devices = worklist.select_rows(
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
        raise MappingError(
            f"unknown order for ORC-1 {step.order_control}: no order with these numbers",
            segment=step.key_segment.name,
            field=(1 if step.key_segment.name == "IPC" else 18)
            if step.accession_number
            else (2 if step.placer_order_number else 3),
            occurrence=step.key_segment.occurrence,
            code=UNKNOWN_KEY_IDENTIFIER,
        )
    steps = ScheduledProcedureStep.objects.filter(procedure__order=order)
    if step.requested_procedure_id:
        steps = steps.filter(procedure__requested_procedure_id=step.requested_procedure_id)
    if step.sps_id:
        steps = steps.filter(sps_id=step.sps_id)
    found = list(steps.order_by("pk"))
    if not found:
        raise MappingError(
            "unknown order: no scheduled step matches the procedure / step IDs",
            segment=step.key_segment.name,
            field=4 if step.key_segment.name == "IPC" else 20,
            occurrence=step.key_segment.occurrence,
            code=UNKNOWN_KEY_IDENTIFIER,
        )
    for sps in found:
        if not worklist.step_set_status(step=sps, new_status=step.sps_status):
            sps.refresh_from_db(fields=["status"])
            raise MappingError(
                f"step {sps.sps_id} is {sps.status}; ORC-1/ORC-5 "
                f"{step.order_control}/{step.order_status} cannot change it",
                segment="ORC",
                field=1,
                occurrence=step.orc.occurrence,
                code=APPLICATION_INTERNAL_ERROR,
            )


# --- apply: patients ----------------------------------------------------------------------


def _apply_adt(plan: mapping.AdtMessage) -> None:
    if plan.event in ADT_DEMOGRAPHICS:
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
        if plan.event == ADT_MERGE:
            _merge(merge)
        else:
            _change_identifier(merge)


def _mrg_error(merge: mapping.Merge, text: str) -> MappingError:
    return MappingError(
        text, segment="MRG", field=1, occurrence=merge.mrg.occurrence, code=UNKNOWN_KEY_IDENTIFIER
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
        raise MappingError(str(exc), segment="PID", field=3, code=UNKNOWN_KEY_IDENTIFIER) from None
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
