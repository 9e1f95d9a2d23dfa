"""Login rate limiting (django-axes): the backend that checks lockouts before a password."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class LoginRateLimitBackend(AxesStandaloneBackend):
    """django-axes' lockout check, first in AUTHENTICATION_BACKENDS.

    Every login a person makes (the login page, the admin) passes the request, and is
    checked. ``authenticate()`` without a request (the test client's ``login()``, code
    checking a password) is not a login attempt from the network: it is left to the next
    backend instead of failing, as AxesStandaloneBackend would.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        super().authenticate(request, username=username, password=password, **kwargs)
        return None
