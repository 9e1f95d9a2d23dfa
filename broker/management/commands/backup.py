"""``manage.py backup``: a consistent copy of the database, while the broker runs.

- SQLite: SQLite's online backup API (a copy of the file alone is not a backup in WAL
  mode: committed transactions may still be in the ``-wal`` file). The result is one
  self-contained database file.
- PostgreSQL: ``pg_dump --format=custom`` (a consistent snapshot; restore with
  ``pg_restore``).

Restoring is described in the README ("Backup and restore").
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.utils import timezone


def sqlite_backup(source: Path, target: Path) -> None:
    """Copy a live SQLite database (WAL included) page by page into ``target``."""
    src = sqlite3.connect(source)
    try:
        dst = sqlite3.connect(target)
        try:
            with dst:
                src.backup(dst)
            # The copy is a plain database file: no -wal file to carry with it.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def pg_environment(db: dict[str, Any]) -> dict[str, str]:
    """libpq variables for pg_dump / pg_restore (the password never on a command line)."""
    env = dict(os.environ)
    for key, variable in (
        ("HOST", "PGHOST"),
        ("PORT", "PGPORT"),
        ("USER", "PGUSER"),
        ("PASSWORD", "PGPASSWORD"),
    ):
        if db.get(key):
            env[variable] = str(db[key])
    return env


def pg_backup(db: dict[str, Any], target: Path) -> None:
    if shutil.which("pg_dump") is None:
        raise CommandError("pg_dump not found: install the PostgreSQL client tools")
    result = subprocess.run(
        ["pg_dump", "--format=custom", "--no-owner", "--file", str(target), str(db["NAME"])],
        env=pg_environment(db),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        target.unlink(missing_ok=True)
        raise CommandError(f"pg_dump failed: {result.stderr.strip()}")


class Command(BaseCommand):
    help = "Back up the database: SQLite's backup API, or pg_dump for PostgreSQL."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-o",
            "--output",
            help="file to write (default: BROKER_VAR_DIR/backups/broker-<time>.<ext>)",
        )

    def handle(self, *args: Any, output: str | None, **options: Any) -> None:
        db = connection.settings_dict
        vendor = connection.vendor
        ext = "sqlite3" if vendor == "sqlite" else "pgdump"
        if output:
            target = Path(output)
        else:
            stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
            target = Path(settings.VAR_DIR) / "backups" / f"broker-{stamp}.{ext}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise CommandError(f"{target} exists; choose another --output")
        if vendor == "sqlite":
            sqlite_backup(Path(db["NAME"]), target)
        elif vendor == "postgresql":
            pg_backup(db, target)
        else:  # pragma: no cover - settings allow only these two
            raise CommandError(f"no backup method for {vendor}")
        self.stdout.write(f"backup written to {target} ({target.stat().st_size} bytes)")
