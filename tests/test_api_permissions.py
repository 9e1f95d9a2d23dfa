"""Who may do what over the API: every endpoint, every role (anonymous, no role,
integrator, front desk, department lead, administrator)."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.uid import generate_uid

from hl7v2.intake import message_receive
from mpps import services as mpps_services
from mpps.models import OutboundMessage, PerformedProcedureStep
from tests.fixtures_api import ADMINISTRATOR, ANONYMOUS, FRONT_DESK, INTEGRATOR, LEAD, ApiAs
from tests.fixtures_dicom import local, schedule
from tests.fixtures_mpps import n_create_dataset

pytestmark = pytest.mark.django_db

NO_ROLE = "none"
ALL = [ANONYMOUS, NO_ROLE, INTEGRATOR, FRONT_DESK, LEAD, ADMINISTRATOR]

FAILING_HL7 = (
    "MSH|^~\\&|RIS|HOSP|WORKLIST|BROKER|20261125090000||ORM^O01|PERM0001|P|2.3.1\r"
    "PID|||PERMPAT^^^HOSP||DOE^JANE||19700101|F\r"
    "ORC|XO|PL1|FI1||SC||^^^20261125100000^^R\r"
    "OBR|1|PL1|FI1|^^^CTH^CT head^LOC||||||||||||||PERMACC|PERMRP|PERMSPS||||CT\r"
)


@pytest.fixture
def data() -> dict[str, Any]:
    step = schedule(start=local(2026, 12, 1, 9))
    order = step.procedure.order
    message = OutboundMessage.objects.create(
        order=order, sequence=1, order_status="IP", message_type="ORM^O01", state="FAILED"
    )
    hl7 = message_receive(FAILING_HL7.encode(), peer="127.0.0.1:9")
    mpps_uid = generate_uid()
    mpps_services.mpps_create(sop_instance_uid=mpps_uid, ds=n_create_dataset(step))
    return {
        "mpps": PerformedProcedureStep.objects.get(sop_instance_uid=mpps_uid).pk,
        "step": step.pk,
        "order": order.pk,
        "patient": order.patient_id,
        "ris": message.pk,
        "hl7": hl7.message_id,
    }


def order_body() -> dict[str, Any]:
    return {
        "patient": {"patient_id": "NEW1", "name": "NEW^PATIENT"},
        "procedures": [
            {
                "description": "CT chest",
                "steps": [{"modality": "CT", "start": "2026-12-01T10:00:00Z"}],
            }
        ],
    }


# (method, url, body) -> the roles that may; everyone else gets 403 (anonymous 401).
READS = [
    "/api/v1/patients/",
    "/api/v1/patients/{patient}/",
    "/api/v1/orders/",
    "/api/v1/orders/{order}/",
    "/api/v1/steps/",
    "/api/v1/steps/{step}/",
    "/api/v1/mpps/",
    "/api/v1/mpps/{mpps}/",
    "/api/v1/ris-messages/",
    "/api/v1/ris-messages/{ris}/",
    "/api/v1/hl7-messages/",
    "/api/v1/hl7-messages/{hl7}/",
    "/api/v1/figures/board/",
    "/api/v1/figures/turnaround/",
]
READERS = {
    "/api/v1/patients/": {INTEGRATOR, FRONT_DESK, LEAD, ADMINISTRATOR},
    "/api/v1/orders/": {INTEGRATOR, FRONT_DESK, LEAD, ADMINISTRATOR},
    "/api/v1/steps/": {INTEGRATOR, FRONT_DESK, LEAD, ADMINISTRATOR},
    "/api/v1/mpps/": {INTEGRATOR, FRONT_DESK, LEAD, ADMINISTRATOR},
    "/api/v1/ris-messages/": {INTEGRATOR, LEAD, ADMINISTRATOR},
    "/api/v1/hl7-messages/": {INTEGRATOR, LEAD, ADMINISTRATOR},
    "/api/v1/figures/": {INTEGRATOR, FRONT_DESK, LEAD, ADMINISTRATOR},
}


def readers_of(url: str) -> set[str]:
    return next(roles for prefix, roles in READERS.items() if url.startswith(prefix))


def expected(role: str, allowed: set[str], ok: int) -> int:
    if role == ANONYMOUS:
        return 401
    return ok if role in allowed else 403


@pytest.mark.parametrize("role", ALL)
@pytest.mark.parametrize("url", READS)
def test_reads(api_as: ApiAs, data: dict[str, Any], role: str, url: str) -> None:
    response = api_as(role).get(url.format(**data))
    assert response.status_code == expected(role, readers_of(url), 200), response.content


EDITORS = {INTEGRATOR, FRONT_DESK, ADMINISTRATOR}


@pytest.mark.parametrize("role", ALL)
def test_order_entry(api_as: ApiAs, data: dict[str, Any], role: str) -> None:
    response = api_as(role).post("/api/v1/orders/", order_body(), format="json")
    assert response.status_code == expected(role, EDITORS, 201), response.content


@pytest.mark.parametrize("role", ALL)
def test_order_update_and_cancel(api_as: ApiAs, data: dict[str, Any], role: str) -> None:
    client = api_as(role)
    url = f"/api/v1/orders/{data['order']}/"
    assert client.patch(url, {"reason": "pain"}, format="json").status_code == expected(
        role, EDITORS, 200
    )
    assert client.post(f"{url}cancel/").status_code == expected(role, EDITORS, 200)


@pytest.mark.parametrize("role", ALL)
def test_patient_correction(api_as: ApiAs, data: dict[str, Any], role: str) -> None:
    response = api_as(role).patch(
        f"/api/v1/patients/{data['patient']}/", {"name": "DOE^JOHN"}, format="json"
    )
    assert response.status_code == expected(role, EDITORS, 200)


@pytest.mark.parametrize("role", ALL)
def test_step_changes(api_as: ApiAs, data: dict[str, Any], role: str) -> None:
    client = api_as(role)
    url = f"/api/v1/steps/{data['step']}/"
    assert client.post(
        f"{url}reschedule/", {"start": "2026-12-02T09:00:00Z"}, format="json"
    ).status_code == expected(role, EDITORS, 200)
    assert client.post(
        f"{url}status/", {"status": "ARRIVED"}, format="json"
    ).status_code == expected(role, EDITORS, 200)


@pytest.mark.parametrize("role", ALL)
def test_nobody_deletes_through_the_api(api_as: ApiAs, data: dict[str, Any], role: str) -> None:
    client = api_as(role)
    for url in (f"/api/v1/orders/{data['order']}/", f"/api/v1/patients/{data['patient']}/"):
        assert client.delete(url).status_code in (401, 403, 405)


@pytest.mark.parametrize("role", ALL)
def test_resend_needs_its_own_permission(api_as: ApiAs, data: dict[str, Any], role: str) -> None:
    response = api_as(role).post(f"/api/v1/ris-messages/{data['ris']}/resend/")
    assert response.status_code == expected(role, {ADMINISTRATOR}, 200), response.content


@pytest.mark.parametrize("role", ALL)
def test_reprocess_needs_its_own_permission(api_as: ApiAs, data: dict[str, Any], role: str) -> None:
    response = api_as(role).post(f"/api/v1/hl7-messages/{data['hl7']}/reprocess/")
    assert response.status_code == expected(role, {ADMINISTRATOR}, 200), response.content


@pytest.mark.parametrize("role", ALL)
def test_schema_and_docs_are_public(api_as: ApiAs, role: str) -> None:
    client = api_as(role)
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
