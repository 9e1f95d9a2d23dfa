"""Admin actions carry their own permission: viewing a log is not enough to reprocess
an HL7 message or resend a RIS status message."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from hl7v2.intake import message_receive
from hl7v2.models import InboundMessage
from hl7v2.status import Outcome
from mpps.models import OutboundMessage
from tests.fixtures_dicom import schedule

pytestmark = pytest.mark.django_db

FAILING = (
    "MSH|^~\\&|RIS|HOSP|WORKLIST|BROKER|20261125090000||ORM^O01|ACT0001|P|2.3.1\r"
    "PID|||ACTPAT^^^HOSP||DOE^JANE||19700101|F\r"
    "ORC|XO|PL1|FI1||SC||^^^20261125100000^^R\r"
    "OBR|1|PL1|FI1|^^^CTH^CT head^LOC||||||||||||||ACTACC|ACTRP|ACTSPS||||CT\r"
)


@pytest.fixture
def logs() -> None:
    """One failed HL7 message and one RIS status message, so the lists show their actions."""
    message_receive(FAILING.encode(), peer="127.0.0.1:9")
    step = schedule()
    OutboundMessage.objects.create(
        order=step.procedure.order, sequence=1, order_status="IP", message_type="ORM^O01"
    )


def staff_in(client: Client, role: str) -> None:
    user = User.objects.create_user(f"u-{role}", password="a-long-password-1", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)


@pytest.mark.parametrize(
    ("url", "action"),
    [
        ("/admin/hl7v2/inboundmessage/", "reprocess"),
        ("/admin/mpps/outboundmessage/", "retry"),
    ],
)
@pytest.mark.usefixtures("logs")
def test_a_lead_sees_the_log_without_its_action(client: Client, url: str, action: str) -> None:
    staff_in(client, "Department lead")
    page = client.get(url)
    assert page.status_code == 200
    assert "ACT0001" in page.text or "IP" in page.text
    assert f'value="{action}"' not in page.text


@pytest.mark.parametrize(
    ("url", "action"),
    [
        ("/admin/hl7v2/inboundmessage/", "reprocess"),
        ("/admin/mpps/outboundmessage/", "retry"),
    ],
)
@pytest.mark.usefixtures("logs")
def test_an_administrator_has_the_action(client: Client, url: str, action: str) -> None:
    staff_in(client, "Administrator")
    assert f'value="{action}"' in client.get(url).text


def test_a_lead_cannot_reprocess_by_posting_the_action(client: Client) -> None:
    reply = message_receive(FAILING.encode(), peer="127.0.0.1:9")
    assert reply.outcome == Outcome.ERROR
    staff_in(client, "Department lead")
    client.post(
        "/admin/hl7v2/inboundmessage/",
        {"action": "reprocess", "_selected_action": [reply.message_id]},
    )
    message = InboundMessage.objects.get(pk=reply.message_id)
    assert message.reprocessed_at is None
