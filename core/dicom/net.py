"""Network-level help for pynetdicom: socket options and fast C-FIND answers.

- TCP settings that remove the delayed-ACK / Nagle stalls from every DIMSE exchange.
  A DIMSE message is several small writes, so with
  Nagle on, or with the peer's delayed ACK, each direction can wait ~40 ms. We set
  TCP_NODELAY once on each accepted socket and TCP_QUICKACK before each read (Linux
  resets QUICKACK after every ACK).
- :class:`PeerWatch` and :func:`let_peer_speak`: a C-CANCEL is read and acted on
  between two batches of answers, on every answer path.
- :class:`PendingSender`: C-FIND pending responses without pynetdicom's per-answer
  encoding.
- :class:`CheapCopyContexts`: the listener's supported presentation contexts, copied
  per association without pynetdicom's deepcopy.
- :func:`send_c_store_encoded`: a C-STORE of already encoded dataset bytes, its P-DATA
  PDUs written to the socket at once instead of one by one through pynetdicom's DUL.
"""

from __future__ import annotations

import contextlib
import fcntl
import select
import socket
import ssl
import struct
import sys
import termios
import time
from collections.abc import Callable
from io import BytesIO
from typing import Any

from django.conf import settings
from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.dimse_messages import C_FIND_RSP, C_STORE_RQ
from pynetdicom.dimse_primitives import C_FIND, C_STORE
from pynetdicom.pdu_primitives import P_DATA

