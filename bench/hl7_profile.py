"""Where one HL7 order's time goes: the intake in-process, no sockets, under cProfile.

Runs ``message_receive`` on N generated ORM^O01 orders (each a new patient, order,
procedure and step, as ``bench/hl7_ingest.py`` sends) in one thread, and prints the
wall and CPU time per message, the SQL statements per message, and the cumulative
time of the intake's phases per message (from the profile), then the top functions.

    .venv/bin/python bench/hl7_profile.py -n 2000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/broker_bench_hl7 \\
        .venv/bin/python bench/hl7_profile.py -n 2000

``--batch K`` sends the messages through ``messages_receive`` K at a time (group
commit), as the listener does when K messages arrive together.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import secrets
import sys
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR / "bench"))
sys.path.insert(0, str(BASE_DIR))

from hl7_ingest import order_message, setup_django  # noqa: E402

# (label, function name as pstats shows it: file ending, line-independent name)
PHASES = [
    ("read MSH", "msh.py", "read_header"),
    ("decode + split", "parser.py", "parse"),
    ("map", "mapping.py", "order_message"),
    ("apply (worklist services)", "apply.py", "apply"),
    ("  patient_upsert", "services.py", "patient_upsert"),
    ("  order_upsert", "services.py", "order_upsert"),
    ("  procedure_upsert", "services.py", "procedure_upsert"),
    ("  step_upsert", "services.py", "step_upsert"),
    ("message row (_write)", "intake.py", "_write"),
    ("  build_ack", "ack.py", "build_ack"),
    ("SQL execute (all)", "utils.py", "_execute"),
    ("commit", "base.py", "commit"),
    ("on_commit events", "events.py", "send"),
    ("logging", "intake.py", "_log"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--messages", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=1, help="messages per group commit")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--no-profile", action="store_true", help="only the times, without cProfile's overhead"
    )
    args = parser.parse_args()
    setup_django(fresh_sqlite=True)
    import logging

    logging.disable(logging.INFO)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from hl7v2 import intake

    run = secrets.token_hex(2)
    warm = [order_message(run, n) for n in range(100)]
    for raw in warm:
        intake.message_receive(raw, peer="profile")
    messages = [order_message(run, n) for n in range(100, 100 + args.messages)]
    batch_receive = getattr(intake, "messages_receive", None)
    if args.batch > 1 and batch_receive is None:
        raise SystemExit("this revision has no messages_receive (group commit)")

    def work() -> None:
        if args.batch > 1:
            assert batch_receive is not None
            for i in range(0, len(messages), args.batch):
                batch_receive([(raw, "profile") for raw in messages[i : i + args.batch]])
        else:
            for raw in messages:
                intake.message_receive(raw, peer="profile")

    with CaptureQueriesContext(connection) as queries:
        intake.message_receive(order_message(run, 10_000_000 - 1), peer="profile")
    statements = len(queries.captured_queries)

    backend = _backend_pid(connection)
    server_cpu = _process_cpu(backend)
    wall, cpu = time.perf_counter(), time.process_time()
    profile = cProfile.Profile()
    if not args.no_profile:
        profile.enable()
    work()
    profile.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    server_cpu = _process_cpu(backend) - server_cpu
    n = args.messages
    server = (
        f", PostgreSQL backend {server_cpu / n * 1e3:.3f} ms CPU per message"
        if backend is not None
        else ""
    )
    print(
        f"{connection.vendor}, {n} new orders, batch {args.batch}: "
        f"{wall / n * 1e3:.3f} ms wall and {cpu / n * 1e3:.3f} ms CPU per message"
        f"{'' if args.no_profile else ' under cProfile'} ({n / wall:.0f} msg/s){server}, "
        f"{statements} SQL statements per message alone"
    )
    if args.no_profile:
        return
    stats = pstats.Stats(profile)
    table = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in table.values())
    print(f"{'phase':<28} {'ms/msg':>8} {'share':>6}  (cumulative, profiled)")
    for label, file_end, name in PHASES:
        cumulative = sum(
            ct
            for (path, _, func), (_, _, _, ct, _) in table.items()
            if func == name and path.endswith(file_end)
        )
        print(f"{label:<28} {cumulative / n * 1e3:>8.3f} {cumulative / total:>6.0%}")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())


def _backend_pid(connection: Any) -> int | None:
    """The PostgreSQL server process serving this connection (same machine), if any."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _process_cpu(pid: int | None) -> float:
    """User + system CPU seconds of a process (Linux /proc); 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
