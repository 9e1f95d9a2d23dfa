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
from hl7v2.parser import NULL, Segment, parse, unescape
from tests.hl7_messages import CR, adt, msh, omi, orm, pid, segment

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


# --- each reader on its own ------------------------------------------------------------
# The rows build their readers (text(2), timestamp(4), ...) when the module is imported;
# these tests build them again, so that a change inside a reader factory is seen (it is
# what mutation testing changes: `make mutate`, docs/testing.md).


def seg(*lines: str) -> Segment:
    """The last of ``lines``, as a segment of a message (its occurrence counted)."""
    return parse(CR.join([msh(), *lines]) + CR).segments[-1]


def test_text_reads_the_component_and_subcomponent_asked_for() -> None:
    s = seg('OBR|1|A&B^C&D^ E ^^""')
    assert mapping.text()(s, 2) == "A"
    assert mapping.text(1, 2)(s, 2) == "B"
    assert mapping.text(2)(s, 2) == "C"
    assert mapping.text(2, 2)(s, 2) == "D"
    assert mapping.text(3)(s, 2) == "E"
    assert mapping.text(4)(s, 2) is mapping.ABSENT
    assert mapping.text(5)(s, 2) is None
    assert mapping.text()(seg('OBR|1|""'), 2) is None
    assert mapping.text()(seg("OBR|1|   "), 2) is mapping.ABSENT


def test_the_text_reader_says_what_it_reads() -> None:
    assert mapping.text().__doc__ == "component 1"
    assert mapping.text(2).__doc__ == "component 2"
    assert mapping.text(1, 2).__doc__ == "component 1, subcomponent 2"


def test_timestamp_reads_its_component() -> None:
    assert mapping.timestamp(4)(
        seg(segment("ORC", {1: "NW", 7: "^^^202611260930+0100^^S"})), 7
    ) == dt.datetime(2026, 11, 26, 8, 30, tzinfo=UTC)
    assert mapping.timestamp()(
        seg(segment("TQ1", {1: "1", 7: "20261126120000-0000"})), 7
    ) == dt.datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert mapping.timestamp(4)(seg(segment("ORC", {1: "NW", 7: "^^^^^S"})), 7) is mapping.ABSENT
    assert mapping.timestamp(4)(seg(segment("ORC", {1: "NW", 7: '^^^""^^S'})), 7) is None


def test_timestamp_names_the_field_of_a_bad_value() -> None:
    with pytest.raises(MappingError) as info:
        mapping.timestamp(4)(seg("ORC|NW", segment("ORC", {1: "XO", 7: "^^^2026-11-26"})), 7)
    error = info.value
    assert error.text == "'2026-11-26' is not a date/time (YYYYMMDD[HHMM[SS]][+/-ZZZZ])"
    assert (error.segment, error.field, error.occurrence, error.code) == ("ORC", 7, 2, "102")


def test_the_timestamp_reader_says_what_it_reads() -> None:
    assert mapping.timestamp().__doc__ == "TS/DTM; with a UTC offset as sent, else in TIME_ZONE"
    assert mapping.timestamp(2).__doc__ == (
        "TS/DTM in component 2; with a UTC offset as sent, else in TIME_ZONE"
    )
    assert mapping.timestamp(4).__doc__ == (
        "TS/DTM in component 4; with a UTC offset as sent, else in TIME_ZONE"
    )


def test_priority_reads_its_component_in_any_case() -> None:
    assert mapping.priority(6)(seg(segment("ORC", {1: "NW", 7: "^^^^^s"})), 7) == "STAT"
    assert mapping.priority(1)(seg(segment("TQ1", {1: "1", 9: "t^x"})), 9) == "MEDIUM"
    assert mapping.priority(6)(seg(segment("ORC", {1: "NW", 7: "^^^^^Z"})), 7) is mapping.ABSENT


def test_the_priority_reader_lists_the_reference_table() -> None:
    # The reference mapping: S->STAT, A/P/C->HIGH, R->ROUTINE, T->MEDIUM.
    assert mapping.priority(6).__doc__ == (
        "component 6: S -> STAT, A -> HIGH, P -> HIGH, C -> HIGH, R -> ROUTINE, T -> MEDIUM"
    )


