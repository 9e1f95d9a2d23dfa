"""The procedure board at /board/: today's steps per modality and station."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pydicom.uid import generate_uid

from mpps.services import mpps_create, mpps_set
from tests.fixtures_dicom import schedule
from tests.fixtures_mpps import n_create_dataset, n_set_dataset
from worklist import services

pytestmark = pytest.mark.django_db


def today_at(hour: int, minute: int = 0):
    return timezone.localtime().replace(hour=hour, minute=minute, second=0, microsecond=0)


def badges(html: str) -> list[str]:
    return re.findall(r'<span class="badge [a-z-]+">([^<]+)</span>', html)


def test_it_sends_an_anonymous_visitor_to_the_login_page(client: Client) -> None:
    response = client.get("/board/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/board/"


def test_it_answers_an_anonymous_poll_with_a_redirect_for_htmx(client: Client) -> None:
    response = client.get(
        "/board/rows/",
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/board/?wall=1"},
    )
    assert response.status_code == 204
    assert response["HX-Redirect"] == "/accounts/login/?next=/board/%3Fwall%3D1"


def test_it_shows_todays_steps_with_name_accession_procedure_and_status(
    lead_client: Client,
) -> None:
    schedule(
        patient_name="DOE^JOHN",
        accession="ACC100",
        start=today_at(9, 15),
        procedure={"description": "CT HEAD"},
        stations=["CT1"],
    )
    schedule(
        patient_id="P2",
        patient_name="ROE^JANE",
        accession="ACC200",
        sps_id="S2",
        modality="MR",
        start=today_at(10, 0),
        stations=["MR1"],
        status="ARRIVED",
    )
    response = lead_client.get("/board/")
    html = response.content.decode()
    assert response.status_code == 200
    for text in ("DOE, JOHN", "ACC100", "CT HEAD", "09:15", "ROE, JANE", "ACC200", "10:00"):
        assert text in html
    for text in ('title="DOE^JOHN"', 'title="ROE^JANE"'):  # the name as the RIS sent it
        assert text in html
    assert badges(html) == ["Scheduled", "Arrived"]
    assert 'data-modality="CT" data-station="CT1"' in html
    assert 'data-modality="MR" data-station="MR1"' in html


def test_it_leaves_out_steps_of_other_days(lead_client: Client) -> None:
    schedule(accession="YESTERDAY", start=today_at(9) - timedelta(days=1))
    schedule(accession="TODAY", sps_id="S2", rp_id="RP2", start=today_at(9))
    html = lead_client.get("/board/").content.decode()
    assert "TODAY" in html
    assert "YESTERDAY" not in html


@pytest.mark.parametrize(
    ("status", "word"),
    [
        ("SCHEDULED", "Scheduled"),
        ("ARRIVED", "Arrived"),
        ("READY", "Arrived"),
        ("STARTED", "In progress"),
        ("COMPLETED", "Completed"),
        ("DISCONTINUED", "Discontinued"),
        ("CANCELED", "Canceled"),
    ],
)
def test_it_names_each_step_status(lead_client: Client, status: str, word: str) -> None:
    schedule(start=today_at(9), status=status)
    assert badges(lead_client.get("/board/rows/").content.decode()) == [word]


def test_a_step_with_an_mpps_in_progress_reads_in_progress(lead_client: Client) -> None:
    step = schedule(start=today_at(9), accession="ACC300")
    mpps_create(sop_instance_uid=generate_uid(), ds=n_create_dataset(step))
    html = lead_client.get("/board/rows/").content.decode()
    assert badges(html) == ["In progress"]
    assert "started 09:30" in html


def test_the_fragment_is_the_groups_alone(lead_client: Client) -> None:
    schedule(start=today_at(9), accession="ACC400")
    html = lead_client.get("/board/rows/").content.decode()
    assert "ACC400" in html
    assert "<html" not in html
    assert "<header" not in html


def shown(html: str) -> str:
    """The URL the board polls, with the digest of what it shows."""
    found = re.search(r'hx-get="(/board/rows/\?[^"]+)"', html)
    assert found, "the board does not poll"
    return found.group(1).replace("&amp;", "&")


def test_the_page_polls_its_fragment(lead_client: Client) -> None:
    html = lead_client.get("/board/?wall=1").content.decode()
    assert re.match(r"/board/rows/\?wall=1&shown=[0-9a-f]{24}$", shown(html))
    assert 'hx-trigger="every 2.0s"' in html
    assert 'hx-swap="outerHTML"' in html
    assert "/static/frontdesk/htmx.min.js" in html


def test_a_poll_gets_nothing_while_nothing_changed(lead_client: Client) -> None:
    schedule(start=today_at(9))
    poll = shown(lead_client.get("/board/").content.decode())
    response = lead_client.get(poll)
    assert response.status_code == 204
    assert response.content == b""


@pytest.mark.parametrize("change", ["status", "patient", "reschedule", "mpps", "new step"])
def test_a_poll_gets_the_board_again_after_a_change(lead_client: Client, change: str) -> None:
    step = schedule(start=today_at(9), accession="ACC1")
    uid = generate_uid()
    if change == "mpps":
        mpps_create(sop_instance_uid=uid, ds=n_create_dataset(step))
    poll = shown(lead_client.get("/board/").content.decode())
    if change == "status":
        services.step_set_status(step=step, new_status="ARRIVED")
    elif change == "patient":
        services.patient_upsert(patient_id="P1", fields={"name": "DOE^JONATHAN"})
    elif change == "reschedule":
        services.step_upsert(
            procedure=step.procedure, sps_id=step.sps_id, fields={"start": today_at(11)}
        )
    elif change == "mpps":
        mpps_set(sop_instance_uid=uid, modification=n_set_dataset())
    else:
        schedule(accession="ACC2", patient_id="P2", sps_id="S2", start=today_at(10))
    response = lead_client.get(poll)
    assert response.status_code == 200
    html = response.content.decode()
    assert "ACC1" in html
    assert shown(html) != poll


def test_the_wall_display_has_no_controls(lead_client: Client) -> None:
    schedule(start=today_at(9))
    html = lead_client.get("/board/?wall=1").content.decode()
    assert "<header" not in html
    assert "<form" not in html
    assert "<button" not in html
    assert "Wall display" not in html


def test_it_refuses_an_account_without_the_pages_permission(
    integrator_user, client: Client
) -> None:
    client.force_login(integrator_user)
    assert client.get("/board/").status_code == 403


def test_the_number_of_queries_does_not_grow_with_the_steps(lead_client: Client) -> None:
    def rows(n: int) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert lead_client.get("/board/rows/").status_code == 200
        return len(queries)

    for n in range(2):
        schedule(accession=f"A{n}", patient_id=f"P{n}", sps_id=f"S{n}", start=today_at(9, n))
    few = rows(2)
    for n in range(2, 12):
        schedule(accession=f"A{n}", patient_id=f"P{n}", sps_id=f"S{n}", start=today_at(9, n))
    assert rows(12) == few
