"""C-CANCEL during a broad worklist query: this broker against DCMTK's wlmscpfs.

``findscu --cancel 10`` sends a C-CANCEL after the 10th answer of a broad query (every
entry of a 10,000-entry worklist). Alternating the two servers (each a separate
process, the same entries: see bench/mwl_find.py), each run records how many answers
findscu received in all and the final status, which must be FE00 (Cancel).

    .venv/bin/python bench/mwl_cancel.py --runs 10
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/broker_bench_mwl .venv/bin/python bench/mwl_cancel.py

Prints each run, then per server the median and the maximum of the answers received,
and exits non-zero if any run of the broker ended without FE00 or received more
answers than the most wlmscpfs received.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.mwl_find import (  # noqa: E402
    WLM_AE,
    broad_values,
    findscu_keys,
    load,
    setup_django,
    start_servers,
    write_wl_files,
)

FINAL = re.compile(r"Received Final Find Response \(([^)]*)\)")


def cancelled_find(port: int, called: str, values: dict[str, str], after: int) -> tuple[int, str]:
    """One ``findscu --cancel`` run: (answers received, final status word)."""
    with tempfile.TemporaryDirectory() as out:
        command = ["findscu", "-W", "-v", "-aet", "BENCHSCU", "-aec", called, "-td", "600"]
        command += ["--cancel", str(after), "-X", "-od", out]
        command += [*findscu_keys(values), "127.0.0.1", str(port)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        answers = len(list(Path(out).glob("rsp*.dcm")))
    final = FINAL.findall(done.stdout + done.stderr)
    return answers, final[-1] if final else f"none (exit {done.returncode})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10000, help="worklist entries")
    parser.add_argument("--runs", type=int, default=10, help="runs per server")
    parser.add_argument("--after", type=int, default=10, help="findscu --cancel N")
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
    load_average = ", ".join(f"{n:.1f}" for n in os.getloadavg())
    print(
        f"C-CANCEL benchmark: {args.size:,} entries, findscu --cancel {args.after}, "
        f"database {connection.vendor}, load average {load_average}"
    )
    results: dict[str, list[tuple[int, str]]] = {"broker": [], "wlmscpfs": []}
    with tempfile.TemporaryDirectory() as tmp:
        wl_root = Path(tmp) / "wlistdb"
        wl_folder = wl_root / WLM_AE
        wl_folder.mkdir(parents=True)
        (wl_folder / "lockfile").touch()
        write_wl_files(load(0, args.size, today), wl_folder)
        broker, broker_port, wlm, wlm_port = start_servers(wl_root)
        servers = (
            ("broker", broker_port, settings.BROKER_AE_TITLE),
            ("wlmscpfs", wlm_port, WLM_AE),
        )
        try:
            for run in range(args.runs):
                # Alternate which server goes first, so neither always runs on a warmer machine.
                for name, port, called in servers if run % 2 == 0 else servers[::-1]:
                    answers, final = cancelled_find(port, called, broad_values(today), args.after)
                    results[name].append((answers, final))
                    print(f"run {run + 1:2} {name:9} {answers:6} answers, final {final}")
                    time.sleep(0.2)
        finally:
            for server in (broker, wlm):
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    server.kill()
    print("\nanswers received before the final response (median / max), final statuses")
    for name, runs in results.items():
        counts = [a for a, _ in runs]
        finals = sorted({f for _, f in runs})
        print(f"{name:9} {statistics.median(counts):7.0f} / {max(counts):6}   {', '.join(finals)}")
    broker_runs, wlm_max = results["broker"], max(a for a, _ in results["wlmscpfs"])
    failed = [r for r in broker_runs if "Cancel" not in r[1] or r[0] > wlm_max]
    if failed:
        raise SystemExit(f"broker: {len(failed)} of {len(broker_runs)} runs not stopped in time")


if __name__ == "__main__":
    main()
