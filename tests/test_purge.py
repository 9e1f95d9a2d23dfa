"""`manage.py purge`: fill every table with old and new rows, purge, see what is left."""

from __future__ import annotations

import datetime as dt
from io import StringIO
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEntry
from broker import retention
from broker.models import WorkerHeartbeat
from hl7v2.intake import message_receive
from hl7v2.models import InboundMessage
from mpps.models import OutboundAttempt, OutboundMessage, PerformedProcedureStep
from tests.fixtures_dicom import schedule
from tests.hl7_messages import orm

pytestmark = pytest.mark.django_db

NOW = timezone.now()
OLD = NOW - dt.timedelta(days=120)
RECENT = NOW - dt.timedelta(days=10)


def hl7(control_id: str, when: dt.datetime) -> int:
    pk = message_receive(orm(control_id=control_id).encode(), peer="test").message_id
    InboundMessage.objects.filter(pk=pk).update(received_at=when)
    return pk


def mpps(uid: str, status: str, when: dt.datetime) -> int:
    row = PerformedProcedureStep.objects.create(
        sop_instance_uid=uid, status=status, dataset={"00100010": {"vr": "PN"}}
    )
    PerformedProcedureStep.objects.filter(pk=row.pk).update(updated_at=when)
    return row.pk


def attempt(message: OutboundMessage, when: dt.datetime) -> int:
    return OutboundAttempt.objects.create(
        message=message, started_at=when, finished_at=when, outcome="AA"
    ).pk


def fill() -> dict[str, Any]:
    ids: dict[str, Any] = {
        "hl7_old": [hl7(f"OLD{n}", OLD) for n in range(7)],
        "hl7_new": hl7("NEW1", RECENT),
        "mpps_old_done": mpps("1.2.3.1", "COMPLETED", OLD),
        "mpps_old_running": mpps("1.2.3.2", "IN PROGRESS", OLD),
        "mpps_new_done": mpps("1.2.3.3", "COMPLETED", RECENT),
    }
    order = schedule().procedure.order
    sent = OutboundMessage.objects.create(
        order=order, sequence=1, order_status="IP", message_type="ORM^O01", state="SENT"
    )
    pending = OutboundMessage.objects.create(
        order=order, sequence=2, order_status="CM", message_type="ORM^O01", state="PENDING"
    )
    ids["attempt_old_sent"] = attempt(sent, OLD)
    ids["attempt_new_sent"] = attempt(sent, RECENT)
    ids["attempt_old_pending"] = attempt(pending, OLD)
    Session.objects.create(
        session_key="old", session_data="x", expire_date=NOW - dt.timedelta(days=1)
    )
    Session.objects.create(
        session_key="live", session_data="x", expire_date=NOW + dt.timedelta(days=1)
    )
    WorkerHeartbeat.objects.create(worker="gone", seen_at=OLD)
    WorkerHeartbeat.objects.create(worker="here", seen_at=NOW)
    for name, when in (("stale", NOW - dt.timedelta(minutes=16)), ("counting", NOW)):
        row = AccessAttempt.objects.create(
            username=name, ip_address="10.0.0.9", failures_since_start=2
        )
        AccessAttempt.objects.filter(pk=row.pk).update(attempt_time=when)
    AuditEntry.objects.create(at=NOW - dt.timedelta(days=2200), action="old")
    AuditEntry.objects.create(at=NOW - dt.timedelta(days=2000), action="kept")
    return ids


def test_purge_removes_what_is_past_retention_and_keeps_the_rest(monkeypatch: Any) -> None:
    monkeypatch.setattr(retention, "BATCH", 3)  # several batches
    ids = fill()
    out = StringIO()
    call_command("purge", stdout=out)
    assert "hl7_messages: 7" in out.getvalue()
    assert list(InboundMessage.objects.values_list("pk", flat=True)) == [ids["hl7_new"]]
    datasets = dict(PerformedProcedureStep.objects.values_list("pk", "dataset"))
    assert datasets[ids["mpps_old_done"]] == {}
    assert datasets[ids["mpps_old_running"]] != {}  # not ended: kept whole
    assert datasets[ids["mpps_new_done"]] != {}
    assert PerformedProcedureStep.objects.count() == 3  # rows stay
    assert set(OutboundAttempt.objects.values_list("pk", flat=True)) == {
        ids["attempt_new_sent"],
        ids["attempt_old_pending"],
    }
    assert OutboundMessage.objects.count() == 2
    assert list(Session.objects.values_list("session_key", flat=True)) == ["live"]
    assert list(WorkerHeartbeat.objects.values_list("worker", flat=True)) == ["here"]
    # Past the 15-minute cool-off a failed login no longer counts: gone; a recent one stays.
    assert list(AccessAttempt.objects.values_list("username", flat=True)) == ["counting"]
    # The audit trail keeps six years (2,190 days).
    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["kept"]
    # A second run finds nothing.
    assert set(retention.purge().values()) == {0}


def test_zero_days_keeps_forever(settings: Any) -> None:
    settings.RETENTION_HL7_MESSAGE_DAYS = 0
    settings.RETENTION_MPPS_DATASET_DAYS = 0
    fill()
    done = retention.purge()
    assert "hl7_messages" not in done and "mpps_datasets" not in done
    assert InboundMessage.objects.count() == 8


def test_beat_runs_the_purge_daily() -> None:
    entries = [
        e for e in django_settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "broker.purge"
    ]
    assert len(entries) == 1
    schedule: Any = entries[0]["schedule"]
    assert schedule.hour == {django_settings.PURGE_HOUR}
