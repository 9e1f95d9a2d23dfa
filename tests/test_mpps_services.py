"""MPPS services: state machine, linking to the worklist, the RIS outbox, races."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connections
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from core import events
from core.dicom import status
from mpps import selectors, services
from mpps.models import OutboundMessage, PerformedProcedureStep
from mpps.status import MPPSStatus, OrderStatus
from tests.fixtures_mpps import make_step, n_create_dataset, n_set_dataset, step_item
from worklist.models import ScheduledProcedureStep
from worklist.services import step_set_status
from worklist.status import OFFERED_BY_DEFAULT, SPSStatus


def _create(ds: Dataset, uid: str | None = None) -> services.Outcome:
    return services.mpps_create(
        sop_instance_uid=uid or generate_uid(), ds=ds, calling_ae_title="CT1"
    )


def _status(step: ScheduledProcedureStep) -> str:
    step.refresh_from_db()
    return step.status


def _offered_by_default() -> list[int]:
    return list(
        ScheduledProcedureStep.objects.filter(status__in=OFFERED_BY_DEFAULT).values_list(
            "pk", flat=True
        )
    )


@pytest.mark.django_db
def test_it_links_by_study_instance_uid_and_sps_id_and_starts_the_step() -> None:
    step = make_step()
    other = make_step()
    outcome = _create(n_create_dataset(step))
    assert outcome.refusal is None and outcome.mpps is not None
    assert list(outcome.mpps.steps.all()) == [step]
    assert _status(step) == SPSStatus.STARTED
    assert _status(other) == SPSStatus.SCHEDULED


@pytest.mark.django_db
def test_it_takes_the_step_out_of_the_default_worklist_answer_after_in_progress() -> None:
    step = make_step()
    assert step.pk in _offered_by_default()
    _create(n_create_dataset(step))
    assert step.pk not in _offered_by_default()


@pytest.mark.django_db
def test_it_falls_back_to_accession_number_and_requested_procedure_id() -> None:
    step = make_step()
    item = step_item(step, StudyInstanceUID=generate_uid())  # the modality made its own study
    outcome = _create(n_create_dataset(items=[item]))
    assert outcome.mpps is not None
    assert list(outcome.mpps.steps.all()) == [step]


@pytest.mark.django_db
def test_it_stores_the_whole_dataset_and_the_fields_it_uses() -> None:
    step = make_step()
    ds = n_create_dataset(step)
    outcome = _create(ds, uid="1.2.3.4.5")
    mpps = PerformedProcedureStep.objects.get(sop_instance_uid="1.2.3.4.5")
    assert outcome.mpps == mpps
    assert mpps.status == MPPSStatus.IN_PROGRESS
    assert mpps.pps_id == ds.PerformedProcedureStepID
    assert mpps.station_ae_title == "CT1"
    assert mpps.calling_ae_title == "CT1"
    assert mpps.dataset["00400252"]["Value"] == ["IN PROGRESS"]
    assert mpps.scheduled_references.get().sps_id == step.sps_id


@pytest.mark.django_db
def test_it_completes_the_step_and_stores_the_performed_series_and_instances() -> None:
    step = make_step()
    uid = generate_uid()
    _create(n_create_dataset(step), uid)
    outcome = services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset(series=2))
    assert outcome.refusal is None and outcome.mpps is not None
    mpps = outcome.mpps
    assert mpps.status == MPPSStatus.COMPLETED
    assert mpps.ended_at is not None
    assert mpps.series.count() == 2
    assert sum(s.instances.count() for s in mpps.series.all()) == 4
    assert mpps.dataset["00400252"]["Value"] == ["COMPLETED"]
    assert _status(step) == SPSStatus.COMPLETED
    found = selectors.performed_series_for_study(step.procedure.study_instance_uid)
    assert {s.pk for s in found} == {s.pk for s in mpps.series.all()}


@pytest.mark.django_db
def test_it_discontinues_the_step_when_the_mpps_is_discontinued() -> None:
    step = make_step()
    uid = generate_uid()
    _create(n_create_dataset(step), uid)
    services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset("DISCONTINUED", series=0))
    assert _status(step) == SPSStatus.DISCONTINUED


@pytest.mark.django_db
def test_it_applies_an_interim_n_set_and_stays_in_progress() -> None:
    step = make_step()
    uid = generate_uid()
    _create(n_create_dataset(step), uid)
    modification = Dataset()
    modification.PerformedProcedureStepDescription = "CT HEAD AND NECK"
    outcome = services.mpps_set(sop_instance_uid=uid, modification=modification)
    assert outcome.mpps is not None
    assert outcome.mpps.description == "CT HEAD AND NECK"
    assert outcome.mpps.status == MPPSStatus.IN_PROGRESS
    assert outcome.mpps.version == 2
    assert _status(step) == SPSStatus.STARTED


@pytest.mark.django_db
def test_it_refuses_any_n_set_after_completion_with_error_a710() -> None:
    step = make_step()
    uid = generate_uid()
    _create(n_create_dataset(step), uid)
    services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset())
    outcome = services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset("DISCONTINUED"))
    assert outcome.refusal is not None
    assert outcome.refusal.status == status.PROCESSING_FAILURE
    assert outcome.refusal.error_id == status.MPPS_NO_LONGER_UPDATABLE
    assert _status(step) == SPSStatus.COMPLETED


@pytest.mark.django_db
def test_it_refuses_a_duplicate_sop_instance_uid_with_0x0111() -> None:
    step = make_step()
    _create(n_create_dataset(step), "1.2.3.9")
    outcome = _create(n_create_dataset(step), "1.2.3.9")
    assert outcome.refusal is not None
    assert outcome.refusal.status == status.DUPLICATE_SOP_INSTANCE
    assert PerformedProcedureStep.objects.count() == 1


@pytest.mark.django_db
def test_it_refuses_an_n_set_on_an_unknown_instance_with_0x0112() -> None:
    outcome = services.mpps_set(sop_instance_uid="1.2.3.404", modification=n_set_dataset())
    assert outcome.refusal is not None
    assert outcome.refusal.status == status.NO_SUCH_SOP_INSTANCE


@pytest.mark.django_db
def test_it_stores_nothing_for_a_refused_n_create() -> None:
    ds = n_create_dataset(make_step())
    ds.PerformedProcedureStepStatus = "COMPLETED"
    outcome = _create(ds)
    assert outcome.refusal is not None
    assert PerformedProcedureStep.objects.count() == 0


@pytest.mark.django_db
def test_it_moves_every_step_of_a_grouped_mpps() -> None:
    first = make_step(sps_id="SPS1")
    second = make_step(sps_id="SPS2")
    uid = generate_uid()
    outcome = _create(n_create_dataset(first, second), uid)
    assert outcome.mpps is not None
    assert set(outcome.mpps.steps.all()) == {first, second}
    assert (_status(first), _status(second)) == (SPSStatus.STARTED, SPSStatus.STARTED)
    services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset())
    assert (_status(first), _status(second)) == (SPSStatus.COMPLETED, SPSStatus.COMPLETED)


@pytest.mark.django_db
def test_it_completes_an_appended_step_only_when_its_last_mpps_ends() -> None:
    step = make_step()
    one, two = generate_uid(), generate_uid()
    _create(n_create_dataset(step), one)
    _create(n_create_dataset(step), two)
    assert step.performed_steps.count() == 2
    services.mpps_set(sop_instance_uid=one, modification=n_set_dataset())
    assert _status(step) == SPSStatus.STARTED  # the second is still going on
    services.mpps_set(sop_instance_uid=two, modification=n_set_dataset("DISCONTINUED"))
    assert _status(step) == SPSStatus.COMPLETED  # one of them completed it


@pytest.mark.django_db
def test_it_keeps_an_unscheduled_mpps_and_links_it_later() -> None:
    step = make_step()
    uid = generate_uid()
    outcome = _create(n_create_dataset(None), uid)
    assert outcome.mpps is not None
    assert list(selectors.mpps_unscheduled()) == [outcome.mpps]
    services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset())
    assert _status(step) == SPSStatus.SCHEDULED

    assert services.mpps_link(mpps=outcome.mpps, steps=[step]) == 1
    assert list(selectors.mpps_unscheduled()) == []
    assert _status(step) == SPSStatus.COMPLETED
    assert services.mpps_link(mpps=outcome.mpps, steps=[step]) == 0


@pytest.mark.django_db
def test_it_leaves_a_canceled_step_canceled() -> None:
    step = make_step()
    step_status = step_set_status(step=step, new_status=SPSStatus.CANCELED)
    assert step_status
    _create(n_create_dataset(step))
    assert _status(step) == SPSStatus.CANCELED


@pytest.mark.django_db
def test_it_publishes_mpps_changed_after_commit(django_capture_on_commit_callbacks: Any) -> None:
    seen: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        seen.append(kwargs)

    events.mpps_changed.connect(receiver)
    try:
        step = make_step()
        uid = generate_uid()
        with django_capture_on_commit_callbacks(execute=True):
            outcome = _create(n_create_dataset(step), uid)
        with django_capture_on_commit_callbacks(execute=True):
            services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset())
    finally:
        events.mpps_changed.disconnect(receiver)
    assert outcome.mpps is not None
    assert [(e["mpps_id"], e["status"]) for e in seen] == [
        (outcome.mpps.pk, "IN PROGRESS"),
        (outcome.mpps.pk, "COMPLETED"),
    ]


# --- the RIS outbox --------------------------------------------------------------------


def _queued(step: ScheduledProcedureStep) -> list[tuple[int, str]]:
    return list(
        OutboundMessage.objects.filter(order=step.procedure.order)
        .order_by("sequence")
        .values_list("sequence", "order_status")
    )


@pytest.mark.django_db
def test_it_queues_nothing_for_the_ris_when_no_ris_is_configured(settings: Any) -> None:
    settings.RIS_HL7_HOST = ""
    step = make_step()
    _create(n_create_dataset(step))
    assert _queued(step) == []


@pytest.mark.django_db
def test_it_queues_ip_then_cm_for_the_order(settings: Any) -> None:
    settings.RIS_HL7_HOST = "127.0.0.1"
    step = make_step()
    uid = generate_uid()
    _create(n_create_dataset(step), uid)
    assert _queued(step) == [(1, OrderStatus.IN_PROCESS)]
    services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset())
    assert _queued(step) == [(1, OrderStatus.IN_PROCESS), (2, OrderStatus.COMPLETED)]


@pytest.mark.django_db
def test_it_queues_dc_when_the_only_mpps_is_discontinued(settings: Any) -> None:
    settings.RIS_HL7_HOST = "127.0.0.1"
    step = make_step()
    uid = generate_uid()
    _create(n_create_dataset(step), uid)
    services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset("DISCONTINUED"))
    assert _queued(step) == [(1, OrderStatus.IN_PROCESS), (2, OrderStatus.DISCONTINUED)]


@pytest.mark.django_db
def test_it_queues_ip_before_cm_for_an_mpps_linked_after_it_ended(settings: Any) -> None:
    settings.RIS_HL7_HOST = "127.0.0.1"
    step = make_step()
    uid = generate_uid()
    outcome = _create(n_create_dataset(None), uid)
    services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset())
    assert outcome.mpps is not None
    services.mpps_link(mpps=outcome.mpps, steps=[step])
    assert _queued(step) == [(1, OrderStatus.IN_PROCESS), (2, OrderStatus.COMPLETED)]


@pytest.mark.django_db
def test_it_sends_one_ip_for_an_order_with_two_mpps(settings: Any) -> None:
    settings.RIS_HL7_HOST = "127.0.0.1"
    step = make_step()
    one, two = generate_uid(), generate_uid()
    _create(n_create_dataset(step), one)
    _create(n_create_dataset(step), two)
    services.mpps_set(sop_instance_uid=one, modification=n_set_dataset())
    assert _queued(step) == [(1, OrderStatus.IN_PROCESS)]
    services.mpps_set(sop_instance_uid=two, modification=n_set_dataset())
    assert _queued(step) == [(1, OrderStatus.IN_PROCESS), (2, OrderStatus.COMPLETED)]


# --- races -----------------------------------------------------------------------------


def _in_threads(*calls: Any) -> list[Any]:
    """Run the calls at the same moment, each in its own thread and database connection."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = calls[index]()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_final_n_sets_let_exactly_one_win() -> None:
    for _ in range(3):
        step = make_step()
        uid = generate_uid()
        _create(n_create_dataset(step), uid)
        results = _in_threads(
            lambda uid=uid: services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset()),
            lambda uid=uid: services.mpps_set(
                sop_instance_uid=uid, modification=n_set_dataset("DISCONTINUED")
            ),
        )
        winners = [r for r in results if r.refusal is None]
        losers = [r for r in results if r.refusal is not None]
        assert len(winners) == 1 and len(losers) == 1
        assert losers[0].refusal.status == status.PROCESSING_FAILURE
        assert losers[0].refusal.error_id == status.MPPS_NO_LONGER_UPDATABLE
        mpps = PerformedProcedureStep.objects.get(sop_instance_uid=uid)
        assert mpps.status == winners[0].mpps.status
        expected = {"COMPLETED": SPSStatus.COMPLETED, "DISCONTINUED": SPSStatus.DISCONTINUED}
        assert _status(step) == expected[mpps.status]


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_n_creates_of_one_instance_let_exactly_one_in() -> None:
    step = make_step()
    uid = generate_uid()
    results = _in_threads(
        lambda: _create(n_create_dataset(step), uid), lambda: _create(n_create_dataset(step), uid)
    )
    refusals = [r.refusal for r in results if r.refusal is not None]
    assert len(refusals) == 1
    assert refusals[0].status == status.DUPLICATE_SOP_INSTANCE
    assert PerformedProcedureStep.objects.filter(sop_instance_uid=uid).count() == 1


