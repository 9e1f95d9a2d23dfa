"""Login attempts are rate-limited (django-axes): after AXES_FAILURE_LIMIT failures of
one username from one address the login form answers 429, then even to the right password;
other accounts and the test client's own login still work."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-password-1"


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("desk", password=PASSWORD, is_staff=True)


def login(client: Client, username: str, password: str) -> Any:
    return client.post("/admin/login/", {"username": username, "password": password})


def test_the_login_form_signs_in(client: Client, staff: User) -> None:
    response = login(client, "desk", PASSWORD)
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_too_many_failures_lock_the_account_out_from_that_address(
    client: Client, staff: User, settings: Any
) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "desk", "wrong").status_code == 200  # the form again
    assert login(client, "desk", "wrong").status_code == 429  # the last one allowed
    locked = login(client, "desk", PASSWORD)
    assert locked.status_code == 429
    assert client.get("/admin/").status_code == 302  # not signed in
    # Another account from the same address is not locked out.
    User.objects.create_user("lead", password=PASSWORD, is_staff=True)
    assert login(Client(), "lead", PASSWORD).status_code == 302


def test_a_success_resets_the_count(client: Client, staff: User, settings: Any) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(client, "desk", "wrong")
    assert login(client, "desk", PASSWORD).status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(client, "desk", "wrong")
    assert login(client, "desk", PASSWORD).status_code == 302


def test_the_test_clients_login_still_works(client: Client, staff: User) -> None:
    assert client.login(username="desk", password=PASSWORD)
    assert client.get("/admin/").status_code == 200
