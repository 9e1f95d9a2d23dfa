"""MPPS throughput: N-CREATE + N-SET pairs per second over 1, 4 and 8 associations.

Run from the project root (a script that prints figures, not a test):

    .venv/bin/python bench/mpps.py                       # SQLite, var/bench_mpps.sqlite3
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/broker_bench_mpps .venv/bin/python bench/mpps.py

It schedules steps through the worklist services, starts the DICOM listener as its own
process (``manage.py dicom_server``, as deployed) unless ``--port`` names a running one
on the same database, sends each step's N-CREATE (IN PROGRESS) and N-SET (COMPLETED)
from a pynetdicom SCU, and checks at the end that every step and MPPS is COMPLETED.
The database must be a bench one (its name contains "bench"): it is emptied first.

``--ris`` also writes the RIS outbox, as a broker with ``RIS_HL7_HOST`` set does: each
pair queues the order's IP and CM in the MPPS transactions (nothing listens on the RIS
port and no worker runs, so they stay pending; the check at the end counts them).

The SCU turns Nagle's algorithm off on its socket (``TCP_NODELAY``), as a fast DICOM
client does (DCMTK with ``TCP_NODELAY=1``): an N-CREATE-RQ is two writes (command, then
data set), and with Nagle on the second waits for the listener's ACK of the first
(which the listener sends at once: no difference was measured, README "MPPS").
``--client-nagle`` leaves it on, as pynetdicom's SCU does by default.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import cpu_seconds, free_port  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench_mpps.sqlite3'}")
# Read before Django's settings are: whether the RIS outbox is written (see --ris).
_early = argparse.ArgumentParser(add_help=False)
_early.add_argument("--ris", action="store_true")
RIS = _early.parse_known_args()[0].ris
if RIS:
    # An RIS that is never reached: the outbox is written, the messages stay pending.
    os.environ["RIS_HL7_HOST"] = "127.0.0.1"
    os.environ["RIS_HL7_PORT"] = "9"
else:
    os.environ["RIS_HL7_HOST"] = ""  # the MPPS path alone, no outbound HL7
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from pynetdicom import AE, evt  # noqa: E402

from mpps.dimse import MPPS_SOP_CLASS  # noqa: E402
from mpps.models import OutboundMessage, PerformedProcedureStep  # noqa: E402
from tests.fixtures_mpps import n_create_dataset, n_set_dataset  # noqa: E402
from tests.scu import keep_responses  # noqa: E402
from worklist.models import ScheduledProcedureStep  # noqa: E402
from worklist.services import (  # noqa: E402
    order_upsert,
    patient_upsert,
    procedure_upsert,
    step_upsert,
)


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"the DICOM listener did not open port {port}")


def schedule(count: int, tag: str) -> list[ScheduledProcedureStep]:
    patient = patient_upsert(patient_id=f"BENCH{tag}", fields={"name": "BENCH^PATIENT"})
    steps = []
    for n in range(count):
        order, _ = order_upsert(patient=patient, accession_number=f"B{tag}{n}", fields={})
        procedure = procedure_upsert(
            order=order,
            requested_procedure_id="RP1",
            study_instance_uid=generate_uid(),
            fields={},
        )
        steps.append(step_upsert(procedure=procedure, sps_id="SPS1", fields={"modality": "CT"}))
    return steps


def no_nagle(event: evt.Event) -> None:
    """EVT_CONN_OPEN of the SCU: Nagle off on its socket, before the association request."""
    assoc_socket = event.assoc.dul.socket
    raw = assoc_socket.socket if assoc_socket is not None else None
    if raw is not None:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def perform(
    port: int, steps: list[ScheduledProcedureStep], failures: list[str], *, nagle: bool = False
) -> None:
    """One association: N-CREATE + N-SET for each step."""
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(MPPS_SOP_CLASS)
    handlers: list[Any] = [] if nagle else [(evt.EVT_CONN_OPEN, no_nagle)]
    assoc = ae.associate(
        "127.0.0.1", port, ae_title=settings.BROKER_AE_TITLE, evt_handlers=handlers
    )
    if not assoc.is_established:
        failures.append("association refused")
        return
    keep_responses(assoc)
    try:
        for step in steps:
            uid = generate_uid()
            rsp, _ = assoc.send_n_create(n_create_dataset(step), MPPS_SOP_CLASS, uid)
            if getattr(rsp, "Status", None) != 0:
                failures.append(f"N-CREATE {getattr(rsp, 'Status', None)}")
                continue
            rsp = assoc.send_n_set(n_set_dataset(), MPPS_SOP_CLASS, uid)[0]
            if getattr(rsp, "Status", None) != 0:
                failures.append(f"N-SET {getattr(rsp, 'Status', None)}")
    finally:
        assoc.release()


def run_once(
    port: int, steps: list[ScheduledProcedureStep], associations: int, *, nagle: bool
) -> float:
    """Pairs per second for ``steps`` spread over ``associations`` at once."""
    chunks = [steps[i::associations] for i in range(associations)]
    failures: list[str] = []
    threads = [
        threading.Thread(target=perform, args=(port, c, failures), kwargs={"nagle": nagle})
        for c in chunks
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} failures, first: {failures[0]}")
    return len(steps) / elapsed


@dataclass
class Listener:
    """A ``manage.py dicom_server`` process of this tree or of a reference revision."""

    name: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    # Per case: pairs/s, and CPU milliseconds per pair of the listener and of this client.
    rates: dict[int, list[float]] = field(default_factory=dict)
    listener_cpu: dict[int, list[float]] = field(default_factory=dict)
    client_cpu: dict[int, list[float]] = field(default_factory=dict)

    @classmethod
    def start(cls, name: str, root: Path) -> Listener:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, str(root / "manage.py"), "dicom_server", "--port", str(port)],
            cwd=root,
            # A reference tree has no var/secret_key of its own (made by `make setup`).
            env={
                **os.environ,
                "BROKER_SUPERVISED": "1",
                "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-reference-only"),
            },
        )
        wait_for_port(port)
        return cls(name, port, process)

    def run(self, steps: list[ScheduledProcedureStep], associations: int, nagle: bool) -> None:
        pid = self.process.pid if self.process is not None else None
        before, client_before = cpu_seconds(pid), time.process_time()
        rate = run_once(self.port, steps, associations, nagle=nagle)
        self.rates.setdefault(associations, []).append(rate)
        self.listener_cpu.setdefault(associations, []).append(
            (cpu_seconds(pid) - before) * 1000 / len(steps)
        )
        self.client_cpu.setdefault(associations, []).append(
            (time.process_time() - client_before) * 1000 / len(steps)
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(15)

    def line(self, associations: int) -> str:
        figures = self.rates[associations]
        shown = ", ".join(f"{f:.0f}" for f in figures)
        return (
            f"median {statistics.median(figures):.0f} pairs/s (runs: {shown}); CPU per pair: "
            f"listener {statistics.median(self.listener_cpu[associations]):.1f} ms, "
            f"client {statistics.median(self.client_cpu[associations]):.1f} ms"
        )


def reference_tree(rev: str) -> Path:
    """A git worktree of ``rev`` (made once, kept under var/), on this tree's schema."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    changed = subprocess.run(
        ["git", "diff", "--name-only", commit, "--", "*/migrations/*"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    if changed:
        raise SystemExit(f"{rev} has other migrations ({changed[0]}...): cannot share the database")
    tree = ROOT / "var" / f"bench-reference-{commit}"
    if not tree.exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), commit],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200, help="pairs per run (default 200)")
    parser.add_argument("--runs", type=int, default=5, help="runs per case (default 5)")
    parser.add_argument("--port", type=int, default=0, help="a running listener on this DB")
    parser.add_argument(
        "--associations", default="1,4,8", help="parallel associations per case (default 1,4,8)"
    )
    parser.add_argument(
        "--ris", action="store_true", help="write the RIS outbox (an unreachable RIS_HL7_HOST)"
    )
    parser.add_argument(
        "--client-nagle",
        action="store_true",
        help="leave Nagle's algorithm on in the SCU (pynetdicom's default)",
    )
    parser.add_argument(
        "--reference",
        metavar="REV",
        help="also run the listener of REV (a git worktree, same database), alternating",
    )
    args = parser.parse_args()
    if args.reference and args.port:
        parser.error("--reference starts its own listeners; it cannot be used with --port")

    db = settings.DATABASES["default"]
    if "bench" not in str(db["NAME"]):
        raise SystemExit(f"refusing to empty {db['NAME']}: use a database named *bench*")
    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)

    listeners: list[Listener] = []
    try:
        listeners.append(
            Listener("current", args.port) if args.port else Listener.start("current", ROOT)
        )
        if args.reference:
            listeners.append(Listener.start(args.reference, reference_tree(args.reference)))
        cases = [int(n) for n in args.associations.split(",")]
        used: list[ScheduledProcedureStep] = []
        for associations in cases:
            for run in range(args.runs):
                # Each listener goes first in every other run: neither always runs warmer.
                order = listeners if run % 2 == 0 else listeners[::-1]
                for listener in order:
                    steps = schedule(args.pairs, f"{associations}x{run}{listener.name[:4]}")
                    used.extend(steps)
                    listener.run(steps, associations, args.client_nagle)
    finally:
        for listener in listeners:
            listener.stop()

    ids = [s.pk for s in used]
    completed = ScheduledProcedureStep.objects.filter(pk__in=ids, status="COMPLETED").count()
    mpps_completed = PerformedProcedureStep.objects.filter(status="COMPLETED").count()
    # IP at the N-CREATE, CM at the N-SET: two messages per order.
    outbox = OutboundMessage.objects.filter(order__procedures__steps__pk__in=ids).count()
    vendor = db["ENGINE"].rsplit(".", 1)[-1]
    print(
        f"database: {vendor} ({db['NAME']}), {args.runs} runs of {args.pairs} pairs per case, "
        f"SCU {'with' if args.client_nagle else 'without'} Nagle, "
        f"RIS outbox {'written' if RIS else 'off'}"
    )
    current = listeners[0]
    for associations in cases:
        print(f"{associations} association(s): {current.line(associations)}")
        for reference in listeners[1:]:
            ratio = statistics.median(current.rates[associations]) / statistics.median(
                reference.rates[associations]
            )
            print(
                f"    reference {reference.name}: {reference.line(associations)}; ratio {ratio:.2f}x"
            )
    print(
        f"worklist check: {completed}/{len(ids)} steps COMPLETED, {mpps_completed} MPPS COMPLETED"
    )
    if RIS:
        print(f"outbox check: {outbox}/{2 * len(ids)} RIS messages queued")
    if completed != len(ids) or mpps_completed != len(ids):
        raise SystemExit("worklist check failed")
    if RIS and outbox != 2 * len(ids):
        raise SystemExit("outbox check failed")


if __name__ == "__main__":
    main()
