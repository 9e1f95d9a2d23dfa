"""Where the listener's time per received instance goes: py-spy samples the listener
(``manage.py dicom_server``, its own process) while DCMTK ``storescu`` sends it a CT study,
next to ``storescu`` -> ``storescp`` directly in the same run.

    pip install --target /tmp/pyspy py-spy   # not a project dependency
    PY_SPY=/tmp/pyspy/bin/py-spy .venv/bin/python bench/profile_receive.py /tmp/prof

Three rounds of ``--instances`` (default 300) instances; the second is sampled (250 Hz,
every thread, idle included, non-blocking) into ``OUT/listener.raw`` (py-spy's collapsed
stacks), summarised per thread by ``--top`` functions. Without ``PY_SPY`` nothing is
sampled (rates only). SQLite in ``OUT`` (a scratch database), the spool in ``OUT``.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("out", type=Path)
parser.add_argument("--instances", type=int, default=300)
parser.add_argument("--top", type=int, default=25)
args = parser.parse_args()
OUT: Path = args.out
OUT.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
os.environ["DATABASE_URL"] = f"sqlite:///{OUT / 'bench_profile.sqlite3'}"
os.environ["ROUTING_SPOOL_DIR"] = str(OUT / "spool")
os.environ["RIS_HL7_HOST"] = ""
os.environ["CELERY_BROKER_URL"] = "memory://"
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from bench import route  # noqa: E402


def summary(raw: Path, top: int) -> None:
    """Per thread: its samples, and the share of them in each function (inclusive)."""
    threads: collections.Counter[str] = collections.Counter()
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        threads[frames[0]] += int(count)
        names = {re.sub(r" \((?:.*/)?([^/:]+):\d+\)$", r" (\1)", f) for f in frames[1:]}
        for name in names:
            inclusive[frames[0]][name] += int(count)
    for thread, samples in threads.most_common():
        if samples < 50:
            continue
        print(f"{thread}: {samples} samples")
        for name, hits in inclusive[thread].most_common(top):
            print(f"  {hits / samples:6.1%}  {name}")


def main() -> None:
    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    port, direct_port = route.free_port(), route.free_port()
    listener = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "dicom_server", "--port", str(port)],
        env={**os.environ, "BROKER_SUPERVISED": "1"},
    )
    direct = route.StoreSCP(OUT / "direct", direct_port)
    py_spy = os.environ.get("PY_SPY", "")
    raw = OUT / "listener.raw"
    rates: dict[str, list[float]] = {"direct": [], "received": []}
    try:
        route.wait_for_port(port)
        for number in range(3):
            files = route.write_study(OUT / f"study{number}", args.instances, generate_uid())
            rates["direct"].append(len(files) / route.storescu(direct_port, "DEST", files))
            direct.count_and_clear()
            spy = None
            if py_spy and number == 1:
                command = [py_spy, "record", "--pid", str(listener.pid), "--rate", "250"]
                command += ["--threads", "--idle", "--nonblocking", "--format", "raw", "-o"]
                spy = subprocess.Popen(
                    [*command, str(raw)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)  # py-spy attached
            seconds = route.storescu(port, settings.BROKER_AE_TITLE, files)
            rates["received"].append(len(files) / seconds)
            if spy is not None:
                spy.send_signal(2)
                spy.wait(30)
            shutil.rmtree(OUT / f"study{number}")
    finally:
        listener.terminate()
        listener.wait(15)
        direct.stop()
        shutil.rmtree(route.SCRATCH, ignore_errors=True)
    for name, values in rates.items():
        print(f"{name}: " + ", ".join(f"{v:.0f}" for v in values) + " instances/s")
    if raw.is_file():
        summary(raw, args.top)


if __name__ == "__main__":
    main()
