"""The RIS outbox without a worker: the sending function the task runs, called directly,
one call at a time, against a test MLLP server."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.uid import generate_uid

from mpps import outbox, services
from mpps.models import OutboundMessage
from mpps.status import OutboundState
from tests.fixtures_mpps import (
    FakeRIS,
    make_step,
    n_create_dataset,
    n_set_dataset,
    order_status_of_message,
    wait_until,
)

# Tasks queued on commit go to an in-memory queue nobody consumes.
pytestmark = pytest.mark.usefixtures("memory_broker")


def _messages(order_id: int) -> list[OutboundMessage]:
    return list(OutboundMessage.objects.filter(order_id=order_id).order_by("sequence"))


@pytest.mark.django_db(transaction=True)
def test_a_message_that_failed_for_good_holds_back_the_next_until_retried(
    ris_server: FakeRIS, settings: Any
) -> None:
    # The task's own function, called directly: one attempt per call.
    settings.RIS_HL7_MAX_ATTEMPTS = 2
    settings.RIS_HL7_RETRY_DELAY = 0.01
    ris_server.answers = ["AR", "AR"]
    step = make_step()
    order_id = step.procedure.order_id
    uid = generate_uid()
    services.mpps_create(sop_instance_uid=uid, ds=n_create_dataset(step))
    services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset())

    first = outbox.order_send(order_id)
    assert first.sent == 0 and first.retry_in is not None
    wait_until(lambda: outbox.order_send(order_id).retry_in is None)
    ip, cm = _messages(order_id)
    assert (ip.state, cm.state) == (OutboundState.FAILED, OutboundState.PENDING)
    assert outbox.order_send(order_id).sent == 0  # CM stays behind the failed IP
    assert len(ris_server.received) == 2

    outbox.message_retry(ip)
    result = outbox.order_send(order_id)
    assert result.sent == 2 and result.retry_in is None
    assert [order_status_of_message(m) for m in ris_server.received[2:]] == ["IP", "CM"]


@pytest.mark.django_db(transaction=True)
def test_a_second_sender_leaves_a_claimed_message_to_the_first(
    ris_server: FakeRIS, settings: Any
) -> None:
    step = make_step()
    order_id = step.procedure.order_id
    services.mpps_create(sop_instance_uid=generate_uid(), ds=n_create_dataset(step))
    (message,) = _messages(order_id)
    # A worker holds the lease (it is sending right now): another one must not send too.
    OutboundMessage.objects.filter(pk=message.pk).update(
        lease_until=message.created_at.replace(year=message.created_at.year + 1)
    )
    result = outbox.order_send(order_id)
    assert result.sent == 0 and result.retry_in is not None
    assert ris_server.received == []


@pytest.mark.django_db(transaction=True)
def test_it_sends_nothing_and_stops_when_no_ris_is_configured(settings: Any) -> None:
    settings.RIS_HL7_HOST = "127.0.0.1"
    step = make_step()
    services.mpps_create(sop_instance_uid=generate_uid(), ds=n_create_dataset(step))
    settings.RIS_HL7_HOST = ""
    result = outbox.order_send(step.procedure.order_id)
    assert result.sent == 0 and result.retry_in is None
    assert _messages(step.procedure.order_id)[0].state == OutboundState.PENDING


@pytest.mark.django_db(transaction=True)
def test_ris_resend_queues_a_send_for_each_order_with_unsent_messages(settings: Any) -> None:
    from io import StringIO

    from django.core.management import call_command

    settings.RIS_HL7_HOST = "127.0.0.1"
    for _ in range(2):
        step = make_step()
        services.mpps_create(sop_instance_uid=generate_uid(), ds=n_create_dataset(step))
    out = StringIO()
    call_command("ris_resend", stdout=out)
    assert "2 order(s)" in out.getvalue()
