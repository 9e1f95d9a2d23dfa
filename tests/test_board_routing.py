"""The pages with the routing app: the board's routing column, complete -> routed on the
turnaround page, routing jobs on the queue-health page (frontdesk.routing_hook).

Routing is a separate app the pages must also run without; these tests need it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.apps import apps
from django.test import Client
from django.utils import timezone
from pydicom.uid import generate_uid

from mpps.models import PerformedProcedureStep
from mpps.services import mpps_create, mpps_set
from tests.fixtures_dicom import schedule
from tests.fixtures_mpps import n_create_dataset, n_set_dataset
from tests.fixtures_pages import working_now

if not apps.is_installed("routing"):
    pytest.skip("the routing app is not installed in this build", allow_module_level=True)

from routing.models import Destination, RoutingJob

pytestmark = pytest.mark.django_db


def destination(name: str) -> Destination:
    return Destination.objects.create(name=name, ae_title=name, host="127.0.0.1", port=104)


def completed_study(accession: str, *, minutes: int = 10):
    now = working_now()
    step = schedule(
        accession=accession, patient_id=f"P{accession}", start=now, study_uid=generate_uid()
    )
    uid = generate_uid()
    ds = n_create_dataset(step)
    ds.PerformedProcedureStepStartDate = f"{now:%Y%m%d}"
    ds.PerformedProcedureStepStartTime = f"{now:%H%M%S}"
    mpps_create(sop_instance_uid=uid, ds=ds)
    end = now + timedelta(minutes=minutes)
    done = n_set_dataset()
    done.PerformedProcedureStepEndDate = f"{end:%Y%m%d}"
    done.PerformedProcedureStepEndTime = f"{end:%H%M%S}"
    mpps_set(sop_instance_uid=uid, modification=done)
    PerformedProcedureStep.objects.filter(sop_instance_uid=uid).update(created_at=now)
    return step, end


def test_the_board_shows_where_each_study_went(lead_client: Client) -> None:
    pacs, ai = destination("PACS"), destination("AI")
    sent, _ = completed_study("ACC1")
    sending, _ = completed_study("ACC2")
    failed, _ = completed_study("ACC3")
    RoutingJob.objects.create(
        study_instance_uid=sent.procedure.study_instance_uid, destination=pacs, status="COMPLETED"
    )
    RoutingJob.objects.create(
        study_instance_uid=sending.procedure.study_instance_uid, destination=ai, status="SCHEDULED"
    )
    RoutingJob.objects.create(
        study_instance_uid=failed.procedure.study_instance_uid, destination=pacs, status="FAILED"
    )
    html = lead_client.get("/board/").content.decode()
    assert "<th>Routing</th>" in html
    cells = dict(
        zip(
            ("ACC1", "ACC2", "ACC3"),
            [c.strip() for c in html.split('<td class="routing">')[1:]],
            strict=True,
        )
    )
    assert cells["ACC1"].startswith("Sent to PACS")
    assert cells["ACC2"].startswith("Sending to AI")
    assert cells["ACC3"].startswith("Failed: PACS")


def test_turnaround_has_complete_to_routed(lead_client: Client) -> None:
    pacs = destination("PACS")
    step, completed = completed_study("ACC1")
    RoutingJob.objects.create(
        study_instance_uid=step.procedure.study_instance_uid,
        destination=pacs,
        status="COMPLETED",
        finished_at=completed + timedelta(minutes=4),
    )
    html = lead_client.get("/turnaround/").content.decode()
    assert html.count('<svg class="chart"') == 3
    assert "Complete → routed" in html
    assert "<td>1</td><td>4 min</td><td>4 min</td>" in html


def test_queue_health_counts_routing_jobs(lead_client: Client) -> None:
    pacs = destination("PACS")
    RoutingJob.objects.create(study_instance_uid="1.2.3", destination=pacs, status="SCHEDULED")
    RoutingJob.objects.create(
        study_instance_uid="1.2.4",
        destination=pacs,
        status="FAILED",
        finished_at=timezone.now() - timedelta(hours=3),
    )
    html = lead_client.get("/queues/").content.decode()
    assert "Routing jobs" in html
    assert "3 h ago" in html
