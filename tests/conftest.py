"""Shared fixtures. Area fixtures live in tests/fixtures_*.py, one file per area."""

from __future__ import annotations

import socket

import pytest

pytest_plugins = [
    "tests.fixtures_api",
    "tests.fixtures_dicom",
    "tests.fixtures_hl7",
    "tests.fixtures_mpps",
    "tests.fixtures_routing",
    "tests.fixtures_pages",
]


def get_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def free_port() -> int:
    return get_free_port()
