"""The MLLP listener under messages and peers that used to jam the feed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

from core.mllp import END, START
from hl7v2.models import InboundMessage
from hl7v2.status import Outcome
from tests.fixtures_hl7 import MLLPClient, RunningListener, msa
from tests.hl7_messages import orm, segment

pytestmark = pytest.mark.django_db(transaction=True)


def obx(code: str, value: str, unit: str) -> str:
    return segment("OBX", {2: "NM", 3: code, 5: value, 6: unit})


WEIGHT = "29463-7^Body weight^LN"
HEIGHT = "8302-2^Body height^LN"


@pytest.mark.parametrize(
    "message",
    [
        "MSH\r",
        "MSH\rPID|1||X\r",
        "MSH|^~\\&\r",
        orm(control_id="W1", extra=[obx(WEIGHT, "NaN", "kg")]),
        orm(control_id="W2", extra=[obx(WEIGHT, "Infinity", "kg")]),
        orm(control_id="W3", extra=[obx(WEIGHT, "1E+99", "kg")]),
        orm(control_id="H1", extra=[obx(HEIGHT, "-Infinity", "m")]),
        orm(control_id="H2", extra=[obx(HEIGHT, "sNaN", "cm")]),
    ],
    ids=["msh-cr", "msh-cr-pid", "msh-no-fields", "nan", "inf", "1e99", "minus-inf", "snan"],
)
def test_a_message_that_used_to_jam_the_feed_gets_its_ack_and_the_next_gets_aa(
    hl7_listener: Callable[..., RunningListener], message: str
) -> None:
    running = hl7_listener()
    with MLLPClient(running.port) as client:
        first = msa(client.exchange(message))
        assert first[1] in ("AE", "AR"), first
        assert msa(client.exchange(orm(control_id="NEXT")))[1:3] == ["AA", "NEXT"]
    assert InboundMessage.objects.count() == 2


def test_the_same_control_id_with_other_content_is_ae_naming_msh_10_and_kept_for_review(
    hl7_listener: Callable[..., RunningListener],
) -> None:
    running = hl7_listener()
    with MLLPClient(running.port) as client:
        assert msa(client.exchange(orm(control_id="C1")))[1] == "AA"
        # The same message again (a resend): AA, not applied twice.
        assert msa(client.exchange(orm(control_id="C1")))[1] == "AA"
        ack = client.exchange(orm(control_id="C1", obr={24: "MR"}))
        assert msa(ack)[1] == "AE"
        assert b"MSH^1^10" in ack or b"MSH^1^10^" in ack or b"ERR|MSH^1^10" in ack, ack
        assert b"control ID C1 was already used by a different message" in ack
        assert msa(client.exchange(orm(control_id="C2")))[1] == "AA"
    outcomes = list(InboundMessage.objects.order_by("pk").values_list("outcome", "error"))
    assert [o for o, _ in outcomes] == [
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
        Outcome.ERROR,
        Outcome.ACCEPTED,
    ]
    assert outcomes[2][1].startswith("MSH-10: control ID C1 was already used")


def test_empty_frames_are_ignored_without_a_row(
    hl7_listener: Callable[..., RunningListener],
) -> None:
    running = hl7_listener()
    with MLLPClient(running.port) as client:
        client.send_raw(START + END + START + b"\r\n" + END)
        assert msa(client.exchange(orm(control_id="E1")))[1:3] == ["AA", "E1"]
    assert InboundMessage.objects.count() == 1


def test_a_peer_trickling_bytes_is_closed_after_the_idle_timeout(
    hl7_listener: Callable[..., RunningListener],
) -> None:
    running = hl7_listener(idle_timeout=1.0)
    with MLLPClient(running.port) as client:
        client.send_raw(START)
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 30:
            try:
                client.send_raw(b"M")  # a byte every 0.2 s: never a whole message
            except OSError:
                closed = True
                break
            if client.closed_by_peer(timeout=0.2):
                closed = True
                break
        assert closed
        assert time.monotonic() - started < 30
    assert InboundMessage.objects.count() == 0


def test_a_connection_over_the_per_address_limit_is_refused_but_not_other_addresses(
    hl7_listener: Callable[..., RunningListener],
) -> None:
    running = hl7_listener(max_connections_per_host=2)
    first, second = MLLPClient(running.port), MLLPClient(running.port)
    try:
        assert msa(first.exchange(orm(control_id="L1")))[1] == "AA"
        assert msa(second.exchange(orm(control_id="L2")))[1] == "AA"
        third = MLLPClient(running.port)
        assert third.closed_by_peer(timeout=10)
        third.close()
        other = socket.create_connection(
            (running.host, running.port), timeout=10, source_address=("127.0.0.2", 0)
        )
        other.sendall(START + orm(control_id="L3").encode() + END)
        assert b"MSA|AA|L3" in other.recv(65536)
        other.close()
    finally:
        first.close()
        second.close()


def test_a_peer_that_never_reads_its_acks_is_dropped_after_the_write_timeout(
    hl7_listener: Callable[..., RunningListener],
) -> None:
    running = hl7_listener(write_timeout=0.5)
    sock = socket.socket()
    # A small receive window: the ACKs back up on the listener's side quickly.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect((running.host, running.port))
    # Unsupported messages: each is stored and answered AR, quickly.
    junk = START + b"MSH|^~\\&|RIS|HOSP|WORKLIST|BROKER|20260101||ZZZ^Z99|X|P|2.5\r" + END
    stop = threading.Event()

    def flood() -> None:
        sock.settimeout(1)
        while not stop.is_set():
            try:
                sock.sendall(junk * 50)
            except TimeoutError:
                continue
            except OSError:
                return

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not InboundMessage.objects.exists():
            time.sleep(0.05)
        assert running.listener.connections == 1
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and running.listener.connections:
            time.sleep(0.1)
        assert running.listener.connections == 0, "the listener still waits on the peer"
    finally:
        stop.set()
        sender.join(10)
        sock.close()
    with MLLPClient(running.port) as client:
        assert msa(client.exchange(orm(control_id="AFTER")))[1] == "AA"
