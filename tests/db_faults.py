"""Real database faults for the tests: another connection holding a lock, a killed backend.

No mocks: the faults are made by a second connection to the test database, as another
process (a migration, a backup, an operator) would make them.

- :func:`short_lock_wait`: connections opened from now on give up on a lock after a
  moment (SQLite's busy timeout, PostgreSQL's ``lock_timeout``) instead of 30 s.
- :func:`writer_lock`: a second connection holds the write lock (SQLite: ``BEGIN
  IMMEDIATE``; PostgreSQL: ``LOCK TABLE ... ACCESS EXCLUSIVE`` on the tables given).
- :func:`terminate_waiting_backends` (PostgreSQL): ``pg_terminate_backend`` of every
  connection waiting on a lock, as if the server had dropped it mid-statement.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import connection, connections


@contextmanager
def short_lock_wait(seconds: float = 0.3) -> Iterator[None]:
    # The settings dict is shared by every thread's connection (Django's test database
    # name is set in it the same way): new connections read the change.
    settings_dict = connections.settings["default"]
    options = settings_dict.setdefault("OPTIONS", {})
    saved = dict(options)
    if connection.vendor == "sqlite":
        options["timeout"] = seconds
    else:
        options["options"] = f"-c lock_timeout={int(seconds * 1000)}"
    try:
        yield
    finally:
        options.clear()
        options.update(saved)


def _pg_connect() -> Any:
    import psycopg

    s = connection.settings_dict
    return psycopg.connect(
        host=s["HOST"] or "127.0.0.1",
        port=int(s["PORT"] or 5432),
        user=s["USER"],
        password=s["PASSWORD"] or None,
        dbname=s["NAME"],
        autocommit=True,
    )


@contextmanager
def writer_lock(tables: Sequence[str]) -> Iterator[None]:
    """Hold the write lock until the block ends (``tables``: PostgreSQL only)."""
    if connection.vendor == "sqlite":
        other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None, timeout=30)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
        return
    pg = _pg_connect()
    try:
        pg.execute("BEGIN")
        pg.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        pg.execute("ROLLBACK")
        pg.close()


def waiting_backends() -> list[int]:
    """PostgreSQL: the pids of the test database's connections waiting on a lock."""
    with _pg_connect() as pg:
        rows = pg.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            [connection.settings_dict["NAME"]],
        ).fetchall()
    return [int(pid) for (pid,) in rows]


def terminate(pids: Sequence[int]) -> None:
    with _pg_connect() as pg:
        for pid in pids:
            pg.execute("SELECT pg_terminate_backend(%s)", [pid])


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout:g} s")