def test_code_list_reads_each_repetition_with_a_code() -> None:
    read = mapping.code_list(4, 6, 5)
    s = seg("OBR|1|||^^^ P9 ^ Knee ^ LOC ~^^^^No code^X~^^^P8^Hip^LOC2")
    assert read(s, 4) == [
        {"value": "P9", "scheme": "LOC", "meaning": "Knee"},
        {"value": "P8", "scheme": "LOC2", "meaning": "Hip"},
    ]
    assert read(seg("OBR|1|||^^^^Text only"), 4) is mapping.ABSENT
    assert mapping.code_list(1, 3, 2)(seg("IPC|A|R|U|S|MR|P5^Abdomen^LOC"), 6) == [
        {"value": "P5", "scheme": "LOC", "meaning": "Abdomen"}
    ]
    assert read.__doc__ == "each repetition: code .4, scheme .6, meaning .5"


def test_repeated_text_reads_one_component_of_each_repetition() -> None:
    s = seg(segment("ORC", {1: "NW", 18: "CT01^a~~ CT02 ^b"}))
    assert mapping.repeated_text()(s, 18) == ["CT01", "CT02"]
    assert mapping.repeated_text(2)(s, 18) == ["a", "b"]
    assert mapping.repeated_text()(seg(segment("ORC", {1: "NW", 18: "~^x"})), 18) is mapping.ABSENT
    assert mapping.repeated_text().__doc__ == "component 1 of each repetition"


# Weight and height as body_weight / body_height are built (PS3.3: Patient's Weight in
# kg, Patient's Size in m; 1 lb = 0.45359237 kg, 1 in = 0.0254 m).
def weight_reader() -> mapping.SegmentsReader:
    units = {"": 1, "KG": 1, "G": Decimal("0.001"), "LB": Decimal("0.45359237")}
    return mapping._observation({"BODY WEIGHT", "29463-7"}, units, Decimal("10000"))


def height_reader() -> mapping.SegmentsReader:
    units = {"": 1, "M": 1, "CM": Decimal("0.01"), "IN": Decimal("0.0254")}
    return mapping._observation({"BODY HEIGHT", "8302-2"}, units, Decimal("100"))


def obx(*lines: str) -> list[Segment]:
    return parse(CR.join([msh(), *lines]) + CR).segments[1:]


@pytest.mark.parametrize(
    ("line", "kg"),
    [
        ("OBX|1|NM|29463-7^x^LN||72.5|kg", Decimal("72.50")),
        ("OBX|1|NM|x^body weight||72.5|KG", Decimal("72.50")),
        ("OBX|1|NM|body weight||72.5|KG", Decimal("72.50")),
        ("OBX|1|NM|^Body Weight||72500|g", Decimal("72.50")),
        ("OBX|1|NM|^Body Weight||150|[lb_av]", Decimal("68.04")),
        ("OBX|1|NM|^Body Weight||72|", Decimal("72.00")),
        ("OBX|1|NM|^Body Weight||0|kg", Decimal("0.00")),
        ("OBX|1|NM|^Body Weight||0.001|kg", Decimal("0.00")),
        ("OBX|1|NM|^Body Weight||9999.99|kg", Decimal("9999.99")),
    ],
)
def test_the_weight_is_read_in_kg(line: str, kg: Decimal) -> None:
    assert weight_reader()(obx("OBX|1|NM|^Heart rate||60|/min", line)) == kg


def test_the_height_is_read_in_m() -> None:
    assert height_reader()(obx("OBX|1|NM|^Body Height||70|[in_i]")) == Decimal("1.78")
    assert height_reader()(obx("OBX|1|NM|8302-2||180|cm")) == Decimal("1.80")


