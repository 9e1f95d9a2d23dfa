"""``manage.py import_worklist PATH...``: migrate a file-based worklist into the broker."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from worklist.importer import BATCH_FILES, import_paths


class Command(BaseCommand):
    help = (
        "Import DICOM worklist files (*.wl, as kept by wlmscpfs or Orthanc), or folders "
        "of them. Importing the same file again changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH", help="a .wl file or a folder")
        parser.add_argument(
            "--batch",
            type=int,
            default=BATCH_FILES,
            help=f"files per transaction (default {BATCH_FILES})",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress line")

    def handle(
        self, *args: Any, paths: list[str], batch: int, no_progress: bool, **options: Any
    ) -> None:
        started = time.monotonic()
        progress = None if no_progress else self._progress(started)
        report = import_paths(paths, batch=batch, progress=progress)
        if progress is not None:
            self.stderr.write("")
        for path, reason in report.failed:
            self.stderr.write(f"{path}: not imported: {reason}")
        self.stdout.write(
            f"Imported {len(report.imported)} file(s), {report.steps} scheduled step(s); "
            f"{len(report.failed)} file(s) failed."
        )
        if report.failed:
            raise CommandError(f"{len(report.failed)} worklist file(s) could not be imported")

    def _progress(self, started: float) -> Any:
        """A progress line on stderr: a bar rewritten in place on a terminal, a line per
        tenth of the files otherwise (logs, CI)."""
        terminal = self.stderr.isatty()
        shown = [0]

        def show(done: int, total: int) -> None:
            elapsed = max(time.monotonic() - started, 1e-9)
            rate = done / elapsed
            left = (total - done) / rate if rate else 0.0
            width = 30
            filled = width * done // total if total else width
            line = (
                f"[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} files, "
                f"{rate:,.0f}/s, {left:,.0f} s left"
            )
            if terminal:
                self.stderr.write("\r" + line, ending="")
                self.stderr.flush()
            elif done == total or done * 10 // max(total, 1) > shown[0]:
                shown[0] = done * 10 // max(total, 1)
                self.stderr.write(line)

        return show
