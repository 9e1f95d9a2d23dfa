"""Worklist C-FIND benchmark: this broker against DCMTK's wlmscpfs (prints figures; not a test).

Loads 10,000 and then 100,000 scheduled steps (200 a day from today on, 10 stations,
so about 20 per station and day) into the broker's database and, as the same entries,
into .wl files that wlmscpfs serves from a temporary folder. A second wlmscpfs, the
*floor*, serves only the entries the typical query matches (no scan) and runs with
``TCP_NODELAY=1`` in its environment (no Nagle stall): what a whole ``findscu`` process
costs on this machine when the server has no work to do. Then, for each size, in the
same run, against the servers (each a separate process on this machine):

(a) the typical scanner query (today's date, Modality CT, Scheduled Station AE Title
    CT1, the usual return keys; 20 answers), timed as a whole ``findscu -W`` process,
    client as shipped (broker, wlmscpfs) and with ``TCP_NODELAY=1`` in its environment
    (broker, floor: the ratio broker / floor is issue 15's goal 3); and as repeated
    queries on one association from a pynetdicom SCU whose socket has TCP_NODELAY and
    TCP_QUICKACK (broker, floor, wlmscpfs): median and p95;
(b) a broad query (50 days, every station: 10,000 answers) with ``findscu -W`` as
    shipped: answers per second.

Before timing, the servers must return the same entries for both queries (patient,
accession, procedure, step, station of each answer), or the script stops. They are
then timed alternately, rotating which goes first each round.

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
from bench.common import free_port, wait_for_port  # noqa: E402
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


def run_findscu(
    port: int,
    called: str,
    values: dict[str, str],
    out: Path | None = None,
    *,
    nodelay: bool = False,
) -> float:
    """A whole ``findscu -W`` process; ``nodelay``: with ``TCP_NODELAY=1`` in its
    environment (DCMTK then turns Nagle's algorithm off)."""
    command = ["findscu", "-W", "-q", "-aet", "BENCHSCU", "-aec", called, "-td", "600"]
    if out is not None:
        command += ["-X", "-od", str(out)]
    command += [*findscu_keys(values), "127.0.0.1", str(port)]
    env = {**os.environ, "TCP_NODELAY": "1"} if nodelay else None
    started = time.perf_counter()
    subprocess.run(
        command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
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


def tune_client_socket(event: Any) -> None:
    """EVT_CONN_OPEN of the SCU: TCP_NODELAY, and TCP_QUICKACK before every read (the
    listener's options, without its cancel watch)."""
    wrapper = event.assoc.dul.socket
    raw = wrapper.socket
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is None:
        return
    recv = wrapper.recv

    def recv_with_quickack(nr_bytes: int) -> bytearray:
        if wrapper.socket is not None:
            wrapper.socket.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        data: bytearray = recv(nr_bytes)
        return data

    wrapper.recv = recv_with_quickack


def pynetdicom_queries(
    port: int, called: str, values: dict[str, str], runs: int, *, tuned: bool = False
) -> list[float]:
    """``runs`` queries on one association (each timed; the association is not).

    ``tuned``: TCP_NODELAY on the SCU's socket and TCP_QUICKACK before each of its reads,
    as the listener does (../shared/dicom-latency.md); without them each query also
    waits for the client's own Nagle and delayed-ACK stalls.
    """
    from pydicom import Dataset
    from pynetdicom import AE, evt
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
    handlers: list[Any] = [(evt.EVT_CONN_OPEN, tune_client_socket)] if tuned else []
    assoc = ae.associate("127.0.0.1", port, ae_title=called, evt_handlers=handlers)
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
    parser.add_argument(
        "--assoc-runs", type=int, default=30, help="queries on one association, per server"
    )
    parser.add_argument(
        "--assoc-rounds",
        type=int,
        default=3,
        help="associations per server for --assoc-runs (the queries are spread over them)",
    )
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
    results: list[dict[Any, Any]] = []
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
            results.append(measure(size, wl_root, Path(tmp) / f"floor{size}", today, args))
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
            # As in service: under DEBUG Django records every query and, on SQLite, runs
            # one more statement per query to quote its parameters for that record.
            "DEBUG": "0",
        }
    )
    env.setdefault("SECRET_KEY", "bench-mwl-find-" + "x" * 50)
    broker_port = free_port()
    broker = subprocess.Popen(
        [sys.executable, str(BASE_DIR / "manage.py"), "dicom_server", "--port", str(broker_port)],
        env=env,
        cwd=BASE_DIR,
    )
    wlm, wlm_port = start_wlmscpfs(wl_root)
    wait_for_port(broker_port, broker, "the broker")
    return broker, broker_port, wlm, wlm_port