def test_an_observation_of_something_else_is_not_a_weight() -> None:
    assert weight_reader()(obx("OBX|1|NM|^Heart rate||60|/min")) is mapping.ABSENT
    assert weight_reader()(obx('OBX|1|NM|^Body Weight||""|kg')) is None


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        ("heavy", "kg", "'heavy' 'kg' is not a measurement in a known unit"),
        ("72", "xkg", "'72' 'xkg' is not a measurement in a known unit"),
        ("7" * 50, "k" * 30, f"{'7' * 40!r} {'k' * 20!r} is not a measurement in a known unit"),
        ("10000", "kg", "10000 is out of range"),
        ("10000." + "0" * 40, "kg", "10000." + "0" * 34 + " is out of range"),
        ("-1", "kg", "-1 is out of range"),
        ("NaN", "kg", "NaN is out of range"),
        ("Infinity", "kg", "Infinity is out of range"),
        ("9999.995", "kg", "9999.995 is out of range"),
        ("9999.995" + "0" * 40, "kg", "9999.995" + "0" * 40 + " is out of range"),
    ],
)
def test_a_weight_that_cannot_be_stored_is_an_error_naming_obx_5(
    value: str, unit: str, text: str
) -> None:
    with pytest.raises(MappingError) as info:
        weight_reader()(
            obx("OBX|1|NM|^Heart rate||60|/min", f"OBX|2|NM|^Body Weight||{value}|{unit}")
        )
    error = info.value
    assert (error.text, error.segment, error.field, error.occurrence, error.code) == (
        text,
        "OBX",
        5,
        2,
        "102",
    )


def test_the_observation_reader_says_what_it_reads() -> None:
    assert weight_reader().__doc__ == (
        "OBX-5 in the unit of OBX-6 (KG, G, LB; empty: KG) of the first OBX whose OBX-3 "
        "(.1 or .2) is one of 29463-7, BODY WEIGHT"
    )


# --- the other readers, through the rows -------------------------------------------------


def patient_of(text: str) -> dict[str, Any]:
    result = map_orm(text)
    assert result.patient is not None
    return result.patient.fields


def test_a_name_keeps_no_component_or_escape_separator_in_its_parts() -> None:
    name = " O\\S\\B\\E\\C &x^G\\S\\H\\E\\I^M\\S\\N\\E\\O^Jr\\S\\X\\E\\Y^Dr\\S\\P\\E\\Q "
    assert patient_of(orm(patient=pid(name=name)))["name"] == "O B C^G H I^M N O^Dr P Q^Jr X Y"


def test_staff_names_put_prefix_before_suffix() -> None:
    result = map_orm(
        orm(
            obr={16: "55^Jones^Ann^B^Jr^Dr", 34: "77&Tech&Tom&Q&Sr&Prof"},
            extra=[segment("PV1", {2: "O", 8: "123^Smith^John^Q^III^Mr"})],
        )
    )
    assert value(result, "order", "requesting_physician") == "Jones^Ann^B^Dr^Jr"
    assert value(result, "step", "performing_physician") == "Tech^Tom^Q^Prof^Sr"
    assert value(result, "order", "referring_physician") == "Smith^John^Q^Mr^III"


def test_an_address_is_its_first_repetition_with_trailing_components_dropped() -> None:
    fields = patient_of(orm(patient=pid(p11=" Main&x ^ ^Town^^~Other St^^City")))
    assert fields["address"] == "Main^^Town"
    assert patient_of(orm(patient=pid(p11="^^Town^^")))["address"] == "^^Town"
    assert patient_of(orm(patient=pid(p11="1 MAIN ST^^HALIFAX")))["address"] == (
        "1 MAIN ST^^HALIFAX"
    )
    assert "address" not in patient_of(orm(patient=pid(p11="^ ^")))


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("19701125", dt.date(1970, 11, 25)),
        ("19701125083000+0100", dt.date(1970, 11, 25)),
        ("19701125+0100", dt.date(1970, 11, 25)),  # TS to the day, with its offset
    ],
)
def test_a_birth_date_is_read_as_yyyymmdd(sent: str, stored: dt.date) -> None:
    assert patient_of(orm(patient=pid(p7=sent)))["birth_date"] == stored


