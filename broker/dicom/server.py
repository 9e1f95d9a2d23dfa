"""The DICOM listener: one pynetdicom AE serving every SOP class of the broker.

Wiring only. Each service lives in its own app and exposes ``SOP_CLASSES`` (UIDs it
serves as SCP) and ``handlers()`` (``(event, handler)`` pairs):

- Verification (C-ECHO): here.
- Modality Worklist C-FIND: ``worklist.dimse``.
- Modality Performed Procedure Step N-CREATE / N-SET: ``mpps.dimse``.
- Storage C-STORE (received for routing), and storage commitment reports sent to the
  broker on a new association: ``routing.dimse``; a module may name its own
  ``TRANSFER_SYNTAXES``, and ``CONTEXTS`` with SCP/SCU roles of their own.
"""

from __future__ import annotations

import logging
import ssl
import time
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from broker import metrics
from broker.dicom import guard
from core.dicom import outcome, status, workers
from core.dicom.net import CheapCopyContexts, tune_socket
from mpps import dimse as mpps_dimse
from routing import dimse as routing_dimse
from routing.models import Destination
from worklist import dimse as worklist_dimse
from worklist.models import Device

logger = logging.getLogger(__name__)

TRANSFER_SYNTAXES = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian]

# Identifiers carry patient data: keep them out of pynetdicom's logs, and skip the
# formatting cost.
pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
pynetdicom_config.LOG_HANDLER_LEVEL = "none"


def handle_echo(event: evt.Event) -> int:
    outcome.count(event.assoc, "C-ECHO")
    return status.SUCCESS


# The statuses of the Verification SCP (the conformance statement reads this table).
STATUSES: tuple[status.Returned, ...] = (
    status.Returned("C-ECHO", status.SUCCESS, "The listener is up (the database is not consulted)"),
)


def _peer(assoc: Any) -> str:
    calling = str(assoc.requestor.ae_title or "").strip()
    primitive = assoc.requestor.primitive
    if not calling and primitive is not None:
        calling = str(primitive.calling_ae_title or "").strip()
    called = str(primitive.called_ae_title or "").strip() if primitive is not None else ""
    return (
        f"{assoc.requestor.address}:{assoc.requestor.port} calling={calling or '-'} "
        f"called={called or '-'}"
    )


def _ending(assoc: Any) -> str:
    if assoc.is_released:
        return "released"
    abort_reason = getattr(assoc, "_broker_abort_reason", "")
    if abort_reason:
        return f"aborted ({abort_reason})"
    if assoc.is_aborted:
        return "aborted"
    if assoc.is_rejected:
        reason = getattr(assoc, "_broker_reject_reason", "")
        return f"rejected ({reason})" if reason else "rejected"
    return "closed without release"


def calling_ae_allowed(ae_title: str) -> bool:
    """DICOM_RESTRICT_CALLING_AE: only active devices of the registry may associate, and
    the routing destinations that require storage commitment (their reports may come on
    an association they open)."""
    ae_title = ae_title.strip()
    return (
        Device.objects.filter(ae_title=ae_title, is_active=True).exists()
        or Destination.objects.filter(ae_title=ae_title, storage_commitment=True).exists()
    )


def handle_requested(event: evt.Event) -> None:
    """EVT_REQUESTED: take an association slot (DICOM_MAX_ASSOCIATIONS), then reject
    calling AE titles unknown to the device registry, if asked to."""
    assoc: Any = event.assoc
    conn = getattr(assoc, "_broker_connection", None)
    server = assoc._server
    if conn is not None and not server.table.claim(conn):
        assoc._broker_reject_reason = "DICOM_MAX_ASSOCIATIONS reached"
        # Rejected transient, by the service provider (presentation), local limit exceeded.
        assoc.acse.send_reject(0x02, 0x03, 0x02)
        assoc.kill()
        return
    if not settings.DICOM_RESTRICT_CALLING_AE:
        return
    calling = str(assoc.requestor.primitive.calling_ae_title or "").strip()
    try:
        allowed = workers.run(assoc, calling_ae_allowed, calling)
    except DatabaseError:
        logger.exception("cannot read the device registry; rejecting %s", calling)
        assoc._broker_reject_reason = "device registry unavailable"
        # Rejected transient: the peer may try again later.
        assoc.acse.send_reject(0x02, 0x01, 0x01)
        assoc.kill()
        return
    if not allowed:
        assoc._broker_reject_reason = "calling AE title not in the device registry"
        # Rejected permanent, by the service user, calling AE title not recognised.
        assoc.acse.send_reject(0x01, 0x01, 0x03)
        # As pynetdicom does after its own rejections: stop the DUL thread too.
        assoc.kill()


def handle_rejected(event: evt.Event) -> None:
    # pynetdicom's own rejections (called AE title, association limit): remember why.
    assoc: Any = event.assoc
    if not getattr(assoc, "_broker_reject_reason", ""):
        primitive = assoc.acceptor.primitive
        diagnostic = getattr(primitive, "diagnostic", None)
        reasons = {0x03: "calling AE title not recognised", 0x07: "called AE title not recognised"}
        source = getattr(primitive, "result_source", None)
        if source == 0x03 and diagnostic == 0x02:
            assoc._broker_reject_reason = "DICOM_MAX_ASSOCIATIONS reached"
        elif source == 0x01 and diagnostic in reasons:
            assoc._broker_reject_reason = reasons[diagnostic]


