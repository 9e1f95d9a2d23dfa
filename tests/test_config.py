"""Configuration from the environment: bad values fail at start, naming the variable."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from broker.config import Config

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full_env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}
    }
    full_env.update({"BROKER_VAR_DIR": str(tmp_path), "SECRET_KEY": secrets.token_urlsafe(50)})
    full_env.update(env)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_it_reads_defaults_from_an_empty_environment() -> None:
    cfg = Config(environ={})
    assert cfg.port("BROKER_DICOM_PORT", 11112) == 11112
    assert cfg.ae_title("BROKER_AE_TITLE", "WORKLIST") == "WORKLIST"
    assert cfg.database("DATABASE_URL", "sqlite:////tmp/x.sqlite3")["NAME"] == "/tmp/x.sqlite3"
    assert cfg.problems == []


def test_it_parses_a_postgres_url() -> None:
    cfg = Config(environ={"DATABASE_URL": "postgres://u:pw@db.example:5433/broker"})
    db = cfg.database("DATABASE_URL", "sqlite:////tmp/x.sqlite3")
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["HOST"], db["PORT"], db["NAME"]) == ("db.example", 5433, "broker")
    assert cfg.problems == []


@pytest.mark.parametrize(
    ("variable", "value", "check_id"),
    [
        ("BROKER_DICOM_PORT", "abc", "broker.E002"),
        ("BROKER_HL7_PORT", "70000", "broker.E002"),
        ("BROKER_AE_TITLE", "A_TITLE_LONGER_THAN_16", "broker.E003"),
        ("BROKER_AE_TITLE", "BAD\\AE", "broker.E003"),
        ("DATABASE_URL", "mongodb://localhost/broker", "broker.E005"),
        ("CELERY_BROKER_URL", "sqs://queue", "broker.E006"),
        ("DEBUG", "maybe", "broker.E001"),
        ("BROKER_BIND", "not-an-address", "broker.E004"),
    ],
)
def test_it_records_a_problem_naming_the_variable(variable: str, value: str, check_id: str) -> None:
    cfg = Config(environ={variable: value})
    cfg.port("BROKER_DICOM_PORT", 11112)
    cfg.port("BROKER_HL7_PORT", 2575)
    cfg.ae_title("BROKER_AE_TITLE", "WORKLIST")
    cfg.database("DATABASE_URL", "sqlite:////tmp/x.sqlite3")
    cfg.broker_url("CELERY_BROKER_URL", "filesystem://")
    cfg.boolean("DEBUG", False)
    cfg.bind_address("BROKER_BIND", "127.0.0.1")
    assert [(p.check_id, p.variable) for p in cfg.problems] == [(check_id, variable)]


def test_it_hides_the_password_of_a_bad_database_url() -> None:
    cfg = Config(environ={"DATABASE_URL": "oracle://user:hunter2@db/x"})
    cfg.database("DATABASE_URL", "sqlite:////tmp/x.sqlite3")
    assert "hunter2" not in cfg.problems[0].message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BROKER_DICOM_PORT", "eleven"),
        ("DATABASE_URL", "mongodb://localhost/broker"),
        ("BROKER_AE_TITLE", "WORKLIST_BROKER_TOO_LONG"),
    ],
)
def test_it_refuses_to_start_with_one_line_naming_the_variable(
    variable: str, value: str, tmp_path: Path
) -> None:
    result = run_manage("dicom_server", env={variable: value}, tmp_path=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: (broker.E00")
    assert variable in lines[0]


def test_check_reports_bad_configuration_with_an_id(tmp_path: Path) -> None:
    result = run_manage("check", env={"BROKER_HL7_PORT": "x"}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "(broker.E002) BROKER_HL7_PORT" in result.stderr


def test_it_has_no_usable_secret_outside_debug(tmp_path: Path) -> None:
    result = run_manage("check", env={"SECRET_KEY": "", "DEBUG": "false"}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "broker.E010" in result.stderr


def test_it_starts_without_a_secret_under_debug(tmp_path: Path) -> None:
    result = run_manage("check", env={"SECRET_KEY": "", "DEBUG": "true"}, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr


def test_check_deploy_passes_with_production_settings(tmp_path: Path) -> None:
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={
            "DEBUG": "false",
            "BROKER_HTTPS": "true",
            "ALLOWED_HOSTS": "broker.hospital.example",
            "DATABASE_URL": "postgres://broker@127.0.0.1:5432/broker",
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        },
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
