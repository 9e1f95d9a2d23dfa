"""Board figures (the day's steps per modality and status) and turnaround figures
(order -> start, start -> complete: median and 90th percentile per modality and day)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from pydicom.uid import generate_uid

from mpps import selectors, services
from mpps.models import PerformedProcedureStep
from tests.fixtures_api import LEAD, ApiAs
from tests.fixtures_dicom import local, schedule
from tests.fixtures_mpps import make_step, n_create_dataset, n_set_dataset
from worklist.models import Order

pytestmark = pytest.mark.django_db


def test_board_counts_the_days_steps_per_modality_and_status(api_as: ApiAs) -> None:
    schedule(accession="A1", sps_id="S1", modality="CT", start=local(2026, 12, 1, 9))
    schedule(accession="A2", sps_id="S2", modality="CT", start=local(2026, 12, 1, 10))
    schedule(
        accession="A3", sps_id="S3", modality="CT", start=local(2026, 12, 1, 11), status="ARRIVED"
    )
    schedule(accession="A4", sps_id="S4", modality="MR", start=local(2026, 12, 1, 11))
    schedule(accession="A5", sps_id="S5", modality="MR", start=local(2026, 12, 2, 11))
    response = api_as(LEAD).get("/api/v1/figures/board/", {"date": "2026-12-01"})
    assert response.status_code == 200
    assert response.json() == {
        "date": "2026-12-01",
        "counts": [
            {"modality": "CT", "status": "ARRIVED", "count": 1},
            {"modality": "CT", "status": "SCHEDULED", "count": 2},
            {"modality": "MR", "status": "SCHEDULED", "count": 1},
        ],
    }


def test_board_defaults_to_today(api_as: ApiAs) -> None:
    schedule(start=timezone.now())
    figures = api_as(LEAD).get("/api/v1/figures/board/").json()
    assert figures["date"] == timezone.localdate().isoformat()
    assert figures["counts"] == [{"modality": "CT", "status": "SCHEDULED", "count": 1}]


def test_a_bad_date_is_a_400(api_as: ApiAs) -> None:
    assert api_as(LEAD).get("/api/v1/figures/board/", {"date": "soon"}).status_code == 400
    response = api_as(LEAD).get(
        "/api/v1/figures/turnaround/", {"since": "2026-12-02", "until": "2026-12-01"}
    )
    assert response.status_code == 400


def _performed(minutes_after_order: int, duration_minutes: int | None, *, modality: str) -> None:
    """An order received at 08:00 on 2026-12-01; its MPPS IN PROGRESS ``minutes_after_order``
    later, COMPLETED ``duration_minutes`` after its start (None: still in progress)."""
    step = make_step(modality=modality)
    uid = generate_uid()
    services.mpps_create(sop_instance_uid=uid, ds=n_create_dataset(step))
    ordered = local(2026, 12, 1, 8, 0)
    began = ordered + dt.timedelta(minutes=minutes_after_order)
    Order.objects.filter(pk=step.procedure.order_id).update(created_at=ordered)
    if duration_minutes is not None:
        services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset())
    PerformedProcedureStep.objects.filter(sop_instance_uid=uid).update(
        created_at=began,
        started_at=began,
        ended_at=(began + dt.timedelta(minutes=duration_minutes)) if duration_minutes else None,
    )


def test_turnaround_medians_and_90th_percentiles(api_as: ApiAs) -> None:
    for wait, duration in [(10, 5), (20, 15), (30, 10), (40, None)]:
        _performed(wait, duration, modality="CT")
    _performed(60, 30, modality="MR")
    response = api_as(LEAD).get(
        "/api/v1/figures/turnaround/", {"since": "2026-12-01", "until": "2026-12-01"}
    )
    assert response.status_code == 200, response.content
    rows = response.json()["rows"]
    assert rows == [
        {
            "day": "2026-12-01",
            "modality": "CT",
            "order_to_start": {"count": 4, "median": 1500.0, "p90": 2400.0},
            "start_to_complete": {"count": 3, "median": 600.0, "p90": 900.0},
        },
        {
            "day": "2026-12-01",
            "modality": "MR",
            "order_to_start": {"count": 1, "median": 3600.0, "p90": 3600.0},
            "start_to_complete": {"count": 1, "median": 1800.0, "p90": 1800.0},
        },
    ]
    only_mr = (
        api_as(LEAD)
        .get(
            "/api/v1/figures/turnaround/",
            {"since": "2026-12-01", "until": "2026-12-01", "modality": "MR"},
        )
        .json()["rows"]
    )
    assert [r["modality"] for r in only_mr] == ["MR"]


def test_the_selector_leaves_out_other_days() -> None:
    _performed(10, 5, modality="CT")
    assert selectors.turnaround(since=dt.date(2026, 12, 2), until=dt.date(2026, 12, 3)) == []
    [row] = selectors.turnaround(since=dt.date(2026, 11, 30), until=dt.date(2026, 12, 1))
    assert row.order_to_start == selectors.Figures(1, 600.0, 600.0)
