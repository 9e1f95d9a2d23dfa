"""Turnaround figures (mpps.selectors) and the /turnaround/ and /queues/ pages."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone
from pydicom.uid import generate_uid

from hl7v2.models import InboundMessage
from mpps.models import OutboundMessage
from mpps.selectors import Spread, TurnaroundSample, turnaround_figures, turnaround_samples
from mpps.services import mpps_create, mpps_set
from tests.fixtures_dicom import schedule
from tests.fixtures_mpps import n_create_dataset, n_set_dataset
from worklist.models import Order


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour, minute))


def test_spread_is_the_median_and_the_90th_percentile() -> None:
    spread = Spread.of([60.0 * n for n in range(10, 0, -1)])
    assert (spread.count, spread.median, spread.p90) == (10, 330.0, 546.0)
    assert Spread.of([42.0]) == Spread(1, 42.0, 42.0)
    assert Spread.of([]) == Spread(0, None, None)


def test_figures_are_per_day_and_modality_with_routing_when_given() -> None:
    day = date(2026, 11, 30)
    samples = [
        TurnaroundSample(day, "CT", "1.1", at(day, 8), at(day, 8, 30), at(day, 8, 40)),
        TurnaroundSample(day, "CT", "1.2", at(day, 8), at(day, 9, 0), None),
        TurnaroundSample(day, "MR", "1.3", at(day, 8), at(day, 8, 10), at(day, 8, 50)),
    ]
    ct, mr = turnaround_figures(samples, routed_at={"1.1": at(day, 8, 45)})
    assert (ct.modality, ct.order_to_start.count, ct.order_to_start.median) == ("CT", 2, 2700.0)
    assert (ct.start_to_complete.count, ct.start_to_complete.median) == (1, 600.0)
    assert (ct.complete_to_routed.count, ct.complete_to_routed.median) == (1, 300.0)
    assert (mr.modality, mr.start_to_complete.median, mr.complete_to_routed.count) == (
        "MR",
        2400.0,
        0,
    )


def perform(accession: str, day: date, ordered: datetime, start: str, end: str | None) -> None:
    """A step of ``day`` ordered at ``ordered``, started (and completed) by MPPS."""
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
    if end is not None:
        done = n_set_dataset()
        done.PerformedProcedureStepEndDate = day.strftime("%Y%m%d")
        done.PerformedProcedureStepEndTime = end
        mpps_set(sop_instance_uid=uid, modification=done)


@pytest.mark.django_db
def test_samples_come_from_orders_and_their_mpps() -> None:
    day = timezone.localdate() - timedelta(days=1)
    perform("ACC1", day, at(day, 7, 30), "080000", "082000")
    perform("ACC2", day, at(day, 7, 0), "090000", None)
    perform("OLD", day - timedelta(days=5), at(day, 7, 0), "090000", None)
    samples = sorted(turnaround_samples(first_day=day, last_day=day), key=lambda s: s.started_at)
    assert [(s.modality, s.day) for s in samples] == [("CT", day), ("CT", day)]
    assert [(s.started_at - s.ordered_at).total_seconds() for s in samples] == [1800.0, 7200.0]
    assert samples[0].completed_at == at(day, 8, 20)
    assert samples[1].completed_at is None
    assert turnaround_samples(first_day=day, last_day=day, modality="MR") == []


@pytest.mark.django_db
def test_the_page_draws_a_chart_per_figure(lead_client: Client) -> None:
    today = timezone.localdate()
    for n, day in enumerate((today - timedelta(days=1), today)):
        perform(f"ACC{n}", day, at(day, 7, 30), "080000", "082000")
    html = lead_client.get("/turnaround/").content.decode()
    assert html.count('<svg class="chart"') == 2
    assert "Order → start" in html and "Start → complete" in html
    assert "<polyline" in html
    assert re.search(r"<td>30 min</td><td>30 min</td>", html)
    assert "Complete → routed" not in html  # no routing app installed


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
    assert rows == [("0", "1"), ("1", "1")]
    assert "Needs attention" in html


@pytest.mark.django_db
def test_queue_health_is_not_for_the_front_desk(desk_client: Client) -> None:
    assert desk_client.get("/queues/").status_code == 403
