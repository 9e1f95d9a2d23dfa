"""When a study is complete: the final MPPS and the instances it lists, the completeness
timeout, the quiet period without MPPS, late instances."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from mpps import services as mpps_services
from routing import jobs, services
from routing.models import CompletenessWait, RoutingJob, StoredInstance
from tests.fixtures_mpps import make_step, n_create_dataset
from tests.fixtures_routing import (
    CT_IMAGE,
    destination_for,
    rule_to,
    spool_files,
    wait_for,
    write_study,
)

pytestmark = pytest.mark.django_db  # the peers here use no database: no flush needed


def _performed(uids: list[str]) -> Dataset:
    series = Dataset()
    series.SeriesInstanceUID = generate_uid()
    series.SeriesDescription = "AXIAL"
    series.ProtocolName = "HEAD"
    series.RetrieveAETitle = ""
    series.PerformingPhysicianName = ""
    series.OperatorsName = ""
    images = []
    for uid in uids:
        ref = Dataset()
        ref.ReferencedSOPClassUID = CT_IMAGE
        ref.ReferencedSOPInstanceUID = uid
        images.append(ref)
    series.ReferencedImageSequence = images
    series.ReferencedNonImageCompositeSOPInstanceSequence = []
    return series


def _mpps(study: str, uids: list[str], final: str = "COMPLETED") -> int:
    """An MPPS for a scheduled step of ``study``, created and set final (listing ``uids``)."""
    step = make_step(study_instance_uid=study)
    uid = generate_uid()
    assert (
        mpps_services.mpps_create(sop_instance_uid=uid, ds=n_create_dataset(step)).refusal is None
    )
    if final:
        modification = Dataset()
        modification.PerformedProcedureStepStatus = final
        modification.PerformedProcedureStepEndDate = "20261125"
        modification.PerformedProcedureStepEndTime = "101500"
        modification.PerformedSeriesSequence = [_performed(uids)]
        outcome = mpps_services.mpps_set(sop_instance_uid=uid, modification=modification)
        assert outcome.refusal is None
        assert outcome.mpps is not None
        return outcome.mpps.pk
    return 0


@pytest.fixture
def destination(routing_settings: Any, storage_destination: Any) -> Any:
    scp = storage_destination()
    rule_to(destination_for(scp))
    return scp


def _files(tmp_path: Path, study: str, count: int, name: str = "scan") -> list[Path]:
    return write_study(tmp_path / name, count, study_uid=study)


def test_a_completed_mpps_routes_the_study_once_every_listed_instance_is_there(
    destination: Any, tmp_path: Path
) -> None:
    study = generate_uid()
    files = _files(tmp_path, study, 4)
    uids = spool_files(files[:3])
    mpps_id = _mpps(study, [*uids, files[3].stem])

    services.mpps_ended(mpps_id)
    assert not RoutingJob.objects.exists()  # one listed instance is not there yet
    services.tick()
    assert not RoutingJob.objects.exists()

    spool_files(files[3:])
    services.tick()
    (job,) = RoutingJob.objects.all()
    assert job.trigger == "MPPS"
    assert job.items.count() == 4
    assert jobs.job_run(job.pk).status == "COMPLETED"
    assert destination.received() == {f.stem: 1 for f in files}


def test_the_periodic_check_finds_a_final_mpps_whose_task_was_lost(
    destination: Any, tmp_path: Path
) -> None:
    study = generate_uid()
    uids = spool_files(_files(tmp_path, study, 2))
    _mpps(study, uids)
    assert not CompletenessWait.objects.exists()
    counts = services.tick()
    assert counts["mpps"] == 1
    (job,) = RoutingJob.objects.all()
    assert job.trigger == "MPPS"


def test_instances_that_never_arrive_make_the_job_a_warning_listing_them(
    destination: Any, tmp_path: Path, routing_settings: Any
) -> None:
    routing_settings.ROUTING_COMPLETENESS_TIMEOUT = 0.3
    study = generate_uid()
    uids = spool_files(_files(tmp_path, study, 2))
    never = [generate_uid(), generate_uid()]
    services.mpps_ended(_mpps(study, [*uids, *never]))
    assert not RoutingJob.objects.exists()

    wait_for(lambda: RoutingJob.objects.exists(), timeout=10, every=services.tick)
    (job,) = RoutingJob.objects.all()
    assert job.trigger == "TIMEOUT"
    assert sorted(job.missing_uids) == sorted(never)
    assert jobs.job_run(job.pk).status == "WARNING"
    job.refresh_from_db()
    assert "2 instance(s) listed by the MPPS never arrived" in job.last_error
    assert destination.received() == {uid: 1 for uid in uids}


def test_a_discontinued_mpps_routes_what_it_lists(destination: Any, tmp_path: Path) -> None:
    study = generate_uid()
    uids = spool_files(_files(tmp_path, study, 2))
    services.mpps_ended(_mpps(study, uids, final="DISCONTINUED"))
    (job,) = RoutingJob.objects.all()
    assert job.items.count() == 2


def test_without_mpps_a_study_is_routed_after_the_quiet_period_which_each_instance_restarts(
    destination: Any, tmp_path: Path, routing_settings: Any
) -> None:
    routing_settings.ROUTING_STABLE_SECONDS = 120
    study = generate_uid()
    first, second = spool_files(_files(tmp_path, study, 2))
    t0 = timezone.now()
    StoredInstance.objects.filter(sop_instance_uid=first).update(received_at=t0)
    # The second instance arrived 100 s after the first: the wait starts again from it.
    StoredInstance.objects.filter(sop_instance_uid=second).update(
        received_at=t0 + dt.timedelta(seconds=100)
    )
    services.tick(now=t0 + dt.timedelta(seconds=130))
    assert not RoutingJob.objects.exists()
    services.tick(now=t0 + dt.timedelta(seconds=221))
    (job,) = RoutingJob.objects.all()
    assert (job.trigger, job.items.count()) == ("STABLE", 2)


def test_an_mpps_in_progress_holds_the_quiet_period_back(
    destination: Any, tmp_path: Path, routing_settings: Any
) -> None:
    routing_settings.ROUTING_STABLE_SECONDS = 0.1
    study = generate_uid()
    spool_files(_files(tmp_path, study, 2))
    _mpps(study, [], final="")
    time.sleep(0.3)
    services.tick()
    assert not RoutingJob.objects.exists()


def test_instances_after_the_mpps_go_in_a_late_job_of_their_own(
    destination: Any, tmp_path: Path, routing_settings: Any
) -> None:
    routing_settings.ROUTING_STABLE_SECONDS = 0.2
    study = generate_uid()
    files = _files(tmp_path, study, 3)
    uids = spool_files(files[:2])
    services.mpps_ended(_mpps(study, uids))
    (first,) = RoutingJob.objects.all()
    assert jobs.job_run(first.pk).status == "COMPLETED"

    (late,) = spool_files(files[2:])
    wait_for(lambda: RoutingJob.objects.count() == 2, timeout=10, every=services.tick)
    second = RoutingJob.objects.exclude(pk=first.pk).get()
    assert list(second.items.values_list("sop_instance_uid", flat=True)) == [late]
    assert jobs.job_run(second.pk).status == "COMPLETED"
    assert destination.received() == {f.stem: 1 for f in files}


def test_instances_that_arrive_while_a_job_is_open_join_it(
    destination: Any, tmp_path: Path
) -> None:
    study = generate_uid()
    files = _files(tmp_path, study, 3)
    spool_files(files[:2])
    (job_id,) = services.route_study(study)
    spool_files(files[2:])
    assert services.route_study(study) == [job_id]
    assert RoutingJob.objects.get().items.count() == 3
