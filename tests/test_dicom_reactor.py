"""The association thread waits for work instead of polling (broker/dicom/guard.py).

pynetdicom's acceptor reactor sleeps a millisecond between two looks for a request, a
release or an abort. The guard's :class:`~broker.dicom.guard.ReactorWake` makes it wait
until one of them has been queued: no message queued before or during a wait is missed,
and an idle association's thread wakes a few times a second, not a thousand.
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from pynetdicom import association as pynetdicom_association

from broker.dicom import guard
from tests.test_dicom_hostile import p_data, port_of, read_pdu, start_listener
from tests.test_dicom_latency import C_ECHO_RQ, associate_at_once, release

__all__ = ["start_listener"]  # the fixture, imported for this module's tests

# Long enough that a wait which missed its wake-up would make the test fail on time.
LONG_WAIT = 10.0


def _fake_association() -> Any:
    assoc = SimpleNamespace(
        dimse=SimpleNamespace(msg_queue=queue.Queue()),
        dul=SimpleNamespace(to_user_queue=queue.Queue()),
        killed=False,
    )

    def kill() -> None:
        assoc.killed = True

    assoc.kill = kill
    return assoc


@pytest.fixture
def long_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "REACTOR_WAIT", LONG_WAIT)


def _timed_wait(wake: guard.ReactorWake) -> float:
    started = time.monotonic()
    wake.wait()
    return time.monotonic() - started


def test_a_request_queued_before_the_reactor_looks_is_not_waited_for(long_wait: None) -> None:
    assoc = _fake_association()
    wake = guard.ReactorWake(assoc)
    assoc.dimse.msg_queue.put((1, "C-FIND-RQ"))
    assert _timed_wait(wake) < LONG_WAIT / 2
    assert wake.waits == 0


def test_a_release_queued_while_the_reactor_waits_wakes_it(long_wait: None) -> None:
    assoc = _fake_association()
    wake = guard.ReactorWake(assoc)
    timer = threading.Timer(0.1, assoc.dul.to_user_queue.put, args=("A-RELEASE-RQ",))
    timer.start()
    try:
        assert _timed_wait(wake) < LONG_WAIT / 2
    finally:
        timer.cancel()
    assert wake.waits == 1


def test_a_kill_wakes_the_reactor(long_wait: None) -> None:
    assoc = _fake_association()
    wake = guard.ReactorWake(assoc)
    timer = threading.Timer(0.1, assoc.kill)
    timer.start()
    try:
        assert _timed_wait(wake) < LONG_WAIT / 2
    finally:
        timer.cancel()
    assert assoc.killed


def test_with_nothing_queued_the_reactor_waits_its_whole_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guard, "REACTOR_WAIT", 0.2)
    wake = guard.ReactorWake(_fake_association())
    assert _timed_wait(wake) >= 0.15
    # A wake-up already seen does not end the next wait early, once its message is taken.
    assoc = _fake_association()
    wake = guard.ReactorWake(assoc)
    assoc.dimse.msg_queue.put((1, "C-ECHO-RQ"))
    wake.wait()
    assoc.dimse.msg_queue.get()
    assert _timed_wait(wake) >= 0.15


def test_two_requests_queued_during_one_wait_are_each_looked_for_at_once(
    long_wait: None,
) -> None:
    # A peer that does not wait for its answers (or a C-FIND and its C-CANCEL): the
    # reactor takes one message a look, so the second must not wait for a wake-up.
    assoc = _fake_association()
    wake = guard.ReactorWake(assoc)
    assoc.dimse.msg_queue.put((1, "N-CREATE-RQ"))
    assoc.dimse.msg_queue.put((1, "N-SET-RQ"))
    assert _timed_wait(wake) < LONG_WAIT / 2
    assoc.dimse.msg_queue.get()
    assert _timed_wait(wake) < LONG_WAIT / 2
    assoc.dimse.msg_queue.get()
    assert wake.waits == 0


def test_only_the_reactor_s_own_poll_is_changed() -> None:
    guard.install_reactor_clock()
    clock = pynetdicom_association.time
    assert isinstance(clock, guard._ReactorClock)
    # Another thread, or another pause, sleeps as the time module does.
    started = time.monotonic()
    clock.sleep(0.02)
    assert time.monotonic() - started >= 0.015
    assert clock.monotonic() >= started
    # pynetdicom 3.0's reactor pauses with exactly this call (broker.E020 guards the rest).
    source = inspect.getsource(pynetdicom_association.Association._run_reactor)
    assert f"time.sleep({guard.REACTOR_POLL})" in source


@pytest.mark.django_db(transaction=True)
def test_an_idle_association_s_thread_waits_instead_of_polling(start_listener: Any) -> None:
    server = start_listener()
    sock, _ = associate_at_once(port_of(server))
    try:
        deadline = time.monotonic() + 10
        while not server.active_associations and time.monotonic() < deadline:
            time.sleep(0.01)
        (assoc,) = server.active_associations
        # Each pass of the reactor's loop asks the DIMSE provider for a message.
        looks = 0
        get_msg = assoc.dimse.get_msg

        def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal looks
            looks += 1
            return get_msg(*args, **kwargs)

        assoc.dimse.get_msg = counted
        time.sleep(1.0)
        # pynetdicom's reactor looks about 940 times a second; waiting REACTOR_WAIT (50 ms)
        # at a time it is about 20.
        assert 0 < looks <= 2 * (1.0 / guard.REACTOR_WAIT), looks
        # And it still serves a request and a release, each at once.
        sock.sendall(p_data([(1, 0x03, C_ECHO_RQ)]))
        kind, data = read_pdu(sock)
        assert kind == 0x04
        assert b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\x00" in data  # Status 0x0000
        release(sock)
    finally:
        sock.close()
