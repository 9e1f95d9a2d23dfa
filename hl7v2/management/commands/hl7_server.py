"""``manage.py hl7_server``: the HL7 v2 MLLP listener.

``--processes N`` runs N listener processes on the same port (SO_REUSEPORT; the kernel
spreads connections over them), so that message processing, which is Python work
bound to one core per process, can use several cores. Messages of one connection stay
in one process and keep their order. Meant for PostgreSQL: SQLite takes one writer at a
time whatever the number of processes. The default (``HL7_PROCESSES``, 0) is one process
per CPU on PostgreSQL, and one on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from core.listeners import ensure_port_free
from hl7v2.server import ListenerOptions, serve

STOP_TIMEOUT = 15.0
MAX_DEFAULT_PROCESSES = 8


def _die_with_parent() -> None:
    """In a child: get SIGTERM when the first process dies, so none is orphaned."""
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def default_processes() -> int:
    """One listener process per CPU on PostgreSQL (more writers than one); one on SQLite."""
    if connection.vendor == "sqlite":
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_PROCESSES))


class Command(BaseCommand):
    help = "Run the HL7 v2 MLLP listener (orders and patient updates from the RIS)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=settings.BROKER_BIND)
        parser.add_argument("--port", type=int, default=settings.BROKER_HL7_PORT)
        parser.add_argument(
            "--processes",
            type=int,
            default=settings.HL7_PROCESSES,
            help="listener processes sharing the port (0: one per CPU on PostgreSQL, "
            "one on SQLite)",
        )
        parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)

    def handle(
        self, *args: Any, bind: str, port: int, processes: int, child: bool, **options: Any
    ) -> None:
        if not child:
            ensure_port_free("BROKER_HL7_PORT", bind, port)
        if processes <= 0:
            processes = default_processes()
        tls = " (TLS)" if settings.HL7_TLS_CERT else ""
        shared = processes > 1 or child
        children: list[subprocess.Popen[bytes]] = []
        for _ in range(processes - 1 if not child else 0):
            argv = [sys.executable, sys.argv[0], "hl7_server", "--bind", bind]
            argv += ["--port", str(port), "--child"]
            children.append(subprocess.Popen(argv, preexec_fn=_die_with_parent))

        def ready() -> None:
            if child or os.environ.get("BROKER_SUPERVISED"):  # `serve` prints its own summary
                return
            count = f", {processes} processes" if processes > 1 else ""
            self.stdout.write(f"HL7    listening on {bind}:{port}{tls} (MLLP{count})")
            self.stdout.flush()

        async def main() -> None:
            loop = asyncio.get_running_loop()
            options = replace(ListenerOptions.from_settings(), reuse_port=shared)
            task = asyncio.ensure_future(serve(bind, port, ready=ready, options=options))
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, task.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await task

        try:
            asyncio.run(main())
        finally:
            for process in children:
                process.send_signal(signal.SIGTERM)
            for process in children:
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
        if not child:
            self.stdout.write("HL7    stopped")
