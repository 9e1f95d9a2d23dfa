"""The MLLP listener: asyncio for the sockets, a thread pool for the database work.

Each connection may carry many messages, acknowledged in order, each only after
``message_receive`` has committed it. Messages that arrive on several connections while
the database workers are busy are committed together (``GroupCommit``, the services'
``messages_receive``), each still acknowledged only after that commit. The protocol
handler only frames bytes and hands whole messages to the services; it knows nothing of
HL7 content.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections, connections

from core.mllp import FrameDecoder, Oversized, frame
from hl7v2.intake import message_oversized, message_receive, messages_receive

logger = logging.getLogger(__name__)

READ_SIZE = 65536
# On stop, how long a connection in the middle of a message may take to send its ACK.
STOP_GRACE = 8.0


@dataclass(frozen=True)
class ListenerOptions:
    max_message_bytes: int
    idle_timeout: float
    max_connections: int
    workers: int
    batch_max: int = 1
    ssl_context: ssl.SSLContext | None = None
    reuse_port: bool = False  # several processes share the port (hl7_server --processes)
    max_connections_per_host: int = 1_000_000
    write_timeout: float = 30.0

    @classmethod
    def from_settings(cls) -> ListenerOptions:
        return cls(
            max_message_bytes=settings.HL7_MAX_MESSAGE_BYTES,
            idle_timeout=settings.HL7_IDLE_TIMEOUT,
            max_connections=settings.HL7_MAX_CONNECTIONS,
            workers=settings.HL7_WORKERS,
            batch_max=settings.HL7_BATCH_MAX,
            ssl_context=tls_context(),
            max_connections_per_host=settings.HL7_MAX_CONNECTIONS_PER_HOST,
            write_timeout=settings.HL7_WRITE_TIMEOUT,
        )


# Each worker thread keeps its database connection between messages (CONN_MAX_AGE);
# checking it costs a round trip (CONN_HEALTH_CHECKS), so it is checked at most this
# often. A connection that fails meanwhile is replaced by the services' retry.
CONNECTION_CHECK_INTERVAL = 1.0
_thread_state = threading.local()


def _receive_in_thread(
    items: list[tuple[bytes | Oversized, str]], max_size: int
) -> list[bytes | Exception]:
    """The ACKs of messages that arrived together (group commit), or why there is none."""
    now = time.monotonic()
    if now - getattr(_thread_state, "checked", 0.0) > CONNECTION_CHECK_INTERVAL:
        close_old_connections()
        _thread_state.checked = now
    results: list[bytes | Exception | None] = [None] * len(items)
    whole: list[tuple[int, bytes, str]] = []
    for index, (item, peer) in enumerate(items):
        if isinstance(item, Oversized):
            try:
                results[index] = message_oversized(item.head, item.size, max_size, peer=peer).ack
            except Exception as exc:
                results[index] = exc
        else:
            whole.append((index, item, peer))
    if len(whole) == 1:
        index, raw, peer = whole[0]
        try:
            results[index] = message_receive(raw, peer=peer).ack
        except Exception as exc:
            results[index] = exc
    elif whole:
        replies = messages_receive([(raw, peer) for _, raw, peer in whole])
        for (index, _, _), reply in zip(whole, replies, strict=True):
            results[index] = reply if isinstance(reply, Exception) else reply.ack
    return [r if r is not None else AssertionError("unanswered") for r in results]


class GroupCommit:
    """Messages from all connections, handed to at most ``workers`` transactions at once.

    A message that arrives while every worker is busy waits; when a worker is free it
    takes every message waiting (up to ``batch_max``) into one transaction
    (``messages_receive``), and each message's ACK is sent once that has committed. So a
    busy listener commits many messages at a time, and an idle one each at once, with
    no added delay. Messages of one connection are sent one at a time by ``_serve``, so
    a batch holds at most one of each connection's and their order is kept.
    """

    def __init__(self, executor: ThreadPoolExecutor, workers: int, batch_max: int) -> None:
        self.executor = executor
        self.workers = workers
        self.batch_max = batch_max
        self.waiting: list[tuple[bytes | Oversized, str, asyncio.Future[bytes]]] = []
        self.running = 0

    def submit(self, item: bytes | Oversized, peer: str, max_size: int) -> asyncio.Future[bytes]:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting.append((item, peer, future))
        self._start(max_size)
        return future

    def _start(self, max_size: int) -> None:
        loop = asyncio.get_running_loop()
        while self.waiting and self.running < self.workers:
            batch = self.waiting[: self.batch_max]
            del self.waiting[: self.batch_max]
            self.running += 1
            work = loop.run_in_executor(
                self.executor,
                _receive_in_thread,
                [(item, peer) for item, peer, _ in batch],
                max_size,
            )
            work.add_done_callback(functools.partial(self._done, batch, max_size))

    def _done(
        self,
        batch: list[tuple[bytes | Oversized, str, asyncio.Future[bytes]]],
        max_size: int,
        work: asyncio.Future[list[bytes | Exception]],
    ) -> None:
        self.running -= 1
        if work.cancelled():
            for _, _, future in batch:
                future.cancel()
            self._start(max_size)
            return
        failure = work.exception()
        outcomes: list[bytes | BaseException] = (
            [failure] * len(batch) if failure is not None else list(work.result())
        )
        for (_, _, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # its connection was closed meanwhile
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        self._start(max_size)


class Listener:
    """One listening socket; ``connections`` counts the open ones against the limit."""

    def __init__(self, options: ListenerOptions) -> None:
        self.options = options
        self.connections = 0
        self.by_host: Counter[str] = Counter()
        self.executor = ThreadPoolExecutor(options.workers, thread_name_prefix="hl7-db")
        self.group = GroupCommit(self.executor, options.workers, options.batch_max)
        # Open connections: True while one is between reading a message and sending its
        # ACK (so that stopping lets it finish), False while it waits for the next.
        self.busy: dict[asyncio.StreamWriter, bool] = {}
        self.stopping = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername")
        peer = f"{address[0]}:{address[1]}" if address else "?"
        host = str(address[0]) if address else "?"
        refusal = ""
        if self.connections >= self.options.max_connections:
            refusal = f"{self.connections} connections open (HL7_MAX_CONNECTIONS)"
        elif self.by_host[host] >= self.options.max_connections_per_host:
            refusal = (
                f"{self.by_host[host]} connections open from {host} (HL7_MAX_CONNECTIONS_PER_HOST)"
            )
        if refusal:
            logger.warning("HL7 connection from %s refused: %s", peer, refusal)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            return
        self.connections += 1
        self.by_host[host] += 1
        self.busy[writer] = False
        try:
            await self._serve(reader, writer, peer)
        except asyncio.CancelledError:
            # The listener is stopping. Ending quietly here keeps asyncio from logging
            # the cancelled handler as an error; a message in flight got no ACK, so the
            # sender sends it again and the duplicate check answers it.
            pass
        finally:
            self.busy.pop(writer, None)
            self.connections -= 1
            self.by_host[host] -= 1
            if not self.by_host[host]:
                del self.by_host[host]

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        logger.info("HL7 connection from %s", peer)
        options = self.options
        decoder = FrameDecoder(max_size=options.max_message_bytes)
        loop = asyncio.get_running_loop()
        count = 0
        reason = "closed by peer"
        # Idle means no whole message: bytes that never make one (a byte every few
        # minutes, a frame that never ends) do not keep the connection open.
        idle_until = loop.time() + options.idle_timeout
        try:
            while True:
                try:
                    # asyncio.timeout, not wait_for: no task created for every read.
                    async with asyncio.timeout_at(idle_until):
                        data = await reader.read(READ_SIZE)
                except TimeoutError:
                    reason = f"no message for {options.idle_timeout:g} s"
                    break
                if not data:
                    if self.stopping:
                        reason = "closed: listener stopping"
                    break
                self.busy[writer] = True
                for item in decoder.feed(data):
                    if isinstance(item, bytes) and not item.strip(b" \t\r\n"):
                        # An empty frame (some senders' keep-alive): nothing to store
                        # or acknowledge.
                        continue
                    ack = await self.group.submit(item, peer, options.max_message_bytes)
                    writer.write(frame(ack))
                    try:
                        async with asyncio.timeout(options.write_timeout):
                            await writer.drain()
                    except TimeoutError:
                        # The message is stored; the sender will send it again on a new
                        # connection and get the same answer.
                        reason = f"not reading its ACKs for {options.write_timeout:g} s"
                        writer.transport.abort()
                        return
                    count += 1
                    idle_until = loop.time() + options.idle_timeout
                self.busy[writer] = False
                if self.stopping:
                    # Every message read has been stored and acknowledged; a partial
                    # one is sent again by the peer on its next connection.
                    reason = "closed: listener stopping"
                    break
        except (ConnectionError, OSError) as exc:
            reason = f"lost: {exc}"
        except asyncio.CancelledError:
            reason = "listener stopping"
            raise
        except Exception:
            # The services answer every message; this is a database outage. Without an
            # ACK the sender keeps the message and sends it again.
            logger.exception("HL7 connection from %s: message not stored, closing", peer)
            reason = "error"
        finally:
            if decoder.discarded:
                logger.warning(
                    "HL7 connection from %s: ignored %d bytes outside frames",
                    peer,
                    decoder.discarded,
                )
            if decoder.partial:
                logger.warning("HL7 connection from %s ended mid-message; nothing applied", peer)
            logger.info("HL7 connection from %s %s after %d messages", peer, reason, count)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def stop_connections(self, grace: float) -> None:
        """On stop: close idle connections now, let busy ones send their ACK first.

        Without this an idle RIS connection would keep the listener (and Python 3.12's
        ``Server.wait_closed``) waiting for its idle timeout.
        """
        self.stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.busy and loop.time() < deadline:
            for writer, busy in list(self.busy.items()):
                if not busy:
                    writer.close()
            await asyncio.sleep(0.02)
        for writer in list(self.busy):
            writer.transport.abort()

    async def start(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(
            self.handle,
            host,
            port,
            ssl=self.options.ssl_context,
            reuse_address=True,
            reuse_port=self.options.reuse_port or None,
            backlog=256,
        )

    def close(self) -> None:
        """Finish the messages in progress and close every worker's database connection.

        Each worker thread has its own connection; one task per worker, held at a barrier
        until all have started, makes every thread close its own.
        """
        workers = self.options.workers
        barrier = threading.Barrier(workers)

        def close_connections() -> None:
            connections.close_all()
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)

        for _ in range(workers):
            self.executor.submit(close_connections)
        self.executor.shutdown(wait=True)


def tls_context() -> ssl.SSLContext | None:
    if not settings.HL7_TLS_CERT:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.HL7_TLS_CERT, settings.HL7_TLS_KEY)
    return context


async def serve(
    host: str,
    port: int,
    *,
    ready: Callable[[], None] | None = None,
    options: ListenerOptions | None = None,
) -> None:
    """Listen until cancelled."""
    listener = Listener(options or ListenerOptions.from_settings())
    server = await listener.start(host, port)
    if ready is not None:
        ready()
    try:
        await server.serve_forever()
    finally:
        server.close()  # no new connections
        await listener.stop_connections(STOP_GRACE)
        await server.wait_closed()
        await asyncio.get_running_loop().run_in_executor(None, listener.close)
