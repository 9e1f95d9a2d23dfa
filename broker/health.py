"""What ``/health/`` checks: the database, each listener, the worker and the backlogs.

Each probe returns a short status string ("ok", or "down: why") and never patient data.
The listeners are checked as their peers use them, with short timeouts: a real C-ECHO
on the DICOM port and a TCP connect on the MLLP port.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Max, Min
from django.utils import timezone

from broker.models import WorkerHeartbeat
from hl7v2.models import InboundMessage
from hl7v2.status import Outcome
from mpps.models import OutboundMessage
from mpps.status import OutboundState

OK = "ok"


@dataclass(frozen=True)
class Report:
    healthy: bool
    body: dict[str, Any]


def database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return f"down: {type(exc).__name__}"
    return OK


def dicom_listener() -> str:
    """A C-ECHO to our own AE title; a rejection (e.g. calling AE not registered) still
    proves the listener answers."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    if settings.DICOM_TLS_CERT:
        # Scanners may need a client certificate we do not have: connect only.
        return _tcp(settings.HEALTH_DICOM_HOST, settings.BROKER_DICOM_PORT)
    ae = AE(ae_title="HEALTHCHECK")
    ae.add_requested_context(Verification)
    timeout = settings.HEALTH_TIMEOUT
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    assoc = ae.associate(
        settings.HEALTH_DICOM_HOST, settings.BROKER_DICOM_PORT, ae_title=settings.BROKER_AE_TITLE
    )
    try:
        if assoc.is_rejected:
            return OK
        if not assoc.is_established:
            return "down: no association"
        status = assoc.send_c_echo()
        if status is None or int(status.Status) != 0:
            return "down: C-ECHO failed"
        return OK
    finally:
        if assoc.is_established:
            assoc.release()


def hl7_listener() -> str:
    return _tcp(settings.HEALTH_HL7_HOST, settings.BROKER_HL7_PORT)


def _tcp(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=settings.HEALTH_TIMEOUT) as sock:
            # Nothing listening, and the kernel chose ``port`` as the source port: TCP
            # connected the socket to itself.
            if sock.getsockname() == sock.getpeername():
                return "down: nothing listening"
            return OK
    except OSError as exc:
        return f"down: {type(exc).__name__}"


def _age(moment: Any) -> float | None:
    return round((timezone.now() - moment).total_seconds(), 1) if moment else None


def report() -> Report:
    """Every check; unhealthy (503) when the database, a listener or the worker is down,
    or the RIS backlog is older than HEALTH_RIS_BACKLOG_MAX_AGE."""
    body: dict[str, Any] = {"database": database()}
    body["dicom"] = dicom_listener()
    body["hl7"] = hl7_listener()
    failing = [name for name in ("database", "dicom", "hl7") if body[name] != OK]
    if body["database"] == OK:
        last = WorkerHeartbeat.objects.aggregate(last=Max("seen_at"))["last"]
        age = _age(last)
        body["worker_last_seen"] = last.isoformat() if last else None
        body["worker_heartbeat_age_seconds"] = age
        if age is None:
            # No heartbeat yet (just installed, or beat not run yet): not known to be
            # down. Monitoring should alert if this stays so.
            body["worker"] = "unknown"
        elif age > settings.HEALTH_WORKER_MAX_AGE:
            body["worker"] = f"down: no heartbeat for {age:.0f} s"
            failing.append("worker")
        else:
            body["worker"] = OK
        oldest_unsent = OutboundMessage.objects.filter(state=OutboundState.PENDING).aggregate(
            oldest=Min("created_at")
        )["oldest"]
        unsent_age = _age(oldest_unsent)
        body["ris_oldest_unsent_age_seconds"] = unsent_age
        body["ris_failed_messages"] = OutboundMessage.objects.filter(
            state=OutboundState.FAILED
        ).count()
        if (
            settings.RIS_HL7_HOST
            and unsent_age is not None
            and unsent_age > settings.HEALTH_RIS_BACKLOG_MAX_AGE
        ):
            body["ris_outbox"] = f"down: oldest unsent message {unsent_age:.0f} s old"
            failing.append("ris_outbox")
        else:
            body["ris_outbox"] = OK
        oldest_failed = InboundMessage.objects.filter(
            outcome__in=(Outcome.ERROR, Outcome.REJECTED)
        ).aggregate(oldest=Min("received_at"))["oldest"]
        body["hl7_oldest_failed_age_seconds"] = _age(oldest_failed)
    body["status"] = "ok" if not failing else "error"
    if failing:
        body["failing"] = failing
    return Report(not failing, body)
