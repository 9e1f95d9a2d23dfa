"""The front desk in a real browser (Debian's chromium): a clerk signs in, enters a walk-in
order, sees it in the worklist, and a scanner finds it with DCMTK's findscu."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone
from pydicom import dcmread

from tests.fixtures_dicom import Listener, require_dcmtk, schedule
from tests.fixtures_pages import BrowserPage, morning

pytestmark = pytest.mark.dcmtk


def findscu(listener: Listener, keys: list[str], out: Path) -> list:
    """DCMTK's findscu as the scanner: one worklist query, the answers as datasets."""
    require_dcmtk()
    out.mkdir()
    command = ["findscu", "-W", "-aet", "CT1", "-aec", settings.BROKER_AE_TITLE, "-X"]
    command += ["-od", str(out), "-to", "20", "-td", "20"]
    for key in keys:
        command += ["-k", key]
    command += [listener.host, str(listener.port)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


@pytest.mark.django_db(transaction=True)
def test_a_clerk_enters_a_walk_in_and_the_scanner_finds_it(
    browser_page: BrowserPage, desk_user: User, dicom_listener: Listener, tmp_path: Path
) -> None:
    morning()
    page = browser_page.page
    browser_page.sign_in("clerk")
    assert page.url.endswith("/desk/")
    assert page.locator("table.worklist tbody tr").count() == 5

    page.click("text=New order")
    page.fill("#id_patient-patient_id", "WALKIN7")
    page.fill("#id_patient-family_name", "WALKER")
    page.fill("#id_patient-given_name", "ANNA")
    page.fill("#id_patient-birth_date", "1980-05-06")
    page.select_option("#id_patient-sex", "F")
    page.fill("#id_order-procedure_description", "CT CHEST")
    page.fill("#id_steps-0-modality", "CT")
    page.fill("#id_steps-0-station_ae_title", "CT1")
    browser_page.screenshot("order-entry")
    page.click("text=Save order")

    message = page.locator(".message.success")
    assert "it is in the worklist" in message.inner_text()
    row = page.locator("table.worklist tbody tr")
    assert row.count() == 1
    assert "WALKER, ANNA" in row.inner_text()
    accession = row.get_attribute("data-accession")
    assert accession

    answers = findscu(
        dicom_listener,
        ["PatientID=WALKIN7", "PatientName", "AccessionNumber", "StudyInstanceUID"],
        tmp_path / "found",
    )
    assert [(ds.AccessionNumber, str(ds.PatientName)) for ds in answers] == [
        (accession, "WALKER^ANNA")
    ]
    assert answers[0].StudyInstanceUID.startswith(settings.BROKER_UID_ROOT)

    browser_page.goto("/desk/")
    assert page.locator("table.worklist tbody tr").count() == 6
    browser_page.screenshot("frontdesk")


@pytest.mark.django_db(transaction=True)
def test_a_clerk_marks_arrival_and_corrects_a_name(
    browser_page: BrowserPage, desk_user: User
) -> None:
    schedule(patient_name="DOE^JON", accession="ACC55", start=timezone.localtime())
    page = browser_page.page
    browser_page.sign_in("clerk")
    row = page.locator('tr[data-accession="ACC55"]')
    row.locator("button", has_text="Mark arrived").click()
    assert page.locator('tr[data-accession="ACC55"] .badge').inner_text() == "Arrived"

    page.locator('tr[data-accession="ACC55"] a', has_text="edit").click()
    page.fill("#id_given_name", "JOHN")
    page.click("text=Save")
    assert "DOE, JOHN" in page.locator('tr[data-accession="ACC55"]').inner_text()
