"""`manage.py backup` and the README's restore steps: back up, restore, compare."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from broker.management.commands.backup import pg_environment
from hl7v2.intake import message_receive
from tests.fixtures_dicom import schedule
from tests.hl7_messages import orm

pytestmark = pytest.mark.django_db(transaction=True)


def fill() -> None:
    schedule(patient_id="B1", accession="BA1")
    schedule(patient_id="B2", accession="BA2", sps_id="S2")
    message_receive(orm(control_id="BK1").encode(), peer="test")


def sqlite_tables(path: str) -> dict[str, list[tuple[Any, ...]]]:
    db = sqlite3.connect(path)
    try:
        names = [
            r[0]
            for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        ]
        return {n: sorted(db.execute(f'SELECT * FROM "{n}"').fetchall(), key=repr) for n in names}
    finally:
        db.close()


def pg_tables(dsn: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    import psycopg

    with psycopg.connect(**dsn) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' ORDER BY table_name"
            )
        ]
        return {
            n: sorted(
                (
                    tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                    for row in conn.execute(f'SELECT * FROM "{n}"')
                ),
                key=repr,
            )
            for n in names
        }


def test_a_backup_restores_to_the_same_rows(tmp_path: Path) -> None:
    fill()
    target = tmp_path / ("backup.sqlite3" if connection.vendor == "sqlite" else "backup.pgdump")
    call_command("backup", output=str(target))
    assert target.stat().st_size > 0
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        # README: stop the broker, put the backup in place of the database file (and
        # remove any -wal / -shm files beside it), start again.
        restored = tmp_path / "restored.sqlite3"
        shutil.copy(target, restored)
        before = sqlite_tables(db["NAME"])
        after = sqlite_tables(str(restored))
    else:
        scratch = f"restore_test_{uuid.uuid4().hex[:10]}"
        env = pg_environment(db)
        subprocess.run(["createdb", scratch], env=env, check=True)
        try:
            # README: pg_restore --no-owner --dbname NEW_DB FILE
            subprocess.run(
                ["pg_restore", "--no-owner", "--dbname", scratch, str(target)],
                env=env,
                check=True,
            )
            dsn = {
                "host": db["HOST"] or None,
                "port": db["PORT"] or None,
                "user": db["USER"] or None,
                "password": db["PASSWORD"] or None,
            }
            before = pg_tables({**dsn, "dbname": db["NAME"]})
            after = pg_tables({**dsn, "dbname": scratch})
        finally:
            subprocess.run(["dropdb", "--force", scratch], env=env, check=False)
    assert before == after
    assert before["worklist_patient"] and before["hl7v2_inboundmessage"]


def test_it_refuses_to_overwrite_a_file(tmp_path: Path) -> None:
    target = tmp_path / "exists"
    target.write_text("keep me")
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="exists"):
        call_command("backup", output=str(target))
    assert target.read_text() == "keep me"


def test_commits_are_durable_before_the_ack() -> None:
    from broker.checks import check_durability

    assert check_durability(databases=["default"]) == []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"
        else:
            cursor.execute("PRAGMA synchronous")
            assert cursor.fetchone()[0] == 2  # FULL
