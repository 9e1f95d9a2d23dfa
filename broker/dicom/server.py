"""The DICOM listener: one pynetdicom AE serving every SOP class of the broker.

Wiring only. Each service lives in its own app and exposes ``SOP_CLASSES`` (UIDs it
serves as SCP) and ``handlers()`` (``(event, handler)`` pairs):

- Verification (C-ECHO): here.
- Modality Worklist C-FIND: ``worklist.dimse``.
- Modality Performed Procedure Step N-CREATE / N-SET: ``mpps.dimse``.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from broker.dicom import status
from broker.dicom.net import tune_socket

logger = logging.getLogger(__name__)

TRANSFER_SYNTAXES = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian]

# Identifiers carry patient data: keep them out of pynetdicom's logs, and skip the
# formatting cost.
pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
pynetdicom_config.LOG_HANDLER_LEVEL = "none"

_ = ALL_TRANSFER_SYNTAXES  # re-exported for apps that accept more


def handle_echo(event: evt.Event) -> int:
    return status.SUCCESS


def _peer(event: evt.Event) -> str:
    assoc = event.assoc
    return (
        f"{assoc.requestor.address}:{assoc.requestor.port} "
        f"calling={assoc.requestor.ae_title!s} called={assoc.acceptor.ae_title!s}"
    )


def handle_accepted(event: evt.Event) -> None:
    logger.info("DICOM association accepted from %s", _peer(event))


def handle_rejected(event: evt.Event) -> None:
    logger.warning("DICOM association rejected from %s", _peer(event))


def handle_released(event: evt.Event) -> None:
    logger.info("DICOM association released by %s", _peer(event))


def handle_aborted(event: evt.Event) -> None:
    logger.warning("DICOM association aborted with %s", _peer(event))


def handle_conn_close(event: evt.Event) -> None:
    # pynetdicom serves each association in its own thread and Django opens one
    # database connection per thread: close it here or it leaks.
    close_old_connections()
    connections.close_all()


def service_modules() -> list[Any]:
    from mpps import dimse as mpps_dimse
    from worklist import dimse as worklist_dimse

    return [worklist_dimse, mpps_dimse]


def handlers() -> list[Any]:
    pairs: list[Any] = [
        (evt.EVT_CONN_OPEN, tune_socket),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_ACCEPTED, handle_accepted),
        (evt.EVT_REJECTED, handle_rejected),
        (evt.EVT_RELEASED, handle_released),
        (evt.EVT_ABORTED, handle_aborted),
        (evt.EVT_CONN_CLOSE, handle_conn_close),
    ]
    for module in service_modules():
        pairs.extend(module.handlers())
    return pairs


def build_ae() -> AE:
    ae = AE(ae_title=settings.BROKER_AE_TITLE)
    ae.add_supported_context(Verification, TRANSFER_SYNTAXES)
    for module in service_modules():
        for uid in module.SOP_CLASSES:
            ae.add_supported_context(uid, TRANSFER_SYNTAXES)
    # Associations addressed to another called AE title are rejected.
    ae.require_called_aet = True
    ae.maximum_associations = settings.DICOM_MAX_ASSOCIATIONS
    ae.acse_timeout = settings.DICOM_ACSE_TIMEOUT
    ae.dimse_timeout = settings.DICOM_DIMSE_TIMEOUT
    ae.network_timeout = settings.DICOM_NETWORK_TIMEOUT
    ae.maximum_pdu_size = settings.DICOM_MAX_PDU
    return ae


def tls_context() -> ssl.SSLContext | None:
    if not settings.DICOM_TLS_CERT:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.DICOM_TLS_CERT, settings.DICOM_TLS_KEY)
    if settings.DICOM_TLS_CA:
        # Mutual TLS: only modalities with a certificate from this CA may connect.
        context.load_verify_locations(settings.DICOM_TLS_CA)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def start(host: str, port: int, *, block: bool) -> ThreadedAssociationServer | None:
    """Start the listener; with ``block=False`` return the running server."""
    ae = build_ae()
    server: ThreadedAssociationServer | None = ae.start_server(
        (host, port),
        block=block,
        evt_handlers=handlers(),
        ssl_context=tls_context(),
    )
    return server
