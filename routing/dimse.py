"""Storage SCP (PS3.4 Annex B): C-STORE on the broker's DICOM listener; and the
Storage Commitment Push Model SCU's side of reports sent on a new association (PS3.4 J.3.3).

Thin handler: check what arrived, write its bytes (as received, never decoded and
re-encoded) to the spool atomically, record one row, and only then answer success.
The association thread writes the file; the row is written on the listener's database
workers. Nothing else happens here: whether the study is complete is decided later.

A destination that forwarded studies were sent to may answer their storage commitment
request later, on an association it opens to the listener as the Storage Commitment SCP
(SCP/SCU Role Selection: it proposes the SCP role, the broker takes the SCU role; a
proposal without role selection is accepted too, for N-EVENT-REPORT only). The report's
Transaction UID is matched to the request and its job (``routing.commitment``); the
broker is no Storage Commitment SCP, so an N-ACTION is refused.
"""

from __future__ import annotations

import errno
import hashlib
import logging
from typing import Any, cast

from django.db import DatabaseError
from pydicom.dataset import Dataset
from pydicom.uid import (
    AllTransferSyntaxes,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import build_context, evt
from pynetdicom.dimse_primitives import C_STORE, N_ACTION, N_EVENT_REPORT
from pynetdicom.presentation import AllStoragePresentationContexts, PresentationContext

from core.dicom import outcome, workers
from core.dicom import status as dimse_status
from routing import commitment, services, spool, status
from routing.dataset import InvalidInstance, part10_header, read_header
from routing.sender import failure_text

logger = logging.getLogger(__name__)

# Every storage SOP class pynetdicom knows (CT, MR, CR, DX, MG, US, NM, PET, XA, RF,
# SC, enhanced and multi-frame classes, SR, presentation states, KOS, RT...), in every
# transfer syntax: compressed data is kept as received.
SOP_CLASSES: list[str] = [str(c.abstract_syntax) for c in AllStoragePresentationContexts]
TRANSFER_SYNTAXES: list[str] = [str(uid) for uid in AllTransferSyntaxes]
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"  # the well-known SOP instance
# Routing's sender uses the same storage SOP classes as SCU, and storage commitment.
SCU_SOP_CLASSES: list[str] = [*SOP_CLASSES, STORAGE_COMMITMENT]


def _commitment_context() -> PresentationContext:
    """Storage Commitment Push Model, accepted with the broker as SCU: a requestor that
    proposes the SCP role gets it (scp_role), one that proposes only the SCU role is
    refused the context (scu_role=False): the broker never takes the SCP role."""
    context = build_context(
        STORAGE_COMMITMENT, [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian]
    )
    context.scu_role = False
    context.scp_role = True
    return context


# Presentation contexts with roles of their own, added to the listener as they are.
CONTEXTS: list[PresentationContext] = [_commitment_context()]

STATUSES: tuple[dimse_status.Returned, ...] = (
    dimse_status.Returned(
        "C-STORE",
        status.STORE_SUCCESS,
        "Written to the spool (flushed to disk) and recorded; an identical copy of a stored "
        "instance changes nothing, a changed one replaces it",
    ),
    dimse_status.Returned(
        "C-STORE",
        status.STORE_OUT_OF_RESOURCES,
        "The spool could not be written (disk full or another write error) or the database "
        "is unavailable; nothing was kept, send it again later",
    ),
    dimse_status.Returned(
        "C-STORE",
        status.STORE_DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
        "The data set's SOP Class or SOP Instance UID differs from the request's",
    ),
    dimse_status.Returned(
        "C-STORE",
        status.STORE_CANNOT_UNDERSTAND,
        "The data set cannot be read, is cut short, or lacks its Study, Series or SOP "
        "Instance UID; it is not kept",
    ),
    dimse_status.Returned(
        "N-EVENT-REPORT",
        status.REPORT_SUCCESS,
        "The storage commitment result is recorded against the request of its Transaction "
        "UID (or was already)",
    ),
    dimse_status.Returned(
        "N-EVENT-REPORT",
        status.REPORT_PROCESSING_FAILURE,
        "No commitment request of this broker has the Transaction UID, or the database is "
        "unavailable; nothing is recorded (Error Comment says which)",
    ),
    dimse_status.Returned(
        "N-EVENT-REPORT",
        status.REPORT_NO_SUCH_EVENT_TYPE,
        "Event Type ID other than 1 (all committed) or 2 (some failed)",
    ),
    dimse_status.Returned(
        "N-EVENT-REPORT",
        status.REPORT_INVALID_ARGUMENT_VALUE,
        "The Event Information cannot be read or has no Transaction UID",
    ),
    dimse_status.Returned(
        "N-EVENT-REPORT",
        status.REPORT_NO_SUCH_SOP_CLASS,
        "Affected SOP Class UID is not Storage Commitment Push Model",
    ),
    dimse_status.Returned(
        "N-EVENT-REPORT",
        status.REPORT_CLASS_INSTANCE_CONFLICT,
        "Affected SOP Instance UID is not the well-known 1.2.840.10008.1.20.1.1",
    ),
    dimse_status.Returned(
        "N-ACTION",
        status.ACTION_NO_SUCH_ACTION,
        "Any N-ACTION: the broker is no Storage Commitment SCP (it keeps no archive)",
    ),
)


def _failure(code: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment[:64]
    return ds


def handle_store(event: evt.Event) -> int | Dataset:
    request = cast(C_STORE, event.request)
    assoc: Any = event.assoc
    calling = str(assoc.requestor.ae_title or "").strip()
    sop_uid = str(request.AffectedSOPInstanceUID or "")
    dataset_bytes = cast(Any, request.DataSet).getbuffer()
    transfer_syntax = str(event.context.transfer_syntax)
    try:
        header = read_header(dataset_bytes, transfer_syntax)
    except InvalidInstance as exc:
        logger.warning("C-STORE %s from %s refused: %s", sop_uid, calling, exc)
        outcome.count(assoc, "store_refused")
        return _failure(status.STORE_CANNOT_UNDERSTAND, f"Cannot understand: {exc}")
    if (
        header.sop_class_uid != str(request.AffectedSOPClassUID)
        or header.sop_instance_uid != sop_uid
    ):
        logger.warning("C-STORE %s from %s refused: SOP class or instance differ", sop_uid, calling)
        outcome.count(assoc, "store_refused")
        return _failure(
            status.STORE_DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            "Data set does not match the SOP class or instance of the request",
        )
    digest = hashlib.sha256(dataset_bytes).hexdigest()
    relative = spool.relative_path(header.study_instance_uid, header.sop_instance_uid, digest)
    already_there = spool.absolute(relative).is_file()
    # The file: our File Meta Information, then the dataset's bytes exactly as received.
    meta = part10_header(
        sop_class_uid=header.sop_class_uid,
        sop_instance_uid=header.sop_instance_uid,
        transfer_syntax_uid=transfer_syntax,
        source_ae_title=calling,
    )
    if not already_there:
        try:
            spool.write(relative, [meta, dataset_bytes])
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            logger.error("C-STORE %s from %s: spool write failed: %s", sop_uid, calling, exc)
            outcome.count(assoc, "store_failed")
            return _failure(
                status.STORE_OUT_OF_RESOURCES,
                "Out of resources: spool full" if full else "Out of resources: spool write failed",
            )
    spooled = services.Spooled(
        header=header,
        transfer_syntax_uid=transfer_syntax,
        calling_ae_title=calling,
        size=len(meta) + len(dataset_bytes),
        digest=digest,
        path=relative,
    )
    try:
        workers.run(assoc, services.instance_record, spooled)
    except (DatabaseError, RuntimeError):
        logger.exception("C-STORE %s from %s: database error", sop_uid, calling)
        if not already_there:
            spool.remove(relative)
        outcome.count(assoc, "store_failed")
        return _failure(status.STORE_OUT_OF_RESOURCES, "Out of resources: database unavailable")
    outcome.count(assoc, "stored")
    return status.STORE_SUCCESS


def _peer(assoc: Any) -> str:
    requestor = assoc.requestor
    calling = str(requestor.ae_title or "").strip() or "-"
    return f"{requestor.address}:{requestor.port} calling={calling}"


def _report_of(info: Dataset) -> commitment.Report:
    committed = tuple(
        str(ref.ReferencedSOPInstanceUID) for ref in info.get("ReferencedSOPSequence", [])
    )
    failed = tuple(
        (str(ref.ReferencedSOPInstanceUID), failure_text(ref.get("FailureReason")))
        for ref in info.get("FailedSOPSequence", [])
    )
    return commitment.Report(str(info.TransactionUID), committed, failed)


def handle_commitment_report(event: evt.Event) -> tuple[int | Dataset, None]:
    """N-EVENT-REPORT of a storage commitment result, on an association the destination
    opened: matched by Transaction UID, recorded, then answered."""
    request = cast(N_EVENT_REPORT, event.request)
    assoc: Any = event.assoc
    if str(request.AffectedSOPClassUID) != STORAGE_COMMITMENT:
        return _failure(status.REPORT_NO_SUCH_SOP_CLASS, "Not Storage Commitment"), None
    if str(request.AffectedSOPInstanceUID) != STORAGE_COMMITMENT_INSTANCE:
        return _failure(
            status.REPORT_CLASS_INSTANCE_CONFLICT,
            f"SOP Instance must be {STORAGE_COMMITMENT_INSTANCE}",
        ), None
    if request.EventTypeID not in (1, 2):
        return _failure(status.REPORT_NO_SUCH_EVENT_TYPE, "Event Type ID must be 1 or 2"), None
    try:
        info = event.event_information
        report = _report_of(info)
    except Exception as exc:  # undecodable, or items without their UIDs
        logger.warning("storage commitment report from %s unreadable: %s", _peer(assoc), exc)
        return _failure(
            status.REPORT_INVALID_ARGUMENT_VALUE, "Event Information unreadable or incomplete"
        ), None
    if not report.transaction_uid:
        return _failure(status.REPORT_INVALID_ARGUMENT_VALUE, "No Transaction UID"), None
    try:
        job_status = workers.run(assoc, commitment.record, report)
    except (DatabaseError, RuntimeError):
        logger.exception("storage commitment report from %s: database error", _peer(assoc))
        return _failure(status.REPORT_PROCESSING_FAILURE, "Database unavailable, send again"), None
    if job_status is None:
        logger.warning(
            "storage commitment report from %s for unknown Transaction UID %s refused",
            _peer(assoc),
            report.transaction_uid,
        )
        outcome.count(assoc, "commitment_unknown")
        return _failure(status.REPORT_PROCESSING_FAILURE, "Unknown Transaction UID"), None
    logger.info(
        "storage commitment report from %s, transaction %s: %d committed, %d failed; job %s",
        _peer(assoc),
        report.transaction_uid,
        len(report.committed),
        len(report.failed),
        job_status,
    )
    outcome.count(assoc, "commitment_report")
    return status.REPORT_SUCCESS, None


def handle_action(event: evt.Event) -> tuple[Dataset, None]:
    request = cast(N_ACTION, event.request)
    logger.warning(
        "N-ACTION %s from %s refused: the broker is no Storage Commitment SCP",
        request.RequestedSOPClassUID,
        _peer(event.assoc),
    )
    return _failure(status.ACTION_NO_SUCH_ACTION, "No N-ACTION is provided here"), None


def handlers() -> list[tuple[Any, Any]]:
    return [
        (evt.EVT_C_STORE, handle_store),
        (evt.EVT_N_EVENT_REPORT, handle_commitment_report),
        (evt.EVT_N_ACTION, handle_action),
    ]
