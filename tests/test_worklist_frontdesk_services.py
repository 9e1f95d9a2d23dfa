"""The front-desk / MWL-RS write services: order entry, status changes, reschedule,
demographic corrections, removal; each with its audit entry and events."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from audit.models import AuditEntry
from core import events
from tests.fixtures_dicom import local, schedule
from worklist import services
from worklist.models import Order, Patient, ScheduledProcedureStep

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def clerk() -> User:
    return User.objects.create_user("clerk", password="a-long-password-1")


@pytest.fixture
def received() -> Any:
    """Every event published (after commit), as (signal name, kwargs)."""
    seen: list[tuple[str, dict[str, Any]]] = []
    names = {"patient_changed", "order_changed", "step_status_changed"}
    receivers = []
    for name in names:
        signal = getattr(events, name)

        def receiver(sender: object = None, _name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal", None)
            seen.append((_name, kwargs))

        signal.connect(receiver, weak=False)
        receivers.append((signal, receiver))
    yield seen
    for signal, receiver in receivers:
        signal.disconnect(receiver)


def enter(actor: Any = None, **step: Any) -> Order:
    return services.order_enter(
        actor=actor,
        patient={"patient_id": "W1", "name": "WALK^IN", "birth_date": date(1980, 2, 3), "sex": "F"},
        order={"priority": "ROUTINE"},
        procedures=[
            {
                "code_value": "CTHEAD",
                "code_meaning": "CT head",
                "code_scheme": "LOCAL",
                "description": "CT head",
                "steps": [
                    {
                        "modality": "CT",
                        "start": local(2026, 12, 1, 10, 30),
                        "station_ae_title": "CT1",
                        **step,
                    }
                ],
            }
        ],
    )


def test_order_entry_generates_every_missing_identifier(clerk: User) -> None:
    order = enter(clerk)
    assert order.accession_number.startswith("A") and len(order.accession_number) <= 16
    procedure = order.procedures.get()
    assert procedure.requested_procedure_id == "RP1"
    assert procedure.study_instance_uid.startswith(settings.BROKER_UID_ROOT)
    step = procedure.steps.get()
    assert step.sps_id == "SPS1"
    assert step.status == "SCHEDULED"
    assert step.start_date == date(2026, 12, 1)
    assert list(step.station_ae_titles.values_list("ae_title", flat=True)) == ["CT1"]


def test_order_entry_keeps_the_given_identifiers() -> None:
    order = services.order_enter(
        actor=None,
        patient={"patient_id": "W2", "name": "GIVEN^IDS"},
        order={"accession_number": "ACC42"},
        procedures=[
            {
                "requested_procedure_id": "RPX",
                "study_instance_uid": "1.2.3.4.5",
                "steps": [{"sps_id": "SPSX", "modality": "MR", "start": local(2026, 12, 1, 8)}],
            }
        ],
    )
    assert order.accession_number == "ACC42"
    step = ScheduledProcedureStep.objects.get(sps_id="SPSX")
    assert step.procedure.study_instance_uid == "1.2.3.4.5"
    assert step.procedure.requested_procedure_id == "RPX"


def test_order_entry_writes_one_audit_entry_per_created_object(clerk: User) -> None:
    order = enter(clerk)
    entries = AuditEntry.objects.order_by("id")
    assert [e.object_type for e in entries] == [
        "worklist.patient",
        "worklist.order",
        "worklist.requestedprocedure",
        "worklist.scheduledprocedurestep",
    ]
    assert all(e.actor == clerk and e.actor_name == "clerk" for e in entries)
    assert all(e.before is None and e.action == "order_enter" for e in entries)
    assert dict(entries[1].after or {})["accession_number"] == order.accession_number
    assert dict(entries[3].after or {})["station_ae_titles"] == ["CT1"]


def test_order_entry_publishes_the_events_after_commit(received: Any) -> None:
    order = enter()
    step = ScheduledProcedureStep.objects.get(procedure__order=order)
    assert ("order_changed", {"order_id": order.pk}) in received
    assert (
        "step_status_changed",
        {"step_id": step.pk, "old_status": "", "new_status": "SCHEDULED"},
    ) in received


def test_order_entry_of_a_second_step_adds_it_with_the_next_id() -> None:
    order = enter()
    procedure = order.procedures.get()
    services.order_enter(
        actor=None,
        patient={"patient_id": "W1"},
        order={"accession_number": order.accession_number},
        procedures=[
            {
                "study_instance_uid": procedure.study_instance_uid,
                "steps": [{"modality": "CT", "start": local(2026, 12, 1, 11)}],
            }
        ],
    )
    assert sorted(procedure.steps.values_list("sps_id", flat=True)) == ["SPS1", "SPS2"]


def test_order_entry_refuses_a_missing_patient_id() -> None:
    with pytest.raises(services.DomainError, match="Patient ID"):
        services.order_enter(actor=None, patient={"name": "NO^ID"}, order={}, procedures=[])
    assert not Patient.objects.exists()


def test_order_entry_refuses_a_naive_start_and_leaves_nothing() -> None:
    from datetime import datetime

    with pytest.raises(services.DomainError, match="time zone"):
        enter(start=datetime(2026, 12, 1, 10, 0))
    assert not Order.objects.exists()
    assert not AuditEntry.objects.exists()


def test_order_entry_refuses_an_unknown_field() -> None:
    with pytest.raises(services.DomainError, match="unknown step field"):
        enter(colour="blue")


def test_marking_arrived_changes_the_status_with_its_event_and_audit(
    clerk: User, received: Any
) -> None:
    step = schedule()
    received.clear()
    services.step_mark_arrived(actor=clerk, step_id=step.pk)
    step.refresh_from_db()
    assert step.status == "ARRIVED"
    assert received == [
        (
            "step_status_changed",
            {"step_id": step.pk, "old_status": "SCHEDULED", "new_status": "ARRIVED"},
        )
    ]
    entry = AuditEntry.objects.get(action="step_change_status")
    assert (entry.before, entry.after, entry.actor) == (
        {"status": "SCHEDULED"},
        {"status": "ARRIVED"},
        clerk,
    )


@pytest.mark.parametrize(
    ("service", "status"),
    [("step_cancel", "CANCELED"), ("step_discontinue", "DISCONTINUED")],
)
def test_cancel_and_discontinue_end_the_step(service: str, status: str) -> None:
    step = schedule()
    getattr(services, service)(actor=None, step_id=step.pk)
    step.refresh_from_db()
    assert step.status == status


def test_a_final_step_refuses_any_other_status() -> None:
    step = schedule(status="COMPLETED")
    with pytest.raises(services.DomainError, match="completed"):
        services.step_change_status(actor=None, step_id=step.pk, new_status="SCHEDULED")
    step.refresh_from_db()
    assert step.status == "COMPLETED"
    assert not AuditEntry.objects.exists()


def test_an_unknown_status_is_refused() -> None:
    step = schedule()
    with pytest.raises(services.DomainError, match="not a Scheduled Procedure Step Status"):
        services.step_change_status(actor=None, step_id=step.pk, new_status="LOST")


def test_the_same_status_again_changes_nothing() -> None:
    step = schedule()
    services.step_change_status(actor=None, step_id=step.pk, new_status="SCHEDULED")
    assert not AuditEntry.objects.exists()


def test_reschedule_moves_the_start_and_its_local_date_and_time(clerk: User, received: Any) -> None:
    step = schedule(start=local(2026, 12, 1, 9, 0))
    received.clear()
    services.step_reschedule(
        actor=clerk, step_id=step.pk, start=local(2026, 12, 2, 14, 15), station_ae_title="CT2"
    )
    step.refresh_from_db()
    assert step.start == local(2026, 12, 2, 14, 15)
    assert step.start_time is not None
    assert (step.start_date, step.start_time.hour, step.start_time.minute) == (
        date(2026, 12, 2),
        14,
        15,
    )
    assert list(step.station_ae_titles.values_list("ae_title", flat=True)) == ["CT2"]
    entry = AuditEntry.objects.get(action="step_reschedule")
    assert entry.before is not None and entry.after is not None
    assert entry.before["station_ae_titles"] == ["CT1"]
    assert entry.after["station_ae_titles"] == ["CT2"]
    assert set(entry.after) == {"start", "station_ae_titles"}
    assert ("order_changed", {"order_id": step.procedure.order_id}) in received


def test_reschedule_without_a_station_keeps_the_stations() -> None:
    step = schedule(stations=("CT1", "CT9"))
    services.step_reschedule(actor=None, step_id=step.pk, start=local(2026, 12, 3, 8))
    assert sorted(step.station_ae_titles.values_list("ae_title", flat=True)) == ["CT1", "CT9"]


def test_a_canceled_step_is_not_rescheduled() -> None:
    step = schedule(status="CANCELED")
    with pytest.raises(services.DomainError):
        services.step_reschedule(actor=None, step_id=step.pk, start=local(2026, 12, 3, 8))


def test_patient_correct_changes_demographics_with_before_and_after(
    clerk: User, received: Any
) -> None:
    step = schedule(patient_name="DOE^JHON")
    patient = step.procedure.order.patient
    received.clear()
    services.patient_correct(
        actor=clerk, patient_pk=patient.pk, fields={"name": "DOE^JOHN", "sex": "M"}
    )
    patient.refresh_from_db()
    assert (patient.name, patient.name_key, patient.sex) == ("DOE^JOHN", "DOE^JOHN", "M")
    entry = AuditEntry.objects.get(action="patient_correct")
    assert entry.before == {"name": "DOE^JHON", "sex": ""}
    assert entry.after == {"name": "DOE^JOHN", "sex": "M"}
    assert received == [("patient_changed", {"patient_id": patient.pk})]


def test_patient_correct_refuses_the_identifier() -> None:
    patient = schedule().procedure.order.patient
    with pytest.raises(services.DomainError, match="identifier"):
        services.patient_correct(actor=None, patient_pk=patient.pk, fields={"patient_id": "X"})


def test_step_remove_takes_the_step_out_of_the_worklist_and_keeps_the_row() -> None:
    step = schedule()
    services.step_remove(actor=None, step_id=step.pk)
    step.refresh_from_db()
    assert step.status == "CANCELED"
    assert AuditEntry.objects.get(action="step_remove").after == {"status": "CANCELED"}
    services.step_remove(actor=None, step_id=step.pk)  # again: nothing more to do
    assert AuditEntry.objects.filter(action="step_remove").count() == 1


def test_a_missing_step_is_a_domain_error() -> None:
    with pytest.raises(services.DomainError, match="does not exist"):
        services.step_cancel(actor=None, step_id=987654)
