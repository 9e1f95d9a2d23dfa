"""Turnaround and queue health in a real browser (Debian's chromium): a department lead
sees the chart, and no staff page asks any other host for anything."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.utils import timezone
from pydicom.uid import generate_uid

from mpps.models import PerformedProcedureStep
from mpps.services import mpps_create, mpps_set
from tests.fixtures_dicom import schedule
from tests.fixtures_mpps import n_create_dataset, n_set_dataset
from tests.fixtures_pages import BrowserPage, role_user
from worklist.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


def performed(day: date, n: int, minutes_to_start: int, minutes_to_complete: int) -> None:
    start = timezone.make_aware(datetime.combine(day, datetime.min.time())) + timedelta(
        hours=8, minutes=n * 20
    )
    step = schedule(
        patient_id=f"P{day:%d}{n}",
        accession=f"A{day:%m%d}{n}",
        start=start,
        study_uid=generate_uid(),
        modality="CT" if n % 2 else "MR",
    )
    Order.objects.filter(pk=step.procedure.order_id).update(
        created_at=start - timedelta(minutes=minutes_to_start)
    )
    uid = generate_uid()
    ds = n_create_dataset(step)
    ds.Modality = step.modality
    ds.PerformedProcedureStepStartDate = f"{start:%Y%m%d}"
    ds.PerformedProcedureStepStartTime = f"{start:%H%M%S}"
    mpps_create(sop_instance_uid=uid, ds=ds)
    end = start + timedelta(minutes=minutes_to_complete)
    done = n_set_dataset()
    done.PerformedProcedureStepEndDate = f"{end:%Y%m%d}"
    done.PerformedProcedureStepEndTime = f"{end:%H%M%S}"
    mpps_set(sop_instance_uid=uid, modification=done)
    # As if the broker had received the N-CREATE at the start.
    PerformedProcedureStep.objects.filter(sop_instance_uid=uid).update(created_at=start)


def test_a_lead_sees_the_turnaround_chart(browser_page: BrowserPage, lead_user: User) -> None:
    today = timezone.localdate()
    for back in range(6, -1, -1):
        day = today - timedelta(days=back)
        for n in range(4):
            performed(day, n, 20 + 5 * n + 3 * back, 10 + 2 * n + back)
    page = browser_page.page
    browser_page.sign_in("lead", "/turnaround/")
    charts = page.locator("svg.chart")
    # Order -> start, start -> complete (and complete -> routed with the routing app).
    assert charts.count() == (3 if apps.is_installed("routing") else 2)
    assert charts.first.is_visible()
    box = charts.first.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    # One median and one 90th-percentile line per modality.
    assert page.locator("#chart-order_to_start polyline").count() == 4
    assert page.locator("table.figures tbody tr").count() == 14
    browser_page.screenshot("turnaround")


def test_no_page_asks_another_host(browser_page: BrowserPage) -> None:
    admin = role_user("admin", "Administrator")
    admin.is_staff = True
    admin.save()
    step = schedule(start=timezone.localtime())
    browser_page.sign_in("admin")
    for path in (
        "/desk/",
        "/desk/orders/new/",
        f"/desk/steps/{step.pk}/reschedule/",
        f"/desk/patients/{step.procedure.order.patient_id}/",
        "/board/",
        "/board/?wall=1",
        "/turnaround/",
        "/queues/",
    ):
        browser_page.goto(path)
        assert browser_page.page.locator("main").count() == 1, path
    browser_page.page.wait_for_timeout(2500)  # one board poll after the last page
    assert any(url.endswith("/static/frontdesk/htmx.min.js") for url in browser_page.requests)
    assert browser_page.foreign_requests() == []