# The pynetdicom release (major.minor) whose internals this module and
# broker/dicom/server.py were written against: the association's DUL socket and queue,
# ``requestor.maximum_length``, C_FIND_RSP encoding, ``Association._target``. Checked at
# start-up by ``broker.E020``.
PYNETDICOM_WRITTEN_FOR = "3.0"

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def tune_socket(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler: tune the accepted socket of this association.

    Also starts its :class:`PeerWatch`, so that no C-CANCEL goes unheard.
    """
    PeerWatch.of(event.assoc)
    # DICOM_TCP_TUNING switches the options off, for benchmarks only.
    tuning = getattr(settings, "DICOM_TCP_TUNING", "nodelay+quickack")
    assoc_socket: Any = event.assoc.dul.socket
    raw: socket.socket | None = getattr(assoc_socket, "socket", None)
    if raw is None or tuning == "off":
        return
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        return
    if _QUICKACK is None or tuning != "nodelay+quickack":
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
    """Wait until pynetdicom has sent every queued PDU of ``assoc``, then let it read.

    pynetdicom's DUL thread either sends one queued PDU or reads the socket per loop, and
    sends first: while a C-FIND handler queues answers faster than they go out, nothing
    is read, so a C-CANCEL waits until the last answer is sent. Called every few
    answers, this lets the DUL drain its queue, waits while the kernel holds more than a
    batch that the peer has not taken (see :class:`PeerWatch`), and, if the peer has
    sent something, waits until the DUL has read it and acted on it, so that
    ``event.is_cancelled`` is true right after a C-CANCEL arrived. It also bounds the
    memory of a large answer.
    """
    _wait_until_sent(assoc, timeout)
    watch = PeerWatch.of(assoc)
    watch.wait_for_room(timeout)
    watch.hear(timeout)


class PeerWatch:
    """Lets the association thread wait until pynetdicom has acted on what the peer sent.

    A C-FIND handler runs in the association thread; pynetdicom's DUL thread reads the
    socket. While the handler encodes answers it holds the GIL, and the DUL, which needs
    it a few times to read and decode one PDU, gets it only every switch interval
    (5 ms): a C-CANCEL used to be acted on thousands of answers late. So, between two
    batches of answers, the association thread asks the kernel whether the peer has sent
    anything (``FIONREAD``) and, if so, sleeps until the DUL has read those bytes and
    the state machine has acted on them: a C-CANCEL then sets pynetdicom's cancel flag
    before the next batch.

    What the DUL has done is seen through two public pynetdicom events, bound once per
    association: ``EVT_DATA_RECV`` (a whole PDU read, before it is decoded: counts its
    bytes and marks it pending) and ``EVT_FSM_TRANSITION`` after an incoming-PDU event
    (the action ran: a C-CANCEL is in ``cancel_req``; clears the mark).

    It also bounds what is in flight: answers the peer has not read yet cannot be
    cancelled. :meth:`wait_for_room` waits while the kernel holds more than one batch it
    has not been able to send (``SIOCOUTQNSD``, the peer's window is full), so at a
    cancel no more than the peer's receive buffer plus two batches are on their way, as
    with DCMTK's fixed 32 KB socket buffers. On TLS, where the kernel's bytes are not
    the PDU's, :meth:`hear` waits for one whole PDU instead. Both ioctls are Linux's;
    elsewhere the watch falls back to asking ``select`` and waiting for one PDU, and
    does not bound the backlog.
    """

    # Events the DUL's state machine gets for a PDU read from the peer (PS3.8 9.2).
    INCOMING = frozenset({"Evt3", "Evt4", "Evt6", "Evt10", "Evt12", "Evt13", "Evt16", "Evt19"})
    # Unsent bytes the kernel may hold before answers wait (one answer batch).
    BACKLOG_BYTES = 32 * 1024

    def __init__(self, assoc: Any) -> None:
        self.assoc = assoc
        self.bytes_read = 0
        self.pdus_read = 0
        self.pending = False
        # Message IDs of the C-CANCELs received since their request (see _on_message).
        self._cancels: set[int] = set()
        assoc.bind(evt.EVT_DATA_RECV, self._on_data)
        assoc.bind(evt.EVT_FSM_TRANSITION, self._on_transition)
        assoc.bind(evt.EVT_DIMSE_RECV, self._on_message)

    @classmethod
    def of(cls, assoc: Any) -> PeerWatch:
        """The watch of ``assoc`` (bound on first use, kept for the association).

        Kept as an attribute of the association, so that the two go together: a
        WeakKeyDictionary of watches would never let an association go, since its watch
        (the value) refers to it.
        """
        watch: PeerWatch | None = getattr(assoc, _WATCH_ATTRIBUTE, None)
        if watch is None:
            watch = cls(assoc)
            setattr(assoc, _WATCH_ATTRIBUTE, watch)
        return watch

    @property
    def _raw(self) -> socket.socket | None:
        raw = getattr(self.assoc.dul.socket, "socket", None)
        return raw if isinstance(raw, socket.socket) else None

    def _on_data(self, event: evt.Event) -> None:
        self.bytes_read += len(event.data)
        self.pdus_read += 1
        self.pending = True

    def _on_transition(self, event: evt.Event) -> None:
        if event.fsm_event in self.INCOMING:
            self.pending = False

    def _on_message(self, event: evt.Event) -> None:
        # pynetdicom forgets a C-CANCEL that arrives before its handler has started (it
        # clears its cancel flags then): one sent right behind its request was lost.
        # Here a request clears the cancels of its own message ID, and a later C-CANCEL
        # for it counts until the next request with that ID.
        command = event.message.command_set
        field, message_id = command.get("CommandField"), None
        if field == _C_CANCEL_RQ:
            message_id = command.get("MessageIDBeingRespondedTo")
            if message_id is not None:
                self._cancels.add(int(message_id))
        elif field is not None and not int(field) & 0x8000:
            message_id = command.get("MessageID")
            if message_id is not None:
                self._cancels.discard(int(message_id))

    def cancelled(self, message_id: int) -> bool:
        """True if a C-CANCEL for the request ``message_id`` has been received."""
        return message_id in self._cancels

    def hear(self, timeout: float) -> None:
        """If the peer has sent something, wait until the DUL has read and acted on it."""
        raw = self._raw
        if raw is None:
            return
        waiting = _readable_bytes(raw) if not isinstance(raw, ssl.SSLSocket) else None
        if waiting is None:
            # TLS (or no FIONREAD): the kernel's bytes are not the PDU's; wait for one PDU.
            if not _selectable(raw):
                return
            pdus = self.pdus_read
            done = lambda: self.pdus_read > pdus and not self.pending  # noqa: E731
        elif waiting == 0:
            return
        else:
            target = self.bytes_read + waiting
            done = lambda: self.bytes_read >= target and not self.pending  # noqa: E731
        deadline = time.monotonic() + timeout
        while not done() and self.assoc.is_established and time.monotonic() < deadline:
            # Sleeping hands the GIL to the DUL thread.
            time.sleep(0.0002)

    def wait_for_room(self, timeout: float, cancelled: Any = None) -> None:
        """Wait while the kernel holds more than a batch the peer has no room for yet.

        Hears the peer while waiting, and returns early once ``cancelled()`` is true.
        Raises ``TimeoutError`` (an OSError) if the peer takes nothing for ``timeout``.
        """
        raw = self._raw
        if raw is None or _unsent_bytes(raw) <= self.BACKLOG_BYTES:
            return
        deadline = time.monotonic() + timeout
        pause = 0.0002
        while _unsent_bytes(raw) > self.BACKLOG_BYTES:
            self.hear(timeout)
            if not self.assoc.is_established or (cancelled is not None and cancelled()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the peer has read nothing for {timeout:.0f} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.0005)


_WATCH_ATTRIBUTE = "_broker_peer_watch"
# PS3.7 Table E.1-1: Command Field of C-CANCEL-RQ (responses have bit 15 set).
_C_CANCEL_RQ = 0x0FFF
# Linux: bytes in the send queue not yet sent (SIOCOUTQNSD, linux/sockios.h).
_SIOCOUTQNSD = 0x894B if sys.platform.startswith("linux") else None
_FIONREAD = getattr(termios, "FIONREAD", None)


def _readable_bytes(raw: socket.socket) -> int | None:
    """Bytes the peer has sent that nobody has read yet (None: cannot tell)."""
    if _FIONREAD is None:
        return None
    try:
        result: int = struct.unpack("i", fcntl.ioctl(raw.fileno(), _FIONREAD, b"\0\0\0\0"))[0]
    except (OSError, ValueError):
        return 0
    return result


def _unsent_bytes(raw: socket.socket) -> int:
    if _SIOCOUTQNSD is None:
        return 0
    try:
        result: int = struct.unpack("i", fcntl.ioctl(raw.fileno(), _SIOCOUTQNSD, b"\0\0\0\0"))[0]
    except (OSError, ValueError):
        return 0
    return result


def _selectable(raw: socket.socket) -> bool:
    try:
        ready, _, _ = select.select([raw], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(ready)


class PendingSender:
    """Sends C-FIND pending responses whose identifiers are already encoded.

    pynetdicom encodes every response twice over in Python (the identifier Dataset, then
    a command Dataset and its fragments) and hands each PDU to its DUL thread, which
    costs far more than finding the answer. Here the command set of a pending response
    is encoded once per request (by pynetdicom), and each answer is one P-DATA-TF PDU
    holding two PDVs, command and identifier.

    On a plain TCP socket the PDUs are written by the association thread itself, a batch
    (``BUFFER_BYTES``) to a ``sendall``, once the DUL has nothing queued: the DUL only
    ever sends what is queued, and pynetdicom queues nothing for this association while
    its handler runs. Before each batch the sender waits while the kernel cannot pass
    the previous ones on, and after it lets the DUL read what the peer sent
    (:class:`PeerWatch`), so :attr:`cancelled` turns true within one batch of a
    C-CANCEL's arrival. On TLS, where two threads must not use one SSL connection at
    once, each PDU goes through the DUL's queue instead (the caller gives the DUL its
    turn with :func:`let_peer_speak`). :meth:`flush` must run before the handler yields
    or returns, so that pynetdicom's own responses follow the answers.
    """

    BUFFER_BYTES = 32 * 1024

    def __init__(
        self,
        assoc: Any,
        context_id: int,
        request: Any,
        status: int,
        is_cancelled: Callable[[], bool] | None = None,
        timeout: float = 30.0,
    ) -> None:
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
        self.message_id = int(request.MessageID or 0)
        self.timeout = timeout
        # The peer's maximum P-DATA-TF variable field length (0: no limit).
        self.max_length = int(assoc.requestor.maximum_length or 0)
        raw = getattr(assoc.dul.socket, "socket", None)
        self._raw: socket.socket | None = (
            raw if isinstance(raw, socket.socket) and not isinstance(raw, ssl.SSLSocket) else None
        )
        self._is_cancelled = is_cancelled
        self._cancelled = False
        self._watch = PeerWatch.of(assoc)
        # PDV item: length (4 bytes, big endian), context ID, message control header.
        self._command_pdv = _PDV_HEADER(len(self.command) + 2, context_id, 0x03) + self.command
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._dul_drained = False

    @property
    def direct(self) -> bool:
        """True when answers are written to the socket by the caller's thread."""
        return self._raw is not None

    @property
    def cancelled(self) -> bool:
        """True once the peer's C-CANCEL of this request has been heard (stays true)."""
        if not self._cancelled:
            self._cancelled = PeerWatch.of(self.assoc).cancelled(self.message_id) or bool(
                self._is_cancelled is not None and self._is_cancelled()
            )
        return self._cancelled

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
            _wait_until_sent(self.assoc, self.timeout)
            self._dul_drained = True
        data_pdv = _PDV_HEADER(len(identifier) + 2, self.context_id, 0x02) + identifier
        pdu = _PDU_HEADER(0x04, 0, len(self._command_pdv) + len(data_pdv))
        self._buffer += (pdu, self._command_pdv, data_pdv)
        self._buffered += len(pdu) + len(self._command_pdv) + len(data_pdv)
        if self._buffered >= self.BUFFER_BYTES:
            self.flush()
        return True

    def flush(self) -> None:
        """Write what is buffered, then hear the peer (raises OSError if it has gone).

        Once a C-CANCEL is heard, nothing more is written: :meth:`discard` the rest.
        """
        if self._raw is None:
            return
        if self._buffer:
            self._watch.wait_for_room(self.timeout, lambda: self.cancelled)
            # A C-CANCEL may have come in while this batch was encoded.
            self._watch.hear(self.timeout)
            if self.cancelled:
                return
            data = b"".join(self._buffer)
            self.discard()
            self._raw.sendall(data)
        self._watch.hear(self.timeout)

    def discard(self) -> int:
        """Forget the answers not written yet; returns how many."""
        # Three parts per answer: PDU header, command PDV, identifier PDV.
        dropped = len(self._buffer) // 3
        self._buffer.clear()
        self._buffered = 0
        return dropped


_PDV_HEADER = struct.Struct(">IBB").pack
_PDU_HEADER = struct.Struct(">BBI").pack


def _wait_until_sent(assoc: Any, timeout: float) -> None:
    pending = assoc.dul.to_provider_queue.queue
    deadline = time.monotonic() + timeout
    while pending and assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.0002)


