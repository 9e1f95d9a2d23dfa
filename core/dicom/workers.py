"""A few long-lived threads that do the DICOM listener's database work.

pynetdicom serves every association in a new thread, and Django opens one database
connection per thread: a scanner that associates once per query would pay a new
connection each time (about 10 ms on PostgreSQL, a backend process forked and gone)
and the listener would hold as many connections as it has associations. Instead, the
handlers run their queries here: ``DICOM_DB_WORKERS`` threads, each keeping its
connection across jobs (as CONN_MAX_AGE allows) and closing it when the listener stops.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

from django.db import connections

T = TypeVar("T")

_BY_AE: weakref.WeakKeyDictionary[Any, DatabaseWorkers] = weakref.WeakKeyDictionary()


class DatabaseWorkers:
    def __init__(self, size: int) -> None:
        self.size = size
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="dicom-db")

    def run(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``function`` in a worker thread and return its result (or raise)."""
        return self._executor.submit(_job, function, args, kwargs).result()

    def close(self) -> None:
        """Close every worker's connection, then stop the threads.

        A connection can only be closed by its own thread: one closing job per worker,
        all held at a barrier so that no worker takes two of them.
        """
        barrier = threading.Barrier(self.size)

        def close_here() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=10)
            connections.close_all()

        wait([self._executor.submit(close_here) for _ in range(self.size)], timeout=20)
        self._executor.shutdown(wait=True)


def _job(function: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    # Drop a connection that is broken or older than CONN_MAX_AGE before using it. A
    # SQLite connection (CONN_MAX_AGE 0 there: a file handle, not a server process) is
    # kept while it works: reopened for every job, it cost 2-3 ms per received instance
    # (connect and its PRAGMAs), a tenth of the listener's time per C-STORE.
    for connection in connections.all(initialized_only=True):
        if connection.vendor == "sqlite":
            connection.close_at = None
        connection.close_if_unusable_or_obsolete()
    return function(*args, **kwargs)


def register(ae: Any, workers: DatabaseWorkers) -> None:
    _BY_AE[ae] = workers


def run(assoc: Any, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ``function`` on the database workers of the association's listener (or, for an
    AE started without them, in the calling thread)."""
    workers = _BY_AE.get(assoc.ae)
    if workers is None:
        return function(*args, **kwargs)
    return workers.run(function, *args, **kwargs)
