"""manage.py conformance: the documents match the code, and drift is named."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from broker.config import Config
from broker.management.commands.conformance import DOCS_DIR, DOCUMENTS

STATEMENT = "dicom-conformance-statement.md"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "conformance"
    shutil.copytree(DOCS_DIR, folder)
    return folder


def tamper(path: Path, section: str) -> None:
    """Change one line inside a generated section."""
    text = path.read_text(encoding="utf-8")
    begin = text.index(f"<!-- BEGIN GENERATED: {section} -->")
    row = text.index("\n| ", begin) + 1
    path.write_text(text[:row] + "| 0xDEAD | made up |\n" + text[row:], encoding="utf-8")


def test_the_documents_are_up_to_date() -> None:
    call_command("conformance", "--check")


def test_every_document_exists_with_every_generated_section() -> None:
    for name, sections in DOCUMENTS.items():
        text = (DOCS_DIR / name).read_text(encoding="utf-8")
        for section in sections:
            assert f"<!-- BEGIN GENERATED: {section} -->" in text, (name, section)
            assert f"<!-- END GENERATED: {section} -->" in text, (name, section)


def test_check_names_the_section_that_drifted_and_changes_nothing(docs: Path) -> None:
    tamper(docs / STATEMENT, "mwl-statuses")
    before = (docs / STATEMENT).read_text(encoding="utf-8")
    with pytest.raises(CommandError, match=r"dicom-conformance-statement\.md: mwl-statuses"):
        call_command("conformance", "--check", "--docs", str(docs))
    assert (docs / STATEMENT).read_text(encoding="utf-8") == before


def test_it_rewrites_a_drifted_section_and_keeps_the_prose(docs: Path) -> None:
    tamper(docs / STATEMENT, "mpps-statuses")
    call_command("conformance", "--docs", str(docs))
    assert (docs / STATEMENT).read_text(encoding="utf-8") == (DOCS_DIR / STATEMENT).read_text(
        encoding="utf-8"
    )
    call_command("conformance", "--check", "--docs", str(docs))


def test_a_section_missing_from_a_document_is_an_error(docs: Path) -> None:
    path = docs / STATEMENT
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("GENERATED: mwl-keys -->", "GENERATED: mwl-keyz -->"))
    with pytest.raises(CommandError, match=r"unknown section mwl-keyz.*missing section mwl-keys"):
        call_command("conformance", "--check", "--docs", str(docs))


def test_check_exits_non_zero_on_drift(docs: Path) -> None:
    tamper(docs / "hl7-interface.md", "order-status")
    run = subprocess.run(
        [sys.executable, "manage.py", "conformance", "--check", "--docs", str(docs)],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "hl7-interface.md: order-status" in run.stderr


def test_the_readme_links_every_document_near_its_top() -> None:
    head = (Path(settings.BASE_DIR) / "README.md").read_text(encoding="utf-8").splitlines()[:12]
    for name in DOCUMENTS:
        assert any(f"docs/conformance/{name}" in line for line in head), name


def test_the_documents_show_defaults_whatever_the_environment_says() -> None:
    env = {**os.environ, "DICOM_MAX_PDU": "16384", "BROKER_AE_TITLE": "ELSEWHERE"}
    run = subprocess.run(
        [sys.executable, "manage.py", "conformance", "--check"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr


def test_the_configuration_records_each_default_not_the_value_read() -> None:
    config = Config(environ={"DICOM_MAX_PDU": "16384", "BROKER_AE_TITLE": "ELSEWHERE"})
    assert config.integer("DICOM_MAX_PDU", 262144) == 16384
    assert config.ae_title("BROKER_AE_TITLE", "WORKLIST") == "ELSEWHERE"
    assert config.boolean("DICOM_RESTRICT_CALLING_AE", False) is False
    assert config.defaults == {
        "DICOM_MAX_PDU": 262144,
        "BROKER_AE_TITLE": "WORKLIST",
        "DICOM_RESTRICT_CALLING_AE": False,
    }
