"""Manual order entry at /desk/orders/new/: in the worklist as soon as it is saved."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from audit.models import AuditEntry
from tests.fixtures_dicom import Listener, find, schedule, worklist_query
from worklist.models import Order, ScheduledProcedureStep


def form_data(**overrides: str) -> dict[str, str]:
    today = timezone.localdate().isoformat()
    data = {
        "patient-patient_id": "WALK1",
        "patient-issuer": "",
        "patient-family_name": "WALKER",
        "patient-given_name": "ANNA",
        "patient-birth_date": "1980-05-06",
        "patient-sex": "F",
        "order-accession_number": "",
        "order-priority": "ROUTINE",
        "order-referring_physician": "",
        "order-procedure_description": "CT CHEST",
        "order-procedure_code": "CTCH",
        "order-study_instance_uid": "",
        "steps-TOTAL_FORMS": "3",
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "1",
        "steps-MAX_NUM_FORMS": "1000",
        "steps-0-modality": "ct",
        "steps-0-date": today,
        "steps-0-time": "15:45",
        "steps-0-station_ae_title": "CT1",
        "steps-0-description": "CHEST",
        "steps-0-sps_id": "",
    }
    data.update(overrides)
    return data


@pytest.mark.django_db(transaction=True)
def test_an_entered_order_is_in_the_worklist_with_generated_ids(
    desk_client: Client, dicom_listener: Listener
) -> None:
    response = desk_client.post("/desk/orders/new/", form_data())
    assert response.status_code == 302
    order = Order.objects.get(patient__patient_id="WALK1")
    assert order.accession_number
    procedure = order.procedures.get()
    assert procedure.requested_procedure_id
    assert procedure.study_instance_uid.startswith(settings.BROKER_UID_ROOT)
    step = procedure.steps.get()
    assert (step.modality, step.status, step.sps_id != "") == ("CT", "SCHEDULED", True)
    assert response["Location"] == f"/desk/?q={order.accession_number}&all_days=on"
    page = desk_client.get(response["Location"]).content.decode()
    assert f"Order {order.accession_number} entered" in page
    assert "WALKER, ANNA" in page

    answers = find(dicom_listener, worklist_query(PatientID="WALK1", AccessionNumber="", sps={}))
    found = [ds for status, ds in answers if status == 0xFF00 and ds is not None]
    assert [ds.AccessionNumber for ds in found] == [order.accession_number]
    assert AuditEntry.objects.filter(action="order_enter").exists()


@pytest.mark.django_db
def test_it_enters_two_steps_and_keeps_the_ids_given(desk_client: Client) -> None:
    today = timezone.localdate().isoformat()
    desk_client.post(
        "/desk/orders/new/",
        form_data(
            **{
                "order-accession_number": "ACC77",
                "steps-0-sps_id": "SPS77A",
                "steps-1-modality": "CT",
                "steps-1-date": today,
                "steps-1-time": "16:00",
                "steps-1-sps_id": "SPS77B",
            }
        ),
    )
    steps = ScheduledProcedureStep.objects.filter(procedure__order__accession_number="ACC77")
    assert sorted(steps.values_list("sps_id", flat=True)) == ["SPS77A", "SPS77B"]


@pytest.mark.django_db
def test_it_needs_a_patient_id_a_procedure_and_a_step(desk_client: Client) -> None:
    response = desk_client.post(
        "/desk/orders/new/",
        form_data(
            **{
                "patient-patient_id": "",
                "order-procedure_description": "",
                "steps-0-modality": "",
                "steps-0-date": "",
                "steps-0-time": "",
                "steps-0-station_ae_title": "",
                "steps-0-description": "",
            }
        ),
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("This field is required.") >= 2
    assert "Please submit at least 1 form." in html
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_it_refuses_an_accession_number_of_another_patients_order(desk_client: Client) -> None:
    schedule(accession="TAKEN", patient_id="OTHER")
    response = desk_client.post(
        "/desk/orders/new/", form_data(**{"order-accession_number": "TAKEN"})
    )
    assert response.status_code == 200
    assert "belongs to another patient" in response.content.decode()
    assert Order.objects.get(accession_number="TAKEN").patient.patient_id == "OTHER"


@pytest.mark.django_db
def test_a_lead_cannot_enter_orders(lead_client: Client) -> None:
    assert lead_client.get("/desk/orders/new/").status_code == 403
    assert lead_client.post("/desk/orders/new/", form_data()).status_code == 403
    assert not Order.objects.exists()