def handle_conn_open(event: evt.Event) -> None:
    """EVT_CONN_OPEN, before the association thread starts: tune the socket and make
    the thread write the association's log line and close its database connection."""
    tune_socket(event)
    assoc: Any = event.assoc
    # threading.Thread keeps its target in ``_target``; the Association sets it in
    # __init__ (and not in a ``run`` override), so wrapping it is the one place that
    # runs at the end of the association thread whatever way the association ends.
    target = assoc._target
    started = time.monotonic()

    def run_then_clean_up() -> None:
        try:
            target()
        finally:
            try:
                counts = outcome.summary(assoc)
                ending = _ending(assoc)
                level = logging.WARNING if assoc.is_aborted or assoc.is_rejected else logging.INFO
                logger.log(
                    level,
                    "DICOM association %s: %s in %.0f ms%s",
                    _peer(assoc),
                    ending,
                    (time.monotonic() - started) * 1000,
                    f" ({counts})" if counts else "",
                )
                metrics.association_ended(ending, outcome.counts(assoc))
            finally:
                # Django opens one database connection per thread: a handler that
                # queried here (rather than on the database workers) leaves one open,
                # and this thread is about to end, so close it or it leaks.
                connections.close_all()

    assoc._target = run_then_clean_up


def service_modules() -> list[Any]:
    return [worklist_dimse, mpps_dimse, routing_dimse]


def handlers() -> list[Any]:
    pairs: list[Any] = [
        (evt.EVT_CONN_OPEN, handle_conn_open),
        (evt.EVT_REQUESTED, handle_requested),
        (evt.EVT_REJECTED, handle_rejected),
        (evt.EVT_C_ECHO, handle_echo),
    ]
    for module in service_modules():
        pairs.extend(module.handlers())
    return pairs


def build_ae() -> AE:
    ae = AE(ae_title=settings.BROKER_AE_TITLE)
    ae.add_supported_context(Verification, TRANSFER_SYNTAXES)
    for module in service_modules():
        syntaxes = getattr(module, "TRANSFER_SYNTAXES", TRANSFER_SYNTAXES)
        for uid in module.SOP_CLASSES:
            ae.add_supported_context(uid, syntaxes)
        # Contexts with SCP/SCU roles of their own (routing: Storage Commitment, the
        # broker as SCU).
        for cx in getattr(module, "CONTEXTS", ()):
            ae.add_supported_context(
                cx.abstract_syntax, cx.transfer_syntax, cx.scu_role, cx.scp_role
            )
    # Associations addressed to another called AE title are rejected.
    ae.require_called_aet = True
    # DICOM_MAX_ASSOCIATIONS is enforced by the guard when an association request
    # arrives (pynetdicom's own count includes connections that never asked for one).
    ae.maximum_associations = 1_000_000
    ae.acse_timeout = settings.DICOM_ACSE_TIMEOUT
    ae.dimse_timeout = settings.DICOM_DIMSE_TIMEOUT
    ae.network_timeout = settings.DICOM_NETWORK_TIMEOUT
    ae.maximum_pdu_size = settings.DICOM_MAX_PDU
    return ae


class _HandshakeInAssociationThread(ssl.SSLContext):
    """pynetdicom wraps each accepted socket in the listener thread; with the default
    ``do_handshake_on_connect`` a peer that connects and stays silent would stall the
    accept loop for everyone. Deferred, the handshake runs on the association's first
    read, in its own thread."""

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["do_handshake_on_connect"] = False
        return super().wrap_socket(sock, *args, **kwargs)


def tls_context() -> ssl.SSLContext | None:
    if not settings.DICOM_TLS_CERT:
        return None
    context = _HandshakeInAssociationThread(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.DICOM_TLS_CERT, settings.DICOM_TLS_KEY)
    if settings.DICOM_TLS_CA:
        # Mutual TLS: only modalities with a certificate from this CA may connect.
        context.load_verify_locations(settings.DICOM_TLS_CA)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def limits() -> guard.Limits:
    return guard.Limits(
        max_associations=settings.DICOM_MAX_ASSOCIATIONS,
        per_host=settings.DICOM_MAX_ASSOCIATIONS_PER_HOST,
        max_pending=settings.DICOM_MAX_ASSOCIATIONS,
        acse_timeout=settings.DICOM_ACSE_TIMEOUT,
        network_timeout=settings.DICOM_NETWORK_TIMEOUT,
        max_pdu=settings.DICOM_MAX_PDU,
        max_message=settings.DICOM_MAX_MESSAGE_BYTES,
    )


def start(host: str, port: int, *, block: bool) -> guard.GuardedServer | None:
    """Start the listener; with ``block=False`` return the running server."""
    ae = build_ae()
    db_workers = workers.DatabaseWorkers(settings.DICOM_DB_WORKERS)
    workers.register(ae, db_workers)
    try:
        server = guard.start_server(
            ae,
            (host, port),
            limits(),
            evt_handlers=handlers(),
            ssl_context=tls_context(),
            contexts=CheapCopyContexts(ae.supported_contexts),
        )
    except BaseException:
        db_workers.close()
        raise
    # Stopping the listener closes every connection, then the workers' database
    # connections.
    stop_server = server.shutdown

    def shutdown() -> None:
        stop_server()
        server.abort_all()
        db_workers.close()

    server.shutdown = shutdown  # type: ignore[method-assign]
    if block:
        try:
            server.wait_stopped()
        finally:
            server.shutdown()
        return None
    return server
