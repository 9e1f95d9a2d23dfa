"""The DICOM listener under hostile peers: raw sockets that stall, flood, close or lie."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityWorklistInformationFind,
    Verification,
)

from broker.checks import private_api_problems
from broker.dicom import guard, server
from tests.fixtures_dicom import bulk_schedule, schedule, worklist_query
from tests.scu import keep_responses

pytestmark = pytest.mark.django_db(transaction=True)

HOST = "127.0.0.1"
OTHER = "127.0.0.2"  # a well-behaved scanner on another loopback address
VERIFICATION = "1.2.840.10008.1.1"
MWL_FIND = "1.2.840.10008.5.1.4.31"
IMPLICIT_LE = "1.2.840.10008.1.2"


def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def start_listener(free_port: int) -> Iterator[Callable[[], guard.GuardedServer]]:
    """Start the listener once the test has changed its settings."""
    running: list[guard.GuardedServer] = []

    def start() -> guard.GuardedServer:
        srv = server.start(HOST, free_port, block=False)
        assert srv is not None
        running.append(srv)
        return srv

    yield start
    for srv in running:
        srv.shutdown()


def port_of(srv: guard.GuardedServer) -> int:
    return int(srv.server_address[1])


# --- raw DICOM upper layer, written by hand (PS3.8 9.3) ------------------------------


def _item(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def associate_rq(
    abstract: str = VERIFICATION, called: str = "WORKLIST", max_pdu: int = 16384
) -> bytes:
    context = _item(
        0x20,
        bytes([1, 0, 0, 0]) + _item(0x30, abstract.encode()) + _item(0x40, IMPLICIT_LE.encode()),
    )
    user = _item(0x50, _item(0x51, struct.pack(">I", max_pdu)))
    body = (
        struct.pack(">HH", 1, 0)
        + called.ljust(16).encode()
        + b"RAWSCU".ljust(16)
        + bytes(32)
        + _item(0x10, b"1.2.840.10008.3.1.1.1")
        + context
        + user
    )
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def p_data(pdvs: list[tuple[int, int, bytes]]) -> bytes:
    """P-DATA-TF with (context id, message control header, fragment) items."""
    body = b"".join(
        struct.pack(">IBB", len(data) + 2, context, control) + data
        for context, control, data in pdvs
    )
    return struct.pack(">BBI", 0x04, 0, len(body)) + body


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    header = _read_exactly(sock, 6)
    kind, _, length = struct.unpack(">BBI", header)
    return kind, _read_exactly(sock, length)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def raw_association(port: int, abstract: str = VERIFICATION) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=20)
    sock.sendall(associate_rq(abstract))
    kind, _ = read_pdu(sock)
    assert kind == 0x02, f"expected A-ASSOCIATE-AC, got PDU type {kind:#x}"
    return sock


def assert_aborted(sock: socket.socket) -> None:
    """The listener sends an A-ABORT and closes (or just closes, if we wrote too fast)."""
    try:
        kind, _ = read_pdu(sock)
    except (ConnectionError, OSError):
        return
    assert kind == 0x07, f"expected A-ABORT, got PDU type {kind:#x}"
    assert sock.recv(1) == b""


# --- well-behaved scanners -----------------------------------------------------------


def echo_and_find_from(address: str, port: int) -> dict[str, Any]:
    """C-ECHO and a worklist C-FIND from ``address``, at the same time."""
    results: dict[str, Any] = {}

    def echo() -> None:
        ae = AE(ae_title="ECHOSCU")
        ae.add_requested_context(Verification)
        assoc = keep_responses(
            ae.associate(HOST, port, ae_title="WORKLIST", bind_address=(address, 0))
        )
        if not assoc.is_established:
            results["echo"] = "not established"
            return
        results["echo"] = int(assoc.send_c_echo().Status)
        assoc.release()

    def find() -> None:
        ae = AE(ae_title="FINDSCU")
        ae.add_requested_context(ModalityWorklistInformationFind)
        assoc = keep_responses(
            ae.associate(HOST, port, ae_title="WORKLIST", bind_address=(address, 0))
        )
        if not assoc.is_established:
            results["find"] = "not established"
            return
        codes = [
            int(st.Status) if st else None
            for st, _ in assoc.send_c_find(
                worklist_query(PatientName=""), ModalityWorklistInformationFind
            )
        ]
        results["find"] = codes
        assoc.release()

    threads = [threading.Thread(target=echo), threading.Thread(target=find)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def stalled_peers(port: int, count: int) -> list[socket.socket]:
    """``count`` connections from 127.0.0.1: silent, garbage, or a PDU cut short."""
    kinds = [
        b"",  # nothing at all
        b"\xde\xad\xbe\xef" * 4,  # garbage
        b"\x01\x00\x00\x00\x01\x00",  # announces a 256-byte A-ASSOCIATE-RQ, sends none
        associate_rq()[:40],  # an association request cut short
    ]
    peers = []
    for n in range(count):
        try:
            sock = socket.create_connection((HOST, port), timeout=5)
        except OSError:
            continue
        data = kinds[n % len(kinds)]
        if data:
            with contextlib.suppress(OSError):
                sock.sendall(data)
        peers.append(sock)
    return peers


@pytest.mark.parametrize("per_host", [None, 200], ids=["default-per-host", "no-per-host-limit"])
def test_sixty_stalled_connections_do_not_keep_a_scanner_from_another_address_out(
    start_listener: Callable[[], guard.GuardedServer], settings: Any, per_host: int | None
) -> None:
    # Long timeouts: the stalled peers keep their connections for the whole test.
    settings.DICOM_ACSE_TIMEOUT = 120.0
    settings.DICOM_NETWORK_TIMEOUT = 120.0
    if per_host is not None:
        # No per-address limit to speak of: the pending table must make room by itself.
        settings.DICOM_MAX_ASSOCIATIONS_PER_HOST = per_host
    schedule()
    srv = start_listener()
    peers = stalled_peers(port_of(srv), 60)
    try:
        assert wait_for(lambda: srv.table.counts()["pending"] >= 20)
        results = echo_and_find_from(OTHER, port_of(srv))
        assert results == {"echo": 0x0000, "find": [0xFF00, 0x0000]}
        # The flood is still there (so it was the guard, not luck) and bounded.
        counts = srv.table.counts()
        assert 1 <= counts["pending"] <= settings.DICOM_MAX_ASSOCIATIONS
    finally:
        for sock in peers:
            sock.close()


def test_sixty_connections_that_close_free_their_slots_at_once(
    start_listener: Callable[[], guard.GuardedServer], settings: Any
) -> None:
    # Without the guard each would hold its slot for the ACSE timeout: 120 s here.
    settings.DICOM_ACSE_TIMEOUT = 120.0
    settings.DICOM_MAX_ASSOCIATIONS = 5
    settings.DICOM_MAX_ASSOCIATIONS_PER_HOST = 100
    schedule()
    srv = start_listener()
    for sock in stalled_peers(port_of(srv), 60):
        sock.close()
    assert wait_for(lambda: srv.table.counts() == {"associated": 0, "pending": 0})
    # The same address gets in again, well inside the ACSE timeout.
    results = echo_and_find_from(HOST, port_of(srv))
    assert results == {"echo": 0x0000, "find": [0xFF00, 0x0000]}


def test_a_connection_over_the_per_host_limit_is_closed_at_once(
    start_listener: Callable[[], guard.GuardedServer], settings: Any
) -> None:
    settings.DICOM_MAX_ASSOCIATIONS_PER_HOST = 3
    settings.DICOM_ACSE_TIMEOUT = 120.0
    srv = start_listener()
    # Silent peers: they stay pending for the whole test (a garbage one would be aborted
    # at once and free its place, letting the extra connection in).
    held = [socket.create_connection((HOST, port_of(srv)), timeout=5) for _ in range(3)]
    try:
        assert wait_for(lambda: srv.table.counts()["pending"] == 3)
        extra = socket.create_connection((HOST, port_of(srv)), timeout=10)
        assert extra.recv(1) == b""  # closed by the listener, not left waiting
        extra.close()
        assert echo_and_find_from(OTHER, port_of(srv))["echo"] == 0x0000
    finally:
        for sock in held:
            sock.close()


def test_a_peer_silent_before_its_association_request_is_closed_after_the_acse_timeout(
    start_listener: Callable[[], guard.GuardedServer], settings: Any
) -> None:
    settings.DICOM_ACSE_TIMEOUT = 1.0
    srv = start_listener()
    peers = stalled_peers(port_of(srv), 4)  # silent, garbage, cut-short header and RQ
    try:
        for sock in peers:
            sock.settimeout(30)
            started = time.monotonic()
            while sock.recv(4096):  # garbage gets an A-ABORT first
                pass
            assert time.monotonic() - started < 30
        assert wait_for(lambda: srv.table.counts() == {"associated": 0, "pending": 0})
    finally:
        for sock in peers:
            sock.close()


def test_the_association_limit_counts_associations_not_connections(
    start_listener: Callable[[], guard.GuardedServer], settings: Any
) -> None:
    settings.DICOM_MAX_ASSOCIATIONS = 2
    settings.DICOM_MAX_ASSOCIATIONS_PER_HOST = 10
    srv = start_listener()
    first, second = raw_association(port_of(srv)), raw_association(port_of(srv))
    try:
        third = socket.create_connection((HOST, port_of(srv)), timeout=20)
        third.sendall(associate_rq())
        kind, body = read_pdu(third)
        assert kind == 0x03  # A-ASSOCIATE-RJ
        assert body[1:4] == bytes([0x02, 0x03, 0x02])  # transient, provider, local limit
        third.close()
    finally:
        first.close()
        second.close()
    assert wait_for(lambda: srv.table.counts() == {"associated": 0, "pending": 0})
    assert echo_and_find_from(HOST, port_of(srv))["echo"] == 0x0000


def test_a_pdu_longer_than_the_negotiated_maximum_aborts_the_association(
    start_listener: Callable[[], guard.GuardedServer],
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.DICOM_MAX_PDU = 16384
    srv = start_listener()
    sock = raw_association(port_of(srv))
    try:
        # Announces a 1 GiB P-DATA-TF: refused from its header, nothing more is read.
        sock.sendall(struct.pack(">BBI", 0x04, 0, 1 << 30) + b"\x00" * 64)
        assert_aborted(sock)
    finally:
        sock.close()
    assert wait_for(lambda: srv.table.counts() == {"associated": 0, "pending": 0})
    assert "longer than DICOM_MAX_PDU (16384)" in caplog.text


def test_a_message_that_never_ends_is_aborted_at_the_memory_limit(
    start_listener: Callable[[], guard.GuardedServer], settings: Any
) -> None:
    settings.DICOM_MAX_PDU = 16384
    settings.DICOM_MAX_MESSAGE_BYTES = 64 * 1024
    srv = start_listener()
    sock = raw_association(port_of(srv))
    try:
        fragment = b"\x00" * 16000
        # Command fragments, never the last one (control header 0x01): pynetdicom would
        # keep every byte until the message ends.
        for _ in range(8):
            try:
                sock.sendall(p_data([(1, 0x01, fragment)]))
            except OSError:
                break
        assert_aborted(sock)
    finally:
        sock.close()
    assert wait_for(lambda: srv.table.counts() == {"associated": 0, "pending": 0})


def test_a_scanner_that_stops_reading_its_answers_is_dropped_after_the_network_timeout(
    start_listener: Callable[[], guard.GuardedServer], settings: Any
) -> None:
    settings.DICOM_NETWORK_TIMEOUT = 2.0
    bulk_schedule(3000)  # a few MB of answers: more than the socket buffers hold
    srv = start_listener()
    sock = raw_association(port_of(srv), MWL_FIND)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:

        def implicit(ds: Dataset) -> bytes:
            buffer = DicomBytesIO()
            buffer.is_little_endian, buffer.is_implicit_VR = True, True
            write_dataset(buffer, ds)
            return buffer.getvalue()

        identifier = implicit(worklist_query(PatientName="", sps={}))
        command = Dataset()
        command.AffectedSOPClassUID = MWL_FIND
        command.CommandField = 0x0020
        command.MessageID = 1
        command.Priority = 0
        command.CommandDataSetType = 0x0001
        encoded = implicit(command)
        group_length = struct.pack("<HHII", 0x0000, 0x0000, 4, len(encoded))
        sock.sendall(p_data([(1, 0x03, group_length + encoded), (1, 0x02, identifier)]))
        # ... and never read. The listener gives up on the write, not on us forever.
        assert wait_for(lambda: srv.table.counts()["associated"] == 0, 60)
        assert echo_and_find_from(HOST, port_of(srv))["echo"] == 0x0000
    finally:
        sock.close()


def test_the_listener_refuses_to_start_with_another_pynetdicom() -> None:
    assert guard.version_matches()
    problems = private_api_problems({"Django": "5.2.19", "pynetdicom": "3.1.0"})
    assert [p.id for p in problems] == ["broker.E020"]
    assert "broker/dicom/guard.py" in problems[0].msg
