"""Celery beat, as ``manage.py serve`` and docker-compose run it, queues the routing
check on its own, from CELERY_BEAT_SCHEDULE."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def test_the_schedule_has_the_routing_check() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["routing-tick"]
    assert entry["task"] == "routing.tick"
    assert entry["schedule"] == settings.ROUTING_TICK_SECONDS


def test_beat_queues_the_routing_check(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BROKER_VAR_DIR": str(tmp_path),
        "CELERY_BROKER_URL": "filesystem://",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ROUTING_TICK_SECONDS": "0.5",
    }
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "broker", "beat", "--loglevel", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    messages = tmp_path / "queue" / "messages"
    tasks: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not tasks:
            for path in messages.glob("*") if messages.is_dir() else []:
                body = json.loads(path.read_text())
                tasks.append(body["headers"]["task"])
            time.sleep(0.1)
    finally:
        beat.terminate()
        beat.wait(10)
    assert "routing.tick" in tasks
    assert (tmp_path / "celerybeat-schedule").exists() or any(tmp_path.glob("celerybeat-schedule*"))
