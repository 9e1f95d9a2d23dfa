"""``manage.py dicom_server``: the DICOM listener (C-ECHO, worklist C-FIND, MPPS)."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from broker.dicom import server
from core.listeners import ensure_port_free, freeze_startup_heap, wait_for_stop_signal


class Command(BaseCommand):
    help = "Run the DICOM listener (Verification, Modality Worklist, MPPS)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=settings.BROKER_BIND)
        parser.add_argument("--port", type=int, default=settings.BROKER_DICOM_PORT)

    def handle(self, *args: Any, bind: str, port: int, **options: Any) -> None:
        ensure_port_free("BROKER_DICOM_PORT", bind, port)
        running = server.start(bind, port, block=False)
        assert running is not None
        freeze_startup_heap()
        tls = " (TLS)" if settings.DICOM_TLS_CERT else ""
        if not os.environ.get("BROKER_SUPERVISED"):  # `serve` prints its own summary
            self.stdout.write(
                f"DICOM  listening on {bind}:{port}{tls}, AE title {settings.BROKER_AE_TITLE}"
            )
            self.stdout.flush()
        try:
            wait_for_stop_signal()
        finally:
            running.shutdown()
            self.stdout.write("DICOM  stopped")
