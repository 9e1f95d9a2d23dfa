"""Worklist C-FIND and MPPS when the database fails: a failure status, the listener lives on.

Real faults from a second connection (tests/db_faults.py) against the broker's DICOM
listener over a real socket. Status codes are the standard's literals:
PS3.4 Table K.4-1 (Modality Worklist C-FIND) and PS3.4 F.7.2.1.2 / PS3.7 C.4 (MPPS).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from pydicom.uid import generate_uid
from pynetdicom import AE

from mpps.dimse import MPPS_SOP_CLASS
from mpps.models import PerformedProcedureStep
from tests import db_faults
from tests.fixtures_dicom import Listener, find, schedule, worklist_query
from tests.fixtures_mpps import make_step, n_create_dataset
from tests.scu import keep_responses
from worklist.models import ScheduledProcedureStep

pytestmark = pytest.mark.django_db(transaction=True)

PENDING = 0xFF00  # C-FIND Pending: matches are continuing
SUCCESS = 0x0000  # Success
UNABLE_TO_PROCESS_C003 = 0xC003  # Failure: Unable to process (0xC000-0xCFFF), ours: database
PROCESSING_FAILURE = 0x0110  # PS3.7 C.4.2: Failure: Processing failure

STEP_TABLE = "worklist_scheduledprocedurestep"


def test_a_worklist_query_during_a_database_outage_fails_with_0xc003_and_the_next_succeeds(
    dicom_listener: Listener,
) -> None:
    """SQLite: the table is gone; PostgreSQL: the worker's connection is killed mid-query."""
    schedule(patient_id="P1")
    query = worklist_query(PatientID="P1", PatientName="")
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {STEP_TABLE} RENAME TO test_moved_away")
        try:
            answers = find(dicom_listener, query)
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE test_moved_away RENAME TO {STEP_TABLE}")
    else:
        result: list[Any] = []
        with db_faults.writer_lock([STEP_TABLE]):
            query_thread = threading.Thread(
                target=lambda: result.append(find(dicom_listener, query))
            )
            query_thread.start()
            db_faults.terminate(db_faults.wait_for(db_faults.waiting_backends))
            query_thread.join(60)
        answers = result[0]
    assert len(answers) == 1
    code, final = answers[0]
    assert code == UNABLE_TO_PROCESS_C003
    assert final is not None
    assert final.ErrorComment == "Worklist database unavailable"
    # The listener and its database workers recover: the same query now answers.
    again = find(dicom_listener, query)
    assert [code for code, _ in again] == [PENDING, SUCCESS]
    assert again[0][1].PatientID == "P1"  # type: ignore[union-attr]


def _n_create(port: int, ds: Any, uid: str) -> Any:
    ae = AE(ae_title="CT1")
    ae.add_requested_context(MPPS_SOP_CLASS)
    assoc = keep_responses(ae.associate("127.0.0.1", port, ae_title=settings.BROKER_AE_TITLE))
    assert assoc.is_established
    try:
        rsp, _ = assoc.send_n_create(ds, MPPS_SOP_CLASS, uid)
        assert rsp is not None, "no N-CREATE response"
        return rsp
    finally:
        assoc.release()


def test_an_n_create_while_the_database_is_locked_fails_with_0x0110_and_writes_nothing(
    dicom_server: int,
) -> None:
    step = make_step()
    uid = generate_uid()
    ds = n_create_dataset(step)
    with (
        db_faults.short_lock_wait(0.3),
        db_faults.writer_lock(["mpps_performedprocedurestep", STEP_TABLE]),
    ):
        rsp = _n_create(dicom_server, ds, uid)
    assert rsp.Status == PROCESSING_FAILURE
    assert "try again later" in rsp.ErrorComment
    # Nothing half-written: no MPPS, the step still as scheduled.
    assert not PerformedProcedureStep.objects.exists()
    assert ScheduledProcedureStep.objects.get(pk=step.pk).status == step.status
    # The modality sends it again (IHE RAD-6): now it is taken.
    assert _n_create(dicom_server, ds, uid).Status == SUCCESS
    assert PerformedProcedureStep.objects.get().sop_instance_uid == uid
    assert ScheduledProcedureStep.objects.get(pk=step.pk).status == "STARTED"
