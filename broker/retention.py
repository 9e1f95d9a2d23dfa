"""Retention: what ``manage.py purge`` (and beat, daily) removes, table by table.

Each kind has its own setting in days (0: keep forever). Rows go in batches, each its
own short transaction, so a large first purge never holds a long lock on a busy table.

- HL7 messages (the message log), by the time received.
- MPPS datasets: the received attributes (DICOM JSON) of performed steps that ended;
  the row itself, its status and links to the worklist stay.
- RIS outbox attempts of messages the RIS accepted (attempts of unsent or failed
  messages stay: they explain why). The messages stay: they say which statuses were sent.
- Sessions that have expired.
- Worker heartbeats of workers not seen for that long (hosts that are gone).
- Failed-login records (django-axes) older than the lock-out cool-off: they no longer
  count towards a lock-out, so nothing reads them.
- The staff audit trail, by its time (default six years, as HIPAA keeps its records).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit.models import AuditEntry
from broker.models import WorkerHeartbeat
from hl7v2.models import InboundMessage
from mpps.models import OutboundAttempt, PerformedProcedureStep
from mpps.status import MPPS_FINAL, OutboundState

BATCH = 1000


def _cutoff(days: int, now: dt.datetime) -> dt.datetime | None:
    return now - dt.timedelta(days=days) if days > 0 else None


def _delete_in_batches(queryset: QuerySet[Any]) -> int:
    total = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:BATCH])
        if not ids:
            return total
        with transaction.atomic():
            queryset.model.objects.filter(pk__in=ids).delete()
        total += len(ids)


def _clear_datasets(queryset: QuerySet[PerformedProcedureStep]) -> int:
    total = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:BATCH])
        if not ids:
            return total
        with transaction.atomic():
            PerformedProcedureStep.objects.filter(pk__in=ids).update(dataset={})
        total += len(ids)


def purge(now: dt.datetime | None = None) -> dict[str, int]:
    """Remove what is past its retention; return how many rows of each kind."""
    now = now or timezone.now()
    done: dict[str, int] = {}
    if cutoff := _cutoff(settings.RETENTION_HL7_MESSAGE_DAYS, now):
        done["hl7_messages"] = _delete_in_batches(
            InboundMessage.objects.filter(received_at__lt=cutoff)
        )
    if cutoff := _cutoff(settings.RETENTION_MPPS_DATASET_DAYS, now):
        done["mpps_datasets"] = _clear_datasets(
            PerformedProcedureStep.objects.filter(
                status__in=MPPS_FINAL, updated_at__lt=cutoff
            ).exclude(dataset={})
        )
    if cutoff := _cutoff(settings.RETENTION_RIS_ATTEMPT_DAYS, now):
        done["ris_attempts"] = _delete_in_batches(
            OutboundAttempt.objects.filter(
                message__state=OutboundState.SENT, finished_at__lt=cutoff
            )
        )
    done["sessions"] = _delete_in_batches(Session.objects.filter(expire_date__lt=now))
    if cutoff := _cutoff(settings.RETENTION_HEARTBEAT_DAYS, now):
        done["heartbeats"] = _delete_in_batches(WorkerHeartbeat.objects.filter(seen_at__lt=cutoff))
    done["failed_logins"] = _delete_in_batches(
        AccessAttempt.objects.filter(attempt_time__lt=now - settings.AXES_COOLOFF_TIME)
    )
    if cutoff := _cutoff(settings.RETENTION_AUDIT_DAYS, now):
        done["audit_entries"] = _delete_in_batches(AuditEntry.objects.filter(at__lt=cutoff))
    return done
