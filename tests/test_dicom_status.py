"""The named DIMSE status codes hold the standard's values, written out here from the standard.

The SCP tests compare responses with ``core.dicom.status`` names; this file pins every
name to the literal of its table, so a changed value fails here by name.
"""

from __future__ import annotations

import pytest

from core.dicom import status

# (name, value, where the standard gives it and what it calls it)
STANDARD: list[tuple[str, int, str]] = [
    ("SUCCESS", 0x0000, "PS3.7 C.1.1: Success"),
    ("CANCEL", 0xFE00, "PS3.4 Table K.4-1 (C-FIND): Matching terminated due to Cancel request"),
    ("PENDING", 0xFF00, "PS3.4 Table K.4-1: Pending, matches are continuing"),
    (
        "PENDING_WARNING_OPTIONAL_KEYS",
        0xFF01,
        "PS3.4 Table K.4-1: Pending, one or more Optional Keys were not supported",
    ),
    ("OUT_OF_RESOURCES", 0xA700, "PS3.4 Table K.4-1: Refused, Out of Resources"),
    (
        "IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS",
        0xA900,
        "PS3.4 Table K.4-1: Failed, Identifier does not match SOP Class",
    ),
    ("UNABLE_TO_PROCESS", 0xC000, "PS3.4 Table K.4-1: Failed, Unable to process (Cxxx)"),
    ("PROCESSING_FAILURE", 0x0110, "PS3.7 C.4.3 (N-CREATE/N-SET): Processing failure"),
    ("NO_SUCH_ATTRIBUTE", 0x0105, "PS3.7 C.4: No such attribute"),
    ("INVALID_ATTRIBUTE_VALUE", 0x0106, "PS3.7 C.4: Invalid attribute value"),
    ("DUPLICATE_SOP_INSTANCE", 0x0111, "PS3.7 C.4: Duplicate SOP Instance"),
    ("NO_SUCH_SOP_INSTANCE", 0x0112, "PS3.7 C.4: No such object instance"),
    ("INVALID_OBJECT_INSTANCE", 0x0117, "PS3.7 C.4: Invalid object instance"),
    ("NO_SUCH_SOP_CLASS", 0x0118, "PS3.7 C.4: No such SOP class"),
    ("MISSING_ATTRIBUTE", 0x0120, "PS3.7 C.4: Missing attribute"),
    ("MISSING_ATTRIBUTE_VALUE", 0x0121, "PS3.7 C.4: Missing attribute value"),
    (
        "MPPS_NO_LONGER_UPDATABLE",
        0xA710,
        "PS3.4 F.7.2.2: Error ID, Performed Procedure Step Object may no longer be updated",
    ),
    ("TOO_MANY_MATCHES", 0xA700, "PS3.4 Table K.4-1: Refused, Out of Resources"),
]


@pytest.mark.parametrize(("name", "value", "source"), STANDARD, ids=[s[0] for s in STANDARD])
def test_each_named_status_has_the_standards_value(name: str, value: int, source: str) -> None:
    assert getattr(status, name) == value, source


@pytest.mark.parametrize(
    "name",
    [
        "UNABLE_TO_PROCESS_INVALID_QUERY_VALUE",
        "UNABLE_TO_PROCESS_UNDECODABLE_IDENTIFIER",
        "UNABLE_TO_PROCESS_DATABASE_ERROR",
        "UNABLE_TO_PROCESS_INTERNAL_ERROR",
    ],
)
def test_the_worklists_own_causes_are_unable_to_process_codes(name: str) -> None:
    # PS3.4 Table K.4-1: Failed, Unable to process is any of 0xC000-0xCFFF.
    assert 0xC000 <= getattr(status, name) <= 0xCFFF


def test_the_worklists_own_causes_are_distinct() -> None:
    # This project's choice (docs/worklist.md): one code per cause.
    assert [
        status.UNABLE_TO_PROCESS_INVALID_QUERY_VALUE,
        status.UNABLE_TO_PROCESS_UNDECODABLE_IDENTIFIER,
        status.UNABLE_TO_PROCESS_DATABASE_ERROR,
        status.UNABLE_TO_PROCESS_INTERNAL_ERROR,
    ] == [0xC001, 0xC002, 0xC003, 0xC004]


def test_every_name_in_the_module_is_checked_here() -> None:
    names = {n for n in vars(status) if n.isupper()}
    checked = {s[0] for s in STANDARD} | {n for n in names if n.startswith("UNABLE_TO_PROCESS_")}
    assert names == checked
