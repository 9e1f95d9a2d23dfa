"""Worklist import benchmark: ``manage.py import_worklist`` over N generated .wl files
(prints figures; not a test).

Writes N worklist files (one patient, order, procedure and step each, as wlmscpfs keeps
them) into a temporary folder, then imports them with ``manage.py import_worklist`` as a
separate process into an empty database: once with one transaction per file (``--batch
1``, the importer before batching: the reference) and once with the default batch, in
the same run. Prints files per second and the ratio.

    .venv/bin/python bench/import_wl.py -n 100000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/broker_bench_import .venv/bin/python bench/import_wl.py -n 100000

Without DATABASE_URL it uses a fresh SQLite file, var/bench_import.sqlite3. The database
name must contain "bench": it is emptied before each import.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))


def write_files(folder: Path, count: int) -> None:
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.ReferringPhysicianName = "REFERRER^ANNA"
    ds.RequestedProcedureDescription = "CT head"
    item = Dataset()
    item.Modality = "CT"
    item.ScheduledStationAETitle = "CT1"
    item.ScheduledProcedureStepStartDate = "20261201"
    item.ScheduledProcedureStepStartTime = "090000"
    item.ScheduledProcedureStepDescription = "CT head plain"
    ds.ScheduledProcedureStepSequence = [item]
    started = time.monotonic()
    for n in range(count):
        ds.PatientName = f"PATIENT{n}^IMPORT"
        ds.PatientID = f"IMP{n:07d}"
        ds.AccessionNumber = f"IA{n:07d}"
        ds.RequestedProcedureID = f"IR{n:07d}"
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.55.{n + 1}"
        item.ScheduledProcedureStepID = f"IS{n:07d}"
        ds.save_as(folder / f"{n:07d}.wl", enforce_file_format=False)
    print(f"wrote {count:,} files in {time.monotonic() - started:.1f} s")


def empty_database(env: dict[str, str]) -> None:
    code = (
        "import django; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('migrate', verbosity=0)\n"
        "from worklist.models import Patient, StationAETitle, ScheduledProcedureStep,"
        " RequestedProcedure, Order\n"
        "for m in (StationAETitle, ScheduledProcedureStep, RequestedProcedure, Order, Patient):\n"
        "    m.objects.all().delete()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=BASE_DIR)


def run_import(folder: Path, batch: int | None, env: dict[str, str]) -> float:
    empty_database(env)
    command = [sys.executable, str(BASE_DIR / "manage.py"), "import_worklist", str(folder)]
    if batch is not None:
        command += ["--batch", str(batch)]
    started = time.monotonic()
    subprocess.run(command, check=True, env=env, cwd=BASE_DIR, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--files", type=int, default=100_000, help="files to import")
    parser.add_argument("--skip-reference", action="store_true", help="no --batch 1 run")
    args = parser.parse_args()
    env = dict(os.environ)
    url = env.get("DATABASE_URL")
    if not url:
        path = BASE_DIR / "var" / "bench_import.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        env["DATABASE_URL"] = f"sqlite:///{path}"
    elif "bench" not in url.rsplit("/", 1)[-1]:
        raise SystemExit("DATABASE_URL must name a database whose name has 'bench'")
    env.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
    env.setdefault("DEBUG", "1")
    env["LOG_LEVEL"] = "WARNING"
    engine = "postgresql" if env["DATABASE_URL"].startswith("postgres") else "sqlite"
    print(f"import benchmark, {engine}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_files(folder, args.files)
        batched = run_import(folder, None, env)
        print(f"batched (default): {args.files / batched:,.0f} files/s ({batched:.1f} s)")
        if not args.skip_reference:
            single = run_import(folder, 1, env)
            print(f"one transaction per file: {args.files / single:,.0f} files/s ({single:.1f} s)")
            print(f"ratio: {single / batched:.2f}x")


if __name__ == "__main__":
    main()
