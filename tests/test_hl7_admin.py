"""The HL7 message log in the admin: visible to staff, read-only, failed messages reprocessable."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hl7v2.intake import message_receive
from hl7v2.models import InboundMessage
from hl7v2.status import Outcome
from worklist.models import ScheduledProcedureStep

pytestmark = pytest.mark.django_db

ORDER = (
    "MSH|^~\\&|RIS|HOSP|WORKLIST|BROKER|20261125090000||ORM^O01|ADM0001|P|2.3.1\r"
    "PID|||ADMPAT^^^HOSP||DOE^JANE||19700101|F\r"
    "ORC|NW|PL1|FI1||SC||^^^20261125100000^^R\r"
    "OBR|1|PL1|FI1|^^^CTH^CT head^LOC||||||||||||||ADMACC|ADMRP|ADMSPS||||CT\r"
    "ZDS|1.2.826.0.1.3680043.8.498.77^100^Application^DICOM\r"
)


@pytest.fixture
def staff(client: Client) -> Client:
    user = User.objects.create_superuser("staff", "staff@example.org", "a-long-password-1")
    client.force_login(user)
    return client


def test_the_message_log_needs_a_login(client: Client) -> None:
    response = client.get("/admin/hl7v2/inboundmessage/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_staff_see_a_rejected_message_with_its_ack(staff: Client) -> None:
    reply = message_receive(
        b"MSH|^~\\&|RIS|HOSP|WORKLIST|BROKER|20261125090000||ORU^R01|REJ1|P|2.5.1\rOBX|1\r",
        peer="127.0.0.1:9",
    )
    assert reply.outcome == Outcome.REJECTED
    listing = staff.get("/admin/hl7v2/inboundmessage/?outcome=AR")
    assert listing.status_code == 200
    assert b"REJ1" in listing.content
    detail = staff.get(f"/admin/hl7v2/inboundmessage/{reply.message_id}/change/")
    assert detail.status_code == 200
    assert b"ORU^R01" in detail.content
    assert b"MSA|AR|REJ1" in detail.content


def test_staff_cannot_delete_or_add_log_entries(staff: Client) -> None:
    reply = message_receive(ORDER.encode(), peer="127.0.0.1:9")
    assert staff.get("/admin/hl7v2/inboundmessage/add/").status_code == 403
    delete = staff.get(f"/admin/hl7v2/inboundmessage/{reply.message_id}/delete/")
    assert delete.status_code == 403


def test_a_failed_message_is_reprocessed_once_its_cause_is_fixed(staff: Client) -> None:
    # A change (XO) that arrives before its new order (NW) fails: unknown order.
    change = ORDER.replace("ORC|NW|", "ORC|XO|").replace("ADM0001", "ADM0002")
    change = change.replace("CT head", "CT head and neck")
    reply = message_receive(change.encode(), peer="127.0.0.1:9")
    assert reply.outcome == Outcome.ERROR
    assert message_receive(ORDER.encode(), peer="127.0.0.1:9").outcome == Outcome.ACCEPTED

    response = staff.post(
        "/admin/hl7v2/inboundmessage/",
        {"action": "reprocess", "_selected_action": [reply.message_id]},
        follow=True,
    )
    assert response.status_code == 200
    assert b"Reprocessed: 1 AA" in response.content
    assert InboundMessage.objects.get(pk=reply.message_id).outcome == Outcome.ACCEPTED
    step = ScheduledProcedureStep.objects.get(sps_id="ADMSPS")
    assert step.description == "CT head and neck"
