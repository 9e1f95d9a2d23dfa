"""Soak run (a script that prints figures, not a test): the whole broker under mixed load.

Starts ``manage.py serve`` on a scratch PostgreSQL database (created on the server that
DATABASE_URL names, dropped at the end) and, for ``--minutes``, drives it at once with:

- HL7 ORM^O01 orders over ``--hl7`` MLLP connections, each waiting for its ACK;
- worklist C-FIND queries from ``--find`` scanners, a new association per query (as
  most modalities do);
- MPPS pairs (N-CREATE IN PROGRESS, then N-SET COMPLETED) from ``--mpps`` modalities,
  on steps the HL7 orders created.

It prints throughput and p50 / p99 latency of each, errors, and, early in the run and
at its end (traffic running both times), the resident memory of each of serve's
processes and the open connections to the database: both must stay flat.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/broker_soak \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python bench/soak.py --minutes 10
"""

from __future__ import annotations

import argparse
import itertools
import os
import queue
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from pydicom import Dataset  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # noqa: E402
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
)

from bench.common import free_port  # noqa: E402
from tests.scu import keep_responses  # noqa: E402

START, END = b"\x0b", b"\x1c\r"
RUN = uuid.uuid4().hex[:6].upper()


@dataclass
class Stream:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)

    def error(self) -> None:
        with self.lock:
            self.errors += 1


# --- load ----------------------------------------------------------------------------


def _segment(name: str, fields: dict[int, str]) -> str:
    return "|".join([name, *(fields.get(n, "") for n in range(1, max(fields) + 1))])


STATIONS = 50
PER_DAY = 2000  # orders per scheduled day: a query for one station and day gets ~40
LATEST = [1]  # the last order number sent, for the scanners' queries


def day_of(n: int) -> str:
    return f"202612{1 + (n // PER_DAY) % 28:02d}"


def order(n: int) -> tuple[str, str, bytes]:
    accession = f"S{RUN}{n:07d}"
    LATEST[0] = n
    study = f"1.2.826.0.1.3680043.8.498.{int(RUN, 16)}.{n}"
    text = "\r".join(
        [
            f"MSH|^~\\&|SOAK|HOSP|WORKLIST|BROKER|20261125090000||ORM^O01|{accession}|P|2.3.1",
            f"PID|||SP{RUN}{n:07d}^^^HOSP||SOAK^PATIENT{n}||19700101|F",
            "PV1||O|RAD",
            _segment(
                "ORC",
                {
                    1: "NW",
                    2: f"PL{n}",
                    3: f"FI{n}",
                    5: "SC",
                    7: f"^^^{day_of(n)}093000^^R",
                    18: f"CT{n % STATIONS:02d}",
                },
            ),
            _segment(
                "OBR",
                {
                    1: "1",
                    2: f"PL{n}",
                    3: f"FI{n}",
                    4: "^^^P1^CT head^LOC",
                    18: accession,
                    19: "RP1",
                    20: "SPS1",
                    24: "CT",
                },
            ),
            f"ZDS|{study}^100^Application^DICOM",
        ]
    )
    return accession, study, (text + "\r").encode()


def hl7_sender(
    port: int,
    stream: Stream,
    done: queue.Queue[tuple[str, str]],
    stop: threading.Event,
    counter: itertools.count[int],
) -> None:
    while not stop.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        except OSError:
            stream.error()
            time.sleep(0.5)
            continue
        try:
            while not stop.is_set():
                accession, study, raw = order(next(counter))
                started = time.perf_counter()
                sock.sendall(START + raw + END)
                data = b""
                while not data.endswith(END):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("closed")
                    data += chunk
                stream.record(time.perf_counter() - started)
                if b"MSA|AA|" in data:
                    done.put((accession, study))
                else:
                    stream.error()
        except OSError:
            stream.error()
        finally:
            sock.close()


def find_client(port: int, stream: Stream, stop: threading.Event) -> None:
    ae = AE(ae_title="SOAKFIND")
    ae.add_requested_context(ModalityWorklistInformationFind)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for n in itertools.count():
        if stop.is_set():
            return
        started = time.perf_counter()
        assoc = keep_responses(ae.associate("127.0.0.1", port, ae_title="WORKLIST"))
        if not assoc.is_established:
            stream.error()
            time.sleep(0.2)
            continue
        query = Dataset()
        query.PatientName = ""
        query.PatientID = ""
        query.AccessionNumber = ""
        sps = Dataset()
        sps.Modality = "CT"
        sps.ScheduledStationAETitle = f"CT{n % STATIONS:02d}"
        sps.ScheduledProcedureStepStartDate = day_of(LATEST[0])
        query.ScheduledProcedureStepSequence = [sps]
        codes = [
            int(s.Status) if s else None
            for s, _ in assoc.send_c_find(query, ModalityWorklistInformationFind)
        ]
        assoc.release()
        if codes and codes[-1] in (0x0000, 0xA700):
            stream.record(time.perf_counter() - started)
        else:
            stream.error()


