"""The board in a real browser (Debian's chromium): it follows every kind of change
without being reloaded: a row turns "In progress" within seconds of the scanner's MPPS
N-CREATE, an order from the RIS (HL7 over MLLP) appears and its cancel shows, and so
does the front desk's "arrived"."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import User
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.association import Association

from core.dicom import status
from mpps.dimse import MPPS_SOP_CLASS
from tests.fixtures_dicom import Listener, schedule
from tests.fixtures_hl7 import MLLPClient, RunningListener, msa
from tests.fixtures_mpps import n_create_dataset, n_set_dataset
from tests.fixtures_pages import BrowserPage, morning, working_now
from tests.hl7_messages import orm, pid
from tests.scu import keep_responses
from worklist import services
from worklist.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def scanner(dicom_listener: Listener) -> Iterator[Association]:
    """The CT scanner's MPPS association to the broker."""
    ae = AE(ae_title="CT1")
    ae.add_requested_context(MPPS_SOP_CLASS)
    assoc = keep_responses(
        ae.associate(dicom_listener.host, dicom_listener.port, ae_title=settings.BROKER_AE_TITLE)
    )
    assert assoc.is_established
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def badge(browser_page: BrowserPage, accession: str) -> str:
    return browser_page.page.locator(f'tr[data-accession="{accession}"] .badge').inner_text()


def test_a_row_turns_in_progress_after_an_mpps_without_a_reload(
    browser_page: BrowserPage, lead_user: User, scanner: Association
) -> None:
    now = working_now()
    step = schedule(
        patient_name="SMITH^MARY",
        accession="ACC900",
        start=now,
        procedure={"description": "CT HEAD"},
    )
    schedule(
        patient_id="P2",
        patient_name="GARCIA^LUIS",
        accession="ACC901",
        modality="MR",
        stations=["MR1"],
        start=now + timedelta(minutes=30),
    )
    page = browser_page.page
    browser_page.sign_in("lead", "/board/")
    assert badge(browser_page, "ACC900") == "Scheduled"
    row = page.locator('tr[data-accession="ACC900"]').inner_text()
    assert "SMITH, MARY" in row and "CT HEAD" in row
    page.evaluate("window.notReloaded = true")

    created = n_create_dataset(step)
    created.PerformedProcedureStepStartDate = now.strftime("%Y%m%d")
    created.PerformedProcedureStepStartTime = now.strftime("%H%M%S")
    uid = generate_uid()
    sent = time.monotonic()
    rsp, _ = scanner.send_n_create(created, MPPS_SOP_CLASS, uid)
    assert rsp is not None and rsp.Status == status.SUCCESS

    page.wait_for_selector('tr[data-accession="ACC900"] .badge.in-progress', timeout=10_000)
    seen_after = time.monotonic() - sent
    assert badge(browser_page, "ACC900") == "In progress"
    assert badge(browser_page, "ACC901") == "Scheduled"
    assert page.evaluate("window.notReloaded") is True
    # Polled every BOARD_REFRESH_SECONDS (2 s): seen on the next poll, give or take one.
    assert seen_after < 3 * settings.BOARD_REFRESH_SECONDS + 2

    done = n_set_dataset()
    done.PerformedProcedureStepEndDate = now.strftime("%Y%m%d")
    done.PerformedProcedureStepEndTime = (now + timedelta(minutes=12)).strftime("%H%M%S")
    rsp, _ = scanner.send_n_set(done, MPPS_SOP_CLASS, uid)
    assert rsp is not None and rsp.Status == status.SUCCESS
    page.wait_for_selector('tr[data-accession="ACC900"] .badge.completed', timeout=10_000)
    assert "1 series, 2 images" in page.locator('tr[data-accession="ACC900"]').inner_text()
    assert page.evaluate("window.notReloaded") is True


