"""``manage.py import_worklist PATH...``: migrate a file-based worklist into the broker."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from worklist.importer import import_paths


class Command(BaseCommand):
    help = (
        "Import DICOM worklist files (*.wl, as kept by wlmscpfs or Orthanc), or folders "
        "of them. Importing the same file again changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH", help="a .wl file or a folder")

    def handle(self, *args: Any, paths: list[str], **options: Any) -> None:
        report = import_paths(paths)
        for path, reason in report.failed:
            self.stderr.write(f"{path}: not imported: {reason}")
        self.stdout.write(
            f"Imported {len(report.imported)} file(s), {report.steps} scheduled step(s); "
            f"{len(report.failed)} file(s) failed."
        )
        if report.failed:
            raise CommandError(f"{len(report.failed)} worklist file(s) could not be imported")
