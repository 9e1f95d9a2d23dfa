from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_it_answers_health_without_login(client: Client) -> None:
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "worker_last_seen": None}


@pytest.mark.django_db
def test_it_requires_login_for_admin(client: Client) -> None:
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_it_requires_a_token_for_the_api(client: Client) -> None:
    response = client.get("/api/v1/steps/")
    assert response.status_code == 401
