"""Pages of results: ``count``/``results``, ``?limit=`` or ``?page_size=``, capped at
API_MAX_PAGE_SIZE whatever is asked."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures_api import INTEGRATOR, ApiAs
from tests.fixtures_dicom import bulk_schedule

pytestmark = pytest.mark.django_db


@pytest.fixture
def many(settings: Any) -> None:
    settings.API_PAGE_SIZE = 4
    settings.API_MAX_PAGE_SIZE = 10
    bulk_schedule(25)


@pytest.mark.usefixtures("many")
def test_the_default_page(api_as: ApiAs) -> None:
    page = api_as(INTEGRATOR).get("/api/v1/steps/").json()
    assert page["count"] == 25
    assert len(page["results"]) == 4
    assert "limit=4" in page["next"]


@pytest.mark.usefixtures("many")
@pytest.mark.parametrize("param", ["limit", "page_size"])
def test_a_page_size_is_capped_at_the_maximum(api_as: ApiAs, param: str) -> None:
    client = api_as(INTEGRATOR)
    assert len(client.get("/api/v1/steps/", {param: 7}).json()["results"]) == 7
    assert len(client.get("/api/v1/steps/", {param: 100000}).json()["results"]) == 10
    assert len(client.get("/api/v1/patients/", {param: 100000}).json()["results"]) == 10


@pytest.mark.usefixtures("many")
def test_offset_pages_through_everything_once(api_as: ApiAs) -> None:
    client = api_as(INTEGRATOR)
    seen: list[int] = []
    url: str | None = "/api/v1/steps/?limit=10"
    while url:
        page = client.get(url).json()
        seen += [s["id"] for s in page["results"]]
        url = page["next"]
    assert len(seen) == len(set(seen)) == 25
