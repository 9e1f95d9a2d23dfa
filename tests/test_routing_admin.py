"""The routing admin: jobs filtered by status and destination, retry and cancel actions
that need their permissions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from pydicom.uid import generate_uid

from routing import services
from routing.models import Destination, RoutingJob
from tests.fixtures_routing import rule_to, spool_files, write_study

pytestmark = pytest.mark.django_db  # the peers here use no database: no flush needed


def _job(tmp_path: Path, destination: Destination) -> int:
    study = generate_uid()
    spool_files(write_study(tmp_path / study, 2, study_uid=study))
    (job_id,) = services.route_study(study)
    return job_id


@pytest.fixture
def two_jobs(routing_settings: Any, tmp_path: Path) -> tuple[int, int]:
    pacs = Destination.objects.create(name="pacs", ae_title="PACS", host="127.0.0.1", port=1)
    ai = Destination.objects.create(name="ai", ae_title="AI", host="127.0.0.1", port=1)
    rule_to(pacs, name="to pacs", modality="CT")
    first = _job(tmp_path, pacs)
    RoutingJob.objects.filter(pk=first).update(status="FAILED")
    rule_to(ai, name="to ai", modality="CT")
    second = RoutingJob.objects.get(
        pk__in=services.route_study(_study_with_files(tmp_path)), destination=ai
    ).pk
    return first, second


def _study_with_files(tmp_path: Path) -> str:
    study = generate_uid()
    spool_files(write_study(tmp_path / study, 1, study_uid=study))
    return study


def test_jobs_are_filtered_by_status_and_destination(two_jobs: tuple[int, int]) -> None:
    failed, _ = two_jobs
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "a@example.org", "pw-tests-only"))
    pacs = Destination.objects.get(name="pacs")
    response = client.get(
        f"/admin/routing/routingjob/?status=FAILED&destination__id__exact={pacs.pk}"
    )
    assert response.status_code == 200
    assert list(response.context["cl"].queryset.values_list("pk", flat=True)) == [failed]
    assert client.get(f"/admin/routing/routingjob/{failed}/change/").status_code == 200


def test_retry_and_cancel_actions_need_their_permissions(two_jobs: tuple[int, int]) -> None:
    failed, scheduled = two_jobs
    user = User.objects.create_user("operator", password="pw-tests-only", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_routingjob"))
    client = Client()
    client.force_login(user)
    page = client.get("/admin/routing/routingjob/")
    assert page.status_code == 200
    assert "retry" not in page.context["cl"].model_admin.get_actions(page.wsgi_request)

    user.user_permissions.add(
        Permission.objects.get(codename="retry_routingjob"),
        Permission.objects.get(codename="cancel_routingjob"),
    )
    client.post(
        "/admin/routing/routingjob/",
        {"action": "retry", "_selected_action": [failed]},
    )
    client.post(
        "/admin/routing/routingjob/",
        {"action": "cancel", "_selected_action": [scheduled]},
    )
    statuses = dict(RoutingJob.objects.values_list("pk", "status"))
    assert (statuses[failed], statuses[scheduled]) == ("SCHEDULED", "CANCELED")
