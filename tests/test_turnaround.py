"""The /turnaround/ page (on mpps.selectors.turnaround, the API's figures too) and the
/queues/ page."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import pytest
from django.apps import apps
from django.test import Client
from django.utils import timezone
from pydicom.uid import generate_uid

from hl7v2.models import InboundMessage
from mpps.models import OutboundMessage, PerformedProcedureStep
from mpps.services import mpps_create, mpps_set
from tests.fixtures_dicom import schedule
from tests.fixtures_mpps import n_create_dataset, n_set_dataset
from worklist.models import Order


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour, minute))


def perform(accession: str, day: date, ordered: datetime, start: str, end: str | None) -> None:
    """A step of ``day`` ordered at ``ordered``, started (and completed) by MPPS; the
    broker received the MPPS at the times it gives (``HHMMSS``)."""
    step = schedule(
        accession=accession,
        patient_id=f"P-{accession}",
        start=at(day, 8),
        study_uid=generate_uid(),
    )
    Order.objects.filter(pk=step.procedure.order_id).update(created_at=ordered)
    uid = generate_uid()
    created = n_create_dataset(step)
    created.PerformedProcedureStepStartDate = day.strftime("%Y%m%d")
    created.PerformedProcedureStepStartTime = start
    mpps_create(sop_instance_uid=uid, ds=created)
    received = at(day, int(start[:2]), int(start[2:4]))
    if end is not None:
        done = n_set_dataset()
        done.PerformedProcedureStepEndDate = day.strftime("%Y%m%d")
        done.PerformedProcedureStepEndTime = end
        mpps_set(sop_instance_uid=uid, modification=done)
    PerformedProcedureStep.objects.filter(sop_instance_uid=uid).update(created_at=received)


@pytest.mark.django_db
def test_the_page_draws_a_chart_per_figure(lead_client: Client) -> None:
    today = timezone.localdate()
    for n, day in enumerate((today - timedelta(days=1), today)):
        perform(f"ACC{n}", day, at(day, 7, 30), "080000", "082000")
    html = lead_client.get("/turnaround/").content.decode()
    routing = apps.is_installed("routing")
    assert html.count('<svg class="chart"') == (3 if routing else 2)
    assert "Order → start" in html and "Start → complete" in html
    assert ("Complete → routed" in html) is routing
    assert "<polyline" in html
    assert re.search(r"<td>30 min</td><td>30 min</td>", html)


@pytest.mark.django_db
def test_the_page_takes_a_period_and_a_modality(lead_client: Client) -> None:
    day = timezone.localdate() - timedelta(days=10)
    perform("ACC1", day, at(day, 7, 30), "080000", "082000")
    assert "No procedure was started" in lead_client.get("/turnaround/").content.decode()
    html = lead_client.get(f"/turnaround/?from={day}&to={day}").content.decode()
    assert "No procedure was started" not in html
    html = lead_client.get(f"/turnaround/?from={day}&to={day}&modality=mr").content.decode()
    assert "No procedure was started in this period on MR" in html


@pytest.mark.django_db
def test_queue_health_counts_what_waits_and_what_failed(lead_client: Client) -> None:
    InboundMessage.objects.create(raw=b"MSH|", outcome="AE", error="bad PID")
    InboundMessage.objects.create(raw=b"MSH|", outcome="AA")
    order = schedule().procedure.order
    OutboundMessage.objects.create(order=order, sequence=1, order_status="IP", state="FAILED")
    OutboundMessage.objects.create(order=order, sequence=2, order_status="CM", state="PENDING")
    OutboundMessage.objects.create(order=order, sequence=3, order_status="CM", state="SENT")
    html = lead_client.get("/queues/").content.decode()
    rows = re.findall(r'<td class="number">(\d+)</td>\s*<td class="number">(\d+)</td>', html)
    assert rows[:2] == [("0", "1"), ("1", "1")]  # then routing jobs, when installed
    assert "Needs attention" in html


@pytest.mark.django_db
def test_queue_health_is_not_for_the_front_desk(desk_client: Client) -> None:
    assert desk_client.get("/queues/").status_code == 403


@pytest.mark.django_db
def test_the_page_offers_the_last_7_30_and_90_days(lead_client: Client) -> None:
    html = lead_client.get("/turnaround/?modality=CT").content.decode()
    today = timezone.localdate()
    since = today - timedelta(days=29)
    assert f'href="?from={since}&amp;to={today}&amp;modality=CT">Last 30 days</a>' in html