@pytest.mark.parametrize("sent", ["1970-01-02", "1970 1 2", "197011", "19701332"])
def test_a_birth_date_that_is_not_yyyymmdd_is_an_error(sent: str) -> None:
    with pytest.raises(MappingError) as info:
        mapping.hl7_date(seg("PID|1", f"PID|2||P2||DOE^J||{sent}"), 7)
    error = info.value
    assert error.text == f"{sent!r} is not a date (YYYYMMDD)"
    assert (error.segment, error.field, error.occurrence, error.code) == ("PID", 7, 2, "102")


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2026", dt.datetime(2026, 1, 1)),
        ("20261126", dt.datetime(2026, 11, 26)),
        ("2026112609", dt.datetime(2026, 11, 26, 9)),
        ("202611260930", dt.datetime(2026, 11, 26, 9, 30)),
        ("20261126093015.5", dt.datetime(2026, 11, 26, 9, 30, 15, 500000)),
    ],
)
def test_a_timestamp_without_offset_keeps_its_missing_parts_at_their_start(
    settings: Any, sent: str, stored: dt.datetime
) -> None:
    settings.TIME_ZONE = "UTC"
    assert mapping.parse_timestamp(f" {sent} ") == stored.replace(tzinfo=UTC)


def test_a_timestamp_offset_of_ten_hours_or_more() -> None:
    assert mapping.parse_timestamp("202611261030+1000") == dt.datetime(
        2026, 11, 26, 0, 30, tzinfo=UTC
    )
    assert mapping.parse_timestamp("202611261030-1145") == dt.datetime(
        2026, 11, 26, 22, 15, tzinfo=UTC
    )


@pytest.mark.parametrize(("sent", "stored"), [("f", "F"), ("N", "O"), ("X", "O"), ("U", "")])
def test_the_sex_is_one_of_dicom_s_terms(sent: str, stored: str) -> None:
    assert patient_of(orm(patient=pid(p8=sent)))["sex"] == stored


def test_an_empty_field_is_left_unchanged_whatever_its_reader() -> None:
    assert "sex" not in patient_of(orm(patient=pid(p8="")))


def test_a_coded_value_is_its_text_else_its_code() -> None:
    assert value(map_orm(orm(obr={12: "ISO"})), "order", "patient_state") == "ISO"
    assert value(map_orm(orm(obr={12: " ^ "})), "order", "patient_state") is mapping.ABSENT


@pytest.mark.parametrize(("sent", "stored"), [("b6", 3), ("A1", mapping.ABSENT)])
def test_pregnancy_is_b6_in_any_repetition(sent: str, stored: Any) -> None:
    fields = patient_of(orm(extra=[segment("PV1", {2: "O", 15: sent})]))
    assert fields.get("pregnancy_status", mapping.ABSENT) == stored


def test_notes_of_the_order_group_are_the_procedure_comments() -> None:
    def comments(*lines: str) -> Any:
        return value(map_orm(orm(after_obr=list(lines))), "procedure", "comments")

    assert comments('NTE|1||""') is None
    assert comments('NTE|1||""', "NTE|2||Bring films") == "Bring films"
    assert comments('NTE|1||a~""~b') == "a\nb"
    assert comments("NTE|1|L") is mapping.ABSENT
    # A note before the first ORC is about the patient or the message.
    assert value(map_orm(orm(extra=["NTE|1||patient note"])), "procedure", "comments") is (
        mapping.ABSENT
    )


def test_allergies_are_one_multi_valued_text() -> None:
    def allergies(*lines: str) -> Any:
        return patient_of(orm(extra=list(lines))).get("allergies", mapping.ABSENT)

    assert allergies('AL1|1|DA|""') is None
    assert allergies("AL1|1|DA|^Peni\\E\\cillin", "AL1|2|MA|", "AL1|3|MA|LTX") == (
        "Peni cillin\\LTX"
    )
    assert allergies("AL1|1|DA|^") is mapping.ABSENT


def test_sources_are_labelled_by_their_fields() -> None:
    assert mapping.Field("PV1", 19).label() == "PV1-19"
    assert mapping.Every("NTE", mapping.notes).label() == "NTE"
    admission = mapping.FirstOf((mapping.Field("PV1", 19), mapping.Field("PID", 18)))
    assert admission.label() == "PV1-19 else PID-18"


