"""HL7 order intake benchmark (a script that prints figures, not a test).

Sends N generated ORM^O01 orders (each a new patient, order, procedure and step) over 1
and over 8 MLLP connections, each connection waiting for the ACK of a message before
sending the next, and prints messages/s, ACK latency (p50/p99) and the time from send
until the step is visible to a worklist query.

It starts ``manage.py hl7_server`` as a separate process on a free port (or targets a
running listener with ``--target host:port``). Visibility is measured on a sample of
messages by polling from the moment of sending: with a database query through the
worklist models (default), or with a DICOM C-FIND (``--dicom host:port``, the broker's
worklist SCP).

    .venv/bin/python bench/hl7_ingest.py -n 4000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/broker_bench_hl7 \\
        .venv/bin/python bench/hl7_ingest.py -n 4000

Without DATABASE_URL it uses a fresh SQLite file, var/bench_hl7.sqlite3.

``--reference REV`` (a commit, tag or branch) also builds that revision in a git
worktree, migrates a database of its own and runs its listener; each case is then sent
to both, alternating which goes first, and the reference's messages/s and the ratio are
printed under the case:

    .venv/bin/python bench/hl7_ingest.py -n 2000 --reference 4d7091f
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from bench.common import cpu_seconds, free_port  # noqa: E402

START, END = b"\x0b", b"\x1c\r"


def setup_django(fresh_sqlite: bool) -> None:
    if not os.environ.get("DATABASE_URL"):
        path = BASE_DIR / "var" / "bench_hl7.sqlite3"
        if fresh_sqlite:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _segment(name: str, fields: dict[int, str]) -> str:
    return "|".join([name, *(fields.get(n, "") for n in range(1, max(fields) + 1))])


def order_message(run: str, n: int) -> bytes:
    """A realistic ORM^O01 v2.3.1 for a new patient, order, procedure and step."""
    accession = f"B{run}{n:07d}"
    segments = [
        f"MSH|^~\\&|BENCH|HOSP|WORKLIST|BROKER|20261125090000||ORM^O01|{accession}|P|2.3.1"
        "||||||8859/1",
        _segment(
            "PID",
            {
                3: f"BP{run}{n:07d}^^^HOSP",
                5: f"BENCH^PATIENT{n}",
                7: "19700101",
                8: "F",
                11: "Street 1^^Town^^12345",
            },
        ),
        _segment("PV1", {2: "O", 3: "RAD", 8: "123^Referring^Rita", 19: "V1"}),
        _segment(
            "ORC",
            {
                1: "NW",
                2: f"PL{n}",
                3: f"FI{n}",
                5: "SC",
                7: "^^^20261126093000+0100^^R",
                18: "CT01",
            },
        ),
        _segment(
            "OBR",
            {
                1: "1",
                2: f"PL{n}",
                3: f"FI{n}",
                4: "^^^P1^CT head^LOC",
                16: "55^Requester^Rob",
                18: accession,
                19: "RP1",
                20: "SPS1",
                24: "CT",
                44: "CTH^CT head^LOC",
            },
        ),
        f"ZDS|1.2.826.0.1.3680043.8.498.{int(run, 16)}.{n}^100^Application^DICOM",
    ]
    return ("\r".join(segments) + "\r").encode("latin-1")


def start_listener(
    port: int, processes: int, tree: Path = BASE_DIR, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, LOG_LEVEL="WARNING", **(extra_env or {}))
    process = subprocess.Popen(
        [
            *(sys.executable, str(tree / "manage.py"), "hl7_server"),
            *("--port", str(port), "--processes", str(processes)),
        ],
        env=env,
        cwd=tree,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the HL7 listener did not start")


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    visible: list[float] = field(default_factory=list)
    errors: int = 0


def read_ack(sock: socket.socket, buffer: bytearray) -> bytes:
    while END not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("listener closed the connection")
        buffer += data
    end = buffer.index(END)
    ack = bytes(buffer[1:end])
    del buffer[: end + 2]
    return ack


class Visibility:
    """Polls until a sampled step can be found: a worklist database query or a C-FIND."""

    def __init__(self, dicom: str | None, using: str = "default") -> None:
        self.dicom = dicom
        self.using = using  # the database alias polled (the reference's: "reference")

    def wait(self, accession: str, sent: float, result: Result) -> None:
        found = self._find_dicom if self.dicom else self._find_db
        deadline = sent + 30
        while time.perf_counter() < deadline:
            if found(accession):
                result.visible.append(time.perf_counter() - sent)
                return
            time.sleep(0.001)

    def _find_db(self, accession: str) -> bool:
        from worklist.selectors import step_list

        return (
            step_list()
            .using(self.using)
            .filter(procedure__order__accession_number=accession)
            .exists()
        )

    def _find_dicom(self, accession: str) -> bool:
        from pydicom import Dataset
        from pynetdicom import AE
        from pynetdicom.sop_class import (  # type: ignore[attr-defined]
            ModalityWorklistInformationFind,
        )

        assert self.dicom is not None
        host, port = self.dicom.rsplit(":", 1)
        ae = AE(ae_title="BENCH")
        ae.add_requested_context(ModalityWorklistInformationFind)
        assoc = ae.associate(
            host, int(port), ae_title=os.environ.get("BROKER_AE_TITLE", "WORKLIST")
        )
        if not assoc.is_established:
            return False
        query = Dataset()
        query.AccessionNumber = accession
        query.PatientID = ""
        item = Dataset()
        item.ScheduledProcedureStepID = ""
        query.ScheduledProcedureStepSequence = [item]
        try:
            return any(
                status is not None and status.Status in (0xFF00, 0xFF01) and answer is not None
                for status, answer in assoc.send_c_find(query, ModalityWorklistInformationFind)
            )
        finally:
            assoc.release()


def run_connection(
    host: str,
    port: int,
    messages: list[tuple[str, bytes]],
    result: Result,
    visibility: Visibility,
    sample_every: int,
) -> None:
    buffer = bytearray()
    with socket.create_connection((host, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, (accession, raw) in enumerate(messages):
            sent = time.perf_counter()
            watcher = None
            if sample_every and i % sample_every == 0:
                watcher = threading.Thread(target=visibility.wait, args=(accession, sent, result))
                watcher.start()
            sock.sendall(START + raw + END)
            ack = read_ack(sock, buffer)
            result.latencies.append(time.perf_counter() - sent)
            if b"MSA|AA|" not in ack:
                result.errors += 1
            if watcher is not None:
                watcher.join()


def run(
    host: str,
    port: int,
    run_id: str,
    offset: int,
    count: int,
    connections: int,
    visibility: Visibility,
    sample_every: int,
) -> tuple[float, Result]:
    messages = [
        (f"B{run_id}{n:07d}", order_message(run_id, n)) for n in range(offset, offset + count)
    ]
    shares = [messages[i::connections] for i in range(connections)]
    result = Result()
    threads = [
        threading.Thread(
            target=run_connection, args=(host, port, share, result, visibility, sample_every)
        )
        for share in shares
    ]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - began, result


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Reference:
    """The listener of another revision, built in a git worktree, on a database of its own.

    Its own database because its schema may differ: SQLite, a fresh
    var/bench_hl7_ref.sqlite3; PostgreSQL, the DATABASE_URL's database name + "_ref"
    (created if missing). The worktree and the listener go at the end.
    """

    def __init__(self, revision: str, processes: int) -> None:
        self.tree = Path(tempfile.mkdtemp(prefix="bench-hl7-ref-"))
        subprocess.run(
            ["git", "-C", str(BASE_DIR), "worktree", "add", "--detach", str(self.tree), revision],
            check=True,
            capture_output=True,
        )
        self.commit = subprocess.run(
            ["git", "-C", str(self.tree), "rev-parse", "--short", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        self.env = {"DATABASE_URL": self._database_url(), "BROKER_VAR_DIR": str(self.tree / "var")}
        # The reference's database as a second alias, so that its visibility is polled
        # as the current one's is (the same client work on both sides of the ratio).
        import environ
        from django.db import connections

        connections.settings["reference"] = dict(
            connections.settings["default"], **environ.Env.db_url_config(self.env["DATABASE_URL"])
        )
        self.env["SECRET_KEY"] = os.environ.get("SECRET_KEY", "bench-reference-only")
        subprocess.run(
            [sys.executable, str(self.tree / "manage.py"), "migrate", "--no-input", "-v", "0"],
            check=True,
            cwd=self.tree,
            env=dict(os.environ, **self.env),
        )
        self.port = free_port()
        self.process = start_listener(self.port, processes, self.tree, self.env)

    def _database_url(self) -> str:
        url = os.environ["DATABASE_URL"]
        if url.startswith("sqlite"):
            path = BASE_DIR / "var" / "bench_hl7_ref.sqlite3"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            return f"sqlite:///{path}"
        from django.db import connection

        name = f"{connection.settings_dict['NAME']}_ref"
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            exists = cursor.fetchone() is not None
        if exists:
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE "{name}"')
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        return url.rsplit("/", 1)[0] + "/" + name

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        subprocess.run(
            ["git", "-C", str(BASE_DIR), "worktree", "remove", "--force", str(self.tree)],
            check=False,
            capture_output=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-n",
        "--messages",
        type=int,
        default=2000,
        help="messages per case, shared out over its connections (default 2000)",
    )
    parser.add_argument("--connections", default="1,8", help="comma-separated, default 1,8")
    parser.add_argument("--target", help="host:port of a running listener (default: start one)")
    parser.add_argument("--dicom", help="host:port of the worklist SCP: visibility by C-FIND")
    parser.add_argument("--sample-every", type=int, default=25, help="visibility sample rate")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument(
        "--server-processes", type=int, default=1, help="hl7_server --processes (PostgreSQL)"
    )
    parser.add_argument(
        "--reference",
        help="a git revision to compare with: built in a worktree, run alternately, msg/s only",
    )
    args = parser.parse_args()
    if args.reference and args.target:
        parser.error("--reference starts its own listeners; it cannot be used with --target")

    setup_django(fresh_sqlite=args.target is None)
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    process = None
    if args.target:
        host, port_text = args.target.rsplit(":", 1)
        port = int(port_text)
    else:
        host, port = "127.0.0.1", free_port()
        process = start_listener(port, args.server_processes)
    visibility = Visibility(args.dicom)
    run_id = secrets.token_hex(2)
    offset = 0
    reference = Reference(args.reference, args.server_processes) if args.reference else None
    try:
        if args.warmup:
            run(host, port, run_id, offset, args.warmup, 8, visibility, 0)
            if reference is not None:
                run("127.0.0.1", reference.port, run_id, offset, args.warmup, 8, visibility, 0)
            offset += args.warmup
        print(
            f"HL7 ingest, ORM^O01 -> scheduled step, database {engine}, "
            f"{os.cpu_count()} CPUs, {args.server_processes} listener process(es), "
            f"visibility by {'C-FIND' if args.dicom else 'DB query'}, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"{'conns':>5} {'msgs':>6} {'seconds':>8} {'msg/s':>8} {'ack p50':>9} "
            f"{'ack p99':>9} {'visible p50':>12} {'visible p99':>12} {'errors':>6} "
            f"{'listener CPU/msg':>16}"
        )
        for case, connections in enumerate(int(c) for c in args.connections.split(",")):
            reference_rate = None
            if reference is not None and case % 2 == 0:
                # The reference first in every other case: neither always runs warmer.
                reference_rate = _reference_rate(reference, run_id, offset, args, connections)
                offset += args.messages
            cpu_before = cpu_seconds(process.pid if process else None)
            elapsed, result = run(
                host,
                port,
                run_id,
                offset,
                args.messages,
                connections,
                visibility,
                args.sample_every,
            )
            offset += args.messages
            ms = 1000.0
            print(
                f"{connections:>5} {args.messages:>6} {elapsed:>8.2f} "
                f"{args.messages / elapsed:>8.0f} "
                f"{percentile(result.latencies, 50) * ms:>7.1f}ms "
                f"{percentile(result.latencies, 99) * ms:>7.1f}ms "
                f"{statistics.median(result.visible) * ms if result.visible else float('nan'):>10.1f}ms "
                f"{percentile(result.visible, 99) * ms:>10.1f}ms "
                f"{result.errors:>6} "
                f"{(cpu_seconds(process.pid if process else None) - cpu_before) / args.messages * ms:>14.1f}ms"
            )
            if reference is not None:
                if reference_rate is None:
                    reference_rate = _reference_rate(reference, run_id, offset, args, connections)
                    offset += args.messages
                rate = args.messages / elapsed
                print(
                    f"{'':>5} reference {reference.commit}: {reference_rate:.0f} msg/s, "
                    f"ratio {rate / reference_rate:.2f}x"
                )
    finally:
        if reference is not None:
            reference.close()
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def _reference_rate(
    reference: Reference, run_id: str, offset: int, args: argparse.Namespace, connections: int
) -> float:
    # The same visibility sampling as the current listener's (polling its own database),
    # so that the client loads both alike; without it the ratio was biased against the
    # current listener (an A/A run of one revision against itself gave 0.74-0.84x).
    visibility = Visibility(None, "reference") if not args.dicom else Visibility(None)
    sample_every = 0 if args.dicom else args.sample_every
    cpu_before = cpu_seconds(reference.process.pid)
    elapsed, result = run(
        "127.0.0.1",
        reference.port,
        run_id,
        offset,
        args.messages,
        connections,
        visibility,
        sample_every,
    )
    if result.errors:
        print(f"reference: {result.errors} errors")
    visible = (
        f", visible p50 / p99 {statistics.median(result.visible) * 1e3:.1f} / "
        f"{percentile(result.visible, 99) * 1e3:.1f} ms"
        if result.visible
        else ""
    )
    cpu = (cpu_seconds(reference.process.pid) - cpu_before) / args.messages * 1e3
    print(
        f"{'':>5} reference ack p50 / p99 {percentile(result.latencies, 50) * 1e3:.1f} / "
        f"{percentile(result.latencies, 99) * 1e3:.1f} ms{visible}, listener CPU/msg {cpu:.1f} ms"
    )
    return args.messages / elapsed


if __name__ == "__main__":
    main()
