"""A Celery worker process killed with SIGKILL in the middle of a job: after the lease
expires another worker takes the job and sends only what was not confirmed."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.presentation import StoragePresentationContexts

from routing import services
from routing.models import Destination, JobItem, RoutingJob
from tests.conftest import get_free_port
from tests.fixtures_mpps import _reset_pools
from tests.fixtures_routing import rule_to, spool_files, wait_for, write_study

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
LEASE = 3.0


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{db.get('USER') or 'postgres'}@{host}:{port}/{db['NAME']}"


class SlowDestination:
    """A pynetdicom storage SCP that takes its time over each instance and counts every
    instance it receives (at arrival, before it answers)."""

    def __init__(self) -> None:
        self.port = get_free_port()
        self.received: Counter[str] = Counter()
        self.lock = threading.Lock()
        ae = AE(ae_title="SLOW")
        ae.supported_contexts = StoragePresentationContexts
        server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self.store)]
        )
        assert server is not None
        self.server = server

    def store(self, event: Any) -> int:
        with self.lock:
            self.received[str(event.request.AffectedSOPInstanceUID)] += 1
        time.sleep(0.25)
        return 0x0000

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def shared_queue(tmp_path: Path, settings: Any, monkeypatch: Any) -> Iterator[dict[str, str]]:
    """The Celery app and worker processes on one filesystem queue under tmp_path."""
    from broker.celery import app

    # Celery prefers this variable to its configuration: drop it for this test.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    var = tmp_path / "var"
    folders = {name: var / "queue" / name for name in ("messages", "processed", "control")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    saved = {key: app.conf[key] for key in ("broker_url", "broker_transport_options")}
    app.conf.update(
        broker_url="filesystem://",
        broker_transport_options={
            "data_folder_in": str(folders["messages"]),
            "data_folder_out": str(folders["messages"]),
            "processed_folder": str(folders["processed"]),
            "control_folder": str(folders["control"]),
            "store_processed": False,
        },
    )
    _reset_pools(app)
    settings.ROUTING_SPOOL_DIR = tmp_path / "spool"
    settings.ROUTING_LEASE_SECONDS = LEASE
    env = {
        **os.environ,
        "BROKER_VAR_DIR": str(var),
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": "filesystem://",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ROUTING_SPOOL_DIR": str(tmp_path / "spool"),
        "ROUTING_LEASE_SECONDS": str(LEASE),
        "ROUTING_TIMEOUT": "10",
        "PYTHONUNBUFFERED": "1",
    }
    try:
        yield env
    finally:
        app.conf.update(saved)
        _reset_pools(app)


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "broker",
            "worker",
            "--pool",
            "solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_job_of_a_killed_worker_is_finished_by_another_without_resending_what_was_confirmed(
    shared_queue: dict[str, str], tmp_path: Path
) -> None:
    destination = SlowDestination()
    first = _worker(shared_queue, tmp_path / "worker1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        rule_to(
            Destination.objects.create(
                name="slow",
                ae_title="SLOW",
                host="127.0.0.1",
                port=destination.port,
                max_associations=1,
            )
        )
        study = generate_uid()
        uids = spool_files(write_study(tmp_path / "scan", 12, study_uid=study))
        (job_id,) = services.route_study(study)  # queued to the first worker on commit

        wait_for(
            lambda: JobItem.objects.filter(job_id=job_id, state="SENT").count() >= 3,
            timeout=60,
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        confirmed = set(
            JobItem.objects.filter(job_id=job_id, state="SENT").values_list(
                "sop_instance_uid", flat=True
            )
        )
        job = RoutingJob.objects.get(pk=job_id)
        assert job.status == "IN_PROCESS"  # left behind, with its lease
        assert services.due_jobs() == []

        second = _worker(shared_queue, tmp_path / "worker2.log")
        # The periodic check (beat's work) queues the job once the lease has expired.
        wait_for(
            lambda: RoutingJob.objects.get(pk=job_id).status == "COMPLETED",
            timeout=60,
            every=services.tick,
        )
        assert set(destination.received) == set(uids)
        for uid in confirmed:
            assert destination.received[uid] == 1, "a confirmed instance was sent again"
        # At most the one instance in flight when the worker died arrives twice.
        assert sum(destination.received.values()) - len(uids) <= 1
        assert RoutingJob.objects.get(pk=job_id).attempts == 2
    finally:
        with contextlib.suppress(Exception):
            _stop(first)
        if second is not None:
            _stop(second)
        destination.stop()
