"""ADT: demographics (A01/A04/A05/A08/A31), merge (A40), change of identifier (A47)."""

from __future__ import annotations

import datetime as dt

import pytest

from hl7v2.intake import message_receive
from hl7v2.status import Outcome
from tests.hl7_messages import adt, orm, pid, segment
from worklist.models import Order, Patient

pytestmark = pytest.mark.django_db

_counter = iter(range(1, 10_000))


def send(text: str) -> str:
    return message_receive(text.encode(), peer="test").outcome


def control() -> str:
    return f"ADT{next(_counter)}"


@pytest.mark.parametrize("event", ["A01", "A04", "A05", "A08", "A31"])
def test_each_demographics_event_creates_or_updates_the_patient(event: str) -> None:
    patient = pid("P9^^^HOSP", "DOE^JANE", p7="19800203", p8="F", p11="Road 2^^City")
    assert send(adt(event, control_id=control(), patient=patient)) == Outcome.ACCEPTED
    stored = Patient.objects.get(patient_id="P9", issuer="HOSP")
    assert (stored.name, stored.birth_date, stored.sex, stored.address) == (
        "DOE^JANE",
        dt.date(1980, 2, 3),
        "F",
        "Road 2^^City",
    )
    renamed = pid("P9^^^HOSP", "SMITH^JANE", p7="19800203", p8="F")
    assert send(adt(event, control_id=control(), patient=renamed)) == Outcome.ACCEPTED
    stored.refresh_from_db()
    assert stored.name == "SMITH^JANE"
    assert stored.name_key == "SMITH^JANE"
    assert stored.address == "Road 2^^City"  # empty PID-11: unchanged
    assert Patient.objects.count() == 1


def test_an_update_shows_at_once_on_the_patients_orders() -> None:
    assert send(orm()) == Outcome.ACCEPTED
    send(adt("A08", control_id=control(), patient=pid(name="DOE^JOHNNY", p11='""')))
    order = Order.objects.select_related("patient").get(accession_number="ACC1")
    assert order.patient.name == "DOE^JOHNNY"


def test_a_quoted_null_clears_a_demographic() -> None:
    send(adt("A08", control_id=control(), patient=pid(p11="Road 1")))
    send(adt("A08", control_id=control(), patient=pid(p11='""')))
    assert Patient.objects.get().address == ""


def test_it_stores_allergies_weight_and_pregnancy_from_adt() -> None:
    extra = [
        segment("PV1", {2: "O", 15: "B6"}),
        "OBX|1|NM|^Body Weight||61|kg",
        "AL1|1|DA|^Iodine",
    ]
    send(adt("A01", control_id=control(), extra=extra))
    stored = Patient.objects.get()
    assert (stored.pregnancy_status, str(stored.weight_kg), stored.allergies) == (
        3,
        "61.00",
        "Iodine",
    )


def test_a40_moves_the_orders_to_the_surviving_patient() -> None:
    send(orm(control_id="O1", patient=pid("OLD1^^^HOSP")))
    send(adt("A40", control_id=control(), patient=pid("NEW1^^^HOSP"), mrg="OLD1^^^HOSP"))
    order = Order.objects.get(accession_number="ACC1")
    assert order.patient.patient_id == "NEW1"
    old = Patient.objects.get(patient_id="OLD1")
    assert old.merged_into == order.patient


def test_a_repeated_merge_is_accepted_and_changes_nothing() -> None:
    send(orm(control_id="O1", patient=pid("OLD1^^^HOSP")))
    merge = adt("A40", control_id="M1", patient=pid("NEW1^^^HOSP"), mrg="OLD1^^^HOSP")
    assert send(merge) == Outcome.ACCEPTED
    again = adt("A40", control_id="M2", patient=pid("NEW1^^^HOSP"), mrg="OLD1^^^HOSP")
    assert send(again) == Outcome.ACCEPTED
    assert Patient.objects.count() == 2
    assert Order.objects.get().patient.patient_id == "NEW1"


def test_a_self_merge_is_an_error_naming_mrg_1() -> None:
    reply = message_receive(
        adt("A40", control_id=control(), patient=pid("P1^^^HOSP"), mrg="P1^^^HOSP").encode(),
        peer="test",
    )
    assert reply.outcome == Outcome.ERROR
    assert b"|MRG^1^1|204^MRG-1 names the same patient" in reply.ack


def test_a_reverse_merge_after_a_merge_is_an_error() -> None:
    send(adt("A40", control_id=control(), patient=pid("B^^^H"), mrg="A^^^H"))
    assert (
        send(adt("A40", control_id=control(), patient=pid("A^^^H"), mrg="B^^^H")) == Outcome.ERROR
    )
    # The first merge stands: A is merged into B, B into nobody.
    merged = dict(Patient.objects.values_list("patient_id", "merged_into__patient_id"))
    assert merged == {"A": "B", "B": None}


def test_an_order_for_a_merged_patient_lands_on_the_survivor() -> None:
    send(adt("A40", control_id=control(), patient=pid("NEW1^^^HOSP"), mrg="UNKNOWN^^^HOSP"))
    send(orm(control_id="O2", patient=pid("UNKNOWN^^^HOSP")))
    assert Order.objects.get().patient.patient_id == "NEW1"


def test_a47_changes_the_patient_identifier() -> None:
    send(orm(control_id="O1", patient=pid("TEMP7^^^HOSP")))
    assert (
        send(adt("A47", control_id=control(), patient=pid("MRN7^^^HOSP"), mrg="TEMP7^^^HOSP"))
        == Outcome.ACCEPTED
    )
    assert list(Patient.objects.values_list("patient_id", flat=True)) == ["MRN7"]
    assert Order.objects.get().patient.patient_id == "MRN7"


def test_a_repeated_a47_is_accepted() -> None:
    send(adt("A01", control_id=control(), patient=pid("TEMP7^^^HOSP")))
    send(adt("A47", control_id="X1", patient=pid("MRN7^^^HOSP"), mrg="TEMP7^^^HOSP"))
    assert (
        send(adt("A47", control_id="X2", patient=pid("MRN7^^^HOSP"), mrg="TEMP7^^^HOSP"))
        == Outcome.ACCEPTED
    )
    assert Patient.objects.count() == 1


def test_a47_onto_an_identifier_in_use_is_an_error() -> None:
    send(adt("A01", control_id=control(), patient=pid("A^^^H")))
    send(adt("A01", control_id=control(), patient=pid("B^^^H")))
    assert (
        send(adt("A47", control_id=control(), patient=pid("B^^^H"), mrg="A^^^H")) == Outcome.ERROR
    )
    assert Patient.objects.count() == 2


def test_a40_without_mrg_is_an_error() -> None:
    reply = message_receive(adt("A40", control_id=control()).encode(), peer="test")
    assert reply.outcome == Outcome.ERROR
    assert b"\rERR|" in reply.ack and b"MRG" in reply.ack
    assert not Patient.objects.exists()


def test_an_adt_without_patient_id_is_an_error() -> None:
    assert send(adt("A08", control_id=control(), patient=pid(""))) == Outcome.ERROR
    assert not Patient.objects.exists()
