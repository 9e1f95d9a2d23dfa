"""Every DIMSE status the services can return, and every worklist key, is in the statement.

The status codes a service can return are read from its app's code: every ``status.NAME``
where ``status`` is a status module (``core.dicom.status``, or the app's own) and NAME a
whole number. Each must be in the service's declared ``STATUSES`` table, and so in the
statement's status section of its operations.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest
from django.conf import settings

from broker.dicom import server
from broker.management.commands import conformance
from broker.management.commands.conformance import section_text
from core.dicom import status
from mpps import dimse as mpps_dimse
from worklist import attributes
from worklist import dimse as worklist_dimse

STATEMENT = "dicom-conformance-statement.md"
ROOT = Path(settings.BASE_DIR)

# Status names the code uses without returning them as a status.
NOT_RETURNED = {
    # QueryError's class default; only its subclasses are raised (see the test below).
    ("core.dicom.status", "UNABLE_TO_PROCESS"),
}
# Used as an Error ID (0000,0903), documented with the status it is sent with.
ERROR_IDS = {("core.dicom.status", "MPPS_NO_LONGER_UPDATABLE")}


# Modules whose ``status`` may hold DIMSE status codes: the shared one, or an app's own
# (``from routing import status``); never another library's (DRF's HTTP statuses).
def dimse_status_module(module: str, files: list[Path]) -> bool:
    apps = {path.relative_to(ROOT).parts[0] for path in files}
    return module == "core.dicom" or module in apps


def status_uses(files: list[Path]) -> set[tuple[str, str]]:
    """(status module, NAME) of every ``status.NAME`` in files that import a DIMSE status
    module as ``status``."""
    uses: set[tuple[str, str]] = set()
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = [
            f"{node.module}.status"
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.module
            and dimse_status_module(node.module, files)
            and any(alias.name == "status" and alias.asname is None for alias in node.names)
        ]
        if not modules:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "status"
                and node.attr.isupper()
            ):
                uses.add((modules[0], node.attr))
    return uses


def app_files(app: str) -> list[Path]:
    return [p for p in sorted((ROOT / app).rglob("*.py")) if "migrations" not in p.parts]


def codes(uses: set[tuple[str, str]]) -> set[int]:
    values = (getattr(importlib.import_module(module), name) for module, name in uses)
    return {int(v) for v in values if isinstance(v, int) and not isinstance(v, bool)}


def used_codes(files: list[Path]) -> set[int]:
    return codes(status_uses(files) - NOT_RETURNED - ERROR_IDS)


def documented_codes(section: str) -> set[int]:
    return {
        int(code, 16)
        for code in re.findall(r"\| (0x[0-9A-F]{4})", section_text(STATEMENT, section))
    }


@pytest.mark.parametrize("module", server.service_modules(), ids=lambda m: m.__name__)
def test_every_status_a_service_uses_is_declared_and_documented(module: ModuleType) -> None:
    declared_table = getattr(module, "STATUSES", ())
    used = used_codes(app_files(module.__name__.split(".")[0]))
    declared = {r.code for r in declared_table}
    assert used <= declared, f"{module.__name__}.STATUSES lacks " + ", ".join(
        f"0x{c:04X}" for c in sorted(used - declared)
    )
    sections = {conformance.STATUS_SECTIONS[r.operation] for r in declared_table}
    documented = set().union(*(documented_codes(s) for s in sections))
    assert declared <= documented


def test_the_worklist_and_mpps_tables_are_found_and_complete() -> None:
    # The scan must find what the handlers return, or the test above proves nothing.
    assert {0xFF00, 0xFF01, 0xFE00, 0xA700, 0xA900, 0xC001} <= used_codes(app_files("worklist"))
    assert {0x0110, 0x0111, 0x0112, 0x0120, 0x0121} <= used_codes(app_files("mpps"))
    # The final success after the last answer is pynetdicom's, not in the code.
    assert status.SUCCESS in {r.code for r in worklist_dimse.STATUSES}
    mpps_uses = status_uses(app_files("mpps"))
    error_ids = codes(mpps_uses & ERROR_IDS)
    assert error_ids == {status.MPPS_NO_LONGER_UPDATABLE}
    assert error_ids <= {r.error_id for r in mpps_dimse.STATUSES}
    for error_id in error_ids:
        assert f"Error ID 0x{error_id:04X}" in section_text(STATEMENT, "mpps-statuses")


def test_every_status_of_the_listener_itself_is_declared_and_documented() -> None:
    used = used_codes([ROOT / "broker" / "dicom" / "server.py"])
    declared = {r.code for r in server.STATUSES}
    assert used <= declared
    assert declared <= documented_codes("echo-statuses")


def test_every_service_module_declares_its_statuses_and_each_operation_is_documented() -> None:
    for module in server.service_modules():
        assert hasattr(module, "STATUSES"), (
            f"{module.__name__} has no STATUSES table: declare every status its handlers "
            "can return (see worklist/dimse.py), and a section for them in the statement "
            "(broker/management/commands/conformance.py STATUS_SECTIONS)"
        )
    for returned in conformance.statuses():
        assert returned.operation in conformance.STATUS_SECTIONS, returned


def test_each_service_declares_only_its_own_operations() -> None:
    assert {r.operation for r in server.STATUSES} == {"C-ECHO"}
    assert {r.operation for r in worklist_dimse.STATUSES} == {"C-FIND"}
    assert {r.operation for r in mpps_dimse.STATUSES} == {"N-CREATE", "N-SET"}


def test_the_unreturned_status_names_are_really_not_returned() -> None:
    # QueryError itself is never raised: only InvalidQueryValue and IdentifierDoesNotMatch.
    for path in app_files("worklist"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                assert not (isinstance(func, ast.Name) and func.id == "QueryError"), path


def tags(attrs: tuple[attributes.Attr, ...]) -> set[int]:
    out: set[int] = set()
    for attr in attrs:
        out.add(attr.tag)
        out |= tags(attr.children)
    return out


def test_every_worklist_key_is_documented_with_its_matching() -> None:
    section = section_text(STATEMENT, "mwl-keys")
    documented = {
        int(group + element, 16)
        for group, element in re.findall(r"`\(([0-9A-F]{4}),([0-9A-F]{4})\)`", section)
    }
    assert tags(attributes.TOP_ATTRIBUTES) | {attributes.SPECIFIC_CHARACTER_SET} == documented
    for attr in attributes.TOP_ATTRIBUTES:
        tag = f"`({attr.tag >> 16:04X},{attr.tag & 0xFFFF:04X})`"
        cells = next(line for line in section.splitlines() if tag in line).split(" | ")
        # Attribute | Tag | VR | Matching | Returned
        assert cells[2] == attr.vr
        assert cells[3].strip() and cells[4].strip(" |")
