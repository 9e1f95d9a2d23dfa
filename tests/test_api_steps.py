"""/api/v1/steps/ and /api/v1/patients/: filters, status changes, reschedule and
demographic corrections through the services."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from tests.fixtures_api import FRONT_DESK, INTEGRATOR, ApiAs
from tests.fixtures_dicom import local, schedule

pytestmark = pytest.mark.django_db


@pytest.fixture
def steps() -> None:
    schedule(
        patient_id="P1",
        accession="A1",
        sps_id="S1",
        modality="CT",
        stations=["CT1"],
        start=local(2026, 12, 1, 9),
    )
    schedule(
        patient_id="P2",
        accession="A2",
        sps_id="S2",
        modality="MR",
        stations=["MR1"],
        start=local(2026, 12, 1, 10),
    )
    schedule(
        patient_id="P3",
        accession="A3",
        sps_id="S3",
        modality="CT",
        stations=["CT2"],
        start=local(2026, 12, 2, 9),
        status="COMPLETED",
    )


@pytest.mark.usefixtures("steps")
@pytest.mark.parametrize(
    ("params", "accessions"),
    [
        ({}, ["A3", "A2", "A1"]),
        ({"modality": "CT"}, ["A3", "A1"]),
        ({"status": "COMPLETED"}, ["A3"]),
        ({"status": ["SCHEDULED", "COMPLETED"]}, ["A3", "A2", "A1"]),
        ({"station_ae_title": "MR1"}, ["A2"]),
        ({"date": "2026-12-01"}, ["A2", "A1"]),
        ({"date_from": "2026-12-02"}, ["A3"]),
        ({"accession_number": "A2"}, ["A2"]),
        ({"patient_id": "P1"}, ["A1"]),
    ],
)
def test_step_filters(api_as: ApiAs, params: dict[str, str], accessions: list[str]) -> None:
    response = api_as(INTEGRATOR).get("/api/v1/steps/", params)
    assert response.status_code == 200
    assert [s["accession_number"] for s in response.json()["results"]] == accessions


def test_a_status_change_through_the_api(api_as: ApiAs) -> None:
    step = schedule()
    client = api_as(FRONT_DESK)
    response = client.post(f"/api/v1/steps/{step.pk}/status/", {"status": "ARRIVED"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "ARRIVED"
    entry = AuditEntry.objects.get()
    assert (entry.actor_name, entry.after) == ("user-front-desk", {"status": "ARRIVED"})
    bad = client.post(f"/api/v1/steps/{step.pk}/status/", {"status": "LOST"}, format="json")
    assert bad.status_code == 400


def test_a_final_step_refuses_with_the_reason(api_as: ApiAs) -> None:
    step = schedule(status="CANCELED")
    response = api_as(FRONT_DESK).post(
        f"/api/v1/steps/{step.pk}/status/", {"status": "SCHEDULED"}, format="json"
    )
    assert response.status_code == 400
    assert "canceled" in response.json()["detail"]


def test_reschedule_through_the_api(api_as: ApiAs) -> None:
    step = schedule(start=local(2026, 12, 1, 9))
    response = api_as(FRONT_DESK).post(
        f"/api/v1/steps/{step.pk}/reschedule/",
        {"start": local(2026, 12, 3, 15).isoformat(), "station_ae_title": "CT9"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["station_ae_titles"] == ["CT9"]
    step.refresh_from_db()
    assert step.start == local(2026, 12, 3, 15)
    assert str(step.start_date) == "2026-12-03"


def test_patient_search_and_correction(api_as: ApiAs) -> None:
    patient = schedule(patient_id="P9", patient_name="SMITH^JHON").procedure.order.patient
    client = api_as(FRONT_DESK)
    found = client.get("/api/v1/patients/", {"name": "smith"}).json()
    assert [p["patient_id"] for p in found["results"]] == ["P9"]
    response = client.patch(
        f"/api/v1/patients/{patient.pk}/", {"name": "SMITH^JOHN", "sex": "M"}, format="json"
    )
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["sex"]) == ("SMITH^JOHN", "M")
    assert AuditEntry.objects.get(action="patient_correct").after == {
        "name": "SMITH^JOHN",
        "sex": "M",
    }
    # The identifier is not a field of a correction: it is ignored, never changed here.
    client.patch(f"/api/v1/patients/{patient.pk}/", {"patient_id": "OTHER"}, format="json")
    patient.refresh_from_db()
    assert patient.patient_id == "P9"
