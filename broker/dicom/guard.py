"""Hardening of pynetdicom's association server against hostile or broken peers.

Every use of pynetdicom's private internals by the listener's hardening is in this
module; it was written for the pynetdicom release ``core.dicom.net.PYNETDICOM_WRITTEN_FOR``
names, and the ``broker.E020`` system check (``broker.checks.PRIVATE_API``) refuses to
start with another. It depends on:

- ``AssociationServer(..., request_handler=...)`` and ``RequestHandler._create_association``
  (transport.py): our handler swaps the class of the association's ``AssociationSocket``
  for :class:`GuardedSocket` and wraps the association thread's ``_target``;
- ``AssociationSocket.recv/send/close/ready`` and the order in which
  ``DULServiceProvider._read_pdu_data`` reads a PDU (``recv(6)``, then ``recv(length)``);
- ``DULServiceProvider.receive_pdu``, ``state_machine.current_state`` (``"Sta2"``: waiting
  for the A-ASSOCIATE-RQ; the states of ``_SELECT_STATES``), ``artim_timer.remaining``, ``_run_loop_delay``, ``_kill_thread``,
  ``event_queue`` and ``to_provider_queue`` (replaced by a queue that wakes the DUL), and
  that the DUL loop only sleeps, looks at that queue, then asks ``socket.ready``;
- ``DIMSEServiceProvider.message`` / ``msg_queue`` (the message being assembled and the
  ones waiting to be served);
- ``ApplicationEntity._servers`` (the list ``AssociationServer.shutdown`` removes from);
- ``Association._run_reactor`` polling with ``time.sleep(0.001)`` from the association's
  own thread, through the ``time`` module that ``pynetdicom.association`` imported, and
  ``Association.kill``; ``DIMSEServiceProvider.msg_queue`` and
  ``DULServiceProvider.to_user_queue`` (both replaced by queues that wake the reactor).

What it adds, per connection (``tests/test_dicom_hostile.py`` drives each with raw sockets):

1. Admission at accept: at most ``per_host`` connections per peer address; connections
   that have not sent an A-ASSOCIATE-RQ yet ("pending") are at most ``max_pending``, and
   when a new one arrives with the pending table full, the oldest pending connection of
   the address holding the most pending ones is closed. A flood of silent connections
   therefore never keeps another address out.
2. Association slots (``DICOM_MAX_ASSOCIATIONS``) are taken when an A-ASSOCIATE-RQ has
   arrived (:meth:`ConnectionTable.claim`), not at accept, and given back when the
   association thread ends.
3. Deadlines: before the A-ASSOCIATE-RQ, everything (TLS handshake included) must happen
   within the ACSE timeout from accept; afterwards each PDU must arrive whole within the
   network timeout once its first byte has; every write has the network timeout
   (``sendall`` bounds the whole write).
4. A peer that closes, or whose connection the DUL closes, frees its slot at once: the
   association thread, which pynetdicom leaves waiting for the whole ACSE timeout, polls
   for it.
5. Latency: an association's DUL, from the A-ASSOCIATE-RQ to the peer's close, waits in
   select() for the peer or for a PDU to send, instead of polling every millisecond
   (:meth:`GuardedSocket.ready`).
6. Latency of the association thread: pynetdicom's reactor looks for a request, a
   release or an abort every millisecond; here it waits until one has been queued
   (:class:`ReactorWake`), so a request is served, and a release answered, at once.
7. Memory: a PDU longer than the maximum we announced (P-DATA-TF) or than
   ``OTHER_PDU_LIMIT`` (the others), a DIMSE message growing past ``max_message``, or
   more than ``MAX_QUEUED_MESSAGES`` requests waiting, gets an A-ABORT and the
   connection closed before anything more is read.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import queue
import select
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pynetdicom
from pynetdicom import association as pynetdicom_association
from pynetdicom import evt
from pynetdicom.transport import (
    AddressInformation,
    AssociationSocket,
    RequestHandler,
    ThreadedAssociationServer,
)

from core.dicom import net

logger = logging.getLogger(__name__)

PYNETDICOM_VERSION = net.PYNETDICOM_WRITTEN_FOR

# The A-ASSOCIATE-RQ and the other non-data PDUs: a proposal of 128 presentation contexts
# with a dozen transfer syntaxes each is under 64 KiB.
OTHER_PDU_LIMIT = 1024 * 1024
# With DICOM_MAX_PDU=0 we announce no limit; we still read no P-DATA-TF PDU above this.
UNLIMITED_PDU_CAP = 16 * 1024 * 1024
# We negotiate no asynchronous operations: a peer has at most one request outstanding
# (plus a C-CANCEL); many more queued is a peer flooding us.
MAX_QUEUED_MESSAGES = 16
# How often a pending association thread checks that its peer is still there.
_POLL = 0.05
# In state Sta2 (no A-ASSOCIATE-RQ yet) the DUL has nothing to send, so it may wait this
# long in select() instead of spinning every millisecond.
_PENDING_SELECT = 0.05
# In these states the DUL waits in select() for the peer's data or for a PDU queued to
# send (see GuardedSocket.ready), at most _ESTABLISHED_SELECT: Sta3, the A-ASSOCIATE-RQ
# read and the association thread deciding; Sta6, established; Sta7 and Sta8, a release
# under way; Sta13, an A-RELEASE-RP (or A-ABORT) sent and the peer's close awaited.
_SELECT_STATES = frozenset({"Sta3", "Sta6", "Sta7", "Sta8", "Sta13"})
_ESTABLISHED_SELECT = 0.05
# pynetdicom's DUL loop delay (``DULServiceProvider._run_loop_delay``), restored outside
# _SELECT_STATES.
_DUL_LOOP_DELAY = 0.001
# The pause of pynetdicom's association reactor between two looks for work
# (``time.sleep(0.001)`` in ``Association._run_reactor``), and how long a guarded
# association's reactor waits instead when nothing has been queued: its other checks
# (the DUL thread still alive, the idle timeout) need no sooner look.
REACTOR_POLL = 0.001
REACTOR_WAIT = 0.05

_HEADER = struct.Struct(">BBL")
P_DATA_TF = 0x04
ABORT_SOURCE_PROVIDER = 0x02
ABORT_REASON_NOT_SPECIFIED = 0x00
ABORT_REASON_INVALID_PARAMETER = 0x06


def version_matches() -> bool:
    found = str(pynetdicom.__version__)
    return found == PYNETDICOM_VERSION or found.startswith(PYNETDICOM_VERSION + ".")


@dataclass(frozen=True)
class Limits:
    max_associations: int
    per_host: int
    max_pending: int
    acse_timeout: float
    network_timeout: float
    max_pdu: int  # what we announce for P-DATA-TF (0: no limit)
    max_message: int  # bytes of one DIMSE message held in memory


@dataclass(eq=False)
class Connection:
    host: str
    sock: socket.socket
    accepted: float = field(default_factory=time.monotonic)
    associated: bool = False
    evicted: bool = False
    released: bool = False


class ConnectionTable:
    """Connections of one server, by address and phase; every method holds the lock."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._open: list[Connection] = []

    def admit(self, sock: socket.socket, host: str) -> Connection | None:
        """At accept: a Connection, or None when ``host`` already holds its share."""
        victim: Connection | None = None
        with self._lock:
            live = [c for c in self._open if not c.evicted]
            if sum(1 for c in live if c.host == host) >= self.limits.per_host:
                return None
            pending = [c for c in live if not c.associated]
            if len(pending) >= self.limits.max_pending:
                # Make room at the expense of the address with the most pending
                # connections (the flooder), oldest first.
                heaviest, _ = Counter(c.host for c in pending).most_common(1)[0]
                victim = min((c for c in pending if c.host == heaviest), key=lambda c: c.accepted)
                victim.evicted = True
            conn = Connection(host, sock)
            self._open.append(conn)
        if victim is not None:
            logger.warning(
                "DICOM connection from %s closed before association: %d connections "
                "without an association request is the most the listener holds",
                victim.host,
                self.limits.max_pending,
            )
            _shut(victim.sock)
        return conn

    def claim(self, conn: Connection) -> bool:
        """On the A-ASSOCIATE-RQ: take an association slot (False: none left)."""
        with self._lock:
            if conn.associated:
                return True
            taken = sum(1 for c in self._open if c.associated)
            if taken >= self.limits.max_associations:
                return False
            conn.associated = True
            return True

    def release(self, conn: Connection) -> None:
        with self._lock:
            if not conn.released:
                conn.released = True
                self._open.remove(conn)

    def counts(self) -> dict[str, int]:
        """Open connections: ``associated``, ``pending`` (for /metrics and the tests)."""
        with self._lock:
            associated = sum(1 for c in self._open if c.associated)
            return {"associated": associated, "pending": len(self._open) - associated}

    def open_connections(self) -> list[Connection]:
        with self._lock:
            return list(self._open)


