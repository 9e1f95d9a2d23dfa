"""The RIS hears of an order finished outside MPPS: a front-desk cancel of the last open
step of a performed order sends CM, over a real MLLP socket with a real Celery worker."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.uid import generate_uid

from mpps import services
from mpps.models import OutboundMessage
from tests.fixtures_mpps import (
    FakeRIS,
    make_step,
    n_create_dataset,
    n_set_dataset,
    order_status_of_message,
    wait_until,
)
from worklist.services import step_cancel


@pytest.mark.django_db(transaction=True)
def test_canceling_the_other_step_of_a_performed_order_sends_cm(
    ris_server: FakeRIS, task_worker: Any
) -> None:
    performed = make_step(accession="ACCFD", sps_id="SPS1")
    other = make_step(accession="ACCFD", sps_id="SPS2")
    assert performed.procedure.order_id == other.procedure.order_id
    uid = generate_uid()
    services.mpps_create(sop_instance_uid=uid, ds=n_create_dataset(performed))
    services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset())
    # One step done, one still scheduled: the order is in progress.
    assert [order_status_of_message(m) for m in ris_server.wait_for(1, timeout=60)] == ["IP"]
    step_cancel(actor=None, step_id=other.pk)
    received = ris_server.wait_for(2, timeout=60)
    assert [order_status_of_message(m) for m in received] == ["IP", "CM"]


@pytest.mark.django_db(transaction=True)
def test_canceling_a_step_of_an_order_nobody_performed_sends_nothing(
    ris_server: FakeRIS, task_worker: Any
) -> None:
    step = make_step(accession="ACCNONE")
    step_cancel(actor=None, step_id=step.pk)
    probe = make_step(accession="ACCPROBE")
    services.mpps_create(sop_instance_uid=generate_uid(), ds=n_create_dataset(probe))
    # The worker takes tasks in order: once the probe's IP has arrived, the cancel's
    # follow-up has run, and an order nobody performed got no message.
    wait_until(lambda: len(ris_server.received) >= 1, timeout=60)
    assert not OutboundMessage.objects.filter(order_id=step.procedure.order_id).exists()
