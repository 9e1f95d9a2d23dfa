"""Spool clean-up: an instance leaves only when every job that needs it is finished and
ROUTING_RETENTION_HOURS have passed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from pydicom.uid import generate_uid

from routing import services, spool
from routing.models import Destination, JobItem, RoutingJob, StoredInstance
from tests.fixtures_routing import rule_to, spool_files, write_study

pytestmark = pytest.mark.django_db  # the peers here use no database: no flush needed


def test_only_old_instances_no_job_still_needs_leave_the_spool(
    routing_settings: Any, tmp_path: Path
) -> None:
    routing_settings.ROUTING_RETENTION_HOURS = 1
    destination = Destination.objects.create(name="d", ae_title="D", host="127.0.0.1", port=1)
    rule_to(destination)
    delivered, failed, canceled = (generate_uid() for _ in range(3))
    for study in (delivered, failed, canceled):
        spool_files(write_study(tmp_path / study, 2, study_uid=study))
        services.route_study(study)
    unrouted = generate_uid()
    spool_files(write_study(tmp_path / unrouted, 1, study_uid=unrouted))
    JobItem.objects.filter(job__study_instance_uid=delivered).update(state="SENT")
    RoutingJob.objects.filter(study_instance_uid=delivered).update(status="COMPLETED")
    RoutingJob.objects.filter(study_instance_uid=failed).update(status="FAILED")
    JobItem.objects.filter(job__study_instance_uid=failed).update(state="FAILED")
    RoutingJob.objects.filter(study_instance_uid=canceled).update(status="CANCELED")
    paths = {i.sop_instance_uid: spool.absolute(i.path) for i in StoredInstance.objects.all()}

    assert services.spool_clean() == 0  # all of them are recent

    later = timezone.now() + dt.timedelta(hours=1, minutes=1)
    assert services.spool_clean(now=later) == 4
    left = set(StoredInstance.objects.values_list("study_instance_uid", flat=True))
    assert left == {failed, unrouted}
    for instance in StoredInstance.objects.all():
        assert paths.pop(instance.sop_instance_uid).is_file()
    assert not any(path.exists() for path in paths.values())
    # The finished job still counts its instances.
    job = RoutingJob.objects.get(study_instance_uid=delivered)
    assert job.items.count() == 2 and not job.items.filter(instance__isnull=False).exists()


def test_a_delivered_instance_waits_for_commitment_where_the_destination_requires_it(
    routing_settings: Any, tmp_path: Path
) -> None:
    routing_settings.ROUTING_RETENTION_HOURS = 0
    destination = Destination.objects.create(
        name="d", ae_title="D", host="127.0.0.1", port=1, storage_commitment=True
    )
    rule_to(destination)
    study = generate_uid()
    spool_files(write_study(tmp_path / "scan", 1, study_uid=study))
    services.route_study(study)
    JobItem.objects.update(state="SENT")
    assert services.spool_clean(now=timezone.now() + dt.timedelta(seconds=1)) == 0
    JobItem.objects.update(state="COMMITTED")
    assert services.spool_clean(now=timezone.now() + dt.timedelta(seconds=1)) == 1