def _shut(sock: socket.socket | None) -> None:
    """Shut a connection down, waking any thread blocked on it (not TLS-aware on
    purpose: the SSL object may be in use by another thread)."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def abort_pdu(reason: int) -> bytes:
    """A-ABORT from the service provider (PS3.8 9.3.8)."""
    return _HEADER.pack(0x07, 0, 4) + bytes([0, 0, ABORT_SOURCE_PROVIDER, reason])


class GuardedSocket(AssociationSocket):
    """An AssociationSocket with deadlines and size limits (set up by :func:`_guard`)."""

    _guard_limits: Limits
    _guard_conn: Connection
    _guard_deadline: float  # the ACSE deadline (accept + ACSE timeout)
    _guard_gone: threading.Event
    _guard_body: int | None  # length announced by the header just read
    # The DUL's wake-up pair (read end, write end): socket objects, not bare descriptors,
    # so that a use after close fails instead of reaching a descriptor number reused by
    # another connection or file.
    _guard_wake: tuple[socket.socket, socket.socket] | None

    @property
    def ready(self) -> bool:
        sock = self.socket
        dul = self.assoc.dul
        if (
            sock is not None
            and self._is_connected
            and dul.state_machine.current_state == "Sta2"
            and dul.event_queue.empty()
            and not (isinstance(sock, ssl.SSLSocket) and sock.pending())
        ):
            # Waiting for the A-ASSOCIATE-RQ: block a little in select() rather than
            # let the DUL spin; data arriving ends the wait at once. Not while the DUL
            # has an event to act on: a peer that sends its request at once (findscu
            # does) has it read while the DUL is still in Sta1, before the "connection
            # open" event moves it to Sta2; the request's event then waits in the
            # queue behind that one, and blocking here would delay the association
            # by the whole wait (50 ms, measured with tcpdump).
            with contextlib.suppress(OSError, ValueError):
                select.select([sock], [], [], _PENDING_SELECT)
        elif sock is not None and self._is_connected:
            self._guard_wait_established(sock, dul)
        else:
            # Closed: poll as pynetdicom does until the association thread stops the DUL.
            dul._run_loop_delay = _DUL_LOOP_DELAY
        ready: bool = AssociationSocket.ready.fget(self)  # type: ignore[attr-defined]
        return ready

    def _guard_wait_established(self, sock: socket.socket, dul: Any) -> None:
        """Past the A-ASSOCIATE-RQ and nothing to do: wait for the peer or for a queued PDU.

        pynetdicom's DUL polls: it sleeps a millisecond between two looks at the socket
        and at its queue, so each request read and each response sent through it waits
        up to that long, and an idle association costs a few per cent of a core. Here,
        with nothing queued, it waits in select() on the socket and on the wake-up socket
        pair that :func:`_waker` writes to, and its loop delay is 0 in the states
        of :data:`_SELECT_STATES` (it only ever loops after an event or after such a
        wait): the A-ASSOCIATE-AC, each response and the A-RELEASE-RP go out as soon as
        the association thread queues them. Elsewhere it polls as pynetdicom does.
        """
        if dul.state_machine.current_state not in _SELECT_STATES or self._guard_wake is None:
            dul._run_loop_delay = _DUL_LOOP_DELAY
            return
        dul._run_loop_delay = 0
        if (
            not dul.event_queue.empty()
            or dul.to_provider_queue.queue
            or dul._kill_thread
            or (isinstance(sock, ssl.SSLSocket) and sock.pending())
        ):
            return
        wake = self._guard_wake
        # Sta13 (awaiting the peer's close) runs the ARTIM timer: look again when it ends.
        timeout = min(_ESTABLISHED_SELECT, max(0.0, dul.artim_timer.remaining))
        try:
            waited: list[Any] = [sock, wake[0]]
            readable = select.select(waited, [], [], timeout)[0]
            if wake[0] in readable:
                wake[0].recv(4096)
        except (OSError, ValueError):
            # The pair is closed (the association is ending): poll as pynetdicom does.
            dul._run_loop_delay = _DUL_LOOP_DELAY

    def recv(self, nr_bytes: int) -> bytearray:
        sock = self.socket
        data = bytearray()
        if sock is None or nr_bytes <= 0:
            return data
        body = self._guard_body
        self._guard_body = None
        if body is None and nr_bytes == 6:
            refusal = self._guard_memory_refusal()
            if refusal:
                self._guard_abort(ABORT_REASON_NOT_SPECIFIED, refusal)
                return data
        limits = self._guard_limits
        deadline = time.monotonic() + limits.network_timeout
        if not self.assoc.is_established:
            deadline = min(deadline, self._guard_deadline)
        while len(data) < nr_bytes:
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                remaining = deadline - time.monotonic()
                try:
                    readable = remaining > 0 and select.select([sock], [], [], remaining)[0]
                except (OSError, ValueError):
                    readable = False
                if not readable:
                    logger.warning(
                        "DICOM peer %s: nothing received for %.0f s in the middle of a PDU "
                        "or before its association request; connection closed",
                        self._guard_conn.host,
                        limits.network_timeout
                        if self.assoc.is_established
                        else limits.acse_timeout,
                    )
                    self._guard_close()
                    return data
            try:
                chunk = sock.recv(min(65536, nr_bytes - len(data)))
            except OSError as exc:
                level = logging.WARNING if isinstance(exc, ssl.SSLError) else logging.INFO
                logger.log(level, "DICOM peer %s: %s", self._guard_conn.host, type(exc).__name__)
                self._guard_close()
                return data
            if not chunk:
                self._guard_gone.set()
                return data
            data += chunk
        if body is None and nr_bytes == 6:
            pdu_type, _, length = _HEADER.unpack(bytes(data))
            refusal = self._guard_length_refusal(pdu_type, length)
            if refusal:
                # The DUL next asks for the body: the connection is shut by then, so
                # it reads nothing and closes the association.
                self._guard_abort(ABORT_REASON_INVALID_PARAMETER, refusal)
            else:
                self._guard_body = length
        return data

    def send(self, bytestream: bytes) -> None:
        sock = self.socket
        if sock is None:
            self.event_queue.put("Evt17")
            return
        try:
            # The socket's timeout (the network timeout) bounds the whole sendall.
            sock.sendall(bytestream)
        except Exception:
            # As AssociationSocket.send: Evt17, transport connection closed.
            self._guard_gone.set()
            self.event_queue.put("Evt17")
            return
        evt.trigger(self.assoc, evt.EVT_DATA_SENT, {"data": bytestream})

    def close(self) -> None:
        self._guard_gone.set()
        super().close()

    def _guard_length_refusal(self, pdu_type: int, length: int) -> str:
        limits = self._guard_limits
        if pdu_type == P_DATA_TF:
            limit = limits.max_pdu or UNLIMITED_PDU_CAP
            name = "DICOM_MAX_PDU" if limits.max_pdu else "the listener's cap"
        else:
            limit, name = OTHER_PDU_LIMIT, "the listener's cap"
        if length > limit:
            return f"PDU of {length} bytes is longer than {name} ({limit})"
        return ""

    def _guard_memory_refusal(self) -> str:
        dimse = self.assoc.dimse
        if dimse.msg_queue.qsize() > MAX_QUEUED_MESSAGES:
            return f"more than {MAX_QUEUED_MESSAGES} requests waiting"
        message = dimse.message
        if message is None:
            return ""
        held = message.encoded_command_set.tell()
        if getattr(message, "_data_set_file", None) is None and message.data_set is not None:
            held += message.data_set.tell()
        if held > self._guard_limits.max_message:
            return (
                f"a DIMSE message over DICOM_MAX_MESSAGE_BYTES ({self._guard_limits.max_message})"
            )
        return ""

    def _guard_abort(self, reason: int, why: str) -> None:
        assoc: Any = self.assoc
        assoc._broker_abort_reason = why
        logger.warning("DICOM peer %s: %s; association aborted", self._guard_conn.host, why)
        sock = self.socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.sendall(abort_pdu(reason))
        self._guard_close()

    def _guard_close(self) -> None:
        self._guard_gone.set()
        _shut(self.socket)


class _NotifyingQueue(queue.Queue[Any]):
    """A queue that calls ``on_put`` after each put: the DUL's ``to_provider_queue``
    (each PDU queued to send wakes the DUL from its select() in
    :meth:`GuardedSocket.ready`), and the two queues an association's reactor looks at
    (each put wakes it, :class:`ReactorWake`)."""

    def __init__(self, on_put: Callable[[], None]) -> None:
        super().__init__()
        self._on_put = on_put

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._on_put()


def _waker(wake: socket.socket) -> Callable[[], None]:
    """Write a byte to the DUL's wake-up socket."""

    def write() -> None:
        # A full buffer already wakes the DUL; a closed one means the association is over.
        with contextlib.suppress(OSError):
            wake.send(b"\0")

    return write


