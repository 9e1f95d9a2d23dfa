"""Self-healing: the periodic tasks beat runs, with a real worker on an in-memory queue."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from broker import tasks
from broker.models import WorkerHeartbeat
from mpps.models import OutboundMessage
from mpps.status import OutboundState
from tests.fixtures_dicom import schedule
from tests.fixtures_mpps import FakeRIS, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_beat_runs_the_heartbeat_and_the_requeue() -> None:
    names = {entry["task"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"broker.heartbeat", "broker.requeue_lost"} <= names


def test_a_pending_message_whose_task_was_lost_is_sent_by_the_requeue(
    task_worker: Any, ris_server: FakeRIS, settings: Any
) -> None:
    step = schedule()
    order = step.procedure.order
    # A status message queued while the task queue was down: no task exists for it.
    lost = OutboundMessage.objects.create(
        order=order,
        sequence=1,
        order_status="IP",
        message_type="ORM^O01",
        control_id="LOST1",
        raw="MSH|^~\\&|WORKLIST|BROKER|RIS|HOSP|20260101||ORM^O01|LOST1|P|2.3.1\r",
    )
    fresh = OutboundMessage.objects.create(
        order=schedule(patient_id="P2", accession="A2").procedure.order,
        sequence=1,
        order_status="IP",
        message_type="ORM^O01",
        control_id="FRESH1",
    )
    OutboundMessage.objects.filter(pk=lost.pk).update(
        created_at=timezone.now() - dt.timedelta(minutes=10)
    )
    # The task's function, as beat's worker runs it; the sends it queues go to the worker.
    assert tasks.requeue_lost() == 1  # only the old one
    wait_until(lambda: OutboundMessage.objects.get(pk=lost.pk).state == OutboundState.SENT, 30)
    assert len(ris_server.received) == 1
    assert OutboundMessage.objects.get(pk=fresh.pk).state == OutboundState.PENDING


def test_the_heartbeat_task_records_the_worker(task_worker: Any) -> None:
    tasks.heartbeat.delay()
    wait_until(WorkerHeartbeat.objects.exists, 30)
    assert WorkerHeartbeat.objects.get().seen_at > timezone.now() - dt.timedelta(minutes=1)
