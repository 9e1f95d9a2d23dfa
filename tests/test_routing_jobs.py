"""Sending a routing job (``routing.jobs.job_run``) to DCMTK's storescp as destination."""

from __future__ import annotations

import datetime as dt
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from pydicom import dcmread
from pydicom.uid import JPEGBaseline8Bit, generate_uid
from pynetdicom.acse import ACSE

from routing import jobs, sender, services
from routing.models import JobItem, RoutingJob
from tests.fixtures_routing import destination_for, rule_to, spool_files, wait_for, write_study

pytestmark = pytest.mark.django_db  # the peers here use no database: no flush needed


def _study(tmp_path: Path, count: int = 4, **kwargs: Any) -> tuple[str, list[str]]:
    study = generate_uid()
    return study, spool_files(
        write_study(tmp_path / f"scan-{study[-6:]}", count, study_uid=study, **kwargs)
    )


def _job(study: str) -> RoutingJob:
    (job_id,) = services.route_study(study)
    return RoutingJob.objects.get(pk=job_id)


def test_a_job_delivers_each_instance_exactly_once(
    routing_settings: Any, storage_destination: Any, tmp_path: Path
) -> None:
    scp = storage_destination()
    rule_to(destination_for(scp))
    study, uids = _study(tmp_path, 6)
    job = _job(study)

    result = jobs.job_run(job.pk)

    assert result.status == "COMPLETED"
    assert scp.received() == {uid: 1 for uid in uids}
    job.refresh_from_db()
    assert (job.status, job.attempts, job.lease_owner) == ("COMPLETED", 1, "")
    assert set(job.items.values_list("state", flat=True)) == {"SENT"}
    # Finished: running it again sends nothing.
    assert jobs.job_run(job.pk).status == ""
    assert scp.received() == {uid: 1 for uid in uids}


def test_a_destination_that_is_down_is_retried_with_backoff_and_gets_the_study_once(
    routing_settings: Any, storage_destination: Any, tmp_path: Path
) -> None:
    scp = storage_destination(start=False)
    rule_to(destination_for(scp))
    study, uids = _study(tmp_path)
    job = _job(study)

    assert jobs.job_run(job.pk).status == "SCHEDULED"
    job.refresh_from_db()
    assert job.attempts == 1
    assert "no association" in job.last_error
    assert job.next_attempt_at is not None and job.next_attempt_at > timezone.now()
    assert jobs.job_run(job.pk).status == ""  # not due yet: nobody takes it

    scp.start()
    wait_for(lambda: jobs.job_run(job.pk).status == "COMPLETED", timeout=10)
    assert scp.received() == {uid: 1 for uid in uids}


def test_backoff_doubles_up_to_the_maximum(routing_settings: Any) -> None:
    routing_settings.ROUTING_RETRY_DELAY = 30
    routing_settings.ROUTING_RETRY_MAX_DELAY = 100
    assert [services.backoff(n) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]


def test_only_failed_instances_are_retried_and_a_refused_syntax_is_named(
    routing_settings: Any, storage_destination: Any, tmp_path: Path
) -> None:
    routing_settings.ROUTING_MAX_ATTEMPTS = 2
    routing_settings.ROUTING_RETRY_DELAY = 0.01
    # storescp accepts uncompressed syntaxes only; pydicom here cannot decode the JPEG.
    scp = storage_destination()
    rule_to(destination_for(scp))
    study = generate_uid()
    plain = spool_files(write_study(tmp_path / "plain", 3, study_uid=study))
    (jpeg,) = spool_files(
        write_study(tmp_path / "jpeg", 1, study_uid=study, transfer_syntax=JPEGBaseline8Bit)
    )
    job = _job(study)

    assert jobs.job_run(job.pk).status == "SCHEDULED"
    wait_for(lambda: jobs.job_run(job.pk).status == "FAILED", timeout=10)

    job.refresh_from_db()
    assert job.attempts == 2
    assert scp.received() == {uid: 1 for uid in plain}  # sent once, never again
    failed = JobItem.objects.get(job=job, state="FAILED")
    assert failed.sop_instance_uid == jpeg
    assert "JPEG Baseline" in failed.error and "Explicit VR Little Endian" in failed.error
    assert "JPEG Baseline" in job.last_error


def test_an_uncompressed_instance_is_converted_for_an_implicit_only_destination(
    routing_settings: Any, storage_destination: Any, tmp_path: Path
) -> None:
    scp = storage_destination(options=("+xi",))
    rule_to(destination_for(scp))
    study, uids = _study(tmp_path, 2)
    assert jobs.job_run(_job(study).pk).status == "COMPLETED"
    assert scp.received() == {uid: 1 for uid in uids}
    for path in scp.folder.iterdir():
        assert dcmread(path).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"


def test_a_permanent_rejection_fails_the_job_at_once(
    routing_settings: Any, storage_destination: Any, tmp_path: Path
) -> None:
    scp = storage_destination(options=("--refuse",))
    rule_to(destination_for(scp))
    study, _ = _study(tmp_path, 2)
    job = _job(study)
    assert jobs.job_run(job.pk).status == "FAILED"
    job.refresh_from_db()
    assert job.attempts == 1
    assert "rejected permanently" in job.last_error
    assert set(job.items.values_list("state", flat=True)) == {"FAILED"}


