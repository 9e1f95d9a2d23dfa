"""/api/v1/mpps/, /api/v1/hl7-messages/ and /api/v1/ris-messages/: the logs, read; a
failed HL7 message reprocessed and a failed RIS message resent through the services."""

from __future__ import annotations

import pytest
from pydicom.uid import generate_uid

from hl7v2.intake import message_receive
from mpps import services
from mpps.models import OutboundMessage
from tests.fixtures_api import ADMINISTRATOR, INTEGRATOR, ApiAs
from tests.fixtures_mpps import make_step, n_create_dataset, step_item
from worklist.models import ScheduledProcedureStep

pytestmark = pytest.mark.django_db

ORDER = (
    "MSH|^~\\&|RIS|HOSP|WORKLIST|BROKER|20261125090000||ORM^O01|APIMSG1|P|2.3.1\r"
    "PID|||APIPAT^^^HOSP||DOE^JANE||19700101|F\r"
    "ORC|NW|PL1|FI1||SC||^^^20261125100000^^R\r"
    "OBR|1|PL1|FI1|^^^CTH^CT head^LOC||||||||||||||APIACC|APIRP|APISPS||||CT\r"
    "ZDS|1.2.826.0.1.3680043.8.498.99^100^Application^DICOM\r"
)


def test_mpps_list_and_detail(api_as: ApiAs) -> None:
    step = make_step()
    uid = generate_uid()
    services.mpps_create(sop_instance_uid=uid, ds=n_create_dataset(step))
    services.mpps_create(sop_instance_uid=generate_uid(), ds=n_create_dataset(items=[step_item()]))
    client = api_as(INTEGRATOR)
    listing = client.get("/api/v1/mpps/").json()
    assert listing["count"] == 2
    scheduled = client.get("/api/v1/mpps/", {"scheduled": "true"}).json()["results"]
    assert [m["sop_instance_uid"] for m in scheduled] == [uid]
    assert scheduled[0]["step_ids"] == [step.pk]
    assert scheduled[0]["status"] == "IN PROGRESS"
    detail = client.get(f"/api/v1/mpps/{scheduled[0]['id']}/").json()
    assert detail["dataset"]["00100020"]["Value"] == ["PAT1"]
    assert client.get("/api/v1/mpps/", {"scheduled": "false"}).json()["count"] == 1


def test_hl7_messages_list_filter_and_detail(api_as: ApiAs) -> None:
    accepted = message_receive(ORDER.encode(), peer="127.0.0.1:9")
    failed = message_receive(
        ORDER.replace("ORC|NW|", "ORC|XO|")
        .replace("APIMSG1", "APIMSG2")
        .replace("APIACC", "NOACC")
        .encode(),
        peer="127.0.0.1:9",
    )
    client = api_as(INTEGRATOR)
    listing = client.get("/api/v1/hl7-messages/").json()
    assert listing["count"] == 2
    assert "raw" not in listing["results"][0]
    errors = client.get("/api/v1/hl7-messages/", {"outcome": "AE"}).json()["results"]
    assert [m["id"] for m in errors] == [failed.message_id]
    detail = client.get(f"/api/v1/hl7-messages/{accepted.message_id}/").json()
    assert detail["raw"].startswith("MSH|")
    assert "MSA|AA|APIMSG1" in detail["ack"]


def test_reprocess_applies_a_failed_message_once_its_cause_is_fixed(api_as: ApiAs) -> None:
    change = ORDER.replace("ORC|NW|", "ORC|XO|").replace("APIMSG1", "APIMSG2")
    change = change.replace("CT head", "CT head and neck")
    failed = message_receive(change.encode(), peer="127.0.0.1:9")
    assert failed.outcome == "AE"
    message_receive(ORDER.encode(), peer="127.0.0.1:9")
    client = api_as(ADMINISTRATOR)
    response = client.post(f"/api/v1/hl7-messages/{failed.message_id}/reprocess/")
    assert response.status_code == 200, response.content
    assert response.json()["outcome"] == "AA"
    assert ScheduledProcedureStep.objects.get(sps_id="APISPS").description == "CT head and neck"
    again = client.post(f"/api/v1/hl7-messages/{failed.message_id}/reprocess/")
    assert again.status_code == 400


def test_ris_messages_list_and_resend(api_as: ApiAs) -> None:
    order = make_step().procedure.order
    failed = OutboundMessage.objects.create(
        order=order,
        sequence=1,
        order_status="IP",
        message_type="ORM^O01",
        state="FAILED",
        attempts=50,
        raw="MSH|...",
    )
    OutboundMessage.objects.create(
        order=order, sequence=2, order_status="CM", message_type="ORM^O01", state="PENDING"
    )
    client = api_as(ADMINISTRATOR)
    listing = client.get("/api/v1/ris-messages/", {"state": "FAILED"}).json()
    assert [m["id"] for m in listing["results"]] == [failed.pk]
    assert listing["results"][0]["accession_number"] == order.accession_number
    response = client.post(f"/api/v1/ris-messages/{failed.pk}/resend/")
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["attempts"]) == ("PENDING", 0)
    # Only a failed message is resent.
    assert client.post(f"/api/v1/ris-messages/{failed.pk}/resend/").status_code == 400
