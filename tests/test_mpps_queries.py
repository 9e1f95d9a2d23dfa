"""What an N-CREATE and an N-SET cost in SQL statements, and that the shortcut they take
(the step's status read with it, not again) still loses no race."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pydicom.uid import generate_uid

from mpps import services
from mpps.models import OutboundMessage
from mpps.status import OrderStatus
from tests.fixtures_mpps import make_step, n_create_dataset, n_set_dataset
from worklist.models import ScheduledProcedureStep
from worklist.services import step_set_status
from worklist.status import SPSStatus

pytestmark = pytest.mark.django_db

# N-CREATE: BEGIN, the MPPS, its references, the steps, the links, the order lock, the
# performed statuses, the step's UPDATE, COMMIT. It was 14 with the steps read three times
# and a savepoint around each step's change.
N_CREATE_MAX_QUERIES = 9
# N-SET: BEGIN, read, UPDATE with the version, the old series, the new series and its
# instances, the steps, the order lock, the performed statuses, the step's UPDATE, COMMIT.
N_SET_MAX_QUERIES = 11


def _pair_queries(step: Any) -> tuple[CaptureQueriesContext, CaptureQueriesContext]:
    """The statements of the step's N-CREATE and of its N-SET (COMPLETED), both accepted."""
    uid = generate_uid()
    with CaptureQueriesContext(connection) as created:
        assert services.mpps_create(sop_instance_uid=uid, ds=n_create_dataset(step)).refusal is None
    with CaptureQueriesContext(connection) as set_:
        assert services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset()).refusal is None
    return created, set_


def test_an_n_create_and_its_n_set_cost_at_most_nine_and_eleven_queries(settings: Any) -> None:
    settings.RIS_HL7_HOST = ""  # the outbox adds its own statements when a RIS is set
    step = make_step()
    created, set_ = _pair_queries(step)
    assert len(created.captured_queries) <= N_CREATE_MAX_QUERIES, created.captured_queries
    assert len(set_.captured_queries) <= N_SET_MAX_QUERIES, set_.captured_queries
    step.refresh_from_db()
    assert step.status == SPSStatus.COMPLETED


# With an RIS to tell, each also queues the order's status: the steps of the order with
# their performed statuses, the messages queued, the message, the order's procedures,
# steps and station AE titles for its text, and the message's control ID and text (the
# order lock is shared with the steps' follow-up, and the order comes with its patient).
# It was 20 and 22 with the order locked twice and read in five statements.
N_CREATE_MAX_QUERIES_WITH_RIS = 16
N_SET_MAX_QUERIES_WITH_RIS = 18


def test_with_an_ris_they_cost_at_most_sixteen_and_eighteen_queries(settings: Any) -> None:
    settings.RIS_HL7_HOST = "127.0.0.1"
    step = make_step()
    created, set_ = _pair_queries(step)
    assert len(created.captured_queries) <= N_CREATE_MAX_QUERIES_WITH_RIS, created.captured_queries
    assert len(set_.captured_queries) <= N_SET_MAX_QUERIES_WITH_RIS, set_.captured_queries
    assert list(
        OutboundMessage.objects.filter(order=step.procedure.order)
        .order_by("sequence")
        .values_list("sequence", "order_status")
    ) == [(1, OrderStatus.IN_PROCESS), (2, OrderStatus.COMPLETED)]


def test_a_step_that_moved_on_after_it_was_read_is_decided_on_again() -> None:
    """The step was read SCHEDULED with the MPPS; it became ARRIVED before the UPDATE (a
    front-desk change): the UPDATE from SCHEDULED misses, the step is read again, and
    ARRIVED -> STARTED still applies."""
    step = make_step()
    ScheduledProcedureStep.objects.filter(pk=step.pk).update(status=SPSStatus.ARRIVED)
    assert step_set_status(
        step=step,
        new_status=SPSStatus.STARTED,
        expected=(SPSStatus.SCHEDULED, SPSStatus.ARRIVED, SPSStatus.READY),
        current=SPSStatus.SCHEDULED,  # stale
    )
    step.refresh_from_db()
    assert step.status == SPSStatus.STARTED


def test_a_step_canceled_after_it_was_read_is_not_started() -> None:
    step = make_step()
    ScheduledProcedureStep.objects.filter(pk=step.pk).update(status=SPSStatus.CANCELED)
    assert not step_set_status(
        step=step,
        new_status=SPSStatus.STARTED,
        expected=(SPSStatus.SCHEDULED, SPSStatus.ARRIVED, SPSStatus.READY),
        current=SPSStatus.SCHEDULED,  # stale
    )
    step.refresh_from_db()
    assert step.status == SPSStatus.CANCELED
