"""Storage commitment (PS3.4 J) for destinations that require it: a job is COMPLETED only
once the destination has committed every instance; stored instances are not sent again
while the commitment is awaited."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.presentation import StoragePresentationContexts

from routing import jobs
from routing.models import JobItem
from tests.conftest import get_free_port
from tests.fixtures_routing import committing_archive, item_states, routed_study

pytestmark = pytest.mark.django_db  # the peers here use no database: no flush needed

COMMITMENT = "1.2.840.10008.1.20.1"


class CommittingDestination:
    """A pynetdicom storage SCP that is also a Storage Commitment SCP: it answers each
    N-ACTION, then (if ``report``) sends the N-EVENT-REPORT on the same association,
    failing the instances in ``refuse``."""

    def __init__(self) -> None:
        self.port = get_free_port()
        self.stored: Counter[str] = Counter()
        self.report = True
        self.refuse: set[str] = set()
        ae = AE(ae_title="ARCHIVE")
        ae.supported_contexts = StoragePresentationContexts
        ae.add_supported_context(COMMITMENT)
        server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self.store), (evt.EVT_N_ACTION, self.action)],
        )
        assert server is not None
        self.server = server

    def store(self, event: Any) -> int:
        self.stored[str(event.request.AffectedSOPInstanceUID)] += 1
        return 0x0000

    def action(self, event: Any) -> tuple[int, None]:
        request = event.action_information
        if self.report:
            threading.Thread(target=self._send_report, args=(event.assoc, request)).start()
        return 0x0000, None

    def _send_report(self, assoc: Any, request: Dataset) -> None:
        time.sleep(0.1)  # after the N-ACTION response has gone out
        report = Dataset()
        report.TransactionUID = request.TransactionUID
        ok, failed = [], []
        for ref in request.ReferencedSOPSequence:
            item = Dataset()
            item.ReferencedSOPClassUID = ref.ReferencedSOPClassUID
            item.ReferencedSOPInstanceUID = ref.ReferencedSOPInstanceUID
            if str(ref.ReferencedSOPInstanceUID) in self.refuse:
                item.FailureReason = 0x0110
                failed.append(item)
            else:
                ok.append(item)
        report.ReferencedSOPSequence = ok
        if failed:
            report.FailedSOPSequence = failed
        assoc.send_n_event_report(report, 2 if failed else 1, COMMITMENT, "1.2.840.10008.1.20.1.1")

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def archive(routing_settings: Any) -> Iterator[CommittingDestination]:
    routing_settings.ROUTING_TIMEOUT = 2.0
    routing_settings.ROUTING_RETRY_DELAY = 0.01
    destination = CommittingDestination()
    committing_archive(destination.port)
    yield destination
    destination.stop()


def test_a_job_completes_once_every_instance_is_committed(
    archive: CommittingDestination, tmp_path: Path
) -> None:
    job, uids = routed_study(tmp_path, 3)
    assert jobs.job_run(job.pk).status == "COMPLETED"
    assert item_states(job) == {"COMMITTED"}
    assert archive.stored == {uid: 1 for uid in uids}


def test_without_a_report_the_commitment_is_asked_again_and_nothing_is_resent(
    archive: CommittingDestination, tmp_path: Path
) -> None:
    archive.report = False
    job, uids = routed_study(tmp_path, 2)
    assert jobs.job_run(job.pk).status == "SCHEDULED"
    job.refresh_from_db()
    assert "storage commitment" in job.last_error
    assert set(job.items.values_list("state", flat=True)) == {"SENT"}

    archive.report = True
    time.sleep(0.05)  # past the retry delay
    assert jobs.job_run(job.pk).status == "COMPLETED"
    assert archive.stored == {uid: 1 for uid in uids}


def test_an_instance_the_destination_does_not_commit_is_sent_again(
    archive: CommittingDestination, tmp_path: Path
) -> None:
    job, uids = routed_study(tmp_path, 2)
    archive.refuse = {uids[0]}
    assert jobs.job_run(job.pk).status == "SCHEDULED"
    failed = JobItem.objects.get(job=job, state="FAILED")
    assert failed.sop_instance_uid == uids[0] and "0x0110" in failed.error

    archive.refuse = set()
    time.sleep(0.05)
    assert jobs.job_run(job.pk).status == "COMPLETED"
    assert archive.stored == {uids[0]: 2, uids[1]: 1}
