"""The worklist's SQL compiled once per query shape is Django's, and reads Django's rows.

``worklist.statements`` runs a query from SQL kept for its shape, with only its values
bound (see the module's docstring). For many generated identifiers these tests check,
on whichever database the suite runs on (CI: SQLite and PostgreSQL), that the first
(compiled) and the later (cached) run return exactly the rows, in the order, of the
ORM queryset ``match()`` describes, and that the kept SQL and the bound parameters are
the ones Django compiles for that very identifier: a shape that missed something that
changes the SQL would fail here.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset

from core import fastpath
from tests.fixtures_dicom import local, schedule
from worklist import statements
from worklist.matching import MatchOptions, QueryError, match
from worklist.responses import ResponseBuilder, return_keys

pytestmark = [
    pytest.mark.django_db,
    # Generated values include wildcards in keys of VRs that pydicom checks.
    pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning"),
]

UID1 = "1.2.826.0.1.3680043.8.498.101"
UID2 = "1.2.826.0.1.3680043.8.498.102"


def _steps() -> None:
    rows: list[dict[str, Any]] = [
        dict(
            patient_id="P1",
            patient_name="VIVALDI^ANTONIO",
            accession="A1",
            study_uid=UID1,
            sps_id="S1",
            modality="MR",
            start=local(2026, 11, 25, 8, 30),
            stations=("AA32", "AA33"),
            patient={"birth_date": "1678-03-04"},
            order={"referring_physician": "Smith^Anna", "priority": "ROUTINE"},
            procedure={"priority": "STAT"},
            step={"performing_physician": "Johnson^Paul"},
        ),
        dict(
            patient_id="P2",
            patient_name="MOZART^WOLFGANG^AMADEUS",
            accession="A2",
            study_uid=UID2,
            sps_id="S2",
            modality="CT",
            start=local(2026, 11, 25, 14, 0),
            stations=("CT1",),
            patient={"birth_date": "1756-01-27"},
            order={"priority": "STAT"},
        ),
        dict(
            patient_id="P3",
            patient_name="Bach^Johann_Sebastian",
            accession="A3",
            sps_id="S3",
            modality="CT",
            start=local(2026, 11, 26, 9, 15),
            stations=("CT1",),
            patient={"birth_date": "1685-03-31"},
            status="ARRIVED",
        ),
        dict(
            patient_id="P4",
            patient_name="B[a]ch^100%_off",
            accession="A4",
            sps_id="S4",
            modality="CT",
            start=local(2026, 11, 25, 14, 0),  # the same start as S2: pk decides
            stations=("CT1", "CT2"),
            status="STARTED",
            step={"performing_physician": "JOHNSON^PAUL"},
        ),
        dict(
            patient_id="P5",
            patient_name="vivaldi^antonio",
            accession="A5",
            sps_id="S5",
            modality="US",
            start=local(2026, 11, 27, 23, 30),
            stations=(),
            order={"referring_physician": "SMITH^ANNA", "priority": "HIGH"},
        ),
        dict(
            patient_id="P6",
            patient_name="O'NEIL^SEAN",
            accession="A6",
            sps_id="S6",
            modality="MR",
            start=local(2026, 11, 28, 0, 30),
            stations=("AA33",),
            status="COMPLETED",
        ),
    ]
    # A second step of P1's procedure, the same day: S1's patient, order and procedure.
    first = {key: value for key, value in rows[0].items() if key != "step"}
    rows.append({**first, "sps_id": "S7", "modality": "CT", "stations": ("CT1",)})
    for row in rows:
        schedule(**row)


def _values(*choices: str) -> st.SearchStrategy[str | None]:
    # None: the key is not in the query; "" and "*": universal matching.
    return st.sampled_from([None, "", "*", *choices])


TOP_KEYS: dict[str, st.SearchStrategy[str | None]] = {
    "PatientName": _values(
        "VIVALDI^ANTONIO",
        "vivaldi^antonio",
        "MOZART*",
        "*^J?HANN*",
        "B[a]ch*",
        "*100%*",
        "Bach^Johann_Sebastian",
        "VIVALDI^ANTONIO\\MOZART*",
        "NOBODY",
    ),
    "PatientID": _values("P1", "P?", "P*", "P1\\P3", "P1\\P1", "NOPE"),
    "AccessionNumber": _values("A1", "A*", "A2\\A4"),
    "ReferringPhysicianName": _values("Smith^Anna", "SMITH*", "smith^anna"),
    "RequestedProcedurePriority": _values("STAT", "ROUTINE", "S*", "HIGH\\STAT"),
    "StudyInstanceUID": _values(
        UID1, f"{UID1}\\{UID2}", f"{UID2}\\{UID1}\\{UID2}", f"{UID1}\\1.2.3\\{UID2}", "1.2.3"
    ),
    "PatientBirthDate": _values("17560127", "16000101-17000101", "-17000101", "17000101-"),
}
SPS_KEYS: dict[str, st.SearchStrategy[str | None]] = {
    "Modality": _values("CT", "MR", "C?", "CT\\MR", "*T"),
    "ScheduledStationAETitle": _values("CT1", "AA3*", "CT1\\AA32", "CT2"),
    "ScheduledProcedureStepStartDate": _values(
        "20261125", "20261125-20261126", "20261126-", "-20261125", "20261125-20261128"
    ),
    "ScheduledProcedureStepStartTime": _values(
        "0830", "080000-100000", "1400-", "-0900", "000000-120000", "2300-0100", "083000-235959"
    ),
    "ScheduledProcedureStepStatus": _values("SCHEDULED", "STARTED", "S*", "ARRIVED\\COMPLETED"),
    "ScheduledPerformingPhysicianName": _values("Johnson^Paul", "JOHNSON*", "johnson^paul"),
    "ScheduledProcedureStepID": _values("S1", "S?", "S2\\S4\\S2"),
}


ALL_KEYS = [("top", k, v) for k, v in TOP_KEYS.items()] + [
    ("sps", k, v) for k, v in SPS_KEYS.items()
]


@st.composite
def queries(draw: st.DrawFn) -> list[tuple[Dataset, MatchOptions, int]]:
    """Two queries with the same few keys (sometimes every key), each with values of its
    own: often of one shape, often of shapes that differ in one detail only."""
    every = draw(st.integers(0, 9)) == 0
    keys = range(len(ALL_KEYS))
    chosen = keys if every else draw(st.sets(st.sampled_from(keys), max_size=3))
    options = MatchOptions(
        pn_case_insensitive=draw(st.booleans()),
        calling_ae_as_station=draw(st.booleans()),
        calling_ae=draw(st.sampled_from(["CT1", "AA33", "NOWHERE"])),
    )
    limit = draw(st.sampled_from([2, 50]))
    pair = []
    for _ in range(2):
        ds = Dataset()
        # Return keys of every kind of column: joined, annotated, the step's, stations.
        ds.PatientID = ""
        ds.AccessionNumber = ""
        item = Dataset()
        item.ScheduledProcedureStepID = ""
        for index in sorted(chosen):
            where, keyword, values = ALL_KEYS[index]
            value = draw(values)
            if value is not None:
                setattr(ds if where == "top" else item, keyword, value)
        ds.ScheduledProcedureStepSequence = [item]
        pair.append((ds, options, limit))
    return pair


def test_the_cached_statement_is_djangos_and_reads_the_querysets_rows() -> None:
    _steps()
    fastpath._VALUES_SQL.clear()
    reused = 0

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(queries())
    def check(pair: list[tuple[Dataset, MatchOptions, int]]) -> None:
        nonlocal reused
        for identifier, options, limit in pair:
            try:
                matching = match(identifier, options)
            except QueryError:
                continue  # refused before any SQL (a time range ending earlier in one day)
            builder = ResponseBuilder(return_keys(identifier))
            expected = builder.rows(matching.queryset, limit)
            shape, params = statements.shape(matching, builder.columns)
            key = (connection.vendor, ("steps", shape, tuple(builder.columns), limit))
            reused += key in fastpath._VALUES_SQL
            for _ in range(2):  # compiled (or kept from an earlier query), then cached
                assert builder.matched_rows(matching, limit) == expected
            assert key in fastpath._VALUES_SQL, "the query did not use the cached SQL"
            sql, django_params = (
                statements.step_queryset(matching, builder.columns, limit)
                .query.get_compiler(using=connection.alias)
                .as_sql()
            )
            assert fastpath._VALUES_SQL[key][0] == sql
            assert params == list(django_params)

    check()
    # Many queries found the SQL of their shape kept by an earlier, other query.
    assert reused > 100


def test_the_station_titles_are_the_querysets() -> None:
    _steps()
    fastpath._VALUES_SQL.clear()
    identifier = Dataset()
    item = Dataset()
    item.ScheduledStationAETitle = ""
    identifier.ScheduledProcedureStepSequence = [item]
    builder = ResponseBuilder(return_keys(identifier))
    matching = match(identifier)
    rows, expected = builder.rows(matching.queryset, 100)
    for _ in range(2):
        assert builder.matched_rows(matching, 100) == (rows, expected)
    assert (connection.vendor, ("stations", len(rows))) in fastpath._VALUES_SQL
    assert expected[rows[0][0]] == ["AA32", "AA33"]