class CheapCopyContexts(list[Any]):
    """The supported presentation contexts of a listener, for pynetdicom 3.0's
    ``AssociationServer``, which deep-copies them for every association it accepts.

    With the storage SOP classes (about 170, each in every transfer syntax) that deepcopy
    rebuilds and re-validates thousands of UIDs: 60-70 ms per association on this
    machine, for every C-ECHO and worklist query too; even shallow copies of each
    context took 0.5-0.6 ms of the 6 ms from connect to A-ASSOCIATE-AC. Nothing changes
    an acceptor's supported contexts: pynetdicom 3.0 reads them only in
    ``ACSE._negotiate_as_acceptor`` (``negotiate_as_acceptor`` and
    ``negotiate_unrestricted`` read each context's syntaxes and roles and build new
    contexts for their result). So each association gets a new list of the same
    context objects. Relies on pynetdicom copying ``server.contexts`` with
    ``copy.deepcopy`` and on nothing writing to them afterwards, which
    ``tests/test_routing_listener_contexts.py`` checks after real negotiations.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return list(self)


def plain_socket(assoc: Any) -> socket.socket | None:
    """The association's TCP socket, if it is a plain one (not TLS)."""
    raw = getattr(assoc.dul.socket, "socket", None)
    if isinstance(raw, socket.socket) and not isinstance(raw, ssl.SSLSocket):
        return raw
    return None


