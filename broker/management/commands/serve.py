"""``manage.py serve``: the whole broker on one machine, in the foreground.

Starts five processes (the same commands a scaled deployment runs on their own) and
supervises them: the HTTP server (gunicorn), the DICOM listener, the HL7 listener, a
Celery worker and Celery beat (the periodic tasks of ``CELERY_BEAT_SCHEDULE``). SIGINT / SIGTERM stop them all; if one dies, the rest are stopped too.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.listeners import ensure_port_free

STOP_TIMEOUT = 15.0
COLD_AFTER = 4.0  # seconds before STOP_TIMEOUT at which a worker still busy gets SIGQUIT
READY_TIMEOUT = 60.0


def _die_with_parent() -> None:
    """In the child: get SIGTERM if `serve` itself dies, so no listener is orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass
    os.setpgrp()


@dataclass
class Part:
    name: str
    argv: list[str]
    port: int | None
    line: str
    process: subprocess.Popen[bytes] | None = None


class Command(BaseCommand):
    help = "Run the whole broker: HTTP, DICOM, HL7 listeners, a Celery worker and beat."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-worker", action="store_true", help="do not start a Celery worker nor beat"
        )

    def handle(self, *args: Any, no_worker: bool, **options: Any) -> None:
        bind = settings.BROKER_BIND
        host = f"[{bind}]" if ":" in bind else bind
        for variable in ("BROKER_HTTP_PORT", "BROKER_DICOM_PORT", "BROKER_HL7_PORT"):
            ensure_port_free(variable, bind, getattr(settings, variable))

        manage = str(Path(settings.BASE_DIR) / "manage.py")
        py = sys.executable
        parts = [
            Part(
                "http",
                [
                    py,
                    "-m",
                    "gunicorn",
                    "broker.wsgi:application",
                    "--bind",
                    f"{host}:{settings.BROKER_HTTP_PORT}",
                    "--workers",
                    str(settings.BROKER_HTTP_WORKERS),
                    *(
                        [
                            "--access-logfile",
                            "-",
                            "--access-logformat",
                            settings.HTTP_ACCESS_LOG_FORMAT,
                            "--logger-class",
                            "broker.httplog.AccessLogger",
                        ]
                        if settings.HTTP_ACCESS_LOG
                        else []
                    ),
                    "--log-level",
                    "warning",
                    # Within STOP_TIMEOUT: requests in progress get this long to finish.
                    "--graceful-timeout",
                    str(int(STOP_TIMEOUT / 2)),
                ],
                settings.BROKER_HTTP_PORT,
                f"HTTP   http://{host}:{settings.BROKER_HTTP_PORT}/ (admin /admin/, API /api/v1/, health /health/)",
            ),
            Part(
                "dicom",
                [py, manage, "dicom_server"],
                settings.BROKER_DICOM_PORT,
                f"DICOM  {host}:{settings.BROKER_DICOM_PORT} AE title {settings.BROKER_AE_TITLE}",
            ),
            Part(
                "hl7",
                [py, manage, "hl7_server"],
                settings.BROKER_HL7_PORT,
                f"HL7    {host}:{settings.BROKER_HL7_PORT} (MLLP)",
            ),
        ]
        if not no_worker:
            broker_url = settings.CELERY_BROKER_URL.split("@")[-1]
            parts.append(
                Part(
                    "worker",
                    [
                        py,
                        "-m",
                        "celery",
                        "-A",
                        "broker",
                        "--quiet",
                        "worker",
                        "--loglevel",
                        "INFO",
                        "--concurrency",
                        "2",
                        "--without-gossip",
                        "--without-mingle",
                    ],
                    None,
                    f"WORKER celery ({broker_url})",
                )
            )
            parts.append(
                Part(
                    "beat",
                    [
                        py,
                        "-m",
                        "celery",
                        "-A",
                        "broker",
                        "--quiet",
                        "beat",
                        "--loglevel",
                        "WARNING",
                        "--schedule",
                        settings.CELERY_BEAT_SCHEDULE_FILENAME,
                    ],
                    None,
                    f"BEAT   celery beat ({len(settings.CELERY_BEAT_SCHEDULE)} periodic task(s))",
                )
            )

        stop_requested: list[int] = []

        def on_signal(signum: int, _frame: object) -> None:
            stop_requested.append(signum)

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

        _empty_metrics_dir()
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env["BROKER_SUPERVISED"] = "1"
        for part in parts:
            part.process = subprocess.Popen(part.argv, env=env, preexec_fn=_die_with_parent)

        exit_code = 0
        try:
            pending = [p for p in parts if p.port is not None]
            deadline = time.monotonic() + READY_TIMEOUT
            while pending and not stop_requested:
                for part in list(pending):
                    if _accepts(bind, part.port):  # type: ignore[arg-type]
                        self.stdout.write(part.line)
                        pending.remove(part)
                self._check_children(parts)
                if time.monotonic() > deadline:
                    names = ", ".join(p.name for p in pending)
                    raise CommandError(
                        f"listeners did not start within {READY_TIMEOUT:.0f} s: {names}"
                    )
                time.sleep(0.1)
            for part in parts:
                if part.port is None:
                    self.stdout.write(part.line)
            if not stop_requested:
                self.stdout.write("Broker running; press Ctrl-C to stop.")
            self.stdout.flush()
            while not stop_requested:
                self._check_children(parts)
                time.sleep(0.2)
        except CommandError as exc:
            self.stderr.write(f"error: {exc}")
            exit_code = 1
        finally:
            self._stop(parts)
        if exit_code:
            raise SystemExit(exit_code)
        self.stdout.write("Broker stopped.")

    def _check_children(self, parts: list[Part]) -> None:
        for part in parts:
            assert part.process is not None
            code = part.process.poll()
            if code is not None:
                raise CommandError(f"the {part.name} process exited with code {code}")

    def _stop(self, parts: list[Part]) -> None:
        """SIGTERM to every part; each stops within STOP_TIMEOUT on its own.

        The listeners close idle connections and finish the message or query in hand;
        gunicorn gets half of STOP_TIMEOUT for requests in progress. A Celery worker's
        warm shutdown waits for its tasks: if one is still running with COLD_AFTER left,
        SIGQUIT makes it stop at once (the task, acknowledged late, is run again by the
        next worker). SIGKILL only if a part still has not stopped, and it is reported.
        """
        running = [p for p in parts if p.process and p.process.poll() is None]
        for part in running:
            assert part.process is not None
            part.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        cold = deadline - COLD_AFTER
        while time.monotonic() < deadline and any(
            p.process and p.process.poll() is None for p in running
        ):
            if time.monotonic() >= cold:
                for part in running:
                    if part.name == "worker" and part.process and part.process.poll() is None:
                        part.process.send_signal(signal.SIGQUIT)
                cold = deadline + 1
            time.sleep(0.05)
        for part in running:
            assert part.process is not None
            if part.process.poll() is None:
                self.stderr.write(
                    f"error: the {part.name} process did not stop within {STOP_TIMEOUT:.0f} s; killed"
                )
                part.process.kill()
                part.process.wait()


def _empty_metrics_dir() -> None:
    """prometheus-client's multiprocess files of an earlier run (see broker.metrics)."""
    folder = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR", settings.METRICS_DIR))
    for path in folder.glob("*.db"):
        path.unlink(missing_ok=True)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            # With nothing listening yet, the kernel may pick ``port`` itself as the
            # ephemeral source port, and TCP connects the socket to itself.
            return bool(sock.getsockname() != sock.getpeername())
    except OSError:
        return False
