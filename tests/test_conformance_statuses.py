"""Every DIMSE status the services can return, and every worklist key, is in the statement.

The status codes a service can return are read from its code: every ``status.NAME`` of
``core.dicom.status`` used in the app's modules. Each must be in the service's declared
``STATUSES`` table, and so in the statement's status section.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

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

# Names of core.dicom.status that the code uses without returning them as a status.
NOT_RETURNED = {
    # QueryError's class default; only its subclasses are raised (see the test below).
    "UNABLE_TO_PROCESS",
}
# Used as an Error ID (0000,0903), documented with the status it is sent with.
ERROR_IDS = {"MPPS_NO_LONGER_UPDATABLE"}


def status_names(files: list[Path]) -> set[str]:
    """Every ``status.NAME`` in files that import ``core.dicom.status`` as ``status``."""
    names: set[str] = set()
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imports_status = any(
            isinstance(node, ast.ImportFrom)
            and node.module == "core.dicom"
            and any(alias.name == "status" and alias.asname is None for alias in node.names)
            for node in ast.walk(tree)
        )
        if not imports_status:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "status"
                and node.attr.isupper()
            ):
                names.add(node.attr)
    return names


def app_files(app: str) -> list[Path]:
    return [p for p in sorted((ROOT / app).rglob("*.py")) if "migrations" not in p.parts]


def used_codes(files: list[Path]) -> set[int]:
    names = status_names(files) - NOT_RETURNED - ERROR_IDS
    return {int(getattr(status, name)) for name in names}


def documented_codes(section: str) -> set[int]:
    return {
        int(code, 16)
        for code in re.findall(r"\| (0x[0-9A-F]{4})", section_text(STATEMENT, section))
    }


def test_every_status_the_worklist_code_uses_is_declared_and_documented() -> None:
    used = used_codes(app_files("worklist"))
    declared = {r.code for r in worklist_dimse.STATUSES}
    assert used <= declared, sorted(hex(c) for c in used - declared)
    assert declared <= documented_codes("mwl-statuses")
    # The final success after the last answer is pynetdicom's, not in the code.
    assert status.SUCCESS in declared


def test_every_status_the_mpps_code_uses_is_declared_and_documented() -> None:
    used = used_codes(app_files("mpps"))
    declared = {r.code for r in mpps_dimse.STATUSES}
    assert used <= declared, sorted(hex(c) for c in used - declared)
    assert declared <= documented_codes("mpps-statuses")
    error_ids = {int(getattr(status, name)) for name in status_names(app_files("mpps")) & ERROR_IDS}
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
