"""The HL7 -> worklist mapping: every row of the table, every status pair, the charsets.

Pure: messages are split and mapped without a database.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hl7apy.parser import parse_message

from hl7v2 import mapping
from hl7v2.charsets import decode
from hl7v2.errors import MappingError
from hl7v2.parser import NULL, parse, unescape
from tests.hl7_messages import omi, orm, pid, segment

UTC = dt.UTC


def map_orm(text: str, config: mapping.MappingConfig | None = None) -> mapping.OrderMessage:
    return mapping.order_message(parse(text), mapping.ORM, config or mapping.MappingConfig())


def map_omi(text: str) -> mapping.OrderMessage:
    return mapping.order_message(parse(text), mapping.OMI, mapping.MappingConfig())


def value(result: mapping.OrderMessage, level: str, name: str, step: int = 0) -> Any:
    s = result.steps[step]
    if level == mapping.PATIENT:
        assert result.patient is not None
        return result.patient.fields.get(name, mapping.ABSENT)
    if level == mapping.KEY:
        return getattr(s, name)
    maps = {
        mapping.ORDER: s.order_fields,
        mapping.PROCEDURE: s.procedure_fields,
        mapping.STEP: s.step_fields,
    }
    return maps[level].get(name, mapping.ABSENT)


OBX_WEIGHT = "OBX|1|NM|29463-7^Body weight^LN||72.5|kg"
OBX_HEIGHT = "OBX|2|NM|8302-2^Body height^LN||180|cm"

# (attribute of the table row, message, level, field, expected)
ORM_CASES: list[tuple[str, str, str, str, Any]] = [
    (
        "Patient's Name (0010,0010)",
        orm(patient=pid(name="Doe^John^Q^Jr^Dr")),
        "patient",
        "name",
        "Doe^John^Q^Dr^Jr",
    ),
    ("Patient's Birth Date (0010,0030)", orm(), "patient", "birth_date", dt.date(1970, 1, 2)),
    ("Patient's Sex (0010,0040)", orm(patient=pid(p8="A")), "patient", "sex", "O"),
    (
        "Patient's Address (0010,1040)",
        orm(patient=pid(p11="Main St 1^^Town^^12345^DE")),
        "patient",
        "address",
        "Main St 1^^Town^^12345^DE",
    ),
    (
        "Patient's Weight (0010,1030)",
        orm(extra=[OBX_WEIGHT]),
        "patient",
        "weight_kg",
        Decimal("72.50"),
    ),
    (
        "Patient's Size (0010,1020)",
        orm(after_obr=[OBX_HEIGHT]),
        "patient",
        "size_m",
        Decimal("1.80"),
    ),
    (
        "Pregnancy Status (0010,21C0)",
        orm(extra=[segment("PV1", {2: "O", 15: "A1~B6"})]),
        "patient",
        "pregnancy_status",
        3,
    ),
    (
        "Allergies (0010,2110)",
        orm(extra=["AL1|1|DA|^Penicillin", "AL1|2|MA|LTX^Latex"]),
        "patient",
        "allergies",
        "Penicillin\\Latex",
    ),
    (
        "Medical Alerts (0010,2000)",
        orm(obr={13: "Pacemaker"}),
        "patient",
        "medical_alerts",
        "Pacemaker",
    ),
    (
        "Patient State (0038,0500)",
        orm(obr={12: "ISO^Isolation"}),
        "order",
        "patient_state",
        "Isolation",
    ),
    (
        "Referring Physician's Name (0008,0090)",
        orm(extra=[segment("PV1", {2: "O", 8: "123^Smith^John^^^Dr"})]),
        "order",
        "referring_physician",
        "Smith^John^^Dr",
    ),
    (
        "Admission ID (0038,0010)",
        orm(extra=[segment("PV1", {2: "O", 19: "V123"})]),
        "order",
        "admission_id",
        "V123",
    ),
    (
        "Placer Order Number (0040,2016)",
        orm(orc={2: "PLACER9^RIS"}),
        "order",
        "placer_order_number",
        "PLACER9",
    ),
    (
        "Filler Order Number (0040,2017)",
        orm(orc={3: "FILLER9^RIS"}),
        "order",
        "filler_order_number",
        "FILLER9",
    ),
    ("Accession Number (0008,0050)", orm(obr={18: "A123"}), "key", "accession_number", "A123"),
    (
        "Requested Procedure ID (0040,1001)",
        orm(obr={19: "RPX"}),
        "key",
        "requested_procedure_id",
        "RPX",
    ),
    (
        "Study Instance UID (0020,000D)",
        orm(zds=False, after_obr=["ZDS|1.2.3.4^100^Application^DICOM"]),
        "key",
        "study_instance_uid",
        "1.2.3.4",
    ),
    (
        "Requested Procedure Description (0032,1060)",
        orm(obr={44: "CTH^CT head^LOC"}),
        "procedure",
        "description",
        "CT head",
    ),
    (
        "Requested Procedure Code Value",
        orm(obr={44: "CTH^CT head^LOC"}),
        "procedure",
        "code_value",
        "CTH",
    ),
    (
        "Requested Procedure Code Meaning",
        orm(obr={44: "CTH^CT head^LOC"}),
        "procedure",
        "code_meaning",
        "CT head",
    ),
    (
        "Requested Procedure Coding Scheme",
        orm(obr={44: "CTH^CT head^LOC"}),
        "procedure",
        "code_scheme",
        "LOC",
    ),
    (
        "Requested Procedure Priority (0040,1003)",
        orm(orc={7: "^^^20261126093000^^S"}),
        "procedure",
        "priority",
        "STAT",
    ),
    (
        "Requested Procedure Priority (order)",
        orm(orc={7: "^^^20261126093000^^A"}),
        "order",
        "priority",
        "HIGH",
    ),
    (
        "Reason for the Requested Procedure (0040,1002)",
        orm(obr={31: "^Headache"}),
        "order",
        "reason",
        "Headache",
    ),
    (
        "Patient Transport Arrangements (0040,1004)",
        orm(obr={30: "WHLC"}),
        "order",
        "transport_arrangements",
        "WHLC",
    ),
    (
        "Requesting Physician (0032,1032)",
        orm(obr={16: "55^Jones^Ann"}),
        "order",
        "requesting_physician",
        "Jones^Ann",
    ),
    (
        "Requested Procedure Comments (0040,1400)",
        orm(after_obr=["NTE|1||Fasting~since 8", "NTE|2||Bring films"]),
        "procedure",
        "comments",
        "Fasting\nsince 8\nBring films",
    ),
    ("Scheduled Procedure Step ID (0040,0009)", orm(obr={20: "S77"}), "key", "sps_id", "S77"),
    ("Modality (0008,0060)", orm(obr={24: "MR"}), "step", "modality", "MR"),
    (
        "Scheduled Station AE Title (0040,0001)",
        orm(orc={18: "CT01~CT02"}),
        "key",
        "station_ae_titles",
        ["CT01", "CT02"],
    ),
    (
        "SPS Start Date/Time (0040,0002/0003)",
        orm(orc={7: "^^^202611260930-0500^^R"}),
        "step",
        "start",
        dt.datetime(2026, 11, 26, 14, 30, tzinfo=UTC),
    ),
    (
        "SPS Description (0040,0007)",
        orm(obr={4: "^^^P9^Knee left^LOC"}),
        "step",
        "description",
        "Knee left",
    ),
    (
        "Scheduled Protocol Code Sequence (0040,0008)",
        orm(obr={4: "^^^P9^Knee left^LOC"}),
        "step",
        "protocol_codes",
        [{"value": "P9", "scheme": "LOC", "meaning": "Knee left"}],
    ),
    (
        "Scheduled Performing Physician's Name (0040,0006)",
        orm(obr={34: "77&Tech&Tom"}),
        "step",
        "performing_physician",
        "Tech^Tom",
    ),
]

_IPC = {
    1: "ACC5",
    2: "RP5",
    3: "1.2.3.5",
    4: "SPS5",
    5: "US",
    6: "P5^Abdomen^LOC",
    7: "USROOM1",
    8: "RAD2",
    9: "US01~US02",
}
OMI_CASES: list[tuple[str, str, str, str, Any]] = [
    ("Accession Number (0008,0050)", omi(ipcs=[_IPC]), "key", "accession_number", "ACC5"),
    (
        "Requested Procedure ID (0040,1001)",
        omi(ipcs=[_IPC]),
        "key",
        "requested_procedure_id",
        "RP5",
    ),
    ("Study Instance UID (0020,000D)", omi(ipcs=[_IPC]), "key", "study_instance_uid", "1.2.3.5"),
    ("Scheduled Procedure Step ID (0040,0009)", omi(ipcs=[_IPC]), "key", "sps_id", "SPS5"),
    ("Modality (0008,0060)", omi(ipcs=[_IPC]), "step", "modality", "US"),
    ("SPS Description (0040,0007)", omi(ipcs=[_IPC]), "step", "description", "Abdomen"),
    (
        "Scheduled Protocol Code Sequence (0040,0008)",
        omi(ipcs=[_IPC]),
        "step",
        "protocol_codes",
        [{"value": "P5", "scheme": "LOC", "meaning": "Abdomen"}],
    ),
    ("Scheduled Station Name (0040,0010)", omi(ipcs=[_IPC]), "step", "station_name", "USROOM1"),
    ("Scheduled Procedure Step Location (0040,0011)", omi(ipcs=[_IPC]), "step", "location", "RAD2"),
    (
        "Scheduled Station AE Title (0040,0001)",
        omi(ipcs=[_IPC]),
        "key",
        "station_ae_titles",
        ["US01", "US02"],
    ),
    (
        "SPS Start Date/Time (0040,0002/0003)",
        omi(ipcs=[_IPC]),
        "step",
        "start",
        dt.datetime(2026, 11, 26, 8, 0, tzinfo=UTC),
    ),
    ("Requested Procedure Priority (0040,1003)", omi(ipcs=[_IPC]), "procedure", "priority", "STAT"),
    (
        "Requesting Physician (0032,1032)",
        omi(ipcs=[_IPC]),
        "order",
        "requesting_physician",
        "Jones^Ann",
    ),
]


@pytest.mark.parametrize(
    ("attribute", "text", "level", "name", "expected"), ORM_CASES, ids=[c[0] for c in ORM_CASES]
)
def test_it_maps_each_row_of_an_orm(
    attribute: str, text: str, level: str, name: str, expected: Any
) -> None:
    assert value(map_orm(text), level, name) == expected


@pytest.mark.parametrize(
    ("attribute", "text", "level", "name", "expected"), OMI_CASES, ids=[c[0] for c in OMI_CASES]
)
def test_it_maps_each_ipc_row_of_an_omi(
    attribute: str, text: str, level: str, name: str, expected: Any
) -> None:
    assert value(map_omi(text), level, name) == expected


def test_every_row_of_the_table_has_a_case() -> None:
    covered = {c[0] for c in ORM_CASES} | {c[0] for c in OMI_CASES}
    rows = {r.attribute for r in (*mapping.PATIENT_ROWS, *mapping.ORDER_ROWS)}
    assert rows - covered == set()


def test_it_reads_the_study_uid_from_zds() -> None:
    result = map_orm(orm(obr={18: "Z1"}))
    assert result.steps[0].study_instance_uid.startswith("1.2.826.0.1.99.")


def test_it_takes_the_admission_id_from_pid_18_without_pv1_19() -> None:
    result = map_orm(orm(patient=pid(p18="ACCT9")))
    assert value(result, "order", "admission_id") == "ACCT9"


def test_it_falls_back_to_obr_4_for_the_procedure_description() -> None:
    result = map_orm(orm(obr={4: "CTH^CT head"}))
    assert value(result, "procedure", "description") == "CT head"


def test_it_keeps_other_patient_ids() -> None:
    result = map_orm(orm(patient=pid(patient_id="P1^^^HOSP~X9^^^OTHER")))
    assert result.patient is not None
    assert (result.patient.patient_id, result.patient.issuer) == ("P1", "HOSP")
    assert result.patient.fields["other_ids"] == [{"patient_id": "X9", "issuer": "OTHER"}]


def test_it_converts_pounds_and_inches() -> None:
    result = map_orm(
        orm(extra=["OBX|1|NM|^Body Weight||150|[lb_av]", "OBX|2|NM|^Body Height||70|[in_i]"])
    )
    assert value(result, "patient", "weight_kg") == Decimal("68.04")
    assert value(result, "patient", "size_m") == Decimal("1.78")


def test_it_rejects_a_weight_that_is_not_a_number() -> None:
    with pytest.raises(MappingError) as info:
        map_orm(orm(extra=["OBX|1|NM|^Body Weight||heavy|kg"]))
    assert (info.value.segment, info.value.field) == ("OBX", 5)


def test_it_gives_one_step_per_order_group() -> None:
    result = map_orm(orm(groups=3))
    assert [s.sps_id for s in result.steps] == ["SPS1", "SPS2", "SPS3"]


def test_it_gives_one_step_per_ipc() -> None:
    result = map_omi(omi())
    assert [(s.accession_number, s.sps_id) for s in result.steps] == [
        ("ACC2", "SPS1"),
        ("ACC2", "SPS2"),
    ]


def test_it_maps_an_omg_like_an_orm_with_tq1_timing() -> None:
    text = orm(orc={7: ""}, extra=[]).replace("ORM^O01", "OMG^O19").replace("|2.3.1", "|2.5.1")
    text = text.replace("\rOBR|", "\rTQ1|1||||||20261126120000+0000||C\rOBR|", 1)
    result = map_orm(text)
    assert value(result, "step", "start") == dt.datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert value(result, "order", "priority") == "HIGH"


# --- "" clears, empty leaves unchanged -----------------------------------------------------


def test_a_quoted_null_clears_and_an_empty_field_is_left_out() -> None:
    result = map_orm(orm(patient=pid(p11='""'), obr={31: '""', 30: ""}))
    assert value(result, "patient", "address") is None
    assert value(result, "order", "reason") is None
    assert value(result, "order", "transport_arrangements") is mapping.ABSENT


def test_a_quoted_null_start_clears_the_start() -> None:
    result = map_orm(orm(orc={7: '""'}))
    assert value(result, "step", "start") is None


# --- dates and time zones ------------------------------------------------------------------


def test_it_stores_a_start_with_an_offset_as_that_instant() -> None:
    start = mapping.parse_timestamp("20261126093000.25+0130")
    assert start == dt.datetime(2026, 11, 26, 8, 0, 0, 250000, tzinfo=UTC)


def test_it_reads_a_start_without_offset_in_time_zone(settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    start = mapping.parse_timestamp("202611260930")
    assert start.astimezone(UTC) == dt.datetime(2026, 11, 26, 8, 30, tzinfo=UTC)


def test_it_names_the_field_of_a_bad_date() -> None:
    with pytest.raises(MappingError) as info:
        map_orm(orm(patient=pid(p7="1970-01-02")))
    assert (info.value.segment, info.value.field) == ("PID", 7)


# --- ORC-1 / ORC-5 -------------------------------------------------------------------------


# Each pair of the default table against the reference: test_hl7_status_table.py.


def test_a_site_can_change_the_status_table() -> None:
    config = mapping.MappingConfig(
        status_table=mapping.status_table_parse("NW_=SCHEDULED,CA_CA=CANCELED")
    )
    assert map_orm(orm(orc={5: ""}), config).steps[0].sps_status == "SCHEDULED"
    with pytest.raises(MappingError):
        map_orm(orm(orc={1: "NW", 5: "SC"}), config)


def test_a_bad_status_table_is_refused() -> None:
    with pytest.raises(ValueError, match="ORC1_ORC5=STATUS"):
        mapping.status_table_parse("NW_SC=PLANNED")


def test_an_order_without_accession_number_is_an_error_naming_obr_18() -> None:
    with pytest.raises(MappingError) as info:
        map_orm(orm(obr={18: ""}))
    assert (info.value.segment, info.value.field, info.value.code) == ("OBR", 18, "101")


def test_a_bad_study_uid_is_an_error_naming_ipc_3() -> None:
    with pytest.raises(MappingError) as info:
        map_omi(omi(ipcs=[{**_IPC, 3: "1.2.abc"}]))
    assert (info.value.segment, info.value.field) == ("IPC", 3)


# --- escapes and character sets ------------------------------------------------------------


def test_it_decodes_escape_sequences() -> None:
    result = map_orm(
        orm(patient=pid(name="O\\S\\Brien\\T\\Co^Ann\\F\\X"), obr={31: "^a\\R\\b\\E\\c\\X41\\"})
    )
    assert value(result, "patient", "name") == "O Brien&Co^Ann|X"  # ^ is not allowed in a PN part
    assert value(result, "order", "reason") == "a~b\\cA"


def test_our_splitter_agrees_with_hl7apy_on_every_field() -> None:
    text = orm(patient=pid(name="O\\S\\Brien^Ann"), groups=2, after_obr=["NTE|1||note\\T\\more"])
    ours = parse(text)
    theirs = parse_message(text, find_groups=False)
    assert [s.name for s in ours.segments] == [s.name for s in theirs.children]
    for mine, other in zip(ours.segments[1:], theirs.children[1:], strict=True):
        assert "|".join(mine.fields) == other.to_er7()


def test_unescape_leaves_an_unknown_sequence_as_it_is() -> None:
    d = parse(orm()).delimiters
    assert unescape("a\\Q\\b", d) == "a\\Q\\b"
    assert unescape("a\\.br\\b\\H\\c\\N\\", d) == "a\nbc"


def test_it_decodes_a_latin1_name() -> None:
    raw = orm(charset="8859/1", patient=pid(name="M\xfcller^J\xfcrgen")).encode("latin-1")
    assert value(map_orm(decode(raw, "8859/1")), "patient", "name") == "Müller^Jürgen"


def test_it_decodes_a_utf8_name() -> None:
    raw = orm(charset="UNICODE UTF-8", patient=pid(name="Łukasz^Żółć")).encode("utf-8")
    assert value(map_orm(decode(raw, "UNICODE UTF-8")), "patient", "name") == "Łukasz^Żółć"


@pytest.mark.parametrize(
    ("charset", "codec", "name"),
    [
        ("8859/5", "iso8859-5", "Иванов^Иван"),
        ("8859/7", "iso8859-7", "Παπαδόπουλος^Νίκος"),
        ("8859/2", "iso8859-2", "Dvořák^Antonín"),
    ],
)
def test_it_decodes_other_8859_parts(charset: str, codec: str, name: str) -> None:
    raw = orm(charset=charset, patient=pid(name=name)).encode(codec)
    assert value(map_orm(decode(raw, charset)), "patient", "name") == name


@pytest.mark.parametrize(
    ("declared", "raw"),
    [
        ("", "Müller".encode()),  # UTF-8 bytes declared ASCII
        ("UNICODE UTF-8", "Müller".encode("latin-1")),  # Latin-1 declared UTF-8
        ("8859/1", "Müller".encode()),  # UTF-8 declared Latin-1: would be mojibake
        ("8859/1", b"M\x81ller"),  # a C1 control character
        ("KLINGON", b"Muller"),
    ],
)
def test_a_wrong_declared_charset_is_an_error_naming_msh_18(declared: str, raw: bytes) -> None:
    with pytest.raises(MappingError) as info:
        decode(b"MSH|^~\\&|A\rPID|||1||" + raw + b"\r", declared)
    assert (info.value.segment, info.value.field) == ("MSH", 18)


def test_null_is_the_quoted_empty_string() -> None:
    assert NULL == '""'


# --- the table against the standard's message structures (hl7apy's reference tables) ------


def _structure_segments(structure: str, version: str) -> set[str]:
    from hl7apy import load_reference

    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, tuple) and len(node) >= 2 and node[0] == "sequence":
            for child in node[1]:
                if len(child[0]) == 3:
                    found.add(child[0])
                walk(child[1])

    walk(load_reference(structure, "Message", version))
    return found


def _segments_read(structure: str) -> set[str]:
    names: set[str] = set()
    for row in (*mapping.PATIENT_ROWS, *mapping.ORDER_ROWS):
        source = row.source(structure)
        sources = source.sources if isinstance(source, mapping.FirstOf) else (source,)
        names |= {s.segment for s in sources if s is not None}
    return names


@pytest.mark.parametrize(
    ("structure", "message", "version"),
    [
        (mapping.OMI, "OMI_O23", "2.5"),
        (mapping.OMI, "OMI_O23", "2.5.1"),
        (mapping.ORM, "OMG_O19", "2.5.1"),
        (mapping.ORM, "ORM_O01", "2.4"),
        (mapping.ORM, "ORM_O01", "2.3.1"),
    ],
)
def test_every_segment_the_table_reads_is_in_the_standard_structure(
    structure: str, message: str, version: str
) -> None:
    allowed = _structure_segments(message, version)
    if message == "ORM_O01":
        # hl7apy's ORM_O01 lacks the order detail choice (OBR, RQD, RXO...), and TQ1
        # only exists from v2.5 (the table reads it for OMG^O19, never found in an ORM).
        allowed |= {"OBR", "TQ1"}
    missing = _segments_read(structure) - allowed - {"ZDS"}  # ZDS: IHE's Z-segment
    assert missing == set()


def test_a_patient_id_longer_than_64_is_an_error_naming_pid_3() -> None:
    with pytest.raises(MappingError) as info:
        map_orm(orm(patient=pid("X" * 65)))
    assert (info.value.segment, info.value.field) == ("PID", 3)
