"""HL7 intake when the database fails: never an AA for what was not committed.

Real faults from a second connection (tests/db_faults.py), the MLLP listener over a real
socket. "ACK only after commit" means: a busy or lost database is retried with the
whole message; if it stays unavailable the connection is closed without an ACK (the
sender keeps the message and sends it again) and nothing is stored; a database that
refuses the values gives AE, with nothing of the message applied.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection

from hl7v2.models import InboundMessage
from tests import db_faults
from tests.fixtures_hl7 import MLLPClient, RunningListener, msa
from tests.hl7_messages import orm
from worklist.models import Order, Patient, ScheduledProcedureStep

pytestmark = pytest.mark.django_db(transaction=True)

# Every table the first write of an ORM touches (PostgreSQL's lock is per table).
TABLES = ["hl7v2_inboundmessage", "worklist_patient", "worklist_order"]


def retries_logged(caplog: pytest.LogCaptureFixture) -> int:
    return sum("retrying" in r.getMessage() for r in caplog.records)


def test_a_database_busy_past_every_retry_gets_no_ack_and_nothing_stored(
    hl7_listener: Callable[..., RunningListener], caplog: pytest.LogCaptureFixture
) -> None:
    with db_faults.short_lock_wait(0.3):
        running = hl7_listener()
        with db_faults.writer_lock(TABLES), MLLPClient(running.port, timeout=60) as client:
            client.send(orm(control_id="BUSY1"))
            # No ACK at all (not AA, not AE): the connection is closed.
            assert client.closed_by_peer(timeout=60)
        assert retries_logged(caplog) >= 1, "the retry path was not taken"
        assert not InboundMessage.objects.filter(control_id="BUSY1").exists()
        assert not Order.objects.exists()
        # The sender sends it again once the database is back: applied once.
        with MLLPClient(running.port) as client:
            ack = client.exchange(orm(control_id="BUSY1"))
    assert msa(ack)[1:3] == ["AA", "BUSY1"]
    stored = InboundMessage.objects.get(control_id="BUSY1")
    assert stored.outcome == "AA"
    assert list(Order.objects.values_list("accession_number", flat=True)) == ["ACC1"]
    assert (
        ScheduledProcedureStep.objects.filter(procedure__order__accession_number="ACC1").count()
        == 1
    )


def test_a_database_that_fails_once_is_retried_and_the_message_applied_once(
    hl7_listener: Callable[..., RunningListener], caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite: busy past its timeout once. PostgreSQL: the worker's connection killed."""
    vendor = connection.vendor
    with db_faults.short_lock_wait(1.0 if vendor == "sqlite" else 60):
        running = hl7_listener()
        with MLLPClient(running.port, timeout=60) as client:
            with db_faults.writer_lock(TABLES):
                client.send(orm(control_id="ONCE1"))
                if vendor == "sqlite":
                    db_faults.wait_for(lambda: retries_logged(caplog))
                else:
                    # The worker waits on the lock: drop its connection mid-statement.
                    db_faults.terminate(db_faults.wait_for(db_faults.waiting_backends))
                    db_faults.wait_for(lambda: retries_logged(caplog))
            ack = client.read_ack()
    assert msa(ack)[1:3] == ["AA", "ONCE1"]
    assert InboundMessage.objects.filter(control_id="ONCE1").count() == 1
    assert InboundMessage.objects.get(control_id="ONCE1").outcome == "AA"
    assert Order.objects.filter(accession_number="ACC1").count() == 1
    assert Patient.objects.count() == 1


REFUSE = {
    "sqlite": [
        "CREATE TRIGGER test_refuse_step BEFORE INSERT ON worklist_scheduledprocedurestep "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION test_refuse_step() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'check_violation'; "
        "END $$",
        "CREATE TRIGGER test_refuse_step BEFORE INSERT ON worklist_scheduledprocedurestep "
        "FOR EACH ROW EXECUTE FUNCTION test_refuse_step()",
    ],
}
ALLOW = {
    "sqlite": ["DROP TRIGGER test_refuse_step"],
    "postgresql": [
        "DROP TRIGGER test_refuse_step ON worklist_scheduledprocedurestep",
        "DROP FUNCTION test_refuse_step()",
    ],
}


def test_values_the_database_refuses_get_ae_and_nothing_of_the_message_is_applied(
    hl7_listener: Callable[..., RunningListener],
) -> None:
    # A constraint the database enforces (here a trigger) refuses the step, after the
    # patient, order and procedure rows were written in the same transaction.
    with connection.cursor() as cursor:
        for sql in REFUSE[connection.vendor]:
            cursor.execute(sql)
    try:
        running = hl7_listener()
        with MLLPClient(running.port) as client:
            ack = client.exchange(orm(control_id="REFUSED1"))
            # The connection stays open for the next message.
            assert msa(client.exchange(orm(control_id="REFUSED2")))[1] == "AE"
    finally:
        with connection.cursor() as cursor:
            for sql in ALLOW[connection.vendor]:
                cursor.execute(sql)
    fields = msa(ack)
    assert fields[1:3] == ["AE", "REFUSED1"]
    assert "\rERR|" in ack.decode("latin-1")
    stored = InboundMessage.objects.get(control_id="REFUSED1")
    assert stored.outcome == "AE"
    assert "IntegrityError" in stored.error
    # Rolled back with the transaction: not even the patient of the message.
    assert not Patient.objects.exists()
    assert not Order.objects.exists()
    assert not ScheduledProcedureStep.objects.exists()
