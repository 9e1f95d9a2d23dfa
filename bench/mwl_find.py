"""Worklist C-FIND benchmark: this broker against DCMTK's wlmscpfs (prints figures; not a test).

Loads 10,000 and then 100,000 scheduled steps (200 a day from today on, 10 stations,
so about 20 per station and day) into the broker's database and, as the same entries,
into .wl files that wlmscpfs serves from a temporary folder. Then, for each size, in
the same run, against both servers (each a separate process on this machine):

(a) the typical scanner query (today's date, Modality CT, Scheduled Station AE Title
    CT1, the usual return keys; 20 answers), timed as a whole ``findscu -W`` process
    (client as shipped) and as repeated queries on one association (pynetdicom SCU):
    median and p95;
(b) a broad query (50 days, every station: 10,000 answers) with ``findscu -W``:
    answers per second.

Before timing, both servers must return the same entries for both queries (patient,
accession, procedure, step, station of each answer), or the script stops. The two are
then timed alternately, swapping which goes first each round.

    .venv/bin/python bench/mwl_find.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/broker_bench_mwl .venv/bin/python bench/mwl_find.py

Without DATABASE_URL it uses a fresh SQLite file, var/bench_mwl.sqlite3. The database is
emptied of worklist entries first.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from tests.scu import keep_responses  # noqa: E402

STATIONS = ["CT1", "CT2", "MR1", "MR2", "US1", "US2", "CR1", "CR2", "DX1", "NM1"]
PER_DAY = 200
BROAD_DAYS = 50
WLM_AE = "WLMSCPFS"


def setup_django() -> None:
    if not os.environ.get("DATABASE_URL"):
        path = BASE_DIR / "var" / "bench_mwl.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start")


# --- data -------------------------------------------------------------------------


def load(start: int, stop: int, today: date) -> list[int]:
    """Entries ``start``..``stop`` (bulk inserts; the services would take minutes)."""
    from django.db import transaction
    from django.utils import timezone

    from worklist.models import (
        Order,
        Patient,
        RequestedProcedure,
        ScheduledProcedureStep,
        StationAETitle,
    )

    step_ids: list[int] = []
    chunk = 5000
    for first in range(start, stop, chunk):
        numbers = range(first, min(stop, first + chunk))
        with transaction.atomic():
            patients = Patient.objects.bulk_create(
                [
                    Patient(
                        patient_id=f"PID{n:07d}",
                        name=f"PATIENT{n}^TEST",
                        name_key=f"PATIENT{n}^TEST",
                        birth_date=date(1950, 1, 1) + timedelta(days=n % 20000),
                        sex="MF"[n % 2],
                    )
                    for n in numbers
                ]
            )
            orders = Order.objects.bulk_create(
                [
                    Order(
                        patient=p,
                        accession_number=f"ACC{n:07d}",
                        referring_physician="REFERRER^ANNA",
                        referring_physician_key="REFERRER^ANNA",
                        priority="ROUTINE",
                    )
                    for n, p in zip(numbers, patients, strict=True)
                ]
            )
            procedures = RequestedProcedure.objects.bulk_create(
                [
                    RequestedProcedure(
                        order=o,
                        requested_procedure_id=f"RP{n:07d}",
                        study_instance_uid=f"1.2.826.0.1.3680043.8.498.77.{n}",
                        description="Imaging procedure",
                    )
                    for n, o in zip(numbers, orders, strict=True)
                ]
            )
            steps = []
            for n, rp in zip(numbers, procedures, strict=True):
                day = today + timedelta(days=n // PER_DAY)
                minute = 7 * 60 + (n // len(STATIONS)) % 20 * 30  # 07:00 .. 16:30
                at = dtime(minute // 60, minute % 60)
                station = STATIONS[n % len(STATIONS)]
                start_at = timezone.make_aware(datetime.combine(day, at))
                steps.append(
                    ScheduledProcedureStep(
                        procedure=rp,
                        sps_id=f"SPS{n:07d}",
                        modality=station[:2],
                        station_name=station,
                        location="RADIOLOGY",
                        start=start_at,
                        start_date=day,
                        start_time=at,
                        performing_physician="TECH^TOM",
                        performing_physician_key="TECH^TOM",
                        description=f"{station[:2]} exam",
                    )
                )
            steps = ScheduledProcedureStep.objects.bulk_create(steps)
            StationAETitle.objects.bulk_create(
                [
                    StationAETitle(step=s, ae_title=STATIONS[n % len(STATIONS)])
                    for n, s in zip(numbers, steps, strict=True)
                ]
            )
            step_ids.extend(s.pk for s in steps)
    from django.db import connection

    if connection.vendor == "postgresql":
        # What autovacuum would do after such a load; without it the planner guesses.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return step_ids


def write_wl_files(step_ids: list[int], folder: Path) -> None:
    """The same entries as .wl files (Explicit VR Little Endian, every attribute the
    broker knows), encoded by the broker's own response builder."""
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import UID, ExplicitVRLittleEndian

    from worklist.attributes import SPS_ATTRIBUTES, TOP_ATTRIBUTES
    from worklist.models import ScheduledProcedureStep
    from worklist.responses import ResponseBuilder, return_keys

    every_key = Dataset()
    for attr in TOP_ATTRIBUTES:
        if attr.is_sequence:
            continue
        every_key.add_new(attr.tag, attr.vr, None)
    item = Dataset()
    for attr in SPS_ATTRIBUTES:
        if not attr.is_sequence:
            item.add_new(attr.tag, attr.vr, None)
    every_key.ScheduledProcedureStepSequence = [item]
    builder = ResponseBuilder(return_keys(every_key), implicit_vr=False, little_endian=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.276.0.7230010.3.1.0.1")
    meta.MediaStorageSOPInstanceUID = UID("1.2.826.0.1.3680043.8.498.1")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    header = DicomBytesIO()
    header.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(header, meta)
    prefix = header.getvalue()
    for first in range(0, len(step_ids), 2000):
        chunk = step_ids[first : first + 2000]
        queryset = ScheduledProcedureStep.objects.filter(pk__in=chunk)
        rows, stations = builder.rows(queryset, len(chunk))
        for row in rows:
            (folder / f"{row[0]}.wl").write_bytes(prefix + builder.encode(row, stations))


# --- measuring --------------------------------------------------------------------

TYPICAL_KEYS = [
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "ReferringPhysicianName",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "StudyInstanceUID",
    "RequestedProcedurePriority",
]
SPS_KEYS = [
    "ScheduledStationAETitle",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "Modality",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepID",
    "ScheduledStationName",
    "ScheduledProcedureStepLocation",
]


def findscu_keys(values: dict[str, str]) -> list[str]:
    keys = []
    for keyword in TYPICAL_KEYS:
        keys += ["-k", f"{keyword}={values.get(keyword, '')}"]
    for keyword in SPS_KEYS:
        keys += ["-k", f"ScheduledProcedureStepSequence[0].{keyword}={values.get(keyword, '')}"]
    return keys


def typical_values(today: date) -> dict[str, str]:
    return {
        "ScheduledProcedureStepStartDate": today.strftime("%Y%m%d"),
        "Modality": "CT",
        "ScheduledStationAETitle": "CT1",
    }


def broad_values(today: date) -> dict[str, str]:
    last = today + timedelta(days=BROAD_DAYS - 1)
    return {"ScheduledProcedureStepStartDate": f"{today:%Y%m%d}-{last:%Y%m%d}"}


def run_findscu(port: int, called: str, values: dict[str, str], out: Path | None = None) -> float:
    command = ["findscu", "-W", "-q", "-aet", "BENCHSCU", "-aec", called, "-td", "600"]
    if out is not None:
        command += ["-X", "-od", str(out)]
    command += [*findscu_keys(values), "127.0.0.1", str(port)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def answer_keys(port: int, called: str, values: dict[str, str]) -> list[tuple[str, ...]]:
    """What identifies each answer: patient, accession, procedure, step (sorted)."""
    from pydicom import dcmread

    keys = []
    with tempfile.TemporaryDirectory() as out:
        run_findscu(port, called, values, Path(out))
        for path in Path(out).glob("rsp*.dcm"):
            ds = dcmread(path)
            sps = ds.ScheduledProcedureStepSequence[0]
            keys.append(
                (
                    str(ds.PatientID),
                    str(ds.AccessionNumber),
                    str(ds.RequestedProcedureID),
                    str(sps.ScheduledProcedureStepID),
                    str(sps.ScheduledStationAETitle),
                )
            )
    return sorted(keys)


def same_entries(servers: list[tuple[str, int, str]], values: dict[str, str], what: str) -> int:
    """Both servers must answer with the same entries; returns how many."""
    (name_a, port_a, called_a), (name_b, port_b, called_b) = servers
    a, b = answer_keys(port_a, called_a, values), answer_keys(port_b, called_b, values)
    if a != b:
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise SystemExit(
            f"{what}: {name_a} gave {len(a)} answers, {name_b} {len(b)}; only {name_a}: "
            f"{only_a[:3]}, only {name_b}: {only_b[:3]}"
        )
    return len(a)


def pynetdicom_queries(port: int, called: str, values: dict[str, str], runs: int) -> list[float]:
    from pydicom import Dataset
    from pynetdicom import AE
    from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

    query = Dataset()
    for keyword in TYPICAL_KEYS:
        setattr(query, keyword, values.get(keyword, ""))
    item = Dataset()
    for keyword in SPS_KEYS:
        setattr(item, keyword, values.get(keyword, ""))
    query.ScheduledProcedureStepSequence = [item]
    ae = AE(ae_title="BENCHSCU")
    ae.add_requested_context(ModalityWorklistInformationFind)
    ae.dimse_timeout = 600
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    keep_responses(assoc)
    if not assoc.is_established:
        raise SystemExit(f"association with {called} failed")
    times = []
    try:
        for _ in range(runs):
            started = time.perf_counter()
            answers = sum(
                1
                for status, _ in assoc.send_c_find(query, ModalityWorklistInformationFind)
                if status and status.Status in (0xFF00, 0xFF01)
            )
            times.append(time.perf_counter() - started)
            assert answers > 0
    finally:
        assoc.release()
    return times


def median_p95(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return statistics.median(ordered), p95


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="worklist sizes, ascending")
    parser.add_argument("--findscu-runs", type=int, default=15)
    parser.add_argument("--assoc-runs", type=int, default=30)
    parser.add_argument("--broad-runs", type=int, default=3)
    parser.add_argument("--wlm-runs", type=int, default=10, help="wlmscpfs runs, up to 10,000")
    parser.add_argument(
        "--wlm-runs-large",
        type=int,
        default=3,
        help="wlmscpfs runs above 10,000 entries (each query takes seconds)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    setup_django()
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from worklist.models import Order, Patient

    # Start from an empty worklist.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Django's cascading delete would load every row into Python first.
            cursor.execute("TRUNCATE worklist_patient CASCADE")
    else:
        Order.objects.all().delete()
        Patient.objects.all().delete()

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    today = timezone.localdate()
    load_average = ", ".join(f"{n:.1f}" for n in os.getloadavg())
    print(
        f"Worklist C-FIND benchmark, database {engine}, today {today}, "
        f"{os.cpu_count()} CPUs, load average {load_average}"
    )
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        wl_root = Path(tmp) / "wlistdb"
        wl_folder = wl_root / WLM_AE
        wl_folder.mkdir(parents=True)
        (wl_folder / "lockfile").touch()
        loaded = 0
        for size in sizes:
            started = time.perf_counter()
            ids = load(loaded, size, today)
            load_s = time.perf_counter() - started
            started = time.perf_counter()
            write_wl_files(ids, wl_folder)
            write_s = time.perf_counter() - started
            loaded = size
            print(
                f"\n== {size:,} entries (database load {load_s:.1f} s, .wl files {write_s:.1f} s, "
                f"load average {os.getloadavg()[0]:.1f})"
            )
            results.append(measure(size, wl_root, today, args))
    print_summary(results)


def start_servers(
    wl_root: Path,
) -> tuple[subprocess.Popen[bytes], int, subprocess.Popen[bytes], int]:
    env = dict(os.environ)
    env.update(
        {
            "MWL_MAX_ANSWERS": "1000000",
            "LOG_LEVEL": "WARNING",
            "BROKER_SUPERVISED": "1",
        }
    )
    broker_port, wlm_port = free_port(), free_port()
    broker = subprocess.Popen(
        [sys.executable, str(BASE_DIR / "manage.py"), "dicom_server", "--port", str(broker_port)],
        env=env,
        cwd=BASE_DIR,
    )
    wlm = subprocess.Popen(
        ["wlmscpfs", "-dfp", str(wl_root), str(wlm_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(broker_port, broker, "the broker")
    wait_for_port(wlm_port, wlm, "wlmscpfs")
    return broker, broker_port, wlm, wlm_port


def measure(size: int, wl_root: Path, today: date, args: argparse.Namespace) -> dict[str, Any]:
    from django.conf import settings

    broker, broker_port, wlm, wlm_port = start_servers(wl_root)
    ae = settings.BROKER_AE_TITLE
    typical, broad = typical_values(today), broad_values(today)
    wlm_runs = args.wlm_runs if size <= 10000 else args.wlm_runs_large
    servers = [("broker", broker_port, ae), ("wlmscpfs", wlm_port, WLM_AE)]
    runs = {
        "broker": (args.findscu_runs, args.assoc_runs, args.broad_runs),
        "wlmscpfs": (wlm_runs, wlm_runs, min(args.broad_runs, wlm_runs)),
    }
    out: dict[str, Any] = {"size": size}
    times: dict[str, dict[str, list[float]]] = {
        name: {"process": [], "assoc": [], "broad": []} for name, _, _ in servers
    }
    try:
        # The same entries from both, or the comparison means nothing.
        answers = same_entries(servers, typical, "typical query")
        broad_answers = same_entries(servers, broad, "broad query")
        print(f"both servers: the same {answers} and {broad_answers} entries")
        # Alternate the two, swapping who goes first each round, so that neither always
        # runs on a warmer (or busier) machine.
        for kind, index in (("process", 0), ("assoc", 1), ("broad", 2)):
            rounds = max(r[index] for r in runs.values())
            for round_ in range(rounds):
                for name, port, called in servers if round_ % 2 == 0 else servers[::-1]:
                    if round_ >= runs[name][index]:
                        continue
                    if kind == "process":
                        times[name][kind].append(run_findscu(port, called, typical))
                    elif kind == "assoc":
                        times[name][kind] += pynetdicom_queries(port, called, typical, 1)
                    else:
                        times[name][kind].append(run_findscu(port, called, broad))
        for name, _, _ in servers:
            t = times[name]
            out[name] = {
                "answers": answers,
                "process": median_p95(t["process"]),
                "assoc": median_p95(t["assoc"]),
                "broad_answers": broad_answers,
                "broad_s": statistics.median(t["broad"]),
            }
            r = out[name]
            print(
                f"{name:9} (a) {answers} answers: findscu process median {ms(r['process'][0])} ms, "
                f"p95 {ms(r['process'][1])} ms ({len(t['process'])} runs); one association "
                f"median {ms(r['assoc'][0])} ms, p95 {ms(r['assoc'][1])} ms "
                f"({len(t['assoc'])} queries)"
            )
            print(
                f"{'':9} (b) {broad_answers} answers in {r['broad_s']:.2f} s: "
                f"{broad_answers / r['broad_s']:,.0f} answers/s (median of {len(t['broad'])})"
            )
    finally:
        for server in (broker, wlm):
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
    b, w = out["broker"], out["wlmscpfs"]
    print(
        f"ratios     (a) findscu process {w['process'][0] / b['process'][0]:.1f}x faster, "
        f"one association {w['assoc'][0] / b['assoc'][0]:.1f}x faster; "
        f"(b) answers/s {(b['broad_answers'] / b['broad_s']) / (w['broad_answers'] / w['broad_s']):.2f}x"
    )
    return out


def print_summary(results: list[dict[str, Any]]) -> None:
    print("\nSummary (medians; broker / wlmscpfs)")
    print("entries  | (a) findscu process ms     | (a) one association ms     | (b) answers/s")
    for r in results:
        b, w = r["broker"], r["wlmscpfs"]
        print(
            f"{r['size']:>8,} | {b['process'][0] * 1000:6.1f} / {w['process'][0] * 1000:7.1f} "
            f"({w['process'][0] / b['process'][0]:5.1f}x) | {b['assoc'][0] * 1000:6.1f} / "
            f"{w['assoc'][0] * 1000:7.1f} ({w['assoc'][0] / b['assoc'][0]:5.1f}x) | "
            f"{b['broad_answers'] / b['broad_s']:7,.0f} / {w['broad_answers'] / w['broad_s']:7,.0f}"
        )
    if len(results) > 1:
        first, last = results[0]["broker"], results[-1]["broker"]
        print(
            f"broker growth {results[0]['size']:,} -> {results[-1]['size']:,} entries: "
            f"findscu process {last['process'][0] / first['process'][0]:.2f}x, "
            f"one association {last['assoc'][0] / first['assoc'][0]:.2f}x"
        )


if __name__ == "__main__":
    main()