def start_wlmscpfs(wl_root: Path, *, nodelay: bool = False) -> tuple[subprocess.Popen[bytes], int]:
    """wlmscpfs serving the .wl files under ``wl_root``/WLMSCPFS; ``nodelay``: with
    ``TCP_NODELAY=1`` in its environment."""
    port = free_port()
    env = {**os.environ, "TCP_NODELAY": "1"} if nodelay else None
    wlm = subprocess.Popen(
        ["wlmscpfs", "-dfp", str(wl_root), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    wait_for_port(port, wlm, "wlmscpfs")
    return wlm, port


def write_floor(floor_root: Path, broker_port: int, called: str, values: dict[str, str]) -> int:
    """The .wl files of only the entries the broker answers ``values`` with."""
    from worklist.models import ScheduledProcedureStep

    sps_ids = [key[3] for key in answer_keys(broker_port, called, values)]
    ids = list(
        ScheduledProcedureStep.objects.filter(sps_id__in=sps_ids).values_list("pk", flat=True)
    )
    folder = floor_root / WLM_AE
    folder.mkdir(parents=True)
    (folder / "lockfile").touch()
    write_wl_files(ids, folder)
    return len(ids)


# What each kind of run measures, for each server that takes part in it.
KINDS = {
    "process": "findscu process, client as shipped",
    "nodelay": "findscu process, TCP_NODELAY=1",
    "assoc": "one association, tuned pynetdicom SCU",
    "broad": "broad query, findscu as shipped",
}


def measure(
    size: int, wl_root: Path, floor_root: Path, today: date, args: argparse.Namespace
) -> dict[Any, Any]:
    from django.conf import settings

    broker, broker_port, wlm, wlm_port = start_servers(wl_root)
    processes = [broker, wlm]
    ae = settings.BROKER_AE_TITLE
    typical, broad = typical_values(today), broad_values(today)
    wlm_runs = args.wlm_runs if size <= 10000 else args.wlm_runs_large
    out: dict[Any, Any] = {"size": size}
    try:
        write_floor(floor_root, broker_port, ae, typical)
        floor, floor_port = start_wlmscpfs(floor_root, nodelay=True)
        processes.append(floor)
        servers = {
            "broker": (broker_port, ae),
            "wlmscpfs": (wlm_port, WLM_AE),
            "floor": (floor_port, WLM_AE),
        }
        # The same entries from each, or the comparison means nothing.
        answers = same_entries(
            [("broker", broker_port, ae), ("wlmscpfs", wlm_port, WLM_AE)], typical, "typical"
        )
        broad_answers = same_entries(
            [("broker", broker_port, ae), ("wlmscpfs", wlm_port, WLM_AE)], broad, "broad query"
        )
        same_entries([("broker", broker_port, ae), ("floor", floor_port, WLM_AE)], typical, "floor")
        print(
            f"all servers: the same {answers} entries for the typical query; broker and "
            f"wlmscpfs the same {broad_answers} for the broad one"
        )
        per_assoc = max(1, args.assoc_runs // args.assoc_rounds)
        wlm_per_assoc = max(1, min(per_assoc, wlm_runs // args.assoc_rounds))
        # (kind, server): number of rounds, and what one round does (its timings).
        plan: dict[tuple[str, str], tuple[int, Any]] = {}
        for name in ("broker", "wlmscpfs"):
            port, called = servers[name]
            runs = args.findscu_runs if name == "broker" else wlm_runs
            plan["process", name] = (
                runs,
                lambda p=port, c=called: [run_findscu(p, c, typical)],
            )
            plan["broad", name] = (
                args.broad_runs if name == "broker" else min(args.broad_runs, wlm_runs),
                lambda p=port, c=called: [run_findscu(p, c, broad)],
            )
        for name in ("broker", "floor"):
            port, called = servers[name]
            plan["nodelay", name] = (
                args.findscu_runs,
                lambda p=port, c=called: [run_findscu(p, c, typical, nodelay=True)],
            )
        for name in ("broker", "floor", "wlmscpfs"):
            port, called = servers[name]
            queries = wlm_per_assoc if name == "wlmscpfs" else per_assoc
            plan["assoc", name] = (
                args.assoc_rounds,
                lambda p=port, c=called, q=queries: pynetdicom_queries(
                    p, c, typical, q, tuned=True
                ),
            )
        times: dict[tuple[str, str], list[float]] = {key: [] for key in plan}
        # Alternate the servers, rotating who goes first each round, so that none always
        # runs on a warmer (or busier) machine.
        for kind in KINDS:
            names = [name for (k, name) in plan if k == kind]
            rounds = max(plan[kind, name][0] for name in names)
            for round_ in range(rounds):
                shift = round_ % len(names)
                for name in names[shift:] + names[:shift]:
                    count, run = plan[kind, name]
                    if round_ < count:
                        times[kind, name] += run()
        out["answers"], out["broad_answers"] = answers, broad_answers
        out["load"] = os.getloadavg()[0]
        for (kind, name), values in times.items():
            out[kind, name] = median_p95(values)
            if kind == "broad":
                rate = broad_answers / statistics.median(values)
                print(
                    f"{name:9} {KINDS[kind]}: {broad_answers} answers, {rate:,.0f} answers/s "
                    f"(median of {len(values)})"
                )
                out[kind, name] = rate
            else:
                median, p95 = out[kind, name]
                print(
                    f"{name:9} {KINDS[kind]}: median {ms(median)} ms, p95 {ms(p95)} ms "
                    f"({len(values)} runs)"
                )
    finally:
        for server in processes:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
    print(
        f"ratios: broker / floor (findscu, TCP_NODELAY=1) "
        f"{out['nodelay', 'broker'][0] / out['nodelay', 'floor'][0]:.2f}x (goal <= 1.25x); "
        f"one association broker / floor "
        f"{out['assoc', 'broker'][0] / out['assoc', 'floor'][0]:.2f}x; "
        f"wlmscpfs / broker: findscu process "
        f"{out['process', 'wlmscpfs'][0] / out['process', 'broker'][0]:.1f}x, one association "
        f"{out['assoc', 'wlmscpfs'][0] / out['assoc', 'broker'][0]:.1f}x; broad answers/s "
        f"broker / wlmscpfs {out['broad', 'broker'] / out['broad', 'wlmscpfs']:.2f}x "
        f"(load average {out['load']:.1f})"
    )
    return out


def print_summary(results: list[dict[Any, Any]]) -> None:
    print("\nSummary (medians, ms; answers/s)")
    print(
        "entries  | findscu TCP_NODELAY=1: broker / floor | one association: broker / "
        "floor / wlmscpfs | findscu as shipped: broker / wlmscpfs | broad answers/s: "
        "broker / wlmscpfs"
    )
    for r in results:
        nd_b, nd_f = r["nodelay", "broker"][0], r["nodelay", "floor"][0]
        as_b, as_f, as_w = (r["assoc", n][0] for n in ("broker", "floor", "wlmscpfs"))
        pr_b, pr_w = r["process", "broker"][0], r["process", "wlmscpfs"][0]
        br_b, br_w = r["broad", "broker"], r["broad", "wlmscpfs"]
        print(
            f"{r['size']:>8,} | {nd_b * 1000:6.1f} / {nd_f * 1000:6.1f} ({nd_b / nd_f:4.2f}x) | "
            f"{as_b * 1000:6.1f} / {as_f * 1000:6.1f} / {as_w * 1000:7.1f} | "
            f"{pr_b * 1000:6.1f} / {pr_w * 1000:7.1f} ({pr_w / pr_b:5.1f}x) | "
            f"{br_b:7,.0f} / {br_w:7,.0f} ({br_b / br_w:4.2f}x)"
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(
            f"broker growth {first['size']:,} -> {last['size']:,} entries: findscu "
            f"TCP_NODELAY=1 {last['nodelay', 'broker'][0] / first['nodelay', 'broker'][0]:.2f}x, "
            f"one association {last['assoc', 'broker'][0] / first['assoc', 'broker'][0]:.2f}x"
        )


if __name__ == "__main__":
    main()
