"""/api/v1/orders/: enter an order (generated identifiers), read it with its procedures
and steps, update it, add a step, cancel it; errors of the domain are 400s."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from audit.models import AuditEntry
from tests.fixtures_api import FRONT_DESK, ApiAs
from worklist.models import Order, ScheduledProcedureStep

pytestmark = pytest.mark.django_db

URL = "/api/v1/orders/"


def body(**order: Any) -> dict[str, Any]:
    return {
        "patient": {
            "patient_id": "API1",
            "name": "API^ALICE",
            "birth_date": "1990-04-05",
            "sex": "F",
        },
        "priority": "HIGH",
        "procedures": [
            {
                "description": "CT chest",
                "code_value": "CTCH",
                "code_meaning": "CT chest",
                "code_scheme": "LOCAL",
                "steps": [
                    {
                        "modality": "CT",
                        "start": "2026-12-01T10:00:00+00:00",
                        "station_ae_title": "CT1",
                    }
                ],
            }
        ],
        **order,
    }


def test_entering_an_order_generates_its_identifiers(api_as: ApiAs) -> None:
    response = api_as(FRONT_DESK).post(URL, body(), format="json")
    assert response.status_code == 201, response.content
    order = response.json()
    assert order["accession_number"]
    assert order["priority"] == "HIGH"
    assert order["patient"]["patient_id"] == "API1"
    assert order["patient"]["birth_date"] == "1990-04-05"
    [procedure] = order["procedures"]
    assert procedure["requested_procedure_id"] == "RP1"
    assert procedure["study_instance_uid"].startswith(settings.BROKER_UID_ROOT)
    [step] = procedure["steps"]
    assert (step["sps_id"], step["status"], step["station_ae_titles"]) == (
        "SPS1",
        "SCHEDULED",
        ["CT1"],
    )
    assert AuditEntry.objects.filter(actor_name="user-front-desk").count() == 4


def test_entering_an_order_with_a_taken_study_uid_is_a_400(api_as: ApiAs) -> None:
    client = api_as(FRONT_DESK)
    first = body(accession_number="ACC1")
    first["procedures"][0]["study_instance_uid"] = "1.2.3.4"
    assert client.post(URL, first, format="json").status_code == 201
    second = body(accession_number="ACC2")
    second["procedures"][0]["study_instance_uid"] = "1.2.3.4"
    response = client.post(URL, second, format="json")
    assert response.status_code == 400
    assert "already belongs" in response.json()["detail"]
    assert not Order.objects.filter(accession_number="ACC2").exists()


def test_invalid_input_is_a_400_naming_the_field(api_as: ApiAs) -> None:
    bad = body()
    bad["procedures"][0]["steps"][0]["start"] = "tomorrow"
    response = api_as(FRONT_DESK).post(URL, bad, format="json")
    assert response.status_code == 400
    assert "procedures" in response.json()


def test_update_changes_the_order_and_adds_a_step(api_as: ApiAs) -> None:
    client = api_as(FRONT_DESK)
    created = client.post(URL, body(), format="json").json()
    uid = created["procedures"][0]["study_instance_uid"]
    response = client.patch(
        f"{URL}{created['id']}/",
        {
            "reason": "follow-up",
            "procedures": [
                {
                    "study_instance_uid": uid,
                    "steps": [{"modality": "CT", "start": "2026-12-01T11:00:00Z"}],
                }
            ],
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    updated = response.json()
    assert updated["reason"] == "follow-up"
    assert [s["sps_id"] for s in updated["procedures"][0]["steps"]] == ["SPS1", "SPS2"]


def test_cancel_cancels_every_step_that_is_not_final(api_as: ApiAs) -> None:
    client = api_as(FRONT_DESK)
    two_steps = body()
    two_steps["procedures"][0]["steps"].append({"modality": "CT", "start": "2026-12-01T12:00:00Z"})
    created = client.post(URL, two_steps, format="json").json()
    ScheduledProcedureStep.objects.filter(sps_id="SPS2").update(status="COMPLETED")
    response = client.post(f"{URL}{created['id']}/cancel/")
    assert response.status_code == 200
    statuses = [s["status"] for s in response.json()["procedures"][0]["steps"]]
    assert statuses == ["CANCELED", "COMPLETED"]


def test_filters(api_as: ApiAs) -> None:
    client = api_as(FRONT_DESK)
    client.post(URL, body(accession_number="ACCF1"), format="json")
    other = body(accession_number="ACCF2")
    other["patient"] = {"patient_id": "API2", "name": "API^BOB"}
    client.post(URL, other, format="json")
    found = client.get(URL, {"patient_id": "API2"}).json()
    assert [o["accession_number"] for o in found["results"]] == ["ACCF2"]
    found = client.get(URL, {"accession_number": "ACCF1"}).json()
    assert found["count"] == 1
