"""The listener's DUL does not add waits of its own (broker/dicom/guard.py).

- An association request sent together with the connection (as DCMTK's tools do) is
  answered at once: the guard once waited 50 ms in select() with the request's event
  already queued (tcpdump: A-ASSOCIATE-RQ to -AC 54-61 ms for every findscu).
- An established association's DUL waits for the peer or for a PDU queued to send: a
  C-ECHO is answered without the DUL's millisecond polls, and the wake-up pipe of each
  association is closed when it ends (no descriptor leak).
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from broker.dicom import guard
from tests.test_dicom_hostile import (
    HOST,
    IMPLICIT_LE,
    associate_rq,
    p_data,
    port_of,
    read_pdu,
    start_listener,
)

__all__ = ["start_listener"]  # the fixture, imported for this module's tests

pytestmark = pytest.mark.django_db(transaction=True)

C_ECHO_RQ = (
    # Command group, Implicit VR LE: Affected SOP Class UID, Command Field, Message ID,
    # Command Data Set Type (no data set). Group length first.
    bytes.fromhex("000000000400000038000000")
    + bytes.fromhex("0000020012000000")
    + b"1.2.840.10008.1.1\x00"
    + bytes.fromhex("00000001020000003000")
    + bytes.fromhex("00001001020000000100")
    + bytes.fromhex("00000008020000000101")
)
assert IMPLICIT_LE  # the context of associate_rq()


def associate_at_once(port: int) -> tuple[socket.socket, float]:
    """Connect and send the A-ASSOCIATE-RQ in the same breath; seconds until the AC."""
    sock = socket.create_connection((HOST, port), timeout=20)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    started = time.perf_counter()
    sock.sendall(associate_rq())
    kind, _ = read_pdu(sock)
    assert kind == 0x02, f"expected A-ASSOCIATE-AC, got PDU type {kind:#x}"
    return sock, time.perf_counter() - started


def release(sock: socket.socket) -> None:
    sock.sendall(bytes([0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0]))
    kind, _ = read_pdu(sock)
    assert kind == 0x06
    sock.close()


def test_a_request_sent_with_the_connection_is_accepted_without_the_guard_s_wait(
    start_listener,
) -> None:
    port = port_of(start_listener())
    waits = []
    for _ in range(5):
        sock, waited = associate_at_once(port)
        waits.append(waited)
        release(sock)
    # With the bug every one of them took the whole wait (50 ms) at least.
    assert min(waits) < guard._PENDING_SELECT * 0.9, waits


def test_echo_on_an_established_association_and_no_descriptor_left_behind(
    start_listener,
) -> None:
    port = port_of(start_listener())
    sock, _ = associate_at_once(port)
    release(sock)  # the first association opens the database and the like
    time.sleep(0.5)
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for _ in range(20):
        sock, _ = associate_at_once(port)
        sock.sendall(p_data([(1, 0x03, C_ECHO_RQ)]))
        kind, data = read_pdu(sock)
        assert kind == 0x04
        assert b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\x00" in data  # Status 0x0000
        release(sock)
    if before is None:
        return
    deadline = time.monotonic() + 10
    while len(os.listdir("/proc/self/fd")) > before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(os.listdir("/proc/self/fd")) <= before + 2
