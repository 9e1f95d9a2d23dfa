"""Network-level help for pynetdicom: socket options and fast C-FIND answers.

- TCP settings that remove the delayed-ACK / Nagle stalls from every DIMSE exchange.
  A DIMSE message is several small writes, so with
  Nagle on, or with the peer's delayed ACK, each direction can wait ~40 ms. We set
  TCP_NODELAY once on each accepted socket and TCP_QUICKACK before each read (Linux
  resets QUICKACK after every ACK).
- :func:`let_peer_speak`: lets pynetdicom read a C-CANCEL while answers are queued.
- :class:`PendingSender`: C-FIND pending responses without pynetdicom's per-answer
  encoding.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import time
from io import BytesIO
from typing import Any

from pynetdicom import evt
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.pdu_primitives import P_DATA

# The pynetdicom release (major.minor) whose internals this module and
# broker/dicom/server.py were written against: the association's DUL socket and queue,
# ``requestor.maximum_length``, C_FIND_RSP encoding, ``Association._target``. Checked at
# start-up by ``broker.E020``.
PYNETDICOM_WRITTEN_FOR = "3.0"

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
    _wait_until_sent(assoc, timeout)
    # One more DUL loop: with its queue empty it reads the socket.
    time.sleep(0.0005)


class PendingSender:
    """Sends C-FIND pending responses whose identifiers are already encoded.

    pynetdicom encodes every response twice over in Python (the identifier Dataset, then
    a command Dataset and its fragments) and hands each PDU to its DUL thread, which
    costs far more than finding the answer. Here the command set of a pending response
    is encoded once per request (by pynetdicom), and each answer is one P-DATA-TF PDU
    holding two PDVs, command and identifier.

    On a plain TCP socket the PDUs are written by the association thread itself, many
    to a ``sendall``, once the DUL has nothing queued: the DUL only ever sends what is
    queued, and pynetdicom queues nothing for this association while its handler runs.
    On TLS, where two threads must not use one SSL connection at once, each PDU goes
    through the DUL's queue instead. :meth:`flush` must run before the handler yields
    or returns, so that pynetdicom's own responses follow the answers.
    """

    BUFFER_BYTES = 64 * 1024

    def __init__(self, assoc: Any, context_id: int, request: Any, status: int) -> None:
        response = C_FIND()
        response.MessageIDBeingRespondedTo = request.MessageID
        response.AffectedSOPClassUID = request.AffectedSOPClassUID
        response.Status = status
        # Any identifier makes the command say "a data set follows".
        response.Identifier = BytesIO(b"\x00")
        message = C_FIND_RSP()
        message.primitive_to_message(response)
        first = next(iter(message.encode_msg(context_id, 0)))
        ((_, fragment),) = first.presentation_data_value_list
        self.command = bytes(fragment[1:])
        self.assoc = assoc
        self.context_id = context_id
        # The peer's maximum P-DATA-TF variable field length (0: no limit).
        self.max_length = int(assoc.requestor.maximum_length or 0)
        raw = getattr(assoc.dul.socket, "socket", None)
        self._raw: socket.socket | None = (
            raw if isinstance(raw, socket.socket) and not isinstance(raw, ssl.SSLSocket) else None
        )
        # PDV item: length (4 bytes, big endian), context ID, message control header.
        self._command_pdv = _PDV_HEADER(len(self.command) + 2, context_id, 0x03) + self.command
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._dul_drained = False

    @property
    def direct(self) -> bool:
        """True when answers are written to the socket by the caller's thread."""
        return self._raw is not None

    def send(self, identifier: bytes) -> bool:
        """Send one answer; False if it does not fit one PDU (send it the usual way)."""
        length = 12 + len(self.command) + len(identifier)
        if self.max_length and length > self.max_length:
            return False
        if self._raw is None:
            pdata = P_DATA()
            pdata.presentation_data_value_list.append((self.context_id, b"\x03" + self.command))
            pdata.presentation_data_value_list.append((self.context_id, b"\x02" + identifier))
            self.assoc.dul.send_pdu(pdata)
            return True
        if not self._dul_drained:
            _wait_until_sent(self.assoc, 30.0)
            self._dul_drained = True
        data_pdv = _PDV_HEADER(len(identifier) + 2, self.context_id, 0x02) + identifier
        pdu = _PDU_HEADER(0x04, 0, len(self._command_pdv) + len(data_pdv))
        self._buffer += (pdu, self._command_pdv, data_pdv)
        self._buffered += len(pdu) + len(self._command_pdv) + len(data_pdv)
        if self._buffered >= self.BUFFER_BYTES:
            self.flush()
        return True

    def flush(self) -> None:
        """Write what is buffered (raises OSError if the peer has gone)."""
        if self._raw is not None and self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            self._buffered = 0
            self._raw.sendall(data)


_PDV_HEADER = struct.Struct(">IBB").pack
_PDU_HEADER = struct.Struct(">BBI").pack


def _wait_until_sent(assoc: Any, timeout: float) -> None:
    pending = assoc.dul.to_provider_queue.queue
    deadline = time.monotonic() + timeout
    while pending and assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.0002)
