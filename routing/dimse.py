"""Storage SCP (PS3.4 Annex B): C-STORE on the broker's DICOM listener.

Thin handler: check what arrived, write its bytes (as received, never decoded and
re-encoded) to the spool atomically, record one row, and only then answer success.
The association thread writes the file; the row is written on the listener's database
workers. Nothing else happens here: whether the study is complete is decided later.
"""

from __future__ import annotations

import errno
import hashlib
import logging
from typing import Any, cast

from django.db import DatabaseError
from pydicom.dataset import Dataset
from pydicom.uid import AllTransferSyntaxes
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.presentation import AllStoragePresentationContexts

from core.dicom import outcome, workers
from core.dicom import status as dimse_status
from routing import services, spool, status
from routing.dataset import InvalidInstance, part10_header, read_header

logger = logging.getLogger(__name__)

# Every storage SOP class pynetdicom knows (CT, MR, CR, DX, MG, US, NM, PET, XA, RF,
# SC, enhanced and multi-frame classes, SR, presentation states, KOS, RT...), in every
# transfer syntax: compressed data is kept as received.
SOP_CLASSES: list[str] = [str(c.abstract_syntax) for c in AllStoragePresentationContexts]
TRANSFER_SYNTAXES: list[str] = [str(uid) for uid in AllTransferSyntaxes]
# Routing's sender uses the same storage SOP classes as SCU, and storage commitment.
SCU_SOP_CLASSES: list[str] = [*SOP_CLASSES, "1.2.840.10008.1.20.1"]

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


def handlers() -> list[tuple[Any, Any]]:
    return [(evt.EVT_C_STORE, handle_store)]