def mpps_client(
    port: int, stream: Stream, done: queue.Queue[tuple[str, str]], stop: threading.Event
) -> None:
    ae = AE(ae_title="SOAKMPPS")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    while not stop.is_set():
        try:
            accession, study = done.get(timeout=1)
        except queue.Empty:
            continue
        started = time.perf_counter()
        assoc = keep_responses(ae.associate("127.0.0.1", port, ae_title="WORKLIST"))
        if not assoc.is_established:
            stream.error()
            continue
        try:
            uid = generate_uid()
            create = Dataset()
            # Every type 1 and 2 attribute of the N-CREATE (PS3.4 F.7.2.1).
            create.SpecificCharacterSet = "ISO_IR 100"
            create.Modality = "CT"
            create.ProcedureCodeSequence = []
            create.ReferencedPatientSequence = []
            create.PatientName = "SOAK^PATIENT"
            create.PatientID = ""
            create.PatientBirthDate = ""
            create.PatientSex = ""
            create.StudyID = "1"
            create.PerformedStationAETitle = "CT01"
            create.PerformedStationName = "CT ROOM 1"
            create.PerformedLocation = "RAD"
            create.PerformedProcedureStepStartDate = "20261126"
            create.PerformedProcedureStepStartTime = "093000"
            create.PerformedProcedureStepEndDate = ""
            create.PerformedProcedureStepEndTime = ""
            create.PerformedProcedureStepStatus = "IN PROGRESS"
            create.PerformedProcedureStepID = "PPS1"
            create.PerformedProcedureStepDescription = "CT HEAD"
            create.PerformedProcedureTypeDescription = ""
            create.PerformedProtocolCodeSequence = []
            create.PerformedSeriesSequence = []
            item = Dataset()
            item.StudyInstanceUID = study
            item.AccessionNumber = accession
            item.RequestedProcedureID = "RP1"
            item.ScheduledProcedureStepID = "SPS1"
            item.ReferencedStudySequence = []
            item.RequestedProcedureDescription = ""
            item.ScheduledProcedureStepDescription = ""
            item.ScheduledProtocolCodeSequence = []
            create.ScheduledStepAttributesSequence = [item]
            status, _ = assoc.send_n_create(create, ModalityPerformedProcedureStep, uid)
            if status is None or int(status.Status) not in (0x0000, 0x0116, 0xB300):
                stream.error()
                continue
            update = Dataset()
            update.PerformedProcedureStepStatus = "COMPLETED"
            update.PerformedProcedureStepEndDate = "20261126"
            update.PerformedProcedureStepEndTime = "094500"
            series = Dataset()
            series.SeriesInstanceUID = generate_uid()
            series.SeriesDescription = "AXIAL"
            series.ProtocolName = "HEAD"
            series.RetrieveAETitle = "PACS"
            series.PerformingPhysicianName = ""
            series.OperatorsName = ""
            image = Dataset()
            image.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            image.ReferencedSOPInstanceUID = generate_uid()
            series.ReferencedImageSequence = [image]
            series.ReferencedNonImageCompositeSOPInstanceSequence = []
            update.PerformedSeriesSequence = [series]
            status, _ = assoc.send_n_set(update, ModalityPerformedProcedureStep, uid)
            if status is None or int(status.Status) not in (0x0000, 0x0116, 0xB300):
                stream.error()
                continue
            stream.record(time.perf_counter() - started)
        finally:
            if assoc.is_established:
                assoc.release()


# --- the broker under test -----------------------------------------------------------