def test_the_key_fields_are_those_of_the_reference() -> None:
    fields = mapping._row_fields()
    expected = {
        (mapping.ORM, "key", "accession_number"): ("OBR", 18),
        (mapping.OMI, "key", "accession_number"): ("IPC", 1),
        (mapping.ORM, "key", "study_instance_uid"): ("ZDS", 1),
        (mapping.OMI, "key", "study_instance_uid"): ("IPC", 3),
        (mapping.ORM, "order", "placer_order_number"): ("ORC", 2),
        (mapping.OMI, "order", "filler_order_number"): ("ORC", 3),
    }
    assert {k: (fields[k].segment, fields[k].field) for k in expected} == expected
    assert (mapping.ORM, "step", "start") not in fields


# --- patient, order and step errors ---------------------------------------------------------


def test_other_identifiers_skip_quoted_nulls_and_empty_ids() -> None:
    result = map_orm(orm(patient=pid(patient_id='""~^^^X~P1^^^HOSP&1.2.3&ISO~P2')))
    assert result.patient is not None
    assert (result.patient.patient_id, result.patient.issuer) == ("P1", "HOSP")
    assert result.patient.fields["other_ids"] == [{"patient_id": "P2", "issuer": ""}]


def test_a_patient_id_and_issuer_of_64_are_taken_65_is_an_error() -> None:
    result = map_orm(orm(patient=pid(f"{'P' * 64}^^^{'I' * 64}")))
    assert result.patient is not None
    assert (result.patient.patient_id, result.patient.issuer) == ("P" * 64, "I" * 64)
    with pytest.raises(MappingError) as info:
        map_orm(orm(patient=pid(f"P1^^^{'I' * 65}")))
    error = info.value
    assert error.text == "Patient ID or its issuer is longer than 64 characters"
    assert (error.segment, error.field, error.occurrence, error.code) == ("PID", 3, 1, "102")


def test_a_patient_without_id_is_an_error_naming_pid_3() -> None:
    with pytest.raises(MappingError) as info:
        map_orm(orm(patient=pid("^^^HOSP")))
    error = info.value
    assert error.text == "Patient ID (PID-3.1) is missing"
    assert (error.segment, error.field, error.occurrence, error.code) == ("PID", 3, 1, "101")


def test_an_order_message_without_pid_changes_no_patient() -> None:
    text = orm(orc={1: "CA", 5: "CA"}).replace(pid() + CR, "")
    result = map_orm(text)
    assert result.patient is None
    assert result.steps[0].sps_status == "CANCELED"


def test_an_order_message_without_orc_is_an_error() -> None:
    with pytest.raises(MappingError) as info:
        map_orm(CR.join([msh(), pid()]) + CR)
    error = info.value
    assert (error.text, error.segment, error.code) == (
        "the message has no ORC segment",
        "ORC",
        "100",
    )


def test_an_omi_order_group_without_ipc_is_an_error_naming_its_orc() -> None:
    # The second group: ORC #2 and a note (NTE #1), no IPC.
    text = omi() + "ORC|NW|PL2|FI2||SC\rNTE|1||note\r"
    with pytest.raises(MappingError) as info:
        map_omi(text)
    error = info.value
    assert (error.text, error.segment, error.occurrence, error.code) == (
        "order group has no IPC segment",
        "IPC",
        2,
        "100",
    )


def test_a_step_update_carries_the_keys_and_the_status() -> None:
    result = map_orm(orm(orc={2: "PLACER9^RIS", 3: "FILLER9^RIS"}))
    step = result.steps[0]
    assert (step.order_control, step.order_status, step.sps_status) == ("NW", "SC", "SCHEDULED")
    assert (step.placer_order_number, step.filler_order_number) == ("PLACER9", "FILLER9")
    assert step.step_fields["status"] == "SCHEDULED"
    assert step.station_ae_titles == []
    assert (step.key_segment.name, step.orc.name, step.structure) == ("OBR", "ORC", mapping.ORM)
    omi_step = map_omi(omi(ipcs=[_IPC])).steps[0]
    assert (omi_step.key_segment.name, omi_step.structure) == ("IPC", mapping.OMI)


