"""``manage.py hl7_server``: the HL7 v2 MLLP listener."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from broker.listeners import ensure_port_free
from hl7v2.server import serve


class Command(BaseCommand):
    help = "Run the HL7 v2 MLLP listener (orders and patient updates from the RIS)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=settings.BROKER_BIND)
        parser.add_argument("--port", type=int, default=settings.BROKER_HL7_PORT)

    def handle(self, *args: Any, bind: str, port: int, **options: Any) -> None:
        ensure_port_free("BROKER_HL7_PORT", bind, port)
        tls = " (TLS)" if settings.HL7_TLS_CERT else ""

        def ready() -> None:
            if os.environ.get("BROKER_SUPERVISED"):  # `serve` prints its own summary
                return
            self.stdout.write(f"HL7    listening on {bind}:{port}{tls} (MLLP)")
            self.stdout.flush()

        async def main() -> None:
            loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(serve(bind, port, ready=ready))
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, task.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await task

        asyncio.run(main())
        self.stdout.write("HL7    stopped")
