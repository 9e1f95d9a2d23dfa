"""PostgreSQL's estimate of today's active steps, with years of completed history beside
them (worklist migration 0003: extended statistics on status and start date).

Without the statistics PostgreSQL multiplies the two selectivities as if independent and
expects about 1 row for "today and active", where there are hundreds; at a million steps
that picked a plan that probes the station AE titles once per step (README, "Scale").
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
from django.db import connection

from tests.fixtures_dicom import schedule
from worklist.models import ScheduledProcedureStep

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="extended statistics are PostgreSQL's"
    ),
]

TODAY = date(2026, 12, 1)
HISTORY_DAYS = 400
PER_DAY = 50
TODAY_STEPS = 200


def _estimate(sql: str, params: list[Any]) -> float:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        (row,) = cursor.fetchall()
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    return float(plan[0]["Plan"]["Plan Rows"])


def test_todays_active_steps_are_estimated_near_their_count() -> None:
    procedure = schedule().procedure
    steps = [
        ScheduledProcedureStep(
            procedure=procedure,
            sps_id=f"H{n}",
            modality="CT",
            start_date=TODAY - timedelta(days=1 + n // PER_DAY),
            status="COMPLETED",
        )
        for n in range(HISTORY_DAYS * PER_DAY)
    ]
    steps += [
        ScheduledProcedureStep(
            procedure=procedure,
            sps_id=f"T{n}",
            modality="CT",
            start_date=TODAY,
            status=("SCHEDULED", "ARRIVED", "READY")[n % 3],
        )
        for n in range(TODAY_STEPS)
    ]
    ScheduledProcedureStep.objects.bulk_create(steps, batch_size=5000)
    table = ScheduledProcedureStep._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f'ANALYZE "{table}"')
        cursor.execute(
            "SELECT stxkind FROM pg_statistic_ext WHERE stxname = 'sps_status_start_date_stats'"
        )
        (kinds,) = cursor.fetchone()
    assert set(kinds) == {"f", "m"}  # functional dependencies, most common values

    rows = _estimate(
        f'SELECT id FROM "{table}" WHERE start_date = %s AND status IN (%s, %s, %s)',
        [TODAY, "SCHEDULED", "ARRIVED", "READY"],
    )
    # 200 rows match; taken as independent, the two conditions give about 2.
    assert TODAY_STEPS / 4 <= rows <= TODAY_STEPS * 4, rows