def test_quoted_null_order_numbers_are_empty_keys() -> None:
    step = map_orm(orm(orc={2: '""', 3: '""'})).steps[0]
    assert (step.placer_order_number, step.filler_order_number) == ("", "")


def test_a_lower_case_order_control_and_status_are_read() -> None:
    step = map_orm(orm(orc={1: "xo", 5: "cm"})).steps[0]
    assert (step.order_control, step.order_status, step.sps_status) == ("XO", "CM", "COMPLETED")


def test_an_order_without_order_control_is_an_error_naming_orc_1() -> None:
    with pytest.raises(MappingError) as info:
        map_orm(orm(orc={1: " "}))
    error = info.value
    assert error.text == "Order Control (ORC-1) is missing"
    assert (error.segment, error.field, error.occurrence, error.code) == ("ORC", 1, 1, "101")


@pytest.mark.parametrize(
    ("order_status", "text", "field"),
    [
        ("", "unsupported order control / status ORC-1/ORC-5 = NW/(empty)", 1),
        ("ZZ", "unsupported order control / status ORC-1/ORC-5 = NW/ZZ", 5),
    ],
)
def test_an_unknown_status_pair_names_orc_5_if_given_else_orc_1(
    order_status: str, text: str, field: int
) -> None:
    with pytest.raises(MappingError) as info:
        map_orm(orm(orc={5: order_status}))
    error = info.value
    assert (error.text, error.segment, error.field, error.occurrence, error.code) == (
        text,
        "ORC",
        field,
        1,
        "103",
    )


def without_obr(text: str) -> str:
    return CR.join(line for line in text.split(CR) if not line.startswith("OBR")) + CR


def test_a_status_change_needs_no_obr_when_the_order_numbers_name_the_order() -> None:
    step = map_orm(without_obr(orm(orc={1: "CA", 5: "CA"}))).steps[0]
    assert (step.accession_number, step.placer_order_number) == ("", "PL1")
    assert step.key_segment.name == "ORC"


@pytest.mark.parametrize("control", ["NW", "XO"])
def test_a_new_or_changed_order_without_obr_is_an_error(control: str) -> None:
    with pytest.raises(MappingError) as info:
        map_orm(without_obr(orm(orc={1: control, 5: "SC"})))
    error = info.value
    assert (error.text, error.segment, error.code) == (
        "OBR segment is missing (the requested procedure)",
        "OBR",
        "100",
    )


@pytest.mark.parametrize(("orc", "obr"), [({1: "CA", 5: "CA", 2: ""}, {18: ""}), ({}, {18: '""'})])
def test_an_order_without_accession_or_placer_number_is_an_error(
    orc: dict[int, str], obr: dict[int, str]
) -> None:
    with pytest.raises(MappingError) as info:
        map_orm(orm(orc=orc, obr=obr))
    error = info.value
    assert (error.text, error.segment, error.field, error.occurrence, error.code) == (
        "Accession Number is missing",
        "OBR",
        18,
        1,
        "101",
    )


def test_the_missing_accession_number_names_the_obr_of_its_group() -> None:
    lines = orm(groups=2).split(CR)
    second = next(i for i, line in enumerate(lines) if line.startswith("OBR|2|"))
    lines[second] = lines[second].replace("|ACC1|", "||")
    with pytest.raises(MappingError) as info:
        map_orm(CR.join(lines))
    assert (info.value.segment, info.value.occurrence) == ("OBR", 2)


def test_a_study_uid_of_64_characters_is_taken_65_is_an_error_naming_zds_1() -> None:
    uid = "1.2." + "3" * 60
    result = map_orm(orm(zds=False, after_obr=[f"ZDS|{uid}^100^Application^DICOM"]))
    assert result.steps[0].study_instance_uid == uid
    with pytest.raises(MappingError) as info:
        map_orm(orm(zds=False, after_obr=[f"ZDS|{uid}4^100^Application^DICOM"]))
    error = info.value
    assert (error.text, error.segment, error.field, error.code) == (
        f"{uid + '4'!r} is not a valid UID",
        "ZDS",
        1,
        "102",
    )