def send_c_store_encoded(
    assoc: Any,
    context_id: int,
    sop_class_uid: str,
    sop_instance_uid: str,
    dataset: bytes | memoryview,
    *,
    message_id: int = 1,
    priority: int = 2,
) -> Dataset | None:
    """Send a C-STORE-RQ whose data set is already encoded in the context's transfer
    syntax, and wait for the response; the status Dataset (empty if none came, as
    pynetdicom's ``send_c_store``), or None when the socket is not plain TCP (then use
    ``send_c_store``).

    pynetdicom hands every P-DATA PDU to its DUL thread, one per loop of that thread,
    through its state machine and events: with a peer whose maximum PDU is 16 KB (DCMTK's
    default) a 512 KB image is 33 PDUs and most of the sending time. Here the command set
    is encoded by pynetdicom and the PDUs are built and written by the calling thread in
    one ``sendall``, while, as in ``send_c_store``, the association's reactor is paused
    and the DUL has nothing queued; the DUL still reads the response. Relies on pynetdicom
    3.0's ``_reactor_checkpoint`` / ``_is_paused`` and ``_check_received_status``.
    """
    raw = plain_socket(assoc)
    if raw is None:
        return None
    request = C_STORE()
    request.MessageID = message_id
    request.AffectedSOPClassUID = sop_class_uid
    request.AffectedSOPInstanceUID = sop_instance_uid
    request.Priority = priority
    # Any data set makes the command say "a data set follows".
    request.DataSet = BytesIO(b"\x00")
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    first = next(iter(message.encode_msg(context_id, 0)))
    ((_, fragment),) = first.presentation_data_value_list[:1]
    command = bytes(fragment[1:])
    # The peer's maximum P-DATA-TF length; each PDV item takes 6 bytes of it.
    limit = int(assoc.acceptor.maximum_length or 0)
    chunk = limit - 6 if limit > 6 else 1 << 20
    data = memoryview(dataset)
    parts: list[bytes | memoryview] = [
        _PDU_HEADER(0x04, 0, len(command) + 6),
        _PDV_HEADER(len(command) + 2, context_id, 0x03),
        command,
    ]
    for offset in range(0, len(data), chunk):
        piece = data[offset : offset + chunk]
        last = offset + chunk >= len(data)
        parts += (
            _PDU_HEADER(0x04, 0, len(piece) + 6),
            _PDV_HEADER(len(piece) + 2, context_id, 0x02 if last else 0x00),
            piece,
        )
    assoc._reactor_checkpoint.clear()
    try:
        while not assoc._is_paused and assoc.is_established:
            time.sleep(0.0001)
        _wait_until_sent(assoc, 30.0)
        raw.sendall(b"".join(parts))
        _, response = assoc.dimse.get_msg(block=True)
    finally:
        assoc._reactor_checkpoint.set()
    if response is None:
        return Dataset()
    status: Dataset = assoc._check_received_status(response)
    return status
