"""Group commit: messages that arrive together share one transaction, each ACKed after it.

``messages_receive`` is tested directly (no sockets), then through the listener with
many connections. What must hold: the same outcome for each message as if it had come
alone, one bad message never costs the others, and nothing is ACKed before its commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hl7v2 import intake
from hl7v2.intake import Reply, messages_receive
from hl7v2.models import InboundMessage
from hl7v2.status import Outcome
from tests import db_faults
from tests.fixtures_hl7 import MLLPClient, RunningListener, msa
from tests.hl7_messages import orm, pid
from worklist.models import Order, Patient, ScheduledProcedureStep

# Statements per new order in a batch (message row, patient SELECT + INSERT, order,
# procedure, device registry, step, station AE title), and per batch (BEGIN, COMMIT).
PER_ORDER = 8
PER_BATCH = 2


def order(n: int, **extra: Any) -> bytes:
    return orm(
        control_id=f"G{n}", patient=pid(f"GP{n}^^^HOSP"), obr={18: f"GA{n}"}, **extra
    ).encode()


def replies(results: list[Reply | Exception]) -> list[Reply]:
    assert all(isinstance(r, Reply) for r in results), results
    return [r for r in results if isinstance(r, Reply)]


@pytest.mark.django_db(transaction=True)
def test_new_orders_that_arrive_together_are_all_applied_in_one_transaction() -> None:
    messages_receive([(order(100), "warm"), (order(101), "warm")])
    items = [(order(n), f"peer{n}") for n in range(8)]
    with CaptureQueriesContext(connection) as queries:
        results = replies(messages_receive(items))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 8
    assert [r.control_id for r in results] == [f"G{n}" for n in range(8)]
    for r in results:
        assert b"MSA|AA|" in r.ack
    assert len(queries.captured_queries) <= PER_ORDER * 8 + PER_BATCH, [
        q["sql"][:60] for q in queries.captured_queries
    ]
    assert Order.objects.filter(accession_number__startswith="GA").count() == 10
    assert ScheduledProcedureStep.objects.count() == 10
    assert InboundMessage.objects.filter(outcome=Outcome.ACCEPTED).count() == 10


@pytest.mark.django_db(transaction=True)
def test_a_message_that_fails_to_apply_costs_the_others_nothing() -> None:
    # An XO for an order that does not exist fails while applying, mid-batch.
    bad = orm(control_id="GBAD", orc={1: "XO"}, obr={18: "NOSUCH"}).encode()
    items = [(order(1), "a"), (bad, "b"), (order(2), "c")]
    results = replies(messages_receive(items))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ERROR, Outcome.ACCEPTED]
    assert b"MSA|AE|GBAD" in results[1].ack
    assert b"\rERR|" in results[1].ack
    assert not Order.objects.filter(accession_number="NOSUCH").exists()
    assert sorted(Order.objects.values_list("accession_number", flat=True)) == ["GA1", "GA2"]
    assert InboundMessage.objects.get(control_id="GBAD").outcome == Outcome.ERROR


@pytest.mark.django_db(transaction=True)
def test_unreadable_and_unmappable_messages_in_a_batch_are_answered_as_alone() -> None:
    no_pid = orm(control_id="GNOPID", obr={18: "GNOPID"}).replace(pid() + "\r", "")
    items = [
        (order(1), "a"),
        (b"garbage", "b"),
        (no_pid.encode(), "c"),
        (b"MSH|^~\\&|RIS|H|WL|B|20260101||ZZZ^Z01|GZ|P|2.5\r", "d"),
        (order(2), "e"),
    ]
    results = replies(messages_receive(items))
    assert [r.outcome for r in results] == [
        Outcome.ACCEPTED,
        Outcome.REJECTED,
        Outcome.ERROR,
        Outcome.REJECTED,
        Outcome.ACCEPTED,
    ]
    assert Order.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_copies_in_one_batch_are_applied_once() -> None:
    results = replies(messages_receive([(order(7), "a"), (order(7), "b"), (order(8), "c")]))
    assert sorted(r.outcome for r in results[:2]) == [Outcome.ACCEPTED, Outcome.DUPLICATE]
    assert results[2].outcome == Outcome.ACCEPTED
    assert all(b"MSA|AA|" in r.ack for r in results)
    assert Order.objects.filter(accession_number="GA7").count() == 1
    assert Patient.objects.filter(patient_id="GP7").count() == 1


@pytest.mark.django_db(transaction=True)
def test_orders_of_one_patient_in_one_batch_make_one_patient() -> None:
    same = pid("GSAME^^^HOSP")
    items = [
        (orm(control_id=f"GS{n}", patient=same, obr={18: f"GSA{n}"}).encode(), "p")
        for n in range(4)
    ]
    results = replies(messages_receive(items))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 4
    assert Patient.objects.filter(patient_id="GSAME").count() == 1
    assert Order.objects.filter(patient__patient_id="GSAME").count() == 4


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_cannot_commit_gets_no_ack_and_stores_nothing() -> None:
    tables = ["hl7v2_inboundmessage", "worklist_patient", "worklist_order"]
    with db_faults.short_lock_wait(0.3):
        connection.close()  # the next connection takes the short lock wait
        with db_faults.writer_lock(tables):
            results = messages_receive([(order(1), "a"), (order(2), "b")])
        connection.close()
    assert all(isinstance(r, Exception) for r in results), results
    assert not InboundMessage.objects.exists()
    assert not Order.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_listener_commits_messages_of_many_connections_together(
    hl7_listener: Callable[..., RunningListener], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real = intake.messages_receive

    def counting(items: list[tuple[bytes, str]]) -> list[Reply | Exception]:
        sizes.append(len(items))
        return real(items)

    monkeypatch.setattr("hl7v2.server.messages_receive", counting)
    running = hl7_listener(workers=1, batch_max=32)
    connections, each = 8, 5
    acks: list[list[bytes]] = [[] for _ in range(connections)]
    barrier = threading.Barrier(connections)

    def client(c: int) -> None:
        with MLLPClient(running.port) as mllp:
            barrier.wait()
            for k in range(each):
                n = c * 100 + k
                acks[c].append(mllp.exchange(order(n)))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in range(connections):
        assert [msa(a)[1:3] for a in acks[c]] == [["AA", f"G{c * 100 + k}"] for k in range(each)]
    assert Order.objects.count() == connections * each
    assert InboundMessage.objects.filter(outcome=Outcome.ACCEPTED).count() == connections * each
    assert sizes and max(sizes) > 1, "no messages were committed together"