# --- ADT ----------------------------------------------------------------------------------


def test_an_adt_gives_the_patient_and_each_pid_mrg_pair() -> None:
    text = adt("A40", mrg="OLD1^^^HOSP", extra=[pid("NEW2^^^H2"), segment("MRG", {1: "OLD2"})])
    result = mapping.adt_message(parse(text), "A40")
    assert result.event == "A40"
    assert (result.patient.patient_id, result.patient.issuer) == ("PAT1", "HOSP")
    assert [(m.patient.patient_id, m.prior_id, m.prior_issuer) for m in result.merges] == [
        ("PAT1", "OLD1", "HOSP"),
        ("NEW2", "OLD2", ""),
    ]
    assert result.merges[1].mrg.occurrence == 2
    assert mapping.adt_message(parse(adt("A08")), "A08").merges == []


def test_an_adt_without_evn_is_mapped_the_same() -> None:
    text = adt("A47", mrg="OLD1").replace("\rEVN|A47", "")
    result = mapping.adt_message(parse(text), "A47")
    assert [(m.patient.patient_id, m.prior_id) for m in result.merges] == [("PAT1", "OLD1")]


def test_an_adt_without_pid_is_an_error() -> None:
    with pytest.raises(MappingError) as info:
        mapping.adt_message(parse(CR.join([msh("ADT^A08"), "EVN|A08"]) + CR), "A08")
    error = info.value
    assert (error.text, error.segment, error.code) == (
        "PID segment is missing (the patient)",
        "PID",
        "100",
    )


def test_an_mrg_before_any_pid_is_an_error() -> None:
    text = CR.join([msh("ADT^A40"), "EVN|A40", "MRG|OLD1", pid(), "MRG|OLD2"]) + CR
    with pytest.raises(MappingError) as info:
        mapping.adt_message(parse(text), "A40")
    error = info.value
    assert (error.text, error.segment, error.occurrence, error.code) == (
        "MRG segment without a PID before it",
        "MRG",
        1,
        "100",
    )


def test_an_mrg_without_prior_identifier_is_an_error_naming_mrg_1() -> None:
    text = adt("A40", mrg="OLD1", extra=[pid("P2"), 'MRG|""~^^^X'])
    with pytest.raises(MappingError) as info:
        mapping.adt_message(parse(text), "A40")
    error = info.value
    assert (error.text, error.segment, error.field, error.occurrence, error.code) == (
        "Prior Patient Identifier (MRG-1) is missing",
        "MRG",
        1,
        2,
        "101",
    )


def test_absent_shows_as_absent() -> None:
    # In test failures and logs: an omitted value, not a value.
    assert repr(mapping.ABSENT) == "ABSENT"


@pytest.mark.parametrize(("second_pid", "code"), [(pid("^^^HOSP"), "101"), (pid("P" * 65), "102")])
def test_an_error_in_the_second_pid_of_an_adt_names_pid_2(second_pid: str, code: str) -> None:
    text = adt("A40", mrg="OLD1", extra=[second_pid, "MRG|OLD2"])
    with pytest.raises(MappingError) as info:
        mapping.adt_message(parse(text), "A40")
    error = info.value
    assert (error.segment, error.field, error.occurrence, error.code) == ("PID", 3, 2, code)


@pytest.mark.parametrize(("orc_1", "orc_5", "field"), [("", "SC", 1), ("NW", "ZZ", 5)])
def test_an_order_control_error_names_the_orc_of_its_group(
    orc_1: str, orc_5: str, field: int
) -> None:
    lines = orm(groups=2).split(CR)
    second = next(i for i, line in enumerate(lines) if line.startswith("ORC|NW|PL2|"))
    lines[second] = segment("ORC", {1: orc_1, 2: "PL2", 3: "FI2", 5: orc_5})
    with pytest.raises(MappingError) as info:
        map_orm(CR.join(lines))
    error = info.value
    assert (error.segment, error.field, error.occurrence) == ("ORC", field, 2)
