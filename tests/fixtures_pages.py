"""Fixtures for the staff pages: accounts of each role, signed-in clients."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone
from playwright.sync_api import Browser, Page, sync_playwright

from broker import roles
from tests.fixtures_dicom import schedule

PASSWORD = "a-long-test-password-1"


def role_user(username: str, role: str) -> User:
    """An account in one of the roles the broker ships with (a group of broker.roles)."""
    user = User.objects.create_user(username, password=PASSWORD)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def desk_user(db: None) -> User:
    return role_user("clerk", roles.FRONT_DESK)


@pytest.fixture
def lead_user(db: None) -> User:
    return role_user("lead", roles.DEPARTMENT_LEAD)


@pytest.fixture
def integrator_user(db: None) -> User:
    return role_user("integrator", roles.INTEGRATOR)


@pytest.fixture
def desk_client(desk_user: User) -> Client:
    client = Client()
    client.force_login(desk_user)
    return client


@pytest.fixture
def lead_client(lead_user: User) -> Client:
    client = Client()
    client.force_login(lead_user)
    return client


def working_now() -> datetime:
    """Now, to the minute, moved at most two hours from midnight into the day: steps a test
    schedules up to two hours either side of it fall on today's page whatever the hour the
    suite runs at (a step at now + 75 min was tomorrow's from 22:45 on, and not on the page).
    """
    now = timezone.localtime().replace(second=0, microsecond=0)
    midnight = now.replace(hour=0, minute=0)
    return min(max(now, midnight + timedelta(hours=2)), midnight + timedelta(hours=22))


def morning() -> None:
    """A few of today's steps, so that the page looks like a working day."""
    now = working_now()
    for n, (name, modality, station, status, minutes) in enumerate(
        [
            ("MUELLER^HANS", "CT", "CT1", "COMPLETED", -90),
            ("SMITH^MARY", "CT", "CT1", "STARTED", -20),
            ("GARCIA^LUIS", "MR", "MR1", "ARRIVED", 10),
            ("NGUYEN^THI", "US", "US1", "SCHEDULED", 45),
            ("OKAFOR^CHI", "CT", "CT1", "SCHEDULED", 75),
        ]
    ):
        schedule(
            patient_id=f"PID{n}",
            patient_name=name,
            accession=f"A2026{n:04d}",
            modality=modality,
            stations=[station],
            status=status,
            start=now + timedelta(minutes=minutes),
            procedure={
                "description": {"CT": "CT HEAD", "MR": "MR KNEE", "US": "US ABDOMEN"}[modality]
            },
        )


# --- a real browser ------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class BrowserPage:
    """A page of the browser, with every request it made."""

    page: Page
    base_url: str
    requests: list[str] = field(default_factory=list)

    def goto(self, path: str) -> None:
        self.page.goto(self.base_url + path)

    def sign_in(self, username: str, next_path: str = "/") -> None:
        self.goto(f"/accounts/login/?next={next_path}")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state()

    def screenshot(self, name: str) -> None:
        """Save the page as ``<name>.png`` into $PAGES_SCREENSHOT_DIR (e.g. ``docs``) when it
        is set: that is how the README's screenshots are made."""
        folder = os.environ.get("PAGES_SCREENSHOT_DIR")
        if folder:
            self.page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)

    def foreign_requests(self) -> list[str]:
        """Requests to anything but the live server (there must be none)."""
        origin = urlsplit(self.base_url)
        return [
            url
            for url in self.requests
            if not url.startswith(("data:", "about:")) and urlsplit(url).netloc != origin.netloc
        ]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Debian chromium per test module (starting one takes about a second)."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    # Playwright's sync API keeps an asyncio loop set on this thread between its calls, so
    # Django takes the test's own (synchronous) ORM calls for calls from async code. They
    # are not: nothing else runs on that loop while they do.
    saved = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if saved is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = saved


@pytest.fixture
def browser_page(browser: Browser, live_server: Any) -> Iterator[BrowserPage]:
    """A fresh browser context on the live server; fails the test if any page of it asked
    another host for anything."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    recorded = BrowserPage(page=page, base_url=live_server.url)
    page.on("request", lambda request: recorded.requests.append(request.url))
    try:
        yield recorded
    finally:
        context.close()
    assert recorded.requests, "the browser made no request"
    assert recorded.foreign_requests() == []