def descendants(root: int) -> dict[int, str]:
    """pid -> a short name, for every process under ``root``."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        names[int(entry.name)] = cmd
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found[child] = names[child]
                frontier.append(child)
    return found


def part_of(cmd: str) -> str:
    for key, name in (
        ("gunicorn", "http"),
        ("dicom_server", "dicom"),
        ("hl7_server", "hl7"),
        (" beat", "beat"),
        (" worker", "worker"),
    ):
        if key in cmd:
            return name
    return "other"


def rss_by_part(serve_pid: int) -> dict[str, float]:
    totals: dict[str, float] = {}
    for pid, cmd in descendants(serve_pid).items():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    name = part_of(cmd)
                    totals[name] = totals.get(name, 0.0) + int(line.split()[1]) / 1024
        except OSError:
            continue
    return totals


def db_connections(server_url: str, name: str) -> int:
    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchone()
    return int(row[0]) if row else -1


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args], env=env, check=True, cwd=BASE_DIR
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--hl7", type=int, default=2, help="MLLP connections sending orders")
    parser.add_argument("--find", type=int, default=2, help="scanners sending C-FIND")
    parser.add_argument("--mpps", type=int, default=1, help="modalities sending MPPS pairs")
    parser.add_argument(
        "--warmup", type=float, default=20.0, help="seconds before the first sample"
    )
    parser.add_argument("--keep", action="store_true", help="keep serve's var folder and log")
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        raise SystemExit(
            "set DATABASE_URL to a PostgreSQL server (the soak creates its own database)"
        )
    import psycopg

    server_url, _, _ = url.rpartition("/")
    scratch = f"soak_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{scratch}"')
    var = Path(tempfile.mkdtemp(prefix="soak-"))
    http, dicom, hl7 = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        DATABASE_URL=f"{server_url}/{scratch}",
        BROKER_VAR_DIR=str(var),
        SECRET_KEY=secrets.token_urlsafe(40),
        BROKER_HTTP_PORT=str(http),
        BROKER_DICOM_PORT=str(dicom),
        BROKER_HL7_PORT=str(hl7),
        LOG_LEVEL="WARNING",
        HTTP_ACCESS_LOG="false",
        PYTHONUNBUFFERED="1",
    )
    serve: subprocess.Popen[str] | None = None
    try:
        manage(env, "migrate", "--no-input", "-v", "0")
        log = open(var / "serve.log", "w")  # noqa: SIM115
        serve = subprocess.Popen(
            [sys.executable, str(BASE_DIR / "manage.py"), "serve"],
            env=env,
            cwd=BASE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 90
        while "Broker running" not in (var / "serve.log").read_text():
            if serve.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("serve did not start:\n" + (var / "serve.log").read_text())
            time.sleep(0.2)

        streams = {
            "hl7": Stream("HL7 order -> ACK"),
            "find": Stream("C-FIND association"),
            "mpps": Stream("MPPS N-CREATE+N-SET"),
        }
        stop = threading.Event()
        done: queue.Queue[tuple[str, str]] = queue.Queue(maxsize=10000)
        counter = itertools.count(1)
        threads: list[threading.Thread] = []

        def spawn(target: Callable[..., None], *a: object) -> None:
            t = threading.Thread(target=target, args=a, daemon=True)
            t.start()
            threads.append(t)

        for _ in range(args.hl7):
            spawn(hl7_sender, hl7, streams["hl7"], done, stop, counter)
        for _ in range(args.find):
            spawn(find_client, dicom, streams["find"], stop)
        for _ in range(args.mpps):
            spawn(mpps_client, dicom, streams["mpps"], done, stop)

        total = args.minutes * 60
        warmup = min(args.warmup, total / 4)
        time.sleep(warmup)
        first = (time.monotonic(), rss_by_part(serve.pid), db_connections(server_url, scratch))
        counts_first = {k: len(s.latencies) for k, s in streams.items()}
        time.sleep(max(0.0, total - warmup))
        last = (time.monotonic(), rss_by_part(serve.pid), db_connections(server_url, scratch))
        counts_last = {k: len(s.latencies) for k, s in streams.items()}
        stop.set()
        for t in threads:
            t.join(30)

        span = last[0] - first[0]
        load = os.getloadavg()[0]
        print(
            f"soak: {args.minutes:g} min, serve on PostgreSQL, {os.cpu_count()} CPUs, "
            f"load average {load:.1f}; figures between the samples ({span:.0f} s)"
        )
        print(f"{'stream':24} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8} {'count':>8} {'errors':>7}")
        for key, stream in streams.items():
            window = stream.latencies[counts_first[key] : counts_last[key]]
            print(
                f"{stream.name:24} {len(window) / span:8.1f} "
                f"{statistics.median(window) * 1000 if window else float('nan'):8.1f} "
                f"{percentile(window, 0.99) * 1000:8.1f} {len(stream.latencies):8d} {stream.errors:7d}"
            )
        print(f"{'RSS MB':24} {'start':>8} {'end':>8}")
        for part in sorted(set(first[1]) | set(last[1])):
            print(f"  {part:22} {first[1].get(part, 0):8.1f} {last[1].get(part, 0):8.1f}")
        print(f"{'DB connections':24} {first[2]:8d} {last[2]:8d}")
    finally:
        if serve is not None and serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(30)
            except subprocess.TimeoutExpired:
                serve.kill()
        with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        if args.keep:
            print(f"serve's output and var folder: {var}")
        else:
            shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