class ReactorWake:
    """Lets an acceptor association's reactor sleep until there is something to do.

    pynetdicom's ``Association._run_reactor`` sleeps a millisecond, then looks for a
    whole DIMSE message (``dimse.msg_queue``), a release or an abort (``dul.to_user_queue``),
    and so on, over and over: each request waits up to a millisecond (1.06 ms on Linux)
    before its handler runs, a findscu's A-RELEASE-RQ as much again before it is
    answered, and every idle association wakes a thousand times a second, taking the
    interpreter lock from the threads doing work. Both queues are replaced by
    :class:`_NotifyingQueue`, each put counted by :meth:`notify`, and that one sleep, when the association's own thread makes
    it, by :meth:`wait`: it returns at once when something was queued since the last
    look or a DIMSE message still waits (the reactor takes one a look), otherwise when
    something is queued (or after ``REACTOR_WAIT``).
    """

    def __init__(self, assoc: Any) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._puts = 0
        self._seen = 0
        self.waits = 0  # how many times the reactor waited (for the tests)
        self._messages = _NotifyingQueue(self.notify)
        assoc.dimse.msg_queue = self._messages
        assoc.dul.to_user_queue = _NotifyingQueue(self.notify)
        kill = assoc.kill

        def kill_and_wake() -> None:
            kill()
            self.notify()

        assoc.kill = kill_and_wake

    def notify(self) -> None:
        with self._lock:
            self._puts += 1
        self._event.set()

    def wait(self) -> None:
        # Cleared before looking: a put after the look sets it again, so none is missed.
        # The reactor takes one DIMSE message a look: while any waits, it looks again.
        self._event.clear()
        puts = self._puts
        if puts != self._seen or self._messages.qsize():
            self._seen = puts
            return
        self.waits += 1
        self._event.wait(REACTOR_WAIT)
        self._seen = self._puts


