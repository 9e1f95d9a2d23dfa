"""Shared start-up helpers for the listener commands."""

from __future__ import annotations

import errno
import gc
import signal
import socket
import threading
from collections.abc import Iterable

from django.core.management.base import CommandError


def ensure_port_free(variable: str, host: str, port: int) -> None:
    """Fail with one clear line when ``host:port`` cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CommandError(f"{variable}: port {port} on {host} is already in use") from exc
            raise CommandError(f"{variable}: cannot listen on {host}:{port}: {exc}") from exc


# How often the main thread wakes up to run a signal handler that another thread received.
SIGNAL_CHECK_SECONDS = 0.2


def wait_for_stop_signal(signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> int:
    """Block the main thread until SIGINT or SIGTERM; return the signal number."""
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    for signum in signals:
        signal.signal(signum, on_signal)
    # Never an untimed wait: Python runs a signal's handler only in the main thread, when
    # it executes bytecode. The kernel may deliver the process's SIGTERM to any of its
    # threads (the DICOM listener has several per association); then the main thread,
    # blocked on a lock with no timeout, would not run the handler until another signal
    # reached it, and `serve` killed the listener after STOP_TIMEOUT.
    while not stop.wait(SIGNAL_CHECK_SECONDS):
        pass
    return received[0]


def freeze_startup_heap() -> None:
    """Leave the objects alive after start-up out of every later garbage collection.

    Django, pydicom's data dictionary and pynetdicom leave about 90,000 objects that the
    collector tracks; a full collection walks them all, about 40 ms on this machine with
    the GIL held, so every thread of the listener stalls meanwhile. pynetdicom's
    association server forces one every 60 turns of its accept loop
    (``AssociationServer.service_actions``), and Python's own full collections come on
    top. Frozen (``gc.freeze``), they are never walked again: a collection only visits
    what was created since, so it takes microseconds, and cycles created later (dead
    associations) are still collected. Call it once, when the listener is up.
    """
    gc.collect()
    gc.freeze()
