"""TCP settings that remove the delayed-ACK / Nagle stalls from every DIMSE exchange.

See ``shared/dicom-latency.md``: a DIMSE message is several small writes, so with
Nagle on, or with the peer's delayed ACK, each direction can wait ~40 ms. We set
TCP_NODELAY once on each accepted socket and TCP_QUICKACK before each read (Linux
resets QUICKACK after every ACK).
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

from pynetdicom import evt

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def tune_socket(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler: tune the accepted socket of this association."""
    assoc_socket: Any = event.assoc.dul.socket
    raw: socket.socket | None = getattr(assoc_socket, "socket", None)
    if raw is None:
        return
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        return
    if _QUICKACK is None:
        return
    original_recv = assoc_socket.recv

    def recv_with_quickack(nr_bytes: int) -> bytearray:
        sock = assoc_socket.socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        result: bytearray = original_recv(nr_bytes)
        return result

    assoc_socket.recv = recv_with_quickack


def let_peer_speak(assoc: Any, timeout: float = 30.0) -> None:
    """Wait until pynetdicom has sent every queued PDU of ``assoc``, then a moment more.

    pynetdicom's DUL thread either sends one queued PDU or reads the socket per loop, and
    sends first: while a C-FIND handler queues answers faster than they go out, nothing
    is read, so a C-CANCEL waits until the last answer is sent. Called every few
    answers, this lets the DUL drain its queue and read what the peer sent (it also
    bounds the memory of a large answer).
    """
    dul = assoc.dul
    pending = dul.to_provider_queue.queue
    deadline = time.monotonic() + timeout
    while pending and assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.0002)
    # One more DUL loop: with its queue empty it reads the socket.
    time.sleep(0.0005)
