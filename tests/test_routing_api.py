"""The routing REST API: destinations, rules, jobs, with a superuser's DRF token and with
users lacking the permissions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from pydicom.uid import generate_uid
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from routing import services
from routing.models import RoutingJob
from tests.fixtures_routing import destination_for, rule_to, spool_files, write_study

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db  # the peers here use no database: no flush needed


@pytest.fixture
def superuser_client() -> APIClient:
    """A superuser made as the README says: createsuperuser --noinput, drf_create_token."""
    env = {
        **os.environ,
        "DJANGO_SUPERUSER_USERNAME": "admin",
        "DJANGO_SUPERUSER_EMAIL": "admin@example.org",
        "DJANGO_SUPERUSER_PASSWORD": "a-long-password-1",
    }
    from django.core.management import call_command

    # In-process (the test database), with the variables the command reads.
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        call_command("createsuperuser", "--noinput", verbosity=0)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    call_command("drf_create_token", "admin", verbosity=0)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user__username='admin').key}")
    return client


def test_destinations_can_be_created_read_changed_echoed_and_deleted(
    routing_settings: Any, superuser_client: APIClient, storage_destination: Any
) -> None:
    scp = storage_destination()
    created = superuser_client.post(
        "/api/v1/destinations/",
        {"name": "pacs", "ae_title": scp.ae_title, "host": "127.0.0.1", "port": scp.port},
        format="json",
    )
    assert created.status_code == 201, created.content
    url = f"/api/v1/destinations/{created.json()['id']}/"
    assert superuser_client.get(url).json()["ae_title"] == "DEST"
    listing = superuser_client.get("/api/v1/destinations/").json()
    assert [d["name"] for d in listing["results"]] == ["pacs"]

    echo = superuser_client.post(url + "echo/")
    assert echo.status_code == 200 and echo.json() == {"status": 0}

    changed = superuser_client.patch(url, {"port": 1, "paused": True}, format="json")
    assert changed.status_code == 200 and changed.json()["paused"] is True
    failed_echo = superuser_client.post(url + "echo/")
    assert failed_echo.status_code == 502 and failed_echo.json()["error"]

    assert superuser_client.delete(url).status_code == 204
    assert superuser_client.get(url).status_code == 404


def test_a_destination_with_a_bad_ae_title_is_refused(
    routing_settings: Any, superuser_client: APIClient
) -> None:
    response = superuser_client.post(
        "/api/v1/destinations/",
        {"name": "x", "ae_title": "MUCH_TOO_LONG_AE_TITLE", "host": "h", "port": 104},
        format="json",
    )
    assert response.status_code == 400
    assert "ae_title" in response.json()


def test_rules_take_optional_conditions(routing_settings: Any, superuser_client: APIClient) -> None:
    dest = superuser_client.post(
        "/api/v1/destinations/",
        {"name": "ai", "ae_title": "AI", "host": "127.0.0.1", "port": 104},
        format="json",
    ).json()
    full = superuser_client.post(
        "/api/v1/routing-rules/",
        {
            "name": "ct heads to ai",
            "destinations": [dest["id"]],
            "modality": "CT",
            "calling_ae_title": "CT1",
            "station_ae_title": "CT1",
            "procedure_code": "CTH",
            "body_part": "HEAD",
            "study_description": "*HEAD*",
        },
        format="json",
    )
    assert full.status_code == 201, full.content
    bare = superuser_client.post(
        "/api/v1/routing-rules/",
        {"name": "everything", "destinations": [dest["id"]], "modality": None},
        format="json",
    )
    assert bare.status_code == 201, bare.content
    assert bare.json()["modality"] == "" and bare.json()["body_part"] == ""
    names = [r["name"] for r in superuser_client.get("/api/v1/routing-rules/").json()["results"]]
    assert names == ["ct heads to ai", "everything"]


def test_jobs_are_listed_filtered_retried_and_canceled(
    routing_settings: Any, superuser_client: APIClient, storage_destination: Any, tmp_path: Path
) -> None:
    scp = storage_destination()
    destination = destination_for(scp)
    rule_to(destination)
    study = generate_uid()
    spool_files(write_study(tmp_path / "scan", 3, study_uid=study))
    (job_id,) = services.route_study(study)

    body = superuser_client.get(
        f"/api/v1/routing-jobs/?study_instance_uid={study}&status=SCHEDULED&destination={destination.pk}"
    ).json()
    (job,) = body["results"]
    assert job["id"] == job_id
    assert job["study_instance_uid"] == study
    assert job["destination"] == destination.pk
    assert (job["status"], job["attempts"], job["last_error"]) == ("SCHEDULED", 0, "")
    assert (job["instances"], job["instances_sent"]) == (3, 0)
    assert superuser_client.get("/api/v1/routing-jobs/?status=COMPLETED").json()["results"] == []
    assert superuser_client.get("/api/v1/routing-jobs/?status=NONSENSE").status_code == 400

    retry_open = superuser_client.post(f"/api/v1/routing-jobs/{job_id}/retry/")
    assert retry_open.status_code == 409
    canceled = superuser_client.post(f"/api/v1/routing-jobs/{job_id}/cancel/")
    assert canceled.status_code == 200 and canceled.json()["status"] == "CANCELED"
    retried = superuser_client.post(f"/api/v1/routing-jobs/{job_id}/retry/")
    assert retried.status_code == 200 and retried.json()["status"] == "SCHEDULED"


def test_a_user_without_the_permissions_cannot_change_or_retry(
    routing_settings: Any, storage_destination: Any, tmp_path: Path
) -> None:
    user = User.objects.create_user("viewer", password="a-long-password-2")
    client = APIClient()
    client.force_authenticate(user)
    scp = storage_destination()
    destination = destination_for(scp)
    rule_to(destination)
    study = generate_uid()
    spool_files(write_study(tmp_path / "scan", 1, study_uid=study))
    (job_id,) = services.route_study(study)
    services.job_cancel(job_id)

    assert client.get("/api/v1/routing-jobs/").status_code == 403  # reading needs view_
    assert client.post(f"/api/v1/routing-jobs/{job_id}/retry/").status_code == 403
    assert (
        client.post(
            "/api/v1/destinations/", {"name": "x", "ae_title": "X", "host": "h", "port": 1}
        ).status_code
        == 403
    )
    assert client.post(f"/api/v1/destinations/{destination.pk}/echo/").status_code == 403

    user.user_permissions.add(
        Permission.objects.get(codename="retry_routingjob"),
        Permission.objects.get(codename="view_routingjob"),
    )
    user = User.objects.get(pk=user.pk)  # forget the cached permissions
    client.force_authenticate(user)
    assert client.get("/api/v1/routing-jobs/").status_code == 200
    assert client.post(f"/api/v1/routing-jobs/{job_id}/retry/").status_code == 200
    assert RoutingJob.objects.get(pk=job_id).status == "SCHEDULED"


def test_anonymous_requests_are_refused(routing_settings: Any) -> None:
    assert APIClient().get("/api/v1/routing-jobs/").status_code in (401, 403)