@pytest.mark.django_db
def test_a_canceled_order_that_was_performed_anyway_is_reported_completed(settings: Any) -> None:
    settings.RIS_HL7_HOST = "127.0.0.1"
    step = make_step()
    step_set_status(step=step, new_status=SPSStatus.CANCELED)
    uid = generate_uid()
    _create(n_create_dataset(step), uid)
    services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset())
    assert _status(step) == SPSStatus.CANCELED
    assert _queued(step) == [(1, OrderStatus.IN_PROCESS), (2, OrderStatus.COMPLETED)]


@pytest.mark.django_db
def test_an_order_with_a_step_still_to_do_stays_in_process(settings: Any) -> None:
    settings.RIS_HL7_HOST = "127.0.0.1"
    first = make_step(sps_id="SPS1")
    make_step(sps_id="SPS2", accession=first.procedure.order.accession_number)
    uid = generate_uid()
    _create(n_create_dataset(first), uid)
    services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset())
    assert _queued(first) == [(1, OrderStatus.IN_PROCESS)]


@pytest.mark.django_db
def test_it_refuses_an_instance_uid_that_is_not_a_uid_with_0x0117() -> None:
    outcome = _create(n_create_dataset(make_step()), uid="1." + "2" * 70)
    assert outcome.refusal is not None
    assert outcome.refusal.status == status.INVALID_OBJECT_INSTANCE


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_interim_n_sets_are_both_applied() -> None:
    step = make_step()
    uid = generate_uid()
    _create(n_create_dataset(step), uid)
    first, second = Dataset(), Dataset()
    first.PerformedProcedureStepDescription = "CT HEAD AND NECK"
    second.CommentsOnThePerformedProcedureStep = "patient moved"
    results = _in_threads(
        lambda: services.mpps_set(sop_instance_uid=uid, modification=first),
        lambda: services.mpps_set(sop_instance_uid=uid, modification=second),
    )
    assert [r.refusal for r in results] == [None, None]
    mpps = PerformedProcedureStep.objects.get(sop_instance_uid=uid)
    assert mpps.version == 3
    assert mpps.dataset["00400254"]["Value"] == ["CT HEAD AND NECK"]
    assert mpps.dataset["00400280"]["Value"] == ["patient moved"]
