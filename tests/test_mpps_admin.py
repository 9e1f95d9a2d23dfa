"""The admin shows performed steps (unscheduled ones apart) and RIS messages with their
attempts; linking an unscheduled step there goes through the service."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pydicom.uid import generate_uid

from mpps import services
from mpps.models import OutboundMessage, PerformedProcedureStep
from tests.fixtures_mpps import make_step, n_create_dataset, n_set_dataset
from worklist.status import SPSStatus


@pytest.fixture
def admin_client_logged_in(db: None) -> Client:
    user = User.objects.create_superuser("admin", "admin@example.org", "pw-for-tests-only")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_it_lists_unscheduled_performed_steps_apart(admin_client_logged_in: Client) -> None:
    services.mpps_create(sop_instance_uid="1.2.3.1", ds=n_create_dataset(make_step()))
    services.mpps_create(sop_instance_uid="1.2.3.2", ds=n_create_dataset(None))
    response = admin_client_logged_in.get("/admin/mpps/performedprocedurestep/?scheduled=no")
    assert response.status_code == 200
    shown = list(response.context["cl"].queryset.values_list("sop_instance_uid", flat=True))
    assert shown == ["1.2.3.2"]


@pytest.mark.django_db
def test_linking_in_the_admin_moves_the_step(admin_client_logged_in: Client) -> None:
    step = make_step()
    uid = generate_uid()
    services.mpps_create(sop_instance_uid=uid, ds=n_create_dataset(None))
    services.mpps_set(sop_instance_uid=uid, modification=n_set_dataset())
    mpps = PerformedProcedureStep.objects.get(sop_instance_uid=uid)
    url = f"/admin/mpps/performedprocedurestep/{mpps.pk}/change/"
    assert admin_client_logged_in.get(url).status_code == 200
    data: dict[str, Any] = {
        "pps_id": mpps.pps_id,
        "station_ae_title": mpps.station_ae_title,
        "station_name": mpps.station_name,
        "location": mpps.location,
        "modality": mpps.modality,
        "description": mpps.description,
        "patient_id": mpps.patient_id,
        "patient_name": mpps.patient_name,
        "study_id": mpps.study_id,
        "calling_ae_title": mpps.calling_ae_title,
        "links-TOTAL_FORMS": "1",
        "links-INITIAL_FORMS": "0",
        "links-0-step": str(step.pk),
        "series-TOTAL_FORMS": "1",
        "series-INITIAL_FORMS": "1",
        "series-0-id": str(mpps.series.get().pk),
        "series-0-mpps": str(mpps.pk),
    }
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 302, response.content[:2000]
    step.refresh_from_db()
    assert step.status == SPSStatus.COMPLETED
    assert list(mpps.steps.all()) == [step]


@pytest.mark.django_db
def test_it_shows_a_ris_message_with_its_attempts(
    admin_client_logged_in: Client, settings: Any
) -> None:
    settings.RIS_HL7_HOST = "127.0.0.1"
    services.mpps_create(sop_instance_uid=generate_uid(), ds=n_create_dataset(make_step()))
    message = OutboundMessage.objects.get()
    response = admin_client_logged_in.get(f"/admin/mpps/outboundmessage/{message.pk}/change/")
    assert response.status_code == 200
    assert b"ORC|SC|" in response.content
