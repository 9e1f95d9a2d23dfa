"""The OpenAPI document and the browsable docs, served with no request to another host."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_schema_is_an_openapi_3_document_of_every_endpoint(client: Client) -> None:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    for url in (
        "/api/v1/patients/",
        "/api/v1/orders/",
        "/api/v1/orders/{id}/cancel/",
        "/api/v1/steps/",
        "/api/v1/steps/{id}/status/",
        "/api/v1/mpps/",
        "/api/v1/hl7-messages/{id}/reprocess/",
        "/api/v1/ris-messages/{id}/resend/",
        "/api/v1/figures/board/",
        "/api/v1/figures/turnaround/",
        "/api/v1/mwlitems/",
        "/api/v1/mwlitems/count/",
        "/api/v1/mwlitems/{study_instance_uid}/{sps_id}/status/{new_status}/",
    ):
        assert url in schema["paths"], url
    assert "tokenAuth" in schema["components"]["securitySchemes"]


def test_the_docs_page_loads_only_from_the_broker(client: Client) -> None:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.text
    # Nothing names another host: no absolute or protocol-relative URL anywhere.
    assert not re.search(r"""(https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", html, re.I), html
    assert '"validatorUrl": null' in html  # Swagger UI's online validator is off
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert assets, html
    for asset in assets:
        assert asset.startswith("/"), asset
        if asset.startswith("/static/"):
            assert finders.find(asset.removeprefix("/static/")), f"{asset} is not a local file"


def test_the_schema_validates_without_warnings(tmp_path: Path) -> None:
    # drf-spectacular's own check: every view described, the document valid OpenAPI 3.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yaml"))
    assert (tmp_path / "s.yaml").read_text().startswith("openapi: 3")
