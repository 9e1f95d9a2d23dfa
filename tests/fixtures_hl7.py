"""Fixtures for hl7 tests: an in-process MLLP listener on a free port, and a small client."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from core.mllp import END, START, FrameDecoder
from hl7v2.server import Listener, ListenerOptions
from tests.conftest import get_free_port

HOST = "127.0.0.1"


@dataclass
class RunningListener:
    host: str
    port: int
    listener: Listener


class _ListenerThread(threading.Thread):
    def __init__(self, options: ListenerOptions, port: int) -> None:
        super().__init__(name=f"hl7-listener-{port}", daemon=True)
        self.options = options
        self.port = port
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_future: asyncio.Future[None] | None = None
        self.listener = Listener(options)
        self.error: BaseException | None = None

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_future = self.loop.create_future()
        try:
            server = await self.listener.start(HOST, self.port)
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        async with server:
            await self.stop_future
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
        await self.loop.run_in_executor(None, self.listener.close)

    def stop(self) -> None:
        if self.loop is not None and self.stop_future is not None:
            self.loop.call_soon_threadsafe(
                lambda: self.stop_future.done() or self.stop_future.set_result(None)  # type: ignore[union-attr]
            )
        self.join(10)


@pytest.fixture
def hl7_listener() -> Iterator[Callable[..., RunningListener]]:
    """Start the MLLP listener in a thread: ``hl7_listener(idle_timeout=1.0)``."""
    threads: list[_ListenerThread] = []

    def start(**overrides: Any) -> RunningListener:
        options = replace(ListenerOptions.from_settings(), **overrides)
        # Its own port: other listeners of the same test (DICOM) take ``free_port``.
        thread = _ListenerThread(options, get_free_port())
        thread.start()
        thread.ready.wait(10)
        if thread.error is not None:
            raise thread.error
        threads.append(thread)
        return RunningListener(HOST, thread.port, thread.listener)

    yield start
    for thread in threads:
        thread.stop()


class MLLPClient:
    """A plain socket client: send framed messages, read framed ACKs."""

    def __init__(self, port: int, host: str = HOST, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.decoder = FrameDecoder(max_size=10 * 1024 * 1024)
        self.pending: list[bytes] = []

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, message: str | bytes, encoding: str = "latin-1") -> None:
        raw = message.encode(encoding) if isinstance(message, str) else message
        self.sock.sendall(START + raw + END)

    def read_ack(self) -> bytes:
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed before the ACK")
            self.pending += [f for f in self.decoder.feed(data) if isinstance(f, bytes)]
        return self.pending.pop(0)

    def exchange(self, message: str | bytes, encoding: str = "latin-1") -> bytes:
        self.send(message, encoding)
        return self.read_ack()

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MLLPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def msa(ack: bytes) -> list[str]:
    """The MSA fields of an ACK: ``["MSA", "AA", "MSG0001", ...]``."""
    for line in ack.decode("latin-1").split("\r"):
        if line.startswith("MSA"):
            return line.split("|")
    raise AssertionError(f"no MSA in {ack!r}")
