"""Every HL7 field the broker reads, and every ACK error code it sends, is in the interface
specification.

The fields are found by running the mapping over full and sparse messages of every
supported kind while recording each field it touches; the error codes by reading the
hl7v2 code.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from broker.management.commands.conformance import section_text
from hl7v2 import errors, intake, mapping, msh
from hl7v2.parser import Segment, parse
from hl7v2.status import Outcome
from tests.hl7_messages import CR, adt, omi, orm, pid, segment
from tests.hl7_messages import msh as msh_segment

SPEC = "hl7-interface.md"
ROOT = Path(settings.BASE_DIR)


@pytest.fixture
def fields_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Record every field a Segment is asked for (``get`` and ``repetitions`` read ``raw``)."""
    seen: set[str] = set()
    raw = Segment.raw

    def recording_raw(self: Segment, n: int) -> str:
        seen.add(f"{self.name}-{n}")
        return raw(self, n)

    monkeypatch.setattr(Segment, "raw", recording_raw)
    yield seen


PATIENT_EXTRA = [
    segment("PV1", {2: "O", 8: "77^Ref^Rita", 15: "B6", 19: "VISIT1"}),
    segment("AL1", {1: "1", 3: "^Penicillin"}),
    segment("OBX", {1: "1", 2: "NM", 3: "^Body Weight", 5: "72", 6: "kg"}),
    segment("OBX", {1: "2", 2: "NM", 3: "^Body Height", 5: "180", 6: "cm"}),
]
RICH_PATIENT = pid(p11="Main St 1^^Town", p18="ACCOUNT1")


def rich_messages() -> list[tuple[str, str]]:
    """(structure, text): every segment present, with values where the mapping reads them."""
    orm_text = orm(
        patient=RICH_PATIENT,
        extra=PATIENT_EXTRA,
        orc={7: "^^^20261126093000^^S", 18: "CT1~CT2"},
        obr={
            12: "ISO^Isolation",
            13: "Allergic to contrast",
            16: "123^Jones^Ann",
            27: "^^^20261126093000",
            30: "WALK",
            31: "^Headache",
            34: "456&Tech&Tom",
            44: "CTH^CT head^LOCAL",
        },
        after_obr=[segment("NTE", {1: "1", 3: "Bring prior films"})],
    )
    omi_text = omi(
        patient=RICH_PATIENT,
        ipcs=[
            {
                1: "ACC9",
                2: "RP1",
                3: "1.2.826.0.1.99.21",
                4: "SPS1",
                5: "MR",
                6: "P1^Brain^LOC",
                7: "MR STATION",
                8: "ROOM 1",
                9: "MR1",
            }
        ],
    )
    return [(mapping.ORM, orm_text), (mapping.OMI, omi_text)]


def sparse_messages() -> list[tuple[str, str]]:
    """Only the keys: every "else" alternative of the mapping gets read."""
    orm_text = orm(orc={7: ""}, obr={4: ""}, zds=False)
    lines = [
        msh_segment("OMI^O23^OMI_O23", "MSG9", "2.5.1"),
        pid(),
        segment("PV1", {2: "O"}),
        segment("ORC", {1: "NW", 2: "PL1", 5: "SC"}),
        segment("TQ1", {1: "1"}),
        segment("OBR", {1: "1"}),
        segment("IPC", {1: "ACC8", 2: "RP1", 3: "1.2.3.4", 4: "SPS1", 5: "CT"}),
    ]
    status_change = orm(orc={1: "CA", 5: "CA"}, obr={18: ""})
    return [
        (mapping.ORM, orm_text),
        (mapping.OMI, CR.join(lines) + CR),
        (mapping.ORM, status_change),
    ]


def adt_messages() -> list[tuple[str, str]]:
    return [
        ("A08", adt("A08", patient=RICH_PATIENT, extra=PATIENT_EXTRA)),
        ("A40", adt("A40", mrg="OLD1^^^HOSP")),
        ("A47", adt("A47", mrg="OLD2^^^HOSP")),
    ]


def documented(field: str, text: str) -> bool:
    return re.search(rf"(?<![A-Z0-9]){re.escape(field)}(?![0-9])", text) is not None


def test_every_field_the_mapping_reads_is_in_the_specification(fields_read: set[str]) -> None:
    config = mapping.MappingConfig()
    for structure, text in rich_messages() + sparse_messages():
        mapping.order_message(parse(text), structure, config)
    for event, text in adt_messages():
        mapping.adt_message(parse(text), event)
    spec = (ROOT / "docs" / "conformance" / SPEC).read_text(encoding="utf-8")
    # The messages above must exercise the mapping, or the test proves nothing.
    assert {"PID-3", "ORC-1", "OBR-44", "IPC-9", "MRG-1", "OBX-5", "PID-18"} <= fields_read
    missing = sorted(f for f in fields_read if not documented(f, spec))
    assert not missing, f"fields read but not in {SPEC}: {missing}"


