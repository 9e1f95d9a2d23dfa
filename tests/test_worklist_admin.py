"""The worklist admin writes through the services: status actions, reschedule and
demographic corrections leave their audit entries; identifiers stay read-only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from audit.models import AuditEntry
from tests.fixtures_dicom import schedule

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Client) -> Client:
    user = User.objects.create_superuser("root", "r@example.org", "a-long-password-1")
    client.force_login(user)
    return client


def test_the_cancel_action_goes_through_the_service(admin_client: Client) -> None:
    step = schedule()
    response = admin_client.post(
        "/admin/worklist/scheduledprocedurestep/",
        {"action": "mark_canceled", "_selected_action": [step.pk]},
        follow=True,
    )
    assert response.status_code == 200
    step.refresh_from_db()
    assert step.status == "CANCELED"
    entry = AuditEntry.objects.get()
    assert (entry.actor_name, entry.after) == ("root", {"status": "CANCELED"})


def test_a_final_step_is_refused_with_a_message(admin_client: Client) -> None:
    step = schedule(status="COMPLETED")
    response = admin_client.post(
        "/admin/worklist/scheduledprocedurestep/",
        {"action": "mark_arrived", "_selected_action": [step.pk]},
        follow=True,
    )
    assert "completed" in response.text
    step.refresh_from_db()
    assert step.status == "COMPLETED"


def test_the_status_and_identifiers_are_read_only(admin_client: Client) -> None:
    step = schedule()
    page = admin_client.get(f"/admin/worklist/scheduledprocedurestep/{step.pk}/change/")
    assert page.status_code == 200
    assert 'name="status"' not in page.text
    assert 'name="sps_id"' not in page.text
    assert 'name="start_0"' in page.text
    patient = step.procedure.order.patient
    page = admin_client.get(f"/admin/worklist/patient/{patient.pk}/change/")
    assert 'name="patient_id"' not in page.text
    assert 'name="name"' in page.text


def test_a_name_corrected_in_the_admin_is_audited(admin_client: Client) -> None:
    patient = schedule(patient_name="DOE^JHON").procedure.order.patient
    response = admin_client.post(
        f"/admin/worklist/patient/{patient.pk}/change/",
        {
            "name": "DOE^JOHN",
            "birth_date": "",
            "sex": "",
            "address": "",
            "medical_alerts": "",
            "allergies": "",
            "pregnancy_status": "",
            "weight_kg": "",
            "size_m": "",
        },
    )
    assert response.status_code == 302, response.text[:2000]
    patient.refresh_from_db()
    assert patient.name == "DOE^JOHN"
    entry = AuditEntry.objects.get(action="patient_correct")
    assert entry.after == {"name": "DOE^JOHN"}


def test_a_new_start_in_the_admin_is_a_reschedule(admin_client: Client) -> None:
    step = schedule()
    page = admin_client.get(f"/admin/worklist/scheduledprocedurestep/{step.pk}/change/")
    prefix = page.context["inline_admin_formsets"][0].formset.prefix
    response = admin_client.post(
        f"/admin/worklist/scheduledprocedurestep/{step.pk}/change/",
        {
            "start_0": "2026-12-05",
            "start_1": "14:30:00",
            f"{prefix}-TOTAL_FORMS": "1",
            f"{prefix}-INITIAL_FORMS": "1",
            f"{prefix}-MIN_NUM_FORMS": "0",
            f"{prefix}-MAX_NUM_FORMS": "1000",
            f"{prefix}-0-id": str(step.station_ae_titles.get().pk),
            f"{prefix}-0-step": str(step.pk),
        },
    )
    assert response.status_code == 302, response.content[:3000]
    step.refresh_from_db()
    assert str(step.start_date) == "2026-12-05"
    entry = AuditEntry.objects.get(action="step_reschedule")
    assert entry.actor_name == "root"
    assert list(step.station_ae_titles.values_list("ae_title", flat=True)) == ["CT1"]


def test_a_final_step_cannot_be_rescheduled_in_the_admin(admin_client: Client) -> None:
    step = schedule(status="COMPLETED")
    page = admin_client.get(f"/admin/worklist/scheduledprocedurestep/{step.pk}/change/")
    assert 'name="start_0"' not in page.text


def test_an_objects_page_shows_its_audit_trail(admin_client: Client) -> None:
    step = schedule()
    from worklist import services

    services.step_mark_arrived(actor=User.objects.get(username="root"), step_id=step.pk)
    page = admin_client.get(f"/admin/worklist/scheduledprocedurestep/{step.pk}/change/")
    assert "audit trail" in page.text.lower()
    assert "step_change_status" in page.text and "ARRIVED" in page.text


def test_orders_are_read_only_and_show_their_trail(admin_client: Client) -> None:
    order = schedule().procedure.order
    page = admin_client.get(f"/admin/worklist/order/{order.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.text
    assert "audit trail" in page.text.lower()
    patient = order.patient
    assert admin_client.get(f"/admin/worklist/patient/{patient.pk}/change/").status_code == 200