def test_a_rejection_read_before_the_requestor_looks_is_still_permanent(
    routing_settings: Any, storage_destination: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """The cause of the rare flake of the test above. pynetdicom's requestor queues its
    A-ASSOCIATE-RQ, then checks that its socket is connected; its DUL thread may have
    sent the request, read storescp's immediate A-ASSOCIATE-RJ and closed the socket
    before that check (the association thread not scheduled for a few ms): it aborted,
    and the job saw "no association" (retryable). Here the window is held open."""
    original = ACSE.send_request

    def send_then_stall(self: Any) -> None:
        original(self)
        time.sleep(0.2)

    monkeypatch.setattr(ACSE, "send_request", send_then_stall)
    test_a_permanent_rejection_fails_the_job_at_once(
        routing_settings, storage_destination, tmp_path
    )


def test_a_destination_that_is_down_does_not_hold_up_another(
    routing_settings: Any, storage_destination: Any, tmp_path: Path
) -> None:
    up = storage_destination("up", ae_title="UP")
    down = storage_destination("down", ae_title="DOWN", start=False)
    rule_to(destination_for(down), destination_for(up))
    study, uids = _study(tmp_path, 3)
    job_ids = services.route_study(study)
    assert len(job_ids) == 2
    outcomes = {
        RoutingJob.objects.get(pk=pk).destination.name: jobs.job_run(pk).status for pk in job_ids
    }
    assert outcomes == {"DOWN": "SCHEDULED", "UP": "COMPLETED"}
    assert up.received() == {uid: 1 for uid in uids}


def test_a_job_whose_worker_died_is_taken_over_after_its_lease_without_resending(
    routing_settings: Any, storage_destination: Any, tmp_path: Path
) -> None:
    scp = storage_destination()
    rule_to(destination_for(scp))
    study, uids = _study(tmp_path, 4)
    job = _job(study)
    # As a worker killed after the destination confirmed two instances leaves it.
    confirmed = list(job.items.order_by("pk")[:2].values_list("pk", flat=True))
    JobItem.objects.filter(pk__in=confirmed).update(state="SENT")
    RoutingJob.objects.filter(pk=job.pk).update(
        status="IN_PROCESS",
        attempts=1,
        lease_owner="dead-worker",
        lease_until=timezone.now() + dt.timedelta(seconds=60),
    )
    assert jobs.job_run(job.pk).status == ""  # the lease still holds
    assert services.due_jobs() == []

    RoutingJob.objects.filter(pk=job.pk).update(
        lease_until=timezone.now() - dt.timedelta(seconds=1)
    )
    assert services.due_jobs() == [job.pk]
    assert jobs.job_run(job.pk).status == "COMPLETED"
    sent_before = set(
        JobItem.objects.filter(pk__in=confirmed).values_list("sop_instance_uid", flat=True)
    )
    assert scp.received() == {uid: 1 for uid in uids if uid not in sent_before}


def test_a_canceled_job_is_not_sent(
    routing_settings: Any, storage_destination: Any, tmp_path: Path
) -> None:
    scp = storage_destination()
    rule_to(destination_for(scp))
    study, _ = _study(tmp_path, 2)
    job = _job(study)
    assert services.job_cancel(job.pk)
    assert jobs.job_run(job.pk).status == ""
    assert scp.received() == {}
    assert services.job_retry(job.pk)
    assert jobs.job_run(job.pk).status == "COMPLETED"


def test_no_more_jobs_run_at_once_than_the_destination_allows(
    routing_settings: Any, storage_destination: Any, tmp_path: Path
) -> None:
    scp = storage_destination()
    destination = destination_for(scp, max_associations=1)
    rule_to(destination)
    first, _ = _study(tmp_path, 1)
    second, _ = _study(tmp_path, 1)
    busy = _job(first)
    RoutingJob.objects.filter(pk=busy.pk).update(
        status="IN_PROCESS",
        lease_owner="other",
        lease_until=timezone.now() + dt.timedelta(seconds=60),
    )
    waiting = _job(second)
    assert jobs.job_run(waiting.pk).status == ""
    RoutingJob.objects.filter(pk=busy.pk).update(status="COMPLETED", lease_until=None)
    assert jobs.job_run(waiting.pk).status == "COMPLETED"


def test_the_sending_socket_has_nagle_off(
    routing_settings: Any, storage_destination: Any, monkeypatch: Any
) -> None:
    scp = storage_destination()
    seen: list[int] = []
    real = sender.tune_socket

    def spy(event: Any) -> None:
        real(event)
        raw = event.assoc.dul.socket.socket
        seen.append(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(sender, "tune_socket", spy)
    code, error = sender.echo(sender.Target(ae_title=scp.ae_title, host="127.0.0.1", port=scp.port))
    assert (code, error) == (0, "")
    assert seen == [1]
