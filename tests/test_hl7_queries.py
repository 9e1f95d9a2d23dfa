"""Cost and races of the intake fast path: queries per new order, concurrent new orders."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext

from core import events
from hl7v2.intake import message_receive
from hl7v2.models import InboundMessage
from hl7v2.status import Outcome
from tests.hl7_messages import orm, pid
from worklist.models import Device, Order, Patient, RequestedProcedure, ScheduledProcedureStep

# BEGIN, message row, patient (SELECT + INSERT), order, procedure, device registry, step,
# station AE title, COMMIT. It was 17 with a duplicate check, get_or_create savepoints
# and a Study Instance UID check of its own.
NEW_ORDER_MAX_QUERIES = 10


@pytest.mark.django_db
def test_a_new_order_for_a_new_patient_costs_at_most_ten_queries() -> None:
    message_receive(orm(control_id="W1", patient=pid("WARM"), obr={18: "W1"}).encode(), peer="t")
    with CaptureQueriesContext(connection) as queries:
        reply = message_receive(orm(control_id="Q1", obr={18: "Q1"}).encode(), peer="t")
    assert reply.outcome == Outcome.ACCEPTED
    assert len(queries.captured_queries) <= NEW_ORDER_MAX_QUERIES, [
        q["sql"][:80] for q in queries.captured_queries
    ]
    step = ScheduledProcedureStep.objects.select_related("procedure__order__patient").get(
        procedure__order__accession_number="Q1"
    )
    assert step.procedure.order.patient.patient_id == "PAT1"
    assert step.procedure.study_instance_uid


@pytest.mark.django_db
def test_a_new_order_for_a_known_patient_updates_it_and_costs_no_more() -> None:
    message_receive(orm(control_id="K1", obr={18: "K1"}).encode(), peer="t")
    with CaptureQueriesContext(connection) as queries:
        reply = message_receive(
            orm(control_id="K2", patient=pid(name="DOE^JANE"), obr={18: "K2"}).encode(),
            peer="t",
        )
    assert reply.outcome == Outcome.ACCEPTED
    assert len(queries.captured_queries) <= NEW_ORDER_MAX_QUERIES
    patient = Patient.objects.get()
    assert patient.name == "DOE^JANE"
    assert Order.objects.filter(patient=patient).count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_message_event_fires_after_commit_once_applied() -> None:
    seen: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        seen.append(kwargs)

    events.hl7_message_processed.connect(receiver)
    try:
        reply = message_receive(orm(control_id="E1").encode(), peer="t")
        message_receive(orm(control_id="E1").encode(), peer="t")
    finally:
        events.hl7_message_processed.disconnect(receiver)
    assert seen[0] == {
        "signal": events.hl7_message_processed,
        "sender": None,
        "message_id": reply.message_id,
        "outcome": Outcome.ACCEPTED,
    }
    assert [s["outcome"] for s in seen] == [Outcome.ACCEPTED, Outcome.DUPLICATE]


@pytest.mark.django_db
def test_a_study_uid_of_another_procedure_is_refused_for_a_new_order() -> None:
    message_receive(orm(control_id="U1", obr={18: "U1"}, zds=False).encode(), peer="t")
    uid = RequestedProcedure.objects.get().study_instance_uid
    # The ZDS goes after the OBR of the new order.
    lines = orm(control_id="U2", obr={18: "U2"}, zds=False).rstrip("\r").split("\r")
    lines.append(f"ZDS|{uid}^100^Application^DICOM")
    reply = message_receive(("\r".join(lines) + "\r").encode(), peer="t")
    assert reply.outcome == Outcome.ERROR
    stored = InboundMessage.objects.get(pk=reply.message_id)
    assert "already belongs to another procedure" in stored.error
    assert not Order.objects.filter(accession_number="U2").exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_new_orders_with_one_accession_number_create_one_order() -> None:
    messages = [
        orm(control_id=f"S{i}", patient=pid("SAMEP^^^HOSP"), obr={18: "SAMEACC"}).encode()
        for i in range(4)
    ]
    barrier = threading.Barrier(len(messages))
    outcomes = [""] * len(messages)

    def run(i: int) -> None:
        close_old_connections()
        try:
            barrier.wait()
            outcomes[i] = message_receive(messages[i], peer=f"t{i}").outcome
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(messages))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes == [Outcome.ACCEPTED] * 4
    assert Patient.objects.count() == 1
    assert Order.objects.count() == 1
    assert ScheduledProcedureStep.objects.count() == 1


@pytest.mark.django_db
def test_only_the_registry_query_is_reused_never_its_rows() -> None:
    Device.objects.create(ae_title="CT_A", modality="CT", station_name="CTA", location="R1")
    assert message_receive(orm(control_id="D1", obr={18: "D1"}).encode(), peer="t").outcome == (
        Outcome.ACCEPTED
    )
    first = ScheduledProcedureStep.objects.get(procedure__order__accession_number="D1")
    assert list(first.station_ae_titles.values_list("ae_title", flat=True)) == ["CT_A"]
    assert first.station_name == "CTA"
    Device.objects.create(ae_title="CT_B", modality="CT")
    Device.objects.filter(ae_title="CT_A").update(station_name="CTA2")
    message_receive(orm(control_id="D2", obr={18: "D2"}).encode(), peer="t")
    second = ScheduledProcedureStep.objects.get(procedure__order__accession_number="D2")
    titles = sorted(second.station_ae_titles.values_list("ae_title", flat=True))
    assert titles == ["CT_A", "CT_B"]
    Device.objects.filter(ae_title="CT_B").update(is_active=False)
    message_receive(orm(control_id="D3", obr={18: "D3"}).encode(), peer="t")
    third = ScheduledProcedureStep.objects.get(procedure__order__accession_number="D3")
    assert list(third.station_ae_titles.values_list("ae_title", flat=True)) == ["CT_A"]
    assert third.station_name == "CTA2"