def test_every_field_of_a_mapping_row_is_in_the_field_table() -> None:
    table = section_text(SPEC, "field-mapping") + section_text(SPEC, "key-fields")
    for row in (*mapping.PATIENT_ROWS, *mapping.ORDER_ROWS):
        for structure in (mapping.ORM, mapping.OMI):
            source = row.source(structure)
            if source is not None:
                for label in source.label().split(" else "):
                    assert documented(label, table), (row.attribute, label)


def test_the_msh_table_names_every_field_read_header_reads() -> None:
    tree = ast.parse((ROOT / "hl7v2" / "msh.py").read_text(encoding="utf-8"))
    read_header = next(
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "read_header"
    )
    numbers = {
        node.args[0].value
        for node in ast.walk(read_header)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "msh"
        and isinstance(node.args[0], ast.Constant)
    }
    # MSH-1 (the separator) and MSH-2 (encoding characters) are read by position.
    assert numbers | {1, 2} == set(msh.FIELDS)
    section = section_text(SPEC, "msh-fields")
    for number in msh.FIELDS:
        assert documented(f"MSH-{number}", section)


def error_codes_used() -> set[str]:
    """Codes of HL7 table 0357 the hl7v2 code sends: constants of hl7v2.errors it names
    (a default argument included) and literal ``code="..."`` arguments."""
    constants = {
        name: value
        for name, value in vars(errors).items()
        if name.isupper() and isinstance(value, str) and value.isdigit()
    }
    used: set[str] = set()
    for path in sorted((ROOT / "hl7v2").rglob("*.py")):
        if "migrations" in path.parts or path.name == "errors.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in constants:
                used.add(constants[node.id])
            if (
                isinstance(node, ast.keyword)
                and node.arg == "code"
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                used.add(node.value.value)
    # MappingError's own default code.
    error_tree = ast.parse((ROOT / "hl7v2" / "errors.py").read_text(encoding="utf-8"))
    for node in ast.walk(error_tree):
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            for default in node.args.kw_defaults:
                if isinstance(default, ast.Name) and default.id in constants:
                    used.add(constants[default.id])
    return used


def test_every_ack_error_code_sent_is_declared_and_documented() -> None:
    used = error_codes_used()
    assert {"100", "101", "102", "207"} <= used
    assert used == set(errors.WHEN), "errors.WHEN must describe exactly the codes sent"
    section = section_text(SPEC, "ack-errors")
    for code in used:
        assert f"| {code} |" in section


def documented_messages() -> dict[str, set[str]]:
    """Message type -> versions, from the specification's table of supported messages."""
    out: dict[str, set[str]] = {}
    for line in section_text(SPEC, "messages").splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        out[cells[0]] = {v.strip() for v in cells[1].split(",")}
    return out


def message_of(message_type: str, version: str, control_id: str) -> bytes:
    kind, event = message_type.split("^")
    if kind == "ADT":
        text = adt(event, control_id=control_id, version=version, mrg="OLD^^^HOSP")
    elif kind == "OMI":
        text = omi(control_id=control_id, version=version, message_type="OMI^O23^OMI_O23")
    else:
        text = orm(control_id=control_id, version=version)
        text = text.replace("ORM^O01", message_type, 1)
    return text.encode("ascii")


@pytest.mark.django_db(transaction=True)
def test_the_broker_takes_exactly_the_documented_messages_and_versions() -> None:
    documented = documented_messages()
    assert {"ORM^O01", "OMI^O23", "ADT^A08"} <= set(documented)
    all_versions = {"2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7"}
    number = 0
    for message_type, versions in sorted(documented.items()):
        for version in sorted(all_versions):
            number += 1
            reply = intake.message_receive(
                message_of(message_type, version, f"C{number}"), peer="conformance"
            )
            # Supported: stored and applied or refused on its content, never AR.
            expected_rejected = version not in versions
            assert (reply.outcome == Outcome.REJECTED) == expected_rejected, (
                message_type,
                version,
                reply.outcome,
            )
    for unsupported in ("ORU^R01", "ADT^A02", "SIU^S12"):
        number += 1
        reply = intake.message_receive(message_of(unsupported, "2.5.1", f"C{number}"), peer="x")
        assert reply.outcome == Outcome.REJECTED, unsupported
        assert unsupported not in documented


def test_the_order_status_table_is_what_the_mapping_does() -> None:
    lines = section_text(SPEC, "order-status").splitlines()[2:]
    pairs = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    assert len(pairs) >= 5
    config = mapping.MappingConfig()
    for control, order_status, sps_status in pairs:
        message = parse(orm(orc={1: control, 5: order_status}))
        assert mapping.order_message(message, mapping.ORM, config).steps[0].sps_status == sps_status
    with pytest.raises(errors.MappingError) as refused:
        mapping.order_message(parse(orm(orc={1: "NW", 5: "ZZ"})), mapping.ORM, config)
    assert refused.value.code == errors.TABLE_VALUE_NOT_FOUND
    assert "| 103 |" in section_text(SPEC, "ack-errors")