class _ReactorClock:
    """``pynetdicom.association``'s ``time``: the reactor's poll of a guarded
    association, made from that association's own thread, waits on its
    :class:`ReactorWake`; everything else is the ``time`` module's."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        wake = getattr(threading.current_thread(), _REACTOR_WAKE, None)
        if wake is not None and seconds == REACTOR_POLL:
            wake.wait()
        else:
            time.sleep(seconds)


_REACTOR_WAKE = "_broker_reactor_wake"


def install_reactor_clock() -> None:
    """Give ``pynetdicom.association`` the clock of :class:`_ReactorClock` (once)."""
    if not isinstance(pynetdicom_association.time, _ReactorClock):
        pynetdicom_association.time = _ReactorClock()  # type: ignore[assignment]


def _close_wake(assoc: Any) -> None:
    """Close the wake-up socket pair of a guarded association whose thread has ended.

    Only once the DUL thread has stopped: a closed descriptor's number is soon another
    connection's, which a DUL still selecting on (or reading) it would disturb. A DUL
    that does not stop within a second keeps its pair (two descriptors) for good.
    """
    dul = assoc.dul
    sock = dul.socket
    wake = getattr(sock, "_guard_wake", None)
    if wake is None:
        return
    # From now on the DUL polls as pynetdicom does; a wait already begun ends within
    # _ESTABLISHED_SELECT.
    sock._guard_wake = None
    if dul.is_alive() and dul is not threading.current_thread():
        dul.join(timeout=1.0)
    if dul.is_alive():
        return
    for end in wake:
        end.close()


def _guard(assoc: Any, conn: Connection, limits: Limits) -> None:
    """Turn a new acceptor association into a guarded one (before its thread starts)."""
    assoc._broker_connection = conn
    sock = assoc.dul.socket
    sock.__class__ = GuardedSocket
    sock._guard_limits = limits
    sock._guard_conn = conn
    sock._guard_deadline = conn.accepted + limits.acse_timeout
    sock._guard_gone = threading.Event()
    sock._guard_body = None
    sock._guard_wake = None
    if assoc.dul.to_provider_queue.empty():
        wake = socket.socketpair()
        for end in wake:
            end.setblocking(False)
        sock._guard_wake = wake
        assoc.dul.to_provider_queue = _NotifyingQueue(_waker(wake[1]))
    setattr(assoc, _REACTOR_WAKE, ReactorWake(assoc))
    # The DUL's first loop sleeps its loop delay before it looks at anything; the
    # connection's first event is already queued (ready() sets the delay from then on).
    assoc.dul._run_loop_delay = 0
    raw = sock.socket
    if raw is not None:
        # Every write, and any read our select() does not cover (inside a TLS record).
        raw.settimeout(limits.network_timeout)

    dul = assoc.dul
    receive_pdu = dul.receive_pdu

    def receive_pdu_guarded(wait: bool = False, timeout: float | None = None) -> Any:
        # pynetdicom's acceptor waits for the A-ASSOCIATE-RQ with one blocking get of
        # the whole ACSE timeout, even when the peer has long gone.
        if not wait or assoc.is_established or assoc.requestor.primitive is not None:
            return receive_pdu(wait=wait, timeout=timeout)
        while True:
            remaining = sock._guard_deadline - time.monotonic()
            primitive = receive_pdu(wait=True, timeout=max(0.0, min(_POLL, remaining)))
            if primitive is not None:
                return primitive
            if sock._guard_gone.is_set() or remaining <= _POLL:
                # Wake the DUL if it is blocked on the socket, so that kill() returns.
                sock._guard_close()
                return None

    dul.receive_pdu = receive_pdu_guarded


class GuardedRequestHandler(RequestHandler):
    server: GuardedServer

    @property
    def local(self) -> AddressInformation:
        """The listener's own address, resolved when the server started (pynetdicom
        resolves it with ``getaddrinfo`` for every association), a copy for each."""
        return copy.copy(self.server.local_address)

    def handle(self) -> None:
        conn: Connection = self.server._broker_pending_admissions.pop(id(self.request))
        try:
            assoc: Any = self._create_association()
            _guard(assoc, conn, self.server.limits)
            target = assoc._target
            table = self.server.table

            def run_then_release() -> None:
                try:
                    target()
                finally:
                    table.release(conn)
                    _close_wake(assoc)

            assoc._target = run_then_release
            evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
            assoc.start()
        except BaseException:
            self.server.table.release(conn)
            raise


class GuardedServer(ThreadedAssociationServer):
    """ThreadedAssociationServer that admits connections through a ConnectionTable."""

    limits: Limits
    table: ConnectionTable
    _broker_thread: threading.Thread

    def __init__(self, *args: Any, limits: Limits, **kwargs: Any) -> None:
        self.limits = limits
        self.table = ConnectionTable(limits)
        self._broker_pending_admissions: dict[int, Connection] = {}
        kwargs["request_handler"] = GuardedRequestHandler
        super().__init__(*args, **kwargs)
        # Bound by now: the port is known even when 0 was asked for.
        self.local_address = AddressInformation.from_tuple(self.server_address)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        host = str(client_address[0])
        conn = self.table.admit(request, host)
        if conn is None:
            logger.warning(
                "DICOM connection from %s refused: DICOM_MAX_ASSOCIATIONS_PER_HOST (%d) reached",
                host,
                self.limits.per_host,
            )
            return False
        self._broker_pending_admissions[id(request)] = conn
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        """Create the association in the accepting thread, which then starts its thread.

        ``ThreadingMixIn`` would start a thread per connection only to do this (about a
        millisecond of work, nothing that waits on the peer: the TLS handshake is
        deferred to the association's first read) and start the association's own
        thread: 0.35-0.4 ms from accept to the association thread, on every one.
        """
        self.process_request_thread(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            conn = self._broker_pending_admissions.pop(id(request), None)
            if conn is not None:
                self.table.release(conn)
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def abort_all(self, timeout: float = 5.0) -> None:
        """Close every connection (on stop): the DUL threads are not daemons, so an
        idle association would otherwise keep the process alive until its timeout.

        Established associations get an A-ABORT first (queued to their DUL), then
        whatever is still open a moment later is shut down.
        """
        for assoc in self.active_associations:
            if assoc.is_established:
                try:
                    assoc.abort(block=False)
                except Exception:  # an association already ending: nothing to abort
                    logger.debug("abort on stop failed", exc_info=True)
        started = time.monotonic()
        shut = False
        while self.table.open_connections() and time.monotonic() < started + timeout:
            if not shut and time.monotonic() > started + 0.5:
                for conn in self.table.open_connections():
                    _shut(conn.sock)
                shut = True
            time.sleep(0.02)

    def wait_stopped(self) -> None:
        self._broker_thread.join()


def start_server(ae: Any, address: tuple[str, int], limits: Limits, **kwargs: Any) -> GuardedServer:
    """``ae.start_server(address, block=False, **kwargs)`` with a GuardedServer."""
    install_reactor_clock()
    server: GuardedServer = ae.make_server(
        address, server_class=GuardedServer, limits=limits, **kwargs
    )
    thread = threading.Thread(target=server.serve_forever, name="AcceptorServer-guarded")
    thread.daemon = True
    server._broker_thread = thread
    thread.start()
    ae._servers.append(server)
    return server
