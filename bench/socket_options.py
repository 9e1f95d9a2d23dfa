"""What the DICOM listener's socket options are worth: the README's socket-options table.

Starts three broker listeners on the same entries, one per ``DICOM_TCP_TUNING`` value
(``off``: neither option; ``nodelay``: TCP_NODELAY only; ``nodelay+quickack``: the
broker as shipped), and measures, alternating the three round by round: a whole
``echoscu`` process, a whole ``findscu -W`` process for the typical scanner query
(about 20 answers), and the same query repeated on one association (pynetdicom SCU).

    .venv/bin/python bench/socket_options.py --size 100000 --runs 10

Prints the median of each, per setting. Without DATABASE_URL it uses a fresh SQLite
file, var/bench_mwl.sqlite3 (emptied of worklist entries first).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.mwl_find import (  # noqa: E402
    free_port,
    load,
    pynetdicom_queries,
    run_findscu,
    setup_django,
    typical_values,
    wait_for_port,
)

SETTINGS = ("off", "nodelay", "nodelay+quickack")
LABELS = {
    "off": "neither",
    "nodelay": "`TCP_NODELAY` only",
    "nodelay+quickack": "`TCP_NODELAY` + `TCP_QUICKACK` (the broker)",
}


def start(tuning: str) -> tuple[subprocess.Popen[bytes], int]:
    env = dict(os.environ, DICOM_TCP_TUNING=tuning, LOG_LEVEL="WARNING", BROKER_SUPERVISED="1")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(BASE_DIR / "manage.py"), "dicom_server", "--port", str(port)],
        env=env,
        cwd=BASE_DIR,
    )
    wait_for_port(port, process, f"the broker ({tuning})")
    return process, port


def echoscu(port: int, called: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["echoscu", "-aet", "BENCHSCU", "-aec", called, "127.0.0.1", str(port)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10000, help="worklist entries")
    parser.add_argument("--runs", type=int, default=10, help="rounds (each setting once a round)")
    args = parser.parse_args()

    setup_django()
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from worklist.models import Order, Patient

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE worklist_patient CASCADE")
    else:
        Order.objects.all().delete()
        Patient.objects.all().delete()
    today = timezone.localdate()
    load(0, args.size, today)
    called, typical = settings.BROKER_AE_TITLE, typical_values(today)
    load_average = ", ".join(f"{n:.1f}" for n in os.getloadavg())
    print(
        f"Socket options: {args.size:,} entries, {connection.vendor}, {args.runs} rounds, "
        f"load average {load_average}"
    )
    servers = {tuning: start(tuning) for tuning in SETTINGS}
    times: dict[str, dict[str, list[float]]] = {
        t: {"echo": [], "find": [], "assoc": []} for t in SETTINGS
    }
    try:
        for run in range(args.runs):
            # Rotate the order, so that no setting always runs first.
            order = SETTINGS[run % 3 :] + SETTINGS[: run % 3]
            for tuning in order:
                port = servers[tuning][1]
                times[tuning]["echo"].append(echoscu(port, called))
                times[tuning]["find"].append(run_findscu(port, called, typical))
                times[tuning]["assoc"] += pynetdicom_queries(port, called, typical, 3)
    finally:
        for process, _ in servers.values():
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
    print(
        "\n| server socket options | `echoscu` | `findscu`, 20 answers | query on one association |"
    )
    print("|---|---|---|---|")
    for tuning in SETTINGS:
        t = times[tuning]
        print(
            f"| {LABELS[tuning]} | {statistics.median(t['echo']) * 1000:.0f} ms "
            f"| {statistics.median(t['find']) * 1000:.0f} ms "
            f"| {statistics.median(t['assoc']) * 1000:.0f} ms |"
        )


if __name__ == "__main__":
    main()
