"""Routing throughput: a CT study received from DCMTK's storescu and forwarded to DCMTK's
storescp, next to storescu -> storescp directly, alternating, in the same run.

Run from the project root (a script that prints figures, not a test):

    .venv/bin/python bench/route.py                      # SQLite, var/bench_route.sqlite3
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/broker_bench_route .venv/bin/python bench/route.py

Each round: pydicom writes a study of ``--instances`` CT images (512 x 512, 16 bit,
512 KB each); ``storescu`` sends it straight to ``storescp`` (the reference); then
``storescu`` sends it to the broker's listener (``manage.py dicom_server``, its own
process, as deployed), an MPPS N-CREATE / N-SET COMPLETED listing every instance goes
to the same listener, and the job it makes is sent (``routing.jobs.job_run``, as the
Celery worker runs it) to ``storescp``. Both DCMTK tools run with ``TCP_NODELAY=1``.
Received = instances / storescu's time to the broker; forwarded = instances /
job_run's time. Every round checks that storescp got each instance exactly once.
The database must be a bench one (its name contains "bench"): it is emptied first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import free_port  # noqa: E402

SCRATCH = Path(tempfile.mkdtemp(prefix="bench_route_"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench_route.sqlite3'}")
os.environ.setdefault("ROUTING_SPOOL_DIR", str(SCRATCH / "spool"))
os.environ["RIS_HL7_HOST"] = ""
# No worker here: the listener's tasks (the MPPS event) are dropped; the bench routes.
os.environ["CELERY_BROKER_URL"] = "memory://"
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from pynetdicom import AE  # noqa: E402

from core.dicom.requestor import keep_responses  # noqa: E402
from mpps.dimse import MPPS_SOP_CLASS  # noqa: E402
from mpps.models import PerformedProcedureStep  # noqa: E402
from routing import jobs, services  # noqa: E402
from routing.models import Destination, RoutingJob, RoutingRule, StoredInstance  # noqa: E402
from tests.fixtures_mpps import make_step, n_create_dataset  # noqa: E402
from tests.fixtures_routing import CT_IMAGE, DCMTK_ENV, ct_dataset  # noqa: E402


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def write_study(folder: Path, count: int, study_uid: str) -> list[Path]:
    folder.mkdir(parents=True)
    series_uid = generate_uid()
    paths = []
    for n in range(count):
        ds = ct_dataset(study_uid=study_uid, series_uid=series_uid, pixels=512)
        ds.InstanceNumber = n + 1
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def storescu(port: int, called: str, files: list[Path], senders: int = 1) -> float:
    """Seconds for ``senders`` storescu processes at once (one association each) to send
    ``files`` between them."""
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            ["storescu", "-aet", "CT1", "-aec", called, "127.0.0.1", str(port)]
            + [str(path) for path in files[n::senders]],
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for n in range(senders)
    ]
    for process in processes:
        _, err = process.communicate()
        if process.returncode:
            raise SystemExit(f"storescu failed: {err.decode(errors='replace')}")
    return time.perf_counter() - started


class StoreSCP:
    def __init__(self, folder: Path, port: int, *, fork: bool = False) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = port
        self.process = subprocess.Popen(
            # --fork: a process per association, so parallel associations run in parallel.
            [
                "storescp",
                "-aet",
                "DEST",
                "+uf",
                *(["--fork"] if fork else []),
                "-od",
                str(folder),
                str(port),
            ],
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(port)

    def count_and_clear(self) -> int:
        files = list(self.folder.iterdir())
        for path in files:
            path.unlink()
        return len(files)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def mpps_completed(port: int, study_uid: str, files: list[Path]) -> None:
    step = make_step(study_instance_uid=study_uid)
    ae = AE(ae_title="CT1")
    ae.add_requested_context(MPPS_SOP_CLASS)
    assoc = keep_responses(ae.associate("127.0.0.1", port, ae_title=settings.BROKER_AE_TITLE))
    if not assoc.is_established:
        raise SystemExit("MPPS association refused")
    try:
        uid = generate_uid()
        rsp, _ = assoc.send_n_create(n_create_dataset(step), MPPS_SOP_CLASS, uid)
        if getattr(rsp, "Status", None) != 0:
            raise SystemExit(f"N-CREATE failed: {rsp}")
        series = Dataset()
        series.SeriesInstanceUID = generate_uid()
        series.SeriesDescription = ""
        series.ProtocolName = ""
        series.RetrieveAETitle = ""
        series.PerformingPhysicianName = ""
        series.OperatorsName = ""
        refs = []
        for path in files:
            ref = Dataset()
            ref.ReferencedSOPClassUID = CT_IMAGE
            ref.ReferencedSOPInstanceUID = path.stem
            refs.append(ref)
        series.ReferencedImageSequence = refs
        series.ReferencedNonImageCompositeSOPInstanceSequence = []
        modification = Dataset()
        modification.PerformedProcedureStepStatus = "COMPLETED"
        modification.PerformedProcedureStepEndDate = "20261125"
        modification.PerformedProcedureStepEndTime = "101500"
        modification.PerformedSeriesSequence = [series]
        rsp, _ = assoc.send_n_set(modification, MPPS_SOP_CLASS, uid)
        if getattr(rsp, "Status", None) != 0:
            raise SystemExit(f"N-SET failed: {rsp}")
    finally:
        assoc.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--associations", type=int, default=4, help="the destination's parallel associations"
    )
    parser.add_argument(
        "--senders",
        type=int,
        default=1,
        help="storescu processes sending the study at once, to storescp and to the broker",
    )
    args = parser.parse_args()
    if shutil.which("storescu") is None or shutil.which("storescp") is None:
        raise SystemExit("DCMTK's storescu and storescp are needed (apt-get install dcmtk)")
    db = settings.DATABASES["default"]
    if "bench" not in str(db["NAME"]):
        raise SystemExit(f"refusing to empty {db['NAME']}: use a database named *bench*")
    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)

    listener_port, direct_port, forward_port = free_port(), free_port(), free_port()
    listener = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "dicom_server", "--port", str(listener_port)],
        env={**os.environ, "BROKER_SUPERVISED": "1"},
    )
    direct = StoreSCP(SCRATCH / "direct", direct_port, fork=args.senders > 1)
    forward = StoreSCP(SCRATCH / "forward", forward_port, fork=args.associations > 1)
    destination = Destination.objects.create(
        name="bench",
        ae_title="DEST",
        host="127.0.0.1",
        port=forward_port,
        max_associations=args.associations,
    )
    RoutingRule.objects.create(name="all").destinations.set([destination])
    direct_rates: list[float] = []
    received_rates: list[float] = []
    forwarded_rates: list[float] = []
    try:
        wait_for_port(listener_port)
        for round_number in range(args.rounds):
            study_uid = generate_uid()
            files = write_study(SCRATCH / f"study{round_number}", args.instances, study_uid)

            # Each timed phase starts with nothing of an earlier one left to write back:
            # the study just written, or storescp's copies (it never flushes them), would
            # otherwise reach the disk in the middle of the next phase and slow its
            # flushes, which fell on the broker's receiving.
            os.sync()
            seconds = storescu(direct_port, "DEST", files, args.senders)
            if direct.count_and_clear() != len(files):
                raise SystemExit("storescp did not get every instance directly")
            direct_rates.append(len(files) / seconds)

            os.sync()
            seconds = storescu(listener_port, settings.BROKER_AE_TITLE, files, args.senders)
            received_rates.append(len(files) / seconds)
            mpps_completed(listener_port, study_uid, files)
            mpps_id = PerformedProcedureStep.objects.order_by("-pk").values_list("pk", flat=True)[0]
            wait = services.mpps_ended(mpps_id)
            if wait is not None:
                wait.refresh_from_db()
            if wait is None or wait.done_at is None:
                stored = StoredInstance.objects.filter(study_instance_uid=study_uid).count()
                raise SystemExit(
                    f"the study was not complete after its MPPS ({stored} instances stored)"
                )
            job = RoutingJob.objects.get(study_instance_uid=study_uid)
            os.sync()
            started = time.perf_counter()
            result = jobs.job_run(job.pk)
            seconds = time.perf_counter() - started
            if result.status != "COMPLETED" or forward.count_and_clear() != len(files):
                raise SystemExit(f"forwarding failed: {result}")
            forwarded_rates.append(len(files) / seconds)
            shutil.rmtree(SCRATCH / f"study{round_number}")
    finally:
        listener.terminate()
        listener.wait(15)
        direct.stop()
        forward.stop()
        shutil.rmtree(SCRATCH, ignore_errors=True)

    vendor = db["ENGINE"].rsplit(".", 1)[-1]
    size_kb = 512 * 512 * 2 // 1024
    print(
        f"database: {vendor}; {args.rounds} rounds of {args.instances} CT instances of "
        f"{size_kb} KB; {args.senders} sender(s); destination with {args.associations} "
        "parallel association(s)"
    )
    reference = statistics.median(direct_rates)

    def line(name: str, rates: list[float]) -> str:
        median = statistics.median(rates)
        shown = ", ".join(f"{r:.0f}" for r in rates)
        return f"{name:<34} median {median:6.0f} instances/s ({shown}) = {median / reference:.2f}x direct"

    print(line("direct storescu -> storescp", direct_rates))
    print(line("storescu -> broker (received)", received_rates))
    print(line("broker -> storescp (forwarded)", forwarded_rates))


if __name__ == "__main__":
    main()