def test_a_change_at_the_front_desk_reaches_the_wall_display(
    browser_page: BrowserPage, lead_user: User
) -> None:
    now = working_now()
    step = schedule(patient_name="NGUYEN^THI", accession="ACC910", start=now)
    page = browser_page.page
    browser_page.sign_in("lead", "/board/?wall=1")
    assert page.locator("header").count() == 0
    assert page.locator("button, form, input").count() == 0
    page.evaluate("window.notReloaded = true")
    services.step_mark_arrived(actor=lead_user, step_id=step.pk)
    page.wait_for_selector('tr[data-accession="ACC910"] .badge.arrived', timeout=10_000)
    assert page.evaluate("window.notReloaded") is True


def test_a_signed_out_board_goes_to_the_login_page(
    browser_page: BrowserPage, lead_user: User
) -> None:
    page = browser_page.page
    browser_page.sign_in("lead", "/board/")
    page.context.clear_cookies()
    page.wait_for_url("**/accounts/login/?next=/board/", timeout=10_000)
    assert page.locator("#id_username").count() == 1


def test_the_board_and_wall_display_of_a_working_day(
    browser_page: BrowserPage, lead_user: User
) -> None:
    morning()
    if apps.is_installed("routing"):
        # The completed study went to the PACS; the one in progress waits for the AI node.
        destination = apps.get_model("routing", "Destination")
        job = apps.get_model("routing", "RoutingJob")
        for name, accession, status in (
            ("PACS", "A20260000", "COMPLETED"),
            ("AI", "A20260001", "SCHEDULED"),
        ):
            job.objects.create(
                study_instance_uid=Order.objects.get(accession_number=accession)
                .procedures.get()
                .study_instance_uid,
                destination=destination.objects.create(
                    name=name, ae_title=name, host="127.0.0.1", port=104
                ),
                status=status,
            )
    page = browser_page.page
    browser_page.sign_in("lead", "/board/")
    rooms = page.locator("section.room")
    assert [rooms.nth(n).get_attribute("data-station") for n in range(rooms.count())] == [
        "CT1",
        "MR1",
        "US1",
    ]
    words = page.locator(".badge").all_inner_texts()
    assert sorted(words) == ["Arrived", "Completed", "In progress", "Scheduled", "Scheduled"]
    browser_page.screenshot("board")
    browser_page.goto("/board/?wall=1")
    assert page.locator(".badge").count() == 5
    browser_page.screenshot("board-wall")


def test_an_order_from_the_ris_appears_and_its_cancel_shows(
    browser_page: BrowserPage, lead_user: User, hl7_listener: Callable[..., RunningListener]
) -> None:
    start = working_now() + timedelta(minutes=5)
    page = browser_page.page
    browser_page.sign_in("lead", "/board/")
    assert page.locator("tr[data-accession]").count() == 0
    page.evaluate("window.notReloaded = true")

    hl7 = hl7_listener()
    timing = {7: f"^^^{start:%Y%m%d%H%M%S}^^R"}
    order = orm(
        control_id="BOARD1",
        patient=pid("RIS42^^^HOSP", "BROWN^ALICE"),
        orc=timing,
        obr={18: "RISACC1"},
    )
    with MLLPClient(hl7.port) as client:
        assert msa(client.exchange(order))[1] == "AA"
    page.wait_for_selector('tr[data-accession="RISACC1"] .badge.scheduled', timeout=10_000)
    assert "BROWN, ALICE" in page.locator('tr[data-accession="RISACC1"]').inner_text()

    cancel = orm(
        control_id="BOARD2",
        patient=pid("RIS42^^^HOSP", "BROWN^ALICE"),
        orc={**timing, 1: "CA", 5: "CA"},
        obr={18: "RISACC1"},
    )
    with MLLPClient(hl7.port) as client:
        assert msa(client.exchange(cancel))[1] == "AA"
    page.wait_for_selector('tr[data-accession="RISACC1"] .badge.canceled', timeout=10_000)
    assert page.evaluate("window.notReloaded") is True
