"""Order intake: applying orders, idempotency, concurrency, reprocessing, configuration."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import close_old_connections

from core import events
from hl7v2.intake import message_receive, message_reprocess
from hl7v2.models import InboundMessage
from hl7v2.status import Outcome
from tests.hl7_messages import omi, orm, pid
from worklist.models import (
    Device,
    Order,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
)
from worklist.services import DomainError
from worklist.status import SPSStatus

db = pytest.mark.django_db


def send(text: str, encoding: str = "latin-1") -> str:
    return message_receive(text.encode(encoding), peer="test").outcome


@pytest.fixture
def status_events() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        seen.append(kwargs)

    events.step_status_changed.connect(receiver)
    yield seen
    events.step_status_changed.disconnect(receiver)


@db
def test_an_orm_creates_patient_order_procedure_and_step() -> None:
    assert send(orm(orc={18: "CT01"})) == Outcome.ACCEPTED
    step = ScheduledProcedureStep.objects.select_related("procedure__order__patient").get()
    assert step.procedure.order.patient.patient_id == "PAT1"
    assert step.procedure.order.placer_application == "RIS|HOSP"
    assert list(step.station_ae_titles.values_list("ae_title", flat=True)) == ["CT01"]
    assert step.status == SPSStatus.SCHEDULED
    assert step.start_date is not None


@db
def test_several_order_groups_give_several_steps() -> None:
    assert send(orm(groups=3)) == Outcome.ACCEPTED
    assert ScheduledProcedureStep.objects.count() == 3
    assert Order.objects.count() == 1


@db
def test_an_omi_gives_one_step_per_ipc() -> None:
    assert send(omi()) == Outcome.ACCEPTED
    assert sorted(ScheduledProcedureStep.objects.values_list("sps_id", flat=True)) == [
        "SPS1",
        "SPS2",
    ]


@db
def test_an_error_in_a_later_group_applies_nothing(status_events: list[dict[str, Any]]) -> None:
    text = orm(groups=2).replace("|SPS2|", "|" + "S" * 17 + "|")
    assert send(text) == Outcome.ERROR
    assert not Patient.objects.exists()
    assert not ScheduledProcedureStep.objects.exists()
    assert status_events == []
    assert InboundMessage.objects.get().outcome == Outcome.ERROR


@db
def test_xo_updates_and_a_quoted_null_clears() -> None:
    send(orm(control_id="A", obr={31: "^Headache"}))
    assert (
        send(orm(control_id="B", orc={1: "XO", 5: "SC"}, obr={31: '""', 24: "MR"}))
        == Outcome.ACCEPTED
    )
    order = Order.objects.get()
    assert order.reason == ""
    assert ScheduledProcedureStep.objects.get().modality == "MR"


@db
@pytest.mark.parametrize(
    ("control", "status", "expected"),
    [
        ("CA", "CA", SPSStatus.CANCELED),
        ("DC", "CA", SPSStatus.DISCONTINUED),
        ("SC", "CM", SPSStatus.COMPLETED),
    ],
)
def test_status_messages_change_the_step_and_fire_events(
    control: str,
    status: str,
    expected: str,
    status_events: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        send(orm(control_id="N1"))
    with django_capture_on_commit_callbacks(execute=True):
        assert send(orm(control_id="S1", orc={1: control, 5: status})) == Outcome.ACCEPTED
    assert ScheduledProcedureStep.objects.get().status == expected
    assert status_events[-1]["new_status"] == expected
    assert status_events[-1]["old_status"] == SPSStatus.SCHEDULED


@db
def test_a_cancel_by_placer_order_number_without_accession() -> None:
    send(orm(control_id="N1", orc={2: "PLX"}))
    assert (
        send(orm(control_id="C1", orc={1: "CA", 5: "CA", 2: "PLX"}, obr={18: ""}))
        == Outcome.ACCEPTED
    )
    assert ScheduledProcedureStep.objects.get().status == SPSStatus.CANCELED


@db
def test_a_completed_step_cannot_be_canceled() -> None:
    send(orm(control_id="N1"))
    send(orm(control_id="M1", orc={1: "SC", 5: "CM"}))
    assert send(orm(control_id="C1", orc={1: "CA", 5: "CA"})) == Outcome.ERROR
    assert send(orm(control_id="X1", orc={1: "XO", 5: "SC"})) == Outcome.ERROR
    assert ScheduledProcedureStep.objects.get().status == SPSStatus.COMPLETED


@db
def test_missing_procedure_and_step_ids_default_to_the_accession_number() -> None:
    send(orm(obr={19: "", 20: ""}))
    step = ScheduledProcedureStep.objects.select_related("procedure").get()
    assert (step.procedure.requested_procedure_id, step.sps_id) == ("ACC1", "ACC1")


@db
def test_long_descriptions_are_cut_to_the_column() -> None:
    send(orm(obr={44: "C^" + "x" * 100}))
    assert len(RequestedProcedure.objects.get().description) == 64


# --- Study Instance UID policy -------------------------------------------------------------


@db
def test_a_missing_study_uid_is_generated_once_and_kept(settings: Any) -> None:
    settings.HL7_STUDY_UID_POLICY = "generate"
    send(orm(control_id="A", zds=False))
    uid = RequestedProcedure.objects.get().study_instance_uid
    assert uid.startswith(settings.BROKER_UID_ROOT)
    send(orm(control_id="B", zds=False, orc={1: "XO", 5: "SC"}))
    assert RequestedProcedure.objects.get().study_instance_uid == uid


@db
def test_a_missing_study_uid_is_rejected_by_policy(settings: Any) -> None:
    settings.HL7_STUDY_UID_POLICY = "reject"
    reply = message_receive(orm(zds=False).encode(), peer="test")
    assert reply.outcome == Outcome.ERROR
    assert b"ZDS^1^1^101&" in reply.ack


# --- station AE title source ---------------------------------------------------------------


@db
def test_the_registry_gives_the_station_when_orc_18_is_empty(settings: Any) -> None:
    Device.objects.create(ae_title="CT_A", modality="CT", station_name="CTA", location="R1")
    send(orm())
    step = ScheduledProcedureStep.objects.get()
    assert list(step.station_ae_titles.values_list("ae_title", flat=True)) == ["CT_A"]
    assert (step.station_name, step.location) == ("CTA", "R1")


@db
def test_the_registry_gives_every_station_of_the_modality() -> None:
    Device.objects.create(ae_title="CT_A", modality="CT")
    Device.objects.create(ae_title="CT_B", modality="CT")
    Device.objects.create(ae_title="MR_A", modality="MR")
    send(orm())
    step = ScheduledProcedureStep.objects.get()
    assert sorted(step.station_ae_titles.values_list("ae_title", flat=True)) == ["CT_A", "CT_B"]


@db
def test_the_registry_narrows_by_ipc_location() -> None:
    Device.objects.create(ae_title="MR_A", modality="MR", location="RAD1")
    Device.objects.create(ae_title="MR_B", modality="MR", location="RAD2")
    ipc = {1: "ACC9", 2: "RP1", 3: "1.2.3.9", 4: "S1", 5: "MR", 8: "RAD2"}
    send(omi(ipcs=[ipc]))
    assert list(
        ScheduledProcedureStep.objects.get().station_ae_titles.values_list("ae_title", flat=True)
    ) == ["MR_B"]


@db
def test_source_registry_ignores_orc_18(settings: Any) -> None:
    settings.HL7_STATION_AE_SOURCE = "registry"
    Device.objects.create(ae_title="CT_A", modality="CT")
    send(orm(orc={18: "OTHER"}))
    assert list(
        ScheduledProcedureStep.objects.get().station_ae_titles.values_list("ae_title", flat=True)
    ) == ["CT_A"]


@db
def test_source_message_never_asks_the_registry(settings: Any) -> None:
    settings.HL7_STATION_AE_SOURCE = "message"
    Device.objects.create(ae_title="CT_A", modality="CT")
    send(orm())
    assert not ScheduledProcedureStep.objects.get().station_ae_titles.exists()


# --- idempotency and reprocessing ----------------------------------------------------------


@db
def test_a_repeated_message_is_stored_but_not_applied_twice(
    status_events: list[dict[str, Any]],
) -> None:
    send(orm(control_id="R1"))
    send(orm(control_id="R1"))
    assert ScheduledProcedureStep.objects.get().modality == "CT"
    assert list(InboundMessage.objects.order_by("pk").values_list("outcome", flat=True)) == [
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
    ]


@db
def test_the_same_control_id_from_another_sender_is_applied() -> None:
    send(orm(control_id="R1"))
    assert send(orm(control_id="R1", sending="RIS2", obr={18: "ACC2"})) == Outcome.ACCEPTED
    assert Order.objects.count() == 2


def from_facility(text: str, facility: str) -> str:
    """The message as sent by the same application (MSH-3) from another MSH-4."""
    return text.replace("|RIS|HOSP|", f"|RIS|{facility}|", 1)


@db
def test_the_same_control_id_from_another_facility_is_applied() -> None:
    # The duplicate key is MSH-3 + MSH-4 + MSH-10: another facility is another sender.
    send(orm(control_id="R1"))
    assert send(from_facility(orm(control_id="R1", obr={18: "ACC2"}), "CLINIC2")) == "AA"
    assert sorted(Order.objects.values_list("accession_number", flat=True)) == ["ACC1", "ACC2"]
    assert sorted(InboundMessage.objects.values_list("sending_facility", "outcome")) == [
        ("CLINIC2", "AA"),
        ("HOSP", "AA"),
    ]


@db
def test_a_bad_message_from_another_facility_is_an_error_not_a_duplicate() -> None:
    send(orm(control_id="R1"))
    # Same MSH-3 and MSH-10 as the applied message, but another MSH-4, and no OBR-18.
    assert send(from_facility(orm(control_id="R1", obr={18: ""}), "CLINIC2")) == "AE"
    assert InboundMessage.objects.get(sending_facility="CLINIC2").outcome == "AE"


@db
def test_a_failed_message_sent_again_is_applied() -> None:
    send(orm(control_id="F1", obr={18: ""}))
    assert not Order.objects.exists()
    assert send(orm(control_id="F1")) == Outcome.ACCEPTED
    assert list(InboundMessage.objects.order_by("pk").values_list("outcome", flat=True)) == [
        "AE",
        "AA",
    ]
    step = ScheduledProcedureStep.objects.get()
    assert (step.procedure.order.accession_number, step.sps_id) == ("ACC1", "SPS1")


@db
def test_a_failed_message_can_be_corrected_and_reprocessed() -> None:
    reply = message_receive(orm(control_id="F1", obr={18: ""}).encode(), peer="test")
    assert reply.outcome == Outcome.ERROR
    fixed = message_reprocess(reply.message_id, corrected_raw=orm(control_id="F1").encode())
    assert fixed.outcome == Outcome.ACCEPTED
    assert fixed.message_id == reply.message_id
    stored = InboundMessage.objects.get()
    assert stored.original_raw is not None and b"ACC1" not in bytes(stored.original_raw)
    assert stored.error == ""
    assert stored.reprocessed_at is not None
    assert Order.objects.filter(accession_number="ACC1").exists()


@db
def test_reprocessing_as_received_applies_after_the_cause_is_fixed() -> None:
    reply = message_receive(orm(control_id="F1", orc={1: "XO", 5: "SC"}).encode(), peer="test")
    assert reply.outcome == Outcome.ERROR  # unknown order
    send(orm(control_id="N1"))
    assert message_reprocess(reply.message_id).outcome == Outcome.ACCEPTED
    stored = InboundMessage.objects.get(pk=reply.message_id)
    assert (stored.outcome, stored.error) == ("AA", "")
    assert stored.reprocessed_at is not None
    # The XO replaced the order of N1: still one order, one step.
    assert ScheduledProcedureStep.objects.get().procedure.order.accession_number == "ACC1"


@db
def test_an_applied_message_is_not_reprocessed() -> None:
    reply = message_receive(orm().encode(), peer="test")
    with pytest.raises(DomainError):
        message_reprocess(reply.message_id)


# --- concurrency ---------------------------------------------------------------------------


def _in_threads(messages: list[bytes]) -> list[str]:
    barrier = threading.Barrier(len(messages))
    outcomes: list[str] = [""] * len(messages)

    def run(i: int) -> None:
        close_old_connections()
        try:
            barrier.wait()
            outcomes[i] = message_receive(messages[i], peer=f"t{i}").outcome
        finally:
            close_old_connections()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(messages))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_concurrent_orders_for_one_new_patient_create_one_patient() -> None:
    messages = [
        orm(control_id=f"C{i}", patient=pid("NEWP^^^HOSP"), obr={18: f"ACC{i}"}).encode()
        for i in range(6)
    ]
    assert _in_threads(messages) == [Outcome.ACCEPTED] * 6
    assert Patient.objects.filter(patient_id="NEWP").count() == 1
    assert Order.objects.count() == 6


@pytest.mark.django_db(transaction=True)
def test_concurrent_copies_of_one_message_are_applied_once() -> None:
    messages = [orm(control_id="SAME").encode()] * 4
    outcomes = _in_threads(messages)
    assert sorted(outcomes).count(Outcome.ACCEPTED) == 1
    assert sorted(outcomes).count(Outcome.DUPLICATE) == 3
    assert ScheduledProcedureStep.objects.count() == 1
    assert InboundMessage.objects.count() == 4


@db
def test_failed_messages_are_listed_for_the_operator() -> None:
    from hl7v2.selectors import messages_failed

    send(orm(control_id="OK1"))
    send(orm(control_id="BAD1", obr={18: ""}))
    send(orm(control_id="BAD2").replace("ORM^O01", "ORU^R01"))
    failed = list(messages_failed())
    assert [(m.control_id, m.outcome) for m in failed] == [
        ("BAD2", Outcome.REJECTED),
        ("BAD1", Outcome.ERROR),
    ]
    assert "OBR-18" in failed[1].error


@db
def test_xo_leaves_a_started_step_started() -> None:
    send(orm(control_id="N1"))
    step = ScheduledProcedureStep.objects.get()
    ScheduledProcedureStep.objects.filter(pk=step.pk).update(status=SPSStatus.STARTED)
    assert send(orm(control_id="X1", orc={1: "XO", 5: "SC"}, obr={24: "MR"})) == Outcome.ACCEPTED
    step.refresh_from_db()
    assert (step.status, step.modality) == (SPSStatus.STARTED, "MR")


@db
@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4"])
def test_an_orm_of_each_supported_version_is_applied(version: str) -> None:
    assert send(orm(version=version)) == Outcome.ACCEPTED
    assert InboundMessage.objects.get().version == version
    step = ScheduledProcedureStep.objects.get()
    assert (step.procedure.order.accession_number, step.sps_id, step.modality) == (
        "ACC1",
        "SPS1",
        "CT",
    )


@db
@pytest.mark.parametrize("version", ["2.5", "2.5.1"])
def test_an_omi_and_an_omg_of_each_supported_version_are_applied(version: str) -> None:
    assert send(omi(version=version)) == Outcome.ACCEPTED
    omg = orm(control_id="G1", obr={18: "ACCG"}).replace("ORM^O01", "OMG^O19^OMG_O19")
    assert send(omg.replace("|2.3.1", f"|{version}")) == Outcome.ACCEPTED
    assert Order.objects.filter(accession_number="ACCG").exists()


@db
def test_segments_ending_in_newlines_are_accepted() -> None:
    assert send(orm().replace("\r", "\r\n")) == Outcome.ACCEPTED
    step = ScheduledProcedureStep.objects.get()
    # No newline left in what was read from the segments.
    assert (step.procedure.order.accession_number, step.modality) == ("ACC1", "CT")
    assert step.procedure.order.patient.patient_id == "PAT1"


@db
def test_the_start_is_stored_as_an_instant_and_matched_in_local_time(settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    send(orm(orc={7: "^^^202611262330+0000^^R"}))
    step = ScheduledProcedureStep.objects.get()
    assert step.start is not None
    assert step.start.isoformat() == "2026-11-26T23:30:00+00:00"
    assert (str(step.start_date), str(step.start_time)) == ("2026-11-27", "00:30:00")


@db
def test_an_oversized_message_without_readable_msh_is_rejected() -> None:
    from hl7v2.intake import message_oversized

    reply = message_oversized(b"garbage", 5_000_000, 1_048_576, peer="test")
    assert reply.outcome == Outcome.REJECTED
    assert b"MSA|AR|" in reply.ack
