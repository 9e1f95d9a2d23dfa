"""Order status back to the RIS: the messages, the ACKs, retries and ordering, over real
MLLP sockets with a real Celery worker."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydicom.uid import generate_uid

from mpps import outbox, ris, services
from mpps.models import OutboundAttempt, OutboundMessage
from mpps.status import AttemptOutcome, OutboundState
from tests.fixtures_mpps import (
    FakeRIS,
    hl7_field,
    make_step,
    n_create_dataset,
    n_set_dataset,
    order_status_of_message,
    wait_until,
)

ORDER = ris.OrderInfo(
    patient_id="PAT|1",
    patient_issuer="HOSP",
    patient_name="DOE^JANE^M^DR^JR",
    birth_date=dt.date(1970, 1, 2),
    sex="F",
    admission_id="ADM1",
    accession_number="ACC1",
    placer_order_number="PL1",
    filler_order_number="FI1",
    placer_application="RIS^HOSP",
    procedures=(
        ris.ProcedureInfo(
            requested_procedure_id="RP1",
            study_instance_uid="1.2.3",
            code_value="CTHEAD",
            code_meaning="CT HEAD",
            code_scheme="L",
            steps=(ris.StepInfo(sps_id="SPS1", modality="CT", station_ae_title="CT1"),),
        ),
    ),
)
NOW = dt.datetime(2026, 11, 25, 9, 30, 0)


def _build(order_status: str, message_type: str) -> str:
    return ris.build_status_message(
        ORDER,
        order_status=order_status,
        message_type=message_type,
        control_id="C1",
        sending_application="WORKLIST",
        sending_facility="BROKER",
        now=NOW,
    )


def test_it_builds_an_orm_o01_v231_status_message() -> None:
    message = _build("IP", "ORM^O01")
    assert hl7_field(message, "MSH", 3) == "WORKLIST"
    assert hl7_field(message, "MSH", 5) == "RIS"
    assert hl7_field(message, "MSH", 6) == "HOSP"
    assert hl7_field(message, "MSH", 9) == "ORM^O01"
    assert hl7_field(message, "MSH", 10) == "C1"
    assert hl7_field(message, "MSH", 12) == "2.3.1"
    assert hl7_field(message, "PID", 3) == "PAT\\F\\1^^^HOSP"
    assert hl7_field(message, "PID", 5) == "DOE^JANE^M^JR^DR"
    assert hl7_field(message, "PID", 7) == "19700102"
    assert hl7_field(message, "ORC", 1) == "SC"
    assert hl7_field(message, "ORC", 2) == "PL1"
    assert hl7_field(message, "ORC", 3) == "FI1"
    assert hl7_field(message, "ORC", 5) == "IP"
    assert hl7_field(message, "OBR", 2) == "PL1"
    assert hl7_field(message, "OBR", 3) == "FI1"
    assert hl7_field(message, "OBR", 4) == "CTHEAD^CT HEAD^L"
    assert hl7_field(message, "OBR", 18) == "ACC1"
    assert hl7_field(message, "OBR", 19) == "RP1"
    assert hl7_field(message, "OBR", 20) == "SPS1"
    assert hl7_field(message, "OBR", 24) == "CT"
    assert "IPC" not in message


def test_it_builds_an_omi_o23_v251_status_message() -> None:
    message = _build("CM", "OMI^O23")
    assert hl7_field(message, "MSH", 9) == "OMI^O23^OMI_O23"
    assert hl7_field(message, "MSH", 12) == "2.5.1"
    assert hl7_field(message, "ORC", 1) == "SC"
    assert hl7_field(message, "ORC", 5) == "CM"
    assert hl7_field(message, "IPC", 1) == "ACC1"
    assert hl7_field(message, "IPC", 2) == "RP1"
    assert hl7_field(message, "IPC", 3) == "1.2.3"
    assert hl7_field(message, "IPC", 4) == "SPS1"
    assert hl7_field(message, "IPC", 5) == "CT"


def test_it_declares_utf8_when_the_message_is_not_ascii() -> None:
    order = ris.OrderInfo(**{**ORDER.__dict__, "patient_name": "MÜLLER^JÖRG"})
    message = ris.build_status_message(
        order,
        order_status="IP",
        message_type="ORM^O01",
        control_id="C1",
        sending_application="W",
        sending_facility="B",
        now=NOW,
    )
    assert hl7_field(message, "MSH", 18) == "UNICODE UTF-8"
    assert ris.message_encoding(message) == "utf-8"


def test_it_judges_acknowledgements() -> None:
    def ack(code: str, control: str = "C1") -> str:
        return f"MSH|^~\\&|RIS|H|W|B|20261125||ACK|A1|P|2.3.1\rMSA|{code}|{control}|text\r"

    assert ris.read_ack(ack("AA"), "C1").outcome == AttemptOutcome.ACCEPTED
    assert ris.read_ack(ack("CA"), "C1").outcome == AttemptOutcome.ACCEPTED
    assert ris.read_ack(ack("AE"), "C1").outcome == AttemptOutcome.ERROR
    assert ris.read_ack(ack("AR"), "C1").outcome == AttemptOutcome.REJECTED
    assert ris.read_ack(ack("AA", "OTHER"), "C1").outcome == AttemptOutcome.BAD_ACK
    assert ris.read_ack("garbage", "C1").outcome == AttemptOutcome.BAD_ACK


def test_it_doubles_the_retry_delay_up_to_the_maximum(settings: Any) -> None:
    settings.RIS_HL7_RETRY_DELAY = 10.0
    settings.RIS_HL7_RETRY_MAX_DELAY = 60.0
    assert [outbox.backoff(n) for n in (1, 2, 3, 4, 5)] == [10.0, 20.0, 40.0, 60.0, 60.0]


def test_it_reports_a_ris_that_is_down(free_port: int) -> None:
    delivery = ris.deliver("MSH|^~\\&|\r", "C1", host="127.0.0.1", port=free_port, timeout=1)
    assert delivery.outcome == AttemptOutcome.CONNECTION_FAILED


# --- with the worker -------------------------------------------------------------------


def _messages(order_id: int) -> list[OutboundMessage]:
    return list(OutboundMessage.objects.filter(order_id=order_id).order_by("sequence"))


@pytest.mark.django_db(transaction=True)
def test_the_ris_receives_ip_then_cm_with_the_order_fields(
    ris_server: FakeRIS, task_worker: Any
) -> None:
    step = make_step(accession="ACC77")
    order = step.procedure.order
    uid = generate_uid()
    services.mpps_create(sop_instance_uid=uid, ds=n_create_dataset(step))
    ris_server.wait_for(1)
    services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset())
    received = ris_server.wait_for(2)
    assert [order_status_of_message(m) for m in received] == ["IP", "CM"]
    for message in received:
        assert hl7_field(message, "MSH", 9) == "ORM^O01"
        assert hl7_field(message, "ORC", 1) == "SC"
        assert hl7_field(message, "ORC", 2) == order.placer_order_number
        assert hl7_field(message, "ORC", 3) == order.filler_order_number
        assert hl7_field(message, "OBR", 18) == "ACC77"
        assert hl7_field(message, "OBR", 20) == step.sps_id
        assert hl7_field(message, "PID", 3) == "PAT1"
    wait_until(lambda: all(m.state == OutboundState.SENT for m in _messages(order.pk)))
    assert OutboundAttempt.objects.filter(outcome=AttemptOutcome.ACCEPTED).count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_ris_receives_omi_o23_when_configured(
    ris_server: FakeRIS, task_worker: Any, settings: Any
) -> None:
    settings.RIS_HL7_MESSAGE = "OMI^O23"
    step = make_step()
    services.mpps_create(sop_instance_uid=generate_uid(), ds=n_create_dataset(step))
    (message,) = ris_server.wait_for(1)
    assert hl7_field(message, "MSH", 9) == "OMI^O23^OMI_O23"
    assert hl7_field(message, "IPC", 3) == step.procedure.study_instance_uid
    assert order_status_of_message(message) == "IP"


@pytest.mark.django_db(transaction=True)
def test_it_retries_while_the_ris_is_down_and_sends_ip_before_cm_once_it_is_up(
    ris_port: int, task_worker: Any
) -> None:
    step = make_step()
    order_id = step.procedure.order_id
    uid = generate_uid()
    services.mpps_create(sop_instance_uid=uid, ds=n_create_dataset(step))
    services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset())
    # Nothing listens: the IP fails a few times, and the CM waits behind it.
    wait_until(
        lambda: (
            OutboundAttempt.objects.filter(outcome=AttemptOutcome.CONNECTION_FAILED).count() >= 2
        )
    )
    assert OutboundAttempt.objects.filter(message__order_status="CM").count() == 0

    server = FakeRIS(port=ris_port)
    server.start()
    try:
        received = server.wait_for(2)
        assert [order_status_of_message(m) for m in received] == ["IP", "CM"]
    finally:
        server.stop()
    wait_until(lambda: all(m.state == OutboundState.SENT for m in _messages(order_id)))
    first = _messages(order_id)[0]
    outcomes = list(first.tries.order_by("started_at").values_list("outcome", flat=True))
    assert outcomes[-1] == AttemptOutcome.ACCEPTED
    assert set(outcomes[:-1]) == {AttemptOutcome.CONNECTION_FAILED}
    assert first.attempts == len(outcomes) >= 3


@pytest.mark.django_db(transaction=True)
def test_it_retries_when_the_ris_answers_ae_or_ar(ris_server: FakeRIS, task_worker: Any) -> None:
    ris_server.answers = ["AE", "AR"]
    step = make_step()
    services.mpps_create(sop_instance_uid=generate_uid(), ds=n_create_dataset(step))
    received = ris_server.wait_for(3)
    assert len({hl7_field(m, "MSH", 10) for m in received}) == 1  # the same message again
    wait_until(lambda: _messages(step.procedure.order_id)[0].state == OutboundState.SENT)
    message = _messages(step.procedure.order_id)[0]
    assert list(message.tries.order_by("started_at").values_list("outcome", flat=True)) == [
        AttemptOutcome.ERROR,
        AttemptOutcome.REJECTED,
        AttemptOutcome.ACCEPTED,
    ]


def test_an_independent_parser_reads_the_messages() -> None:
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    omi = parse_message(_build("IP", "OMI^O23"), validation_level=VALIDATION_LEVEL.STRICT)
    omi.validate()  # the v2.5.1 OMI^O23 structure, strictly
    orm = parse_message(_build("CM", "ORM^O01"), find_groups=True)
    order = orm.children.get("ORM_O01_ORDER")
    assert order.orc.orc_1.value == "SC"
    assert order.orc.orc_5.value == "CM"
