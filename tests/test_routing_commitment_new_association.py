"""Storage commitment reports sent later, on a new association the destination opens to
the broker's listener (PS3.4 J.3.3), as real PACS do.

The destination is a pynetdicom AE (DCMTK has no Storage Commitment SCP tool): a storage
SCP and Storage Commitment SCP that answers each N-ACTION, then associates with the
broker's listener, proposing the SCP role for Storage Commitment Push Model (SCP/SCU Role
Selection), and sends the N-EVENT-REPORT there. Statuses are the literal PS3.7 values.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.presentation import StoragePresentationContexts

from core.dicom.requestor import keep_responses
from routing import jobs
from routing.models import CommitmentRequest, JobItem
from tests.conftest import get_free_port
from tests.fixtures_dicom import Listener
from tests.fixtures_routing import committing_archive, item_states, routed_study

pytestmark = pytest.mark.django_db(transaction=True)

COMMITMENT = "1.2.840.10008.1.20.1"
COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

# PS3.7 statuses, by their names in the standard.
SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
NO_SUCH_EVENT_TYPE = 0x0113
INVALID_ARGUMENT_VALUE = 0x0115
NO_SUCH_SOP_CLASS = 0x0118
CLASS_INSTANCE_CONFLICT = 0x0119
NO_SUCH_ACTION = 0x0123
# PS3.4 J.3.3.1 Failure Reason: processing failure.
FAILURE_REASON_PROCESSING_FAILURE = 0x0110


def event_information(transaction_uid: str, ok: list[str], failed: list[str]) -> Dataset:
    info = Dataset()
    info.TransactionUID = transaction_uid

    def ref(uid: str) -> Dataset:
        item = Dataset()
        item.ReferencedSOPClassUID = CT_IMAGE
        item.ReferencedSOPInstanceUID = uid
        return item

    info.ReferencedSOPSequence = [ref(uid) for uid in ok]
    if failed:
        items = []
        for uid in failed:
            item = ref(uid)
            item.FailureReason = FAILURE_REASON_PROCESSING_FAILURE
            items.append(item)
        info.FailedSOPSequence = items
    return info


def report_to(
    listener: Listener,
    info: Dataset,
    *,
    event_type: int = 1,
    instance: str = COMMITMENT_INSTANCE,
    calling: str = "ARCHIVE",
    role_selection: bool = True,
) -> tuple[Dataset | None, tuple[bool | None, bool | None]]:
    """Associate with the broker as the Storage Commitment SCP and send one
    N-EVENT-REPORT: (the response's status dataset, (as SCU, as SCP) of this side)."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(COMMITMENT)
    ext_neg: list[Any] = (
        [build_role(COMMITMENT, scu_role=False, scp_role=True)] if role_selection else []
    )
    assoc = ae.associate(listener.host, listener.port, ae_title=listener.ae_title, ext_neg=ext_neg)
    assert assoc.is_established
    keep_responses(assoc)
    try:
        (context,) = assoc.accepted_contexts
        roles = (context.as_scu, context.as_scp)
        status, _ = assoc.send_n_event_report(info, event_type, COMMITMENT, instance)
        return status, roles
    finally:
        assoc.release()


class LateCommitter:
    """Stores what it is sent; answers each N-ACTION with Success and then reports on a
    new association to the broker's listener: at once (after ``delay``) or, with
    ``hold``, only when ``release()`` is called. Instances in ``refuse`` fail."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.port = get_free_port()
        self.stored: Counter[str] = Counter()
        self.refuse: set[str] = set()
        self.delay = 0.3
        self.hold = False
        self.requests: list[Dataset] = []
        self.answers: list[int] = []
        self.roles: list[tuple[bool | None, bool | None]] = []
        self._released = threading.Event()
        self._threads: list[threading.Thread] = []
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
        self.requests.append(request)
        thread = threading.Thread(target=self._report, args=(request,))
        self._threads.append(thread)
        thread.start()
        return 0x0000, None

    def release(self) -> None:
        self._released.set()

    def _report(self, request: Dataset) -> None:
        if self.hold:
            self._released.wait(30)
        time.sleep(self.delay)
        uids = [str(ref.ReferencedSOPInstanceUID) for ref in request.ReferencedSOPSequence]
        info = event_information(
            str(request.TransactionUID),
            [u for u in uids if u not in self.refuse],
            [u for u in uids if u in self.refuse],
        )
        status, roles = report_to(self.listener, info, event_type=2 if self.refuse else 1)
        self.roles.append(roles)
        self.answers.append(int(status.Status) if status is not None else -1)

    def wait_reports(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answers) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.answers) >= count, self.answers

    def stop(self) -> None:
        self._released.set()
        for thread in self._threads:
            thread.join(10)
        self.server.shutdown()


@pytest.fixture
def archive(routing_settings: Any, dicom_listener: Listener) -> Iterator[LateCommitter]:
    routing_settings.ROUTING_TIMEOUT = 3.0
    routing_settings.ROUTING_RETRY_DELAY = 0.01
    destination = LateCommitter(dicom_listener)
    committing_archive(destination.port)
    yield destination
    destination.stop()


def test_a_report_on_a_new_association_completes_the_job_being_sent(
    archive: LateCommitter, tmp_path: Path
) -> None:
    job, uids = routed_study(tmp_path, 3)
    assert jobs.job_run(job.pk).status == "COMPLETED"
    assert item_states(job) == {"COMMITTED"}
    # The report is recorded before it is answered: the answer may still be on its way.
    archive.wait_reports(1)
    assert archive.answers == [SUCCESS]
    # The destination was the Storage Commitment SCP on the association it opened.
    assert archive.roles == [(False, True)]
    (request,) = CommitmentRequest.objects.filter(job=job)
    assert request.reported_at is not None and request.committed == 3
    assert str(archive.requests[0].TransactionUID) == request.transaction_uid
    assert archive.stored == {uid: 1 for uid in uids}


def test_a_report_after_the_job_stopped_waiting_completes_it(
    archive: LateCommitter, routing_settings: Any, tmp_path: Path
) -> None:
    routing_settings.ROUTING_TIMEOUT = 1.0
    archive.hold = True
    job, uids = routed_study(tmp_path, 2)
    assert jobs.job_run(job.pk).status == "SCHEDULED"
    job.refresh_from_db()
    assert job.last_error == "no storage commitment report in time"
    assert item_states(job) == {"SENT"}

    archive.release()
    archive.wait_reports(1)
    assert archive.answers == [SUCCESS]
    job.refresh_from_db()
    assert job.status == "COMPLETED" and job.finished_at is not None and job.last_error == ""
    assert item_states(job) == {"COMMITTED"}

    # The same report again (a destination that did not see the first answer): Success,
    # nothing changes.
    (request,) = CommitmentRequest.objects.filter(job=job)
    status, _ = report_to(archive.listener, event_information(request.transaction_uid, uids, []))
    assert status is not None and status.Status == SUCCESS
    job.refresh_from_db()
    assert job.status == "COMPLETED"
    assert archive.stored == {uid: 1 for uid in uids}


def test_an_instance_failed_in_a_later_report_is_sent_again(
    archive: LateCommitter, routing_settings: Any, tmp_path: Path
) -> None:
    routing_settings.ROUTING_TIMEOUT = 1.0
    archive.hold = True
    job, uids = routed_study(tmp_path, 2)
    archive.refuse = {uids[0]}
    assert jobs.job_run(job.pk).status == "SCHEDULED"
    archive.release()
    archive.wait_reports(1)
    assert archive.answers == [SUCCESS]
    failed = JobItem.objects.get(job=job, state="FAILED")
    assert failed.sop_instance_uid == uids[0] and "0x0110" in failed.error
    assert JobItem.objects.get(job=job, sop_instance_uid=uids[1]).state == "COMMITTED"
    job.refresh_from_db()
    assert job.status == "SCHEDULED"
    assert job.last_error == "1 instance(s) not committed by the destination"

    # Next attempt: only the failed instance is sent again, and committed.
    archive.refuse = set()
    archive.hold = False
    time.sleep(0.05)  # past the retry delay
    assert jobs.job_run(job.pk).status == "COMPLETED"
    assert archive.stored == {uids[0]: 2, uids[1]: 1}
    archive.wait_reports(2)
    assert archive.answers == [SUCCESS, SUCCESS]


def test_an_unknown_transaction_uid_is_refused_with_processing_failure(
    archive: LateCommitter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job, uids = routed_study(tmp_path, 1)
    unknown = generate_uid()
    with caplog.at_level(logging.WARNING, logger="routing.dimse"):
        status, roles = report_to(archive.listener, event_information(unknown, uids, []))
    assert roles == (False, True)
    assert status is not None
    assert status.Status == PROCESSING_FAILURE  # 0x0110 Processing failure
    assert status.ErrorComment == "Unknown Transaction UID"
    assert unknown in caplog.text
    assert item_states(job) == {"PENDING"}


@pytest.mark.parametrize(
    ("event_type", "instance", "expected"),
    [
        (3, COMMITMENT_INSTANCE, NO_SUCH_EVENT_TYPE),  # 0x0113 No such event type
        (1, "1.2.3.4", CLASS_INSTANCE_CONFLICT),  # 0x0119 Class-instance conflict
    ],
)
def test_a_malformed_report_is_refused(
    archive: LateCommitter, event_type: int, instance: str, expected: int
) -> None:
    info = event_information(generate_uid(), ["1.2.3"], [])
    status, _ = report_to(archive.listener, info, event_type=event_type, instance=instance)
    assert status is not None and status.Status == expected


def test_a_report_without_a_transaction_uid_is_an_invalid_argument_value(
    archive: LateCommitter,
) -> None:
    info = Dataset()
    info.ReferencedSOPSequence = []
    status, _ = report_to(archive.listener, info)
    assert status is not None and status.Status == INVALID_ARGUMENT_VALUE  # 0x0115


def test_a_report_without_role_selection_is_accepted_too(
    archive: LateCommitter, routing_settings: Any, tmp_path: Path
) -> None:
    routing_settings.ROUTING_TIMEOUT = 1.0
    archive.hold = True
    job, uids = routed_study(tmp_path, 1)
    assert jobs.job_run(job.pk).status == "SCHEDULED"
    (request,) = CommitmentRequest.objects.filter(job=job)
    status, roles = report_to(
        archive.listener, event_information(request.transaction_uid, uids, []), role_selection=False
    )
    assert roles == (True, False)  # the default roles: the peer as SCU
    assert status is not None and status.Status == SUCCESS
    job.refresh_from_db()
    assert job.status == "COMPLETED"


def test_the_listener_only_takes_the_scu_role(dicom_listener: Listener) -> None:
    ae = AE(ae_title="ARCHIVE")
    ae.add_requested_context(COMMITMENT)
    # Asking the broker to be the Storage Commitment SCP (the peer as SCU only): the
    # context is refused.
    assoc = ae.associate(
        dicom_listener.host,
        dicom_listener.port,
        ae_title=dicom_listener.ae_title,
        ext_neg=[build_role(COMMITMENT, scu_role=True, scp_role=False)],
    )
    if assoc.is_established:
        assert assoc.accepted_contexts == []
        assoc.release()
    # Both roles proposed: the peer gets the SCP role only.
    assoc = ae.associate(
        dicom_listener.host,
        dicom_listener.port,
        ae_title=dicom_listener.ae_title,
        ext_neg=[build_role(COMMITMENT, scu_role=True, scp_role=True)],
    )
    assert assoc.is_established
    try:
        (context,) = assoc.accepted_contexts
        assert (context.as_scu, context.as_scp) == (False, True)
    finally:
        assoc.release()


def test_an_n_action_to_the_broker_is_refused_no_such_action(dicom_listener: Listener) -> None:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(COMMITMENT)
    assoc = keep_responses(
        ae.associate(dicom_listener.host, dicom_listener.port, ae_title=dicom_listener.ae_title)
    )
    assert assoc.is_established
    try:
        request = event_information(generate_uid(), ["1.2.3"], [])
        status, _ = assoc.send_n_action(request, 1, COMMITMENT, COMMITMENT_INSTANCE)
        assert status is not None and status.Status == NO_SUCH_ACTION  # 0x0123 No such action
    finally:
        assoc.release()
