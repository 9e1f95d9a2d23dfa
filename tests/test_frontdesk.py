"""The front desk at /desk/: today's worklist, search, filters and the step actions."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from audit.models import AuditEntry
from tests.fixtures_dicom import schedule
from worklist.models import ScheduledProcedureStep

pytestmark = pytest.mark.django_db


def today_at(hour: int, minute: int = 0):
    return timezone.localtime().replace(hour=hour, minute=minute, second=0, microsecond=0)


def accessions(html: str) -> list[str]:
    return re.findall(r'data-accession="([^"]*)"', html)


def three_patients() -> None:
    schedule(
        patient_id="P1",
        patient_name="DOE^JOHN",
        accession="ACC1",
        start=today_at(8),
        stations=["CT1"],
    )
    schedule(
        patient_id="P2",
        patient_name="ROE^JANE",
        accession="ACC2",
        modality="MR",
        start=today_at(9),
        stations=["MR1"],
        status="ARRIVED",
    )
    schedule(
        patient_id="P3",
        patient_name="DOE^JANE",
        accession="ACC3",
        start=today_at(10) - timedelta(days=1),
        stations=["CT2"],
    )


@pytest.mark.parametrize(
    "path", ["/", "/desk/", "/desk/orders/new/", "/turnaround/", "/queues/", "/board/rows/"]
)
def test_it_sends_an_anonymous_visitor_to_the_login_page(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_the_login_form_signs_in_and_goes_to_the_front_desk(
    client: Client, desk_user: User
) -> None:
    page = client.get("/accounts/login/").content.decode()
    assert 'name="username"' in page and 'name="password"' in page
    response = client.post(
        "/accounts/login/", {"username": "clerk", "password": "a-long-test-password-1"}
    )
    assert response.status_code == 302
    assert client.get("/")["Location"] == "/desk/"


def test_the_root_sends_a_lead_to_the_board(lead_client: Client) -> None:
    assert lead_client.get("/")["Location"] == "/board/"


def test_an_integrator_has_no_pages(client: Client, integrator_user: User) -> None:
    client.force_login(integrator_user)
    assert client.get("/").status_code == 403
    assert client.get("/desk/").status_code == 403
    assert client.get("/board/").status_code == 403


def test_it_lists_todays_steps_by_time(desk_client: Client) -> None:
    three_patients()
    html = desk_client.get("/desk/").content.decode()
    assert accessions(html) == ["ACC1", "ACC2"]
    assert "DOE, JOHN" in html and "ROE, JANE" in html


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("q=doe", ["ACC1"]),
        ("q=doe&all_days=on", ["ACC3", "ACC1"]),
        ("q=Doe, Jane&all_days=on", ["ACC3"]),
        ("q=P2", ["ACC2"]),
        ("q=acc1", ["ACC1"]),
        ("modality=MR", ["ACC2"]),
        ("station=CT1", ["ACC1"]),
        ("status=ARRIVED", ["ACC2"]),
        ("status=SCHEDULED&all_days=on", ["ACC3", "ACC1"]),
    ],
)
def test_it_searches_and_filters(desk_client: Client, query: str, found: list[str]) -> None:
    three_patients()
    assert accessions(desk_client.get(f"/desk/?{query}").content.decode()) == found


def test_it_shows_another_day(desk_client: Client) -> None:
    three_patients()
    yesterday = (timezone.localdate() - timedelta(days=1)).isoformat()
    assert accessions(desk_client.get(f"/desk/?date={yesterday}").content.decode()) == ["ACC3"]


def test_it_marks_a_step_arrived_through_the_service(desk_client: Client, desk_user: User) -> None:
    step = schedule(start=today_at(9))
    response = desk_client.post(f"/desk/steps/{step.pk}/arrived/", {"next": "/desk/?q=A1"})
    assert response.status_code == 302
    assert response["Location"] == "/desk/?q=A1"
    step.refresh_from_db()
    assert step.status == "ARRIVED"
    entry = AuditEntry.objects.get(action="step_change_status")
    assert entry.actor == desk_user
    page = desk_client.get(response["Location"]).content.decode()
    assert "A1 / S1 marked arrived." in page


def test_it_cancels_a_step(desk_client: Client) -> None:
    step = schedule(start=today_at(9))
    desk_client.post(f"/desk/steps/{step.pk}/cancel/")
    step.refresh_from_db()
    assert step.status == "CANCELED"


def test_it_discontinues_a_started_step(desk_client: Client) -> None:
    step = schedule(start=today_at(9), status="STARTED")
    desk_client.post(f"/desk/steps/{step.pk}/discontinue/")
    step.refresh_from_db()
    assert step.status == "DISCONTINUED"


def test_it_shows_why_a_final_step_cannot_change(desk_client: Client) -> None:
    step = schedule(start=today_at(9), status="COMPLETED")
    response = desk_client.post(f"/desk/steps/{step.pk}/cancel/", follow=True)
    step.refresh_from_db()
    assert step.status == "COMPLETED"
    assert 'class="message error"' in response.content.decode()


def test_it_offers_no_step_action_to_a_lead(lead_client: Client) -> None:
    step = schedule(start=today_at(9))
    html = lead_client.get("/desk/").content.decode()
    assert "A1" in html
    assert "/arrived/" not in html and "Reschedule" not in html
    assert lead_client.post(f"/desk/steps/{step.pk}/arrived/").status_code == 403
    step.refresh_from_db()
    assert step.status == "SCHEDULED"


def test_an_action_is_a_post(desk_client: Client) -> None:
    step = schedule(start=today_at(9))
    assert desk_client.get(f"/desk/steps/{step.pk}/arrived/").status_code == 405


def test_it_does_not_follow_a_next_to_another_host(desk_client: Client) -> None:
    step = schedule(start=today_at(9))
    response = desk_client.post(f"/desk/steps/{step.pk}/arrived/", {"next": "https://example.org/"})
    assert response["Location"] == "/desk/"


def test_it_reschedules_a_step_to_another_time_and_station(desk_client: Client) -> None:
    step = schedule(start=today_at(9), stations=["CT1"])
    form = desk_client.get(f"/desk/steps/{step.pk}/reschedule/").content.decode()
    assert 'value="09:00"' in form and 'value="CT1"' in form
    tomorrow = timezone.localdate() + timedelta(days=1)
    response = desk_client.post(
        f"/desk/steps/{step.pk}/reschedule/",
        {"date": tomorrow.isoformat(), "time": "14:30", "station_ae_title": "CT2"},
    )
    assert response.status_code == 302
    step = ScheduledProcedureStep.objects.get(pk=step.pk)
    assert timezone.localtime(step.start).strftime("%Y-%m-%d %H:%M") == f"{tomorrow} 14:30"
    assert step.start_date == tomorrow
    assert [t.ae_title for t in step.station_ae_titles.all()] == ["CT2"]


def test_it_refuses_to_reschedule_without_a_time(desk_client: Client) -> None:
    step = schedule(start=today_at(9))
    response = desk_client.post(
        f"/desk/steps/{step.pk}/reschedule/", {"date": "2026-12-24", "time": ""}
    )
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()


def test_it_corrects_a_patients_demographics(desk_client: Client, desk_user: User) -> None:
    step = schedule(start=today_at(9), patient_name="DOE^JON")
    patient = step.procedure.order.patient
    form = desk_client.get(f"/desk/patients/{patient.pk}/").content.decode()
    assert 'value="DOE"' in form and 'value="JON"' in form
    response = desk_client.post(
        f"/desk/patients/{patient.pk}/",
        {"family_name": "DOE", "given_name": "JOHN", "birth_date": "1970-01-02", "sex": "M"},
    )
    assert response.status_code == 302
    patient.refresh_from_db()
    assert (patient.name, str(patient.birth_date), patient.sex) == ("DOE^JOHN", "1970-01-02", "M")
    entry = AuditEntry.objects.get(action="patient_correct")
    assert entry.actor == desk_user
    assert "DOE, JOHN" in desk_client.get("/desk/").content.decode()


def test_the_back_link_is_never_a_script_or_another_host(desk_client: Client) -> None:
    step = schedule(start=today_at(9))
    for target in ("javascript:alert(1)", "https://example.org/"):
        html = desk_client.get(
            f"/desk/steps/{step.pk}/reschedule/", {"next": target}
        ).content.decode()
        assert '<a href="/desk/">Back</a>' in html


def test_an_accession_number_cannot_break_out_of_the_cancel_prompt(desk_client: Client) -> None:
    schedule(start=today_at(9), accession="X');alert('1")
    html = desk_client.get("/desk/").content.decode()
    assert "confirm('Cancel X\\u0027)\\u003Balert(\\u00271?')" in html
