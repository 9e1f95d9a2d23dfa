"""The procedure board's refresh (/board/rows/, polled every BOARD_REFRESH_SECONDS by each
open board) for a normal and a busy day (prints figures; not a test).

Each refresh goes through Django's whole request stack (session, permissions, the
board's queries, the template) with Django's test client, no socket: "board" when the
board changed (it is sent again), "unchanged" when it did not (the digest matches the one
the browser shows: an empty 204). Reference, measured
alternating in the same run: the bare query of the same day's steps with their patient,
order and procedure (``worklist.selectors.step_list``), so the ratio is what the board
costs over reading its rows. Also prints what one open board costs in core time.

    .venv/bin/python bench/board.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/broker_bench_board .venv/bin/python bench/board.py

Without DATABASE_URL it uses a fresh SQLite file, var/bench_board.sqlite3; a PostgreSQL
database must be a bench one (its name contains "bench"): its worklist is emptied first.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if not os.environ.get("DATABASE_URL"):
    _path = ROOT / "var" / "bench_board.sqlite3"
    for _suffix in ("", "-wal", "-shm"):
        Path(f"{_path}{_suffix}").unlink(missing_ok=True)
    os.environ["DATABASE_URL"] = f"sqlite:///{_path}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["ALLOWED_HOSTS"] = "testserver"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from frontdesk.selectors import board_signature  # noqa: E402
from tests.fixtures_dicom import bulk_schedule  # noqa: E402
from worklist.models import Order, Patient  # noqa: E402
from worklist.selectors import step_list  # noqa: E402


def prepare(count: int) -> None:
    name = str(settings.DATABASES["default"]["NAME"])
    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql") and "bench" not in name:
        raise SystemExit(f"refusing to empty {name}: use a database whose name has 'bench'")
    Order.objects.all().delete()
    Patient.objects.all().delete()
    start = timezone.localtime().replace(hour=9, minute=0, second=0, microsecond=0)
    bulk_schedule(count, start=start, station="CT1")


def board_client() -> Client:
    user, _ = User.objects.get_or_create(username="bench-lead")
    user.groups.add(Group.objects.get(name="Department lead"))
    client = Client()
    client.force_login(user)
    return client


def board_once(client: Client, expected: int) -> float:
    started = time.perf_counter()
    response = client.get("/board/rows/", headers={"HX-Request": "true"})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert response.content.count(b"data-accession=") == expected
    return elapsed


def unchanged_once(client: Client, shown: str) -> float:
    started = time.perf_counter()
    response = client.get("/board/rows/", {"shown": shown}, headers={"HX-Request": "true"})
    elapsed = time.perf_counter() - started
    assert response.status_code == 204
    return elapsed


def query_once(expected: int) -> float:
    started = time.perf_counter()
    rows = list(step_list().filter(start_date=timezone.localdate()))
    for step in rows:
        _ = step.procedure.order.patient.name, list(step.station_ae_titles.all())
    elapsed = time.perf_counter() - started
    assert len(rows) == expected
    return elapsed


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return f"median {statistics.median(ordered) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    client = board_client()
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    refresh = settings.BOARD_REFRESH_SECONDS
    print(f"Board refresh vs the bare query, database {engine}, {args.runs} runs, alternating")
    for count in (200, 2000):
        prepare(count)
        board_once(client, count)  # warm-up
        query_once(count)
        shown = board_signature(day=timezone.localdate())
        board: list[float] = []
        unchanged: list[float] = []
        query: list[float] = []
        for _ in range(args.runs):
            board.append(board_once(client, count))
            unchanged.append(unchanged_once(client, shown))
            query.append(query_once(count))
        reference = statistics.median(query)
        print(f"{count:5} steps  query      {summary(query)}")
        for name, times in (("board", board), ("unchanged", unchanged)):
            median = statistics.median(times)
            print(
                f"{'':12} {name:10} {summary(times)}   /query {median / reference:4.2f}"
                f"   one open board: {100 * median / refresh:.0f}% of a core at {refresh:g} s"
            )


if __name__ == "__main__":
    main()
