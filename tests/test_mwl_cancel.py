"""C-CANCEL of a worklist query (PS3.4 C.4.1.2.3, C.4.1.3.2) on every answer path.

The client is a bare socket (tests/raw_scu.py): it reads N answers, sends the C-CANCEL,
then counts what follows. Its receive buffer is made small, so the answers in flight
when the cancel leaves are bounded: what the client's kernel holds, what the broker's
kernel holds back (PeerWatch.BACKLOG_BYTES), and what the broker writes before it
hears the cancel, which must be no more than one batch (PendingSender.BUFFER_BYTES on
the direct path, CANCEL_CHECK_EVERY answers through pynetdicom's queue).
"""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from broker.dicom import server
from core.dicom.net import PeerWatch, PendingSender
from tests.fixtures_dicom import Listener, bulk_schedule, worklist_query
from tests.raw_scu import RawScu, Response
from worklist import dimse

pytestmark = pytest.mark.django_db(transaction=True)

# PS3.4 Table C.4-2 (C-FIND response status values) and PS3.7 Annex C.
PENDING = 0xFF00  # Pending: matches are continuing
CANCEL = 0xFE00  # Cancel: matching terminated due to Cancel request
SUCCESS = 0x0000  # Success: matching is complete

ENTRIES = 4000
READ_BEFORE_CANCEL = 10
RECEIVE_BUFFER = 16 * 1024


def cancel_after(scu: RawScu, n: int, msg_id: int = 7) -> tuple[list[Response], list[Response]]:
    """Send a broad query, read ``n`` answers, cancel; return (before, after) responses."""
    scu.send_find(worklist_query(PatientName="", sps={}), msg_id)
    before = [scu.read_response() for _ in range(n)]
    assert [r.status for r in before] == [PENDING] * n
    scu.send_cancel(msg_id)
    after = [scu.read_response()]
    while after[-1].status == PENDING:
        after.append(scu.read_response())
    return before, after


def in_flight_bound(scu: RawScu, batch_bytes: int, answer_bytes: int) -> int:
    """The most answer bytes that may follow a cancel (see the module docstring).

    Written but not yet read by the client is never more than its receive buffer
    (what it holds and what its window lets be on the way), plus what the broker's
    kernel holds back, plus the batch written last; once the cancel has arrived, the
    broker writes at most one batch more before it hears it.
    """
    return scu.receive_buffer + PeerWatch.BACKLOG_BYTES + 2 * (batch_bytes + answer_bytes)


def check_cancelled(
    scu: RawScu, before: list[Response], after: list[Response], batch_bytes: int
) -> None:
    answer_bytes = max(r.size for r in before)
    answers_after = after[:-1]
    assert after[-1].status == CANCEL, f"final status 0x{after[-1].status:04X}"
    # An answer's identifier is never in the final response of a cancel.
    assert after[-1].identifier is None
    followed = sum(r.size for r in answers_after)
    bound = in_flight_bound(scu, batch_bytes, answer_bytes)
    assert followed <= bound, (
        f"{len(answers_after)} answers ({followed} bytes) followed the cancel; at most "
        f"{bound} bytes were in flight or in the batch being written"
    )
    # The bound is well below the whole answer: the cancel was heard, not outrun.
    assert ENTRIES * answer_bytes > 3 * bound
    assert len(before) + len(answers_after) < ENTRIES


def check_still_usable(scu: RawScu) -> None:
    """After the cancel the association answers the next query (no stray answers)."""
    scu.send_find(worklist_query(PatientID="NOBODY"), msg_id=8)
    response = scu.read_response()
    assert response.status == SUCCESS
    assert int.from_bytes(response.command[0x00000120], "little") == 8


@pytest.mark.parametrize(
    "transfer_syntax",
    [ImplicitVRLittleEndian, ExplicitVRLittleEndian],
    ids=["implicit-le", "explicit-le"],
)
def test_a_cancel_after_ten_answers_stops_the_direct_path_within_one_batch(
    dicom_listener: Listener, transfer_syntax: str
) -> None:
    bulk_schedule(ENTRIES)
    scu = RawScu.connect(
        dicom_listener.host,
        dicom_listener.port,
        dicom_listener.ae_title,
        transfer_syntax=transfer_syntax,
        receive_buffer=RECEIVE_BUFFER,
    )
    try:
        before, after = cancel_after(scu, READ_BEFORE_CANCEL)
        check_cancelled(scu, before, after, PendingSender.BUFFER_BYTES)
        check_still_usable(scu)
        scu.release()
    finally:
        scu.close()


def test_a_cancel_stops_big_endian_answers_sent_through_pynetdicom(
    dicom_listener: Listener,
) -> None:
    # Big Endian answers are encoded and queued by pynetdicom (no PendingSender).
    bulk_schedule(ENTRIES)
    scu = RawScu.connect(
        dicom_listener.host,
        dicom_listener.port,
        dicom_listener.ae_title,
        transfer_syntax=ExplicitVRBigEndian,
        receive_buffer=RECEIVE_BUFFER,
    )
    try:
        before, after = cancel_after(scu, READ_BEFORE_CANCEL)
        answer_bytes = max(r.size for r in before)
        check_cancelled(scu, before, after, dimse.CANCEL_CHECK_EVERY * answer_bytes)
        check_still_usable(scu)
        scu.release()
    finally:
        scu.close()


def test_a_cancel_sent_with_the_query_gives_cancel_and_few_answers(
    dicom_listener: Listener,
) -> None:
    # The C-CANCEL is on its way before the first answer: no more than one batch.
    bulk_schedule(ENTRIES)
    scu = RawScu.connect(
        dicom_listener.host,
        dicom_listener.port,
        dicom_listener.ae_title,
        receive_buffer=RECEIVE_BUFFER,
    )
    try:
        _, after = cancel_after(scu, 0)
        assert after[-1].status == CANCEL
        # No more than one batch went out before the cancel was heard.
        assert sum(r.size for r in after[:-1]) <= PendingSender.BUFFER_BYTES + max(
            (r.size for r in after[:-1]), default=0
        )
        check_still_usable(scu)
        scu.release()
    finally:
        scu.close()


@pytest.fixture
def tls_listener(free_port: int, settings: Any, tmp_path: Path) -> Any:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    settings.DICOM_TLS_CERT, settings.DICOM_TLS_KEY = str(cert), str(key)
    running = server.start("127.0.0.1", free_port, block=False)
    assert running is not None
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    client.check_hostname = False
    try:
        yield Listener("127.0.0.1", free_port, settings.BROKER_AE_TITLE), client
    finally:
        running.shutdown()


def test_a_cancel_over_tls_stops_the_queued_answers_within_one_batch(tls_listener: Any) -> None:
    listener, client = tls_listener
    bulk_schedule(ENTRIES)
    scu = RawScu.connect(
        listener.host,
        listener.port,
        listener.ae_title,
        receive_buffer=RECEIVE_BUFFER,
        tls=client,
    )
    try:
        before, after = cancel_after(scu, READ_BEFORE_CANCEL)
        answer_bytes = max(r.size for r in before)
        check_cancelled(scu, before, after, dimse.CANCEL_CHECK_EVERY * answer_bytes)
        check_still_usable(scu)
        scu.release()
    finally:
        scu.close()
