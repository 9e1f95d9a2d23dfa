"""Scale benchmark: the worklist query and HL7 intake at 10,000 and at 1,000,000 steps
(prints figures; not a test).

A large hospital's database after years: most steps COMPLETED (some DISCONTINUED or
CANCELED) spread over the past five years, and today's schedule (2,000 steps on 100
stations, 20 per station). The script makes the data itself with PostgreSQL's COPY, in
two phases on the same database:

1. today's 2,000 steps + 8,000 of history (10,000 in all): measure;
2. history grown to ``--steps`` (default 1,000,000): measure again.

Measured each time, against ``manage.py dicom_server`` and ``manage.py hl7_server`` run as
their own processes: the typical scanner query (today, Modality CT, Scheduled Station AE
Title CT1: 20 answers) as a whole DCMTK ``findscu`` process (with ``TCP_NODELAY=1`` in its
environment) and as repeated queries on one association from a pynetdicom SCU with
TCP_NODELAY and TCP_QUICKACK; and HL7 intake (``bench/hl7_ingest.py`` against the
running listener, 8 connections). The 10,000-step figures are the reference for the
1,000,000-step ones, in the same run. ``EXPLAIN ANALYZE`` of the typical query's SQL is
printed for both sizes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/broker_bench_scale .venv/bin/python bench/scale.py

PostgreSQL only (SQLite is the first-run default, not a million-step store). The database
name must contain "bench": its worklist tables are emptied first.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from bench.common import free_port, wait_for_port  # noqa: E402

TODAY_STEPS = 2000
STATIONS = [f"{modality}{n}" for modality in ("CT", "MR", "US", "CR", "DX") for n in range(1, 21)]
HISTORY_DAYS = 5 * 365
PATIENT_ORDERS = 4  # orders per patient in the history


def setup_django() -> None:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres") or "bench" not in url.rsplit("/", 1)[-1]:
        raise SystemExit("DATABASE_URL must name a PostgreSQL database whose name has 'bench'")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# --- data -------------------------------------------------------------------------------


def _copy(model: Any, rows: Iterable[dict[str, Any]]) -> int:
    """COPY ``rows`` (column -> value, the model's defaults for the rest) into ``model``."""
    from django.db import connection
    from django.db.models import JSONField
    from psycopg.types.json import Jsonb

    fields = list(model._meta.concrete_fields)
    columns = [f.column for f in fields]
    names = [f.attname for f in fields]
    defaults = {f.attname: f.get_default() for f in fields if f.attname != "id"}
    json = [isinstance(f, JSONField) for f in fields]
    count = 0
    with connection.cursor() as cursor:
        raw = cursor.cursor
        table = model._meta.db_table
        with raw.copy(f'COPY "{table}" ({", ".join(columns)}) FROM STDIN') as copy:
            for row in rows:
                values = [row.get(name, defaults.get(name)) for name in names]
                copy.write_row([Jsonb(v) if j else v for v, j in zip(values, json, strict=True)])
                count += 1
    return count


def _next_id(model: Any) -> int:
    from django.db.models import Max

    return int(model._default_manager.aggregate(top=Max("pk"))["top"] or 0) + 1


def _fix_sequences() -> None:
    from django.core.management.color import no_style
    from django.db import connection

    from worklist.models import (
        Order,
        Patient,
        RequestedProcedure,
        ScheduledProcedureStep,
        StationAETitle,
    )

    statements = connection.ops.sequence_reset_sql(
        no_style(), [Patient, Order, RequestedProcedure, ScheduledProcedureStep, StationAETitle]
    )
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def load(kind: str, count: int, today: date) -> None:
    """``count`` steps of ``kind`` ("today" or "history"), each with its order and
    procedure (history: a patient per four orders), COPYed in chunks."""
    from django.db import connection, transaction
    from django.utils import timezone

    from worklist.models import (
        Order,
        Patient,
        RequestedProcedure,
        ScheduledProcedureStep,
        StationAETitle,
    )
    from worklist.status import SPSStatus

    zone = timezone.get_current_timezone()
    chunk = 50_000
    done = 0
    started = time.monotonic()
    while done < count:
        size = min(chunk, count - done)
        patient0, order0 = _next_id(Patient), _next_id(Order)
        procedure0, step0 = _next_id(RequestedProcedure), _next_id(ScheduledProcedureStep)
        station0 = _next_id(StationAETitle)
        per_patient = 1 if kind == "today" else PATIENT_ORDERS
        patients = (size + per_patient - 1) // per_patient
        tag = f"{kind[0].upper()}{order0}"

        def patient_rows(
            p0: int = patient0, n: int = patients, t: str = tag
        ) -> Iterator[dict[str, Any]]:
            for i in range(n):
                name = f"PATIENT{t}{i}^SCALE"
                yield {
                    "id": p0 + i,
                    "patient_id": f"S{t}P{i}",
                    "name": name,
                    "name_key": name,
                    "birth_date": date(1940, 1, 1) + timedelta(days=(p0 + i) % 25000),
                    "sex": "MF"[i % 2],
                    "created_at": timezone.now(),
                    "updated_at": timezone.now(),
                }

        def order_rows(
            o0: int = order0, p0: int = patient0, n: int = size, pp: int = per_patient
        ) -> Iterator[dict[str, Any]]:
            for i in range(n):
                yield {
                    "id": o0 + i,
                    "patient_id": p0 + i // pp,
                    "accession_number": f"A{o0 + i:09d}",
                    "referring_physician": "REFERRER^ANNA",
                    "referring_physician_key": "REFERRER^ANNA",
                    "priority": "ROUTINE",
                    "created_at": timezone.now(),
                    "updated_at": timezone.now(),
                }

        def procedure_rows(
            r0: int = procedure0, o0: int = order0, n: int = size
        ) -> Iterator[dict[str, Any]]:
            for i in range(n):
                yield {
                    "id": r0 + i,
                    "order_id": o0 + i,
                    "requested_procedure_id": f"R{r0 + i:09d}",
                    "study_instance_uid": f"1.2.826.0.1.3680043.8.498.99.{r0 + i}",
                    "description": "Imaging procedure",
                    "created_at": timezone.now(),
                    "updated_at": timezone.now(),
                }

        def step_rows(
            s0: int = step0, r0: int = procedure0, n: int = size, first: int = done
        ) -> Iterator[dict[str, Any]]:
            for i in range(n):
                number = first + i
                station = STATIONS[number % len(STATIONS)]
                if kind == "today":
                    day = today
                    minute = 7 * 60 + (number // len(STATIONS)) % 20 * 30
                    status = SPSStatus.SCHEDULED
                else:
                    day = today - timedelta(days=1 + number % HISTORY_DAYS)
                    minute = 7 * 60 + (number * 7) % (12 * 60)
                    status = (
                        SPSStatus.COMPLETED
                        if number % 20
                        else (SPSStatus.DISCONTINUED if number % 40 else SPSStatus.CANCELED)
                    )
                at = dtime(minute // 60, minute % 60)
                yield {
                    "id": s0 + i,
                    "procedure_id": r0 + i,
                    "sps_id": f"S{s0 + i:09d}",
                    "modality": station[:2],
                    "station_name": station,
                    "location": "RADIOLOGY",
                    "start": datetime.combine(day, at, tzinfo=zone),
                    "start_date": day,
                    "start_time": at,
                    "performing_physician": "TECH^TOM",
                    "performing_physician_key": "TECH^TOM",
                    "description": f"{station[:2]} exam",
                    "status": status,
                    "created_at": timezone.now(),
                    "updated_at": timezone.now(),
                }

        def station_rows(
            a0: int = station0, s0: int = step0, n: int = size, first: int = done
        ) -> Iterator[dict[str, Any]]:
            for i in range(n):
                yield {
                    "id": a0 + i,
                    "step_id": s0 + i,
                    "ae_title": STATIONS[(first + i) % len(STATIONS)],
                }

        with transaction.atomic():
            _copy(Patient, patient_rows())
            _copy(Order, order_rows())
            _copy(RequestedProcedure, procedure_rows())
            _copy(ScheduledProcedureStep, step_rows())
            _copy(StationAETitle, station_rows())
        done += size
        rate = done / (time.monotonic() - started)
        print(f"\r  {kind}: {done:>9,} / {count:,} steps ({rate:,.0f}/s)", end="", flush=True)
    print()
    _fix_sequences()
    with connection.cursor() as cursor:
        # What autovacuum would do after such a load; without it the planner guesses.
        cursor.execute("ANALYZE")


def empty() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE worklist_stationaetitle, worklist_scheduledprocedurestep, "
            "worklist_requestedprocedure, worklist_order, worklist_patient, "
            "hl7v2_inboundmessage RESTART IDENTITY CASCADE"
        )


# --- measurements -----------------------------------------------------------------------

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
]
SPS_KEYS = [
    "ScheduledStationAETitle",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "Modality",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepID",
]


def typical(today: date) -> dict[str, str]:
    return {
        "ScheduledProcedureStepStartDate": today.strftime("%Y%m%d"),
        "Modality": "CT",
        "ScheduledStationAETitle": "CT1",
    }


def findscu(port: int, values: dict[str, str]) -> float:
    command = ["findscu", "-W", "-q", "-aet", "BENCHSCU", "-aec", "WORKLIST", "-td", "600"]
    for keyword in TYPICAL_KEYS:
        command += ["-k", f"{keyword}={values.get(keyword, '')}"]
    for keyword in SPS_KEYS:
        command += ["-k", f"ScheduledProcedureStepSequence[0].{keyword}={values.get(keyword, '')}"]
    command += ["127.0.0.1", str(port)]
    env = {**os.environ, "TCP_NODELAY": "1"}
    started = time.perf_counter()
    subprocess.run(
        command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    return time.perf_counter() - started


def one_association(port: int, values: dict[str, str], runs: int) -> tuple[list[float], int]:
    from pydicom import Dataset
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

    from core.dicom.net import tune_socket
    from tests.scu import keep_responses

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
    # TCP_NODELAY and TCP_QUICKACK on the client's socket too (../shared/dicom-latency.md).
    assoc = ae.associate(
        "127.0.0.1", port, ae_title="WORKLIST", evt_handlers=[(evt.EVT_CONN_OPEN, tune_socket)]
    )
    keep_responses(assoc)
    if not assoc.is_established:
        raise SystemExit("association with the broker failed")
    times, answers = [], 0
    try:
        for _ in range(runs):
            started = time.perf_counter()
            answers = sum(
                1
                for status, _ in assoc.send_c_find(query, ModalityWorklistInformationFind)
                if status and status.Status in (0xFF00, 0xFF01)
            )
            times.append(time.perf_counter() - started)
    finally:
        assoc.release()
    return times, answers


def explain(today: date) -> str:
    from django.db import connection
    from pydicom import Dataset

    from worklist.matching import match

    query = Dataset()
    item = Dataset()
    item.ScheduledProcedureStepStartDate = today.strftime("%Y%m%d")
    item.Modality = "CT"
    item.ScheduledStationAETitle = "CT1"
    query.ScheduledProcedureStepSequence = [item]
    queryset = match(query).queryset
    sql, params = queryset.values_list("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        return "\n".join(f"    {row[0]}" for row in cursor.fetchall())


def hl7_rate(port: int, messages: int) -> float:
    """Messages/s with 8 connections, from bench/hl7_ingest.py against the listener."""
    result = subprocess.run(
        [
            sys.executable,
            str(BASE_DIR / "bench" / "hl7_ingest.py"),
            "-n",
            str(messages),
            "--connections",
            "8",
            "--target",
            f"127.0.0.1:{port}",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=BASE_DIR,
    )
    line = result.stdout.strip().splitlines()[-1].split()
    return float(line[3])


def start(command: list[str], port: int, what: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BROKER_SUPERVISED": "1", "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, str(BASE_DIR / "manage.py"), *command, "--port", str(port)],
        env=env,
        cwd=BASE_DIR,
    )
    wait_for_port(port, process, what, timeout=60)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


def measure(size: str, today: date, args: argparse.Namespace) -> dict[str, float]:
    from worklist.models import ScheduledProcedureStep

    dicom_port, hl7_port = free_port(), free_port()
    dicom = start(["dicom_server"], dicom_port, "the DICOM listener")
    hl7 = start(["hl7_server"], hl7_port, "the HL7 listener")
    try:
        values = typical(today)
        for _ in range(3):  # warm-up
            findscu(dicom_port, values)
        process = statistics.median(findscu(dicom_port, values) for _ in range(args.runs))
        times, answers = one_association(dicom_port, values, args.runs * 3)
        assoc = statistics.median(times)
        rate = hl7_rate(hl7_port, args.messages)
    finally:
        stop(dicom)
        stop(hl7)
    total = ScheduledProcedureStep.objects.count()
    print(
        f"{size:>10} ({total:,} steps): findscu {process * 1000:.1f} ms, one association "
        f"{assoc * 1000:.1f} ms ({answers} answers), HL7 {rate:.0f} msg/s"
    )
    print("  EXPLAIN ANALYZE of the typical query:")
    print(explain(today))
    return {"findscu": process, "assoc": assoc, "hl7": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000, help="history steps in phase 2")
    parser.add_argument("--runs", type=int, default=20, help="findscu runs per measurement")
    parser.add_argument("--messages", type=int, default=1000, help="HL7 orders per measurement")
    args = parser.parse_args()
    setup_django()
    from django.utils import timezone

    today = timezone.localdate()
    print(f"scale benchmark, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    empty()
    load("today", TODAY_STEPS, today)
    load("history", 10_000 - TODAY_STEPS, today)
    small = measure("10,000", today, args)
    load("history", args.steps - 10_000, today)
    large = measure(f"{args.steps:,}", today, args)
    print(
        f"ratios {args.steps:,} / 10,000: findscu {large['findscu'] / small['findscu']:.2f}x, "
        f"one association {large['assoc'] / small['assoc']:.2f}x, "
        f"HL7 intake rate {large['hl7'] / small['hl7']:.2f}x"
    )


if __name__ == "__main__":
    main()
