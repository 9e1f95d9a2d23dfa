"""/health/ and /metrics: real listeners, real probes, no login, no patient data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from broker.models import WorkerHeartbeat
from hl7v2.intake import message_receive
from mpps.models import OutboundMessage
from tests.conftest import get_free_port
from tests.fixtures_dicom import Listener, schedule
from tests.fixtures_hl7 import RunningListener

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listeners(
    dicom_listener: Listener, hl7_listener: Callable[..., RunningListener], settings: Any
) -> None:
    settings.BROKER_DICOM_PORT = dicom_listener.port
    settings.BROKER_HL7_PORT = hl7_listener().port
    settings.HEALTH_DICOM_HOST = settings.HEALTH_HL7_HOST = "127.0.0.1"


def test_it_answers_ok_when_every_part_answers(client: Client, listeners: None) -> None:
    WorkerHeartbeat.objects.create(worker="w1", seen_at=timezone.now())
    response = client.get("/health/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert (body["database"], body["dicom"], body["hl7"], body["worker"]) == ("ok",) * 4
    assert body["ris_oldest_unsent_age_seconds"] is None
    assert body["hl7_oldest_failed_age_seconds"] is None


def test_a_worker_never_seen_is_unknown_not_down(client: Client, listeners: None) -> None:
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json()["worker"] == "unknown"


def test_a_stale_heartbeat_is_503(client: Client, listeners: None, settings: Any) -> None:
    settings.HEALTH_WORKER_MAX_AGE = 60
    WorkerHeartbeat.objects.create(worker="w1", seen_at=timezone.now() - dt.timedelta(hours=1))
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["worker"].startswith("down: no heartbeat")
    assert response.json()["failing"] == ["worker"]


def test_a_listener_that_does_not_answer_is_503(
    client: Client, listeners: None, settings: Any
) -> None:
    settings.BROKER_DICOM_PORT = get_free_port()  # nothing listens there
    settings.BROKER_HL7_PORT = get_free_port()
    response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["dicom"].startswith("down") and body["hl7"].startswith("down")
    assert body["failing"] == ["dicom", "hl7"]


def test_an_old_ris_backlog_is_503_and_the_failed_hl7_age_is_shown(
    client: Client, listeners: None, settings: Any
) -> None:
    settings.RIS_HL7_HOST = "ris.invalid"
    settings.HEALTH_RIS_BACKLOG_MAX_AGE = 600
    step = schedule()
    message = OutboundMessage.objects.create(
        order=step.procedure.order, sequence=1, order_status="IP", message_type="ORM^O01"
    )
    OutboundMessage.objects.filter(pk=message.pk).update(
        created_at=timezone.now() - dt.timedelta(hours=2)
    )
    message_receive(b"MSH|^~\\&|RIS|H|WL|B|20260101||ZZZ^Z01|X1|P|2.5\r", peer="test")
    response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["ris_outbox"].startswith("down: oldest unsent message")
    assert body["ris_oldest_unsent_age_seconds"] >= 7000
    assert body["hl7_oldest_failed_age_seconds"] is not None


def test_metrics_count_associations_and_read_the_database(
    client: Client, dicom_listener: Listener
) -> None:
    before = client.get("/metrics").content.decode()
    ae = AE(ae_title="METRICS")
    ae.add_requested_context(Verification)
    assoc = ae.associate(dicom_listener.host, dicom_listener.port, ae_title="WORKLIST")
    assert assoc.send_c_echo().Status == 0
    assoc.release()
    message_receive(b"MSH|^~\\&|RIS|H|WL|B|20260101||ZZZ^Z01|M1|P|2.5\r", peer="test")

    def released(text: str) -> float:
        for line in text.splitlines():
            if line.startswith('broker_dicom_associations_total{ending="released"}'):
                return float(line.split()[-1])
        return 0.0

    from tests.fixtures_mpps import wait_until

    wait_until(lambda: released(client.get("/metrics").content.decode()) > released(before))
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'broker_dicom_requests_total{kind="C-ECHO"}' in text
    assert 'broker_hl7_messages{outcome="AR"} 1.0' in text
    assert "broker_ris_oldest_unsent_age_seconds 0.0" in text
    assert "broker_worker_heartbeat_age_seconds -1.0" in text


def test_metrics_are_for_loopback_or_a_token_only(client: Client, settings: Any) -> None:
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    settings.METRICS_TOKEN = "s3cret"
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    response = client.get(
        "/metrics", REMOTE_ADDR="10.1.2.3", headers={"Authorization": "Bearer s3cret"}
    )
    assert response.status_code == 200


def test_it_requires_login_for_admin(client: Client) -> None:
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_it_requires_a_token_for_the_api(client: Client) -> None:
    response = client.get("/api/v1/steps/")
    assert response.status_code == 401
