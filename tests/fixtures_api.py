"""Fixtures for the REST API tests: a client per role, signed in with a token."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

ANONYMOUS = "anonymous"
# The roles of broker/roles.py, by their group names (literal here, as the site sees them).
FRONT_DESK = "Front desk"
LEAD = "Department lead"
INTEGRATOR = "Integrator"
ADMINISTRATOR = "Administrator"
ROLES = [ANONYMOUS, INTEGRATOR, FRONT_DESK, LEAD, ADMINISTRATOR]

ApiAs = Callable[[str], APIClient]


@pytest.fixture
def api_as(db: None) -> ApiAs:
    """``api_as("Integrator")``: an API client with the token of a member of that group
    (``"anonymous"``: no credentials; ``"none"``: a signed-in account with no role)."""
    made: dict[str, APIClient] = {}

    def make(role: str) -> APIClient:
        if role in made:
            return made[role]
        client = APIClient()
        if role != ANONYMOUS:
            # No password: a token signs in, and hashing one costs a third of a second.
            user = User.objects.create_user(f"user-{role.lower().replace(' ', '-')}")
            if role != "none":
                user.groups.add(Group.objects.get(name=role))
            token = Token.objects.create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        made[role] = client
        return client

    return make
