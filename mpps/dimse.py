"""Modality Performed Procedure Step SCP (PS3.4 Annex F): N-CREATE and N-SET.

Thin handlers: unpack the request, call ``mpps.services``, turn the outcome into a
status dataset. All rules live in ``mpps.validation`` and ``mpps.services``.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from django.conf import settings
from django.db import DatabaseError
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.dimse_primitives import N_CREATE, N_SET

from core.dicom import status
from mpps import services
from mpps.validation import Refusal

logger = logging.getLogger(__name__)

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
SOP_CLASSES: list[str] = [MPPS_SOP_CLASS]


def _peer(event: evt.Event) -> str:
    requestor = event.assoc.requestor
    return f"{requestor.address}:{requestor.port} calling={requestor.ae_title!s}"


def status_dataset(refusal: Refusal, *, with_tags: bool) -> Dataset:
    """The DIMSE status of a refusal; N-SET responses can also list the tags."""
    ds = Dataset()
    ds.Status = refusal.status
    ds.ErrorComment = refusal.comment[:64]
    if refusal.error_id is not None:
        ds.ErrorID = refusal.error_id
    if with_tags and refusal.tags:
        ds.AttributeIdentifierList = list(refusal.tags)
    return ds


def _unavailable() -> Dataset:
    # The modality keeps the MPPS and sends it again later (IHE RAD-6/7 retry).
    ds = Dataset()
    ds.Status = status.PROCESSING_FAILURE
    ds.ErrorComment = "Broker database unavailable, try again later"
    return ds


def handle_n_create(event: evt.Event) -> tuple[int | Dataset, Dataset | None]:
    request = cast(N_CREATE, event.request)
    if request.AffectedSOPClassUID != MPPS_SOP_CLASS:
        return status.NO_SUCH_SOP_CLASS, None
    ds = event.attribute_list
    # The SCU may leave the instance UID to us (PS3.7 10.1.5.1.4).
    uid = str(request.AffectedSOPInstanceUID or generate_uid(prefix=settings.BROKER_UID_ROOT))
    try:
        outcome = services.mpps_create(
            sop_instance_uid=uid, ds=ds, calling_ae_title=str(event.assoc.requestor.ae_title)
        )
    except DatabaseError:
        logger.exception("MPPS N-CREATE %s from %s: database error", uid, _peer(event))
        return _unavailable(), None
    if outcome.refusal is not None:
        logger.warning(
            "MPPS N-CREATE %s from %s refused: 0x%04X %s",
            uid,
            _peer(event),
            outcome.refusal.status,
            outcome.refusal.comment,
        )
        return status_dataset(outcome.refusal, with_tags=False), None
    reply = Dataset()
    if request.AffectedSOPInstanceUID is None:
        reply.AffectedSOPInstanceUID = uid
    return status.SUCCESS, reply


def handle_n_set(event: evt.Event) -> tuple[int | Dataset, Dataset | None]:
    request = cast(N_SET, event.request)
    if request.RequestedSOPClassUID != MPPS_SOP_CLASS:
        return status.NO_SUCH_SOP_CLASS, None
    uid = str(request.RequestedSOPInstanceUID)
    try:
        outcome = services.mpps_set(sop_instance_uid=uid, modification=event.modification_list)
    except DatabaseError:
        logger.exception("MPPS N-SET %s from %s: database error", uid, _peer(event))
        return _unavailable(), None
    if outcome.refusal is not None:
        logger.warning(
            "MPPS N-SET %s from %s refused: 0x%04X %s",
            uid,
            _peer(event),
            outcome.refusal.status,
            outcome.refusal.comment,
        )
        return status_dataset(outcome.refusal, with_tags=True), None
    return status.SUCCESS, None


def handlers() -> list[tuple[Any, Any]]:
    return [(evt.EVT_N_CREATE, handle_n_create), (evt.EVT_N_SET, handle_n_set)]


# Every status the N-CREATE and N-SET handlers can send, with what it means here. The
# conformance statement is generated from this table; tests/test_conformance_statuses.py
# checks it against the status codes the mpps code uses.
STATUSES: tuple[status.Returned, ...] = (
    status.Returned("N-CREATE", status.SUCCESS, "The MPPS instance is created"),
    status.Returned(
        "N-CREATE",
        status.MISSING_ATTRIBUTE,
        "A type 1 or type 2 attribute of the N-CREATE is absent; the tags are in the Error Comment",
    ),
    status.Returned(
        "N-CREATE",
        status.MISSING_ATTRIBUTE_VALUE,
        "A type 1 attribute is empty (also a Study Instance UID or a Series Instance UID "
        "in a sequence item)",
    ),
    status.Returned(
        "N-CREATE",
        status.INVALID_ATTRIBUTE_VALUE,
        "Performed Procedure Step Status is not IN PROGRESS; a malformed DA, TM or UI value",
    ),
    status.Returned(
        "N-CREATE", status.DUPLICATE_SOP_INSTANCE, "An MPPS with this SOP Instance UID exists"
    ),
    status.Returned(
        "N-CREATE",
        status.INVALID_OBJECT_INSTANCE,
        "The Affected SOP Instance UID is not a valid UID",
    ),
    status.Returned(
        "N-CREATE", status.NO_SUCH_SOP_CLASS, "The request names another SOP class than MPPS"
    ),
    status.Returned(
        "N-CREATE",
        status.PROCESSING_FAILURE,
        "The broker database is unavailable; the modality should send the N-CREATE again later",
    ),
    status.Returned("N-SET", status.SUCCESS, "The MPPS instance is updated"),
    status.Returned(
        "N-SET",
        status.INVALID_ATTRIBUTE_VALUE,
        "An attribute N-SET may not change (patient, scheduled step, PPS ID, station, "
        "start; tags in the Attribute Identifier List), an unknown Performed Procedure Step "
        "Status, or a malformed DA, TM or UI value",
    ),
    status.Returned(
        "N-SET",
        status.MISSING_ATTRIBUTE_VALUE,
        "COMPLETED or DISCONTINUED without an end date and time (tags in the Attribute "
        "Identifier List), or a series item without its UIDs",
    ),
    status.Returned("N-SET", status.NO_SUCH_SOP_INSTANCE, "No MPPS with this SOP Instance UID"),
    status.Returned(
        "N-SET",
        status.PROCESSING_FAILURE,
        "The instance is COMPLETED or DISCONTINUED and may no longer be updated (also the "
        "later of two simultaneous final N-SETs)",
        error_id=status.MPPS_NO_LONGER_UPDATABLE,
    ),
    status.Returned(
        "N-SET",
        status.PROCESSING_FAILURE,
        "The broker database is unavailable, or concurrent updates of one instance; the "
        "modality should send the N-SET again later",
    ),
    status.Returned(
        "N-SET", status.NO_SUCH_SOP_CLASS, "The request names another SOP class than MPPS"
    ),
)
