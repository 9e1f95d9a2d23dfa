"""MLLP framing: the pure decoder, then the same cases over a real socket."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from core.mllp import START, FrameDecoder, Oversized, frame
from hl7v2.models import InboundMessage
from hl7v2.status import Outcome
from tests.fixtures_hl7 import MLLPClient, RunningListener, msa
from tests.hl7_messages import orm
from worklist.models import Order, Patient

MESSAGE = b"MSH|^~\\&|A|B|C|D|20260101||ORM^O01|1|P|2.3.1\rPID|||1\r"


def test_it_returns_a_frame_split_over_many_reads() -> None:
    decoder = FrameDecoder(max_size=1024)
    data = frame(MESSAGE)
    frames: list[bytes | Oversized] = []
    for i in range(len(data)):
        frames += decoder.feed(data[i : i + 1])
    assert frames == [MESSAGE]
    assert decoder.discarded == 0
    assert not decoder.partial


def test_it_returns_several_frames_from_one_read() -> None:
    decoder = FrameDecoder(max_size=1024)
    assert decoder.feed(frame(MESSAGE) * 3) == [MESSAGE] * 3


def test_it_ignores_and_counts_bytes_outside_frames() -> None:
    decoder = FrameDecoder(max_size=1024)
    frames = decoder.feed(b"garbage" + frame(MESSAGE) + b"\r\nmore" + frame(MESSAGE) + b"x")
    assert frames == [MESSAGE, MESSAGE]
    assert decoder.discarded == len(b"garbage") + len(b"\r\nmore") + 1


def test_it_does_not_count_a_trailer_cr_that_arrives_in_the_next_read() -> None:
    decoder = FrameDecoder(max_size=1024)
    assert decoder.feed(START + MESSAGE + b"\x1c") == [MESSAGE]
    assert decoder.feed(b"\r") == []
    assert decoder.discarded == 0


def test_it_skips_an_oversized_frame_and_goes_on_with_the_next() -> None:
    decoder = FrameDecoder(max_size=100)
    big = MESSAGE + b"x" * 500
    frames = decoder.feed(frame(big)[:300]) + decoder.feed(frame(big)[300:] + frame(MESSAGE))
    assert isinstance(frames[0], Oversized)
    assert frames[0].size == len(big)
    assert frames[0].head.startswith(b"MSH|")
    assert frames[1:] == [MESSAGE]


def test_it_reports_a_frame_in_progress() -> None:
    decoder = FrameDecoder(max_size=1024)
    decoder.feed(START + MESSAGE[:10])
    assert decoder.partial


# --- over a socket -------------------------------------------------------------------------

socket_db = pytest.mark.django_db(transaction=True)


@socket_db
def test_it_acks_a_message_sent_in_tiny_segments(
    hl7_listener: Callable[..., RunningListener],
) -> None:
    server = hl7_listener()
    data = frame(orm(control_id="SPLIT1").encode())
    with MLLPClient(server.port) as client:
        client.sock.setsockopt(6, 1, 1)  # TCP_NODELAY: really separate segments
        for i in range(0, len(data), 7):
            client.send_raw(data[i : i + 7])
            time.sleep(0.001)
        assert msa(client.read_ack())[1:3] == ["AA", "SPLIT1"]
    assert Order.objects.filter(accession_number="ACC1").exists()


@socket_db
def test_it_acks_concatenated_frames_in_order(
    hl7_listener: Callable[..., RunningListener],
) -> None:
    server = hl7_listener()
    messages = [orm(control_id=f"CAT{i}", obr={18: f"ACC{i}"}, patient=None) for i in range(1, 4)]
    with MLLPClient(server.port) as client:
        client.send_raw(b"".join(frame(m.encode()) for m in messages))
        acks = [msa(client.read_ack()) for _ in messages]
    assert [a[2] for a in acks] == ["CAT1", "CAT2", "CAT3"]
    assert {a[1] for a in acks} == {"AA"}


@socket_db
def test_it_ignores_garbage_between_frames(hl7_listener: Callable[..., RunningListener]) -> None:
    server = hl7_listener()
    with MLLPClient(server.port) as client:
        client.send_raw(b"\r\nGET / HTTP/1.0\r\n\r\n")
        assert msa(client.exchange(orm(control_id="G1")))[1] == "AA"
        client.send_raw(b"\x00\x01junk")
        assert msa(client.exchange(orm(control_id="G2")))[1] == "AA"


@socket_db
def test_it_rejects_an_oversized_message_and_keeps_the_connection(
    hl7_listener: Callable[..., RunningListener],
) -> None:
    server = hl7_listener(max_message_bytes=2048)
    big = orm(control_id="BIG1", extra=["NTE|||" + "x" * 5000])
    with MLLPClient(server.port) as client:
        ack = client.exchange(big)
        assert msa(ack)[1:3] == ["AR", "BIG1"]
        assert b"2048" in ack
        assert msa(client.exchange(orm(control_id="SMALL1")))[1] == "AA"
    stored = InboundMessage.objects.get(control_id="BIG1")
    assert stored.outcome == Outcome.REJECTED
    assert Order.objects.count() == 1  # only SMALL1


@socket_db
def test_it_applies_nothing_when_the_connection_drops_mid_message(
    hl7_listener: Callable[..., RunningListener],
) -> None:
    server = hl7_listener()
    data = frame(orm(control_id="DROP1").encode())
    with MLLPClient(server.port) as client:
        client.send_raw(data[: len(data) // 2])
        time.sleep(0.1)
    time.sleep(0.3)
    assert not InboundMessage.objects.exists()
    assert not Patient.objects.exists()
