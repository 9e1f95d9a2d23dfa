"""The HL7 v2 splitter: delimiters, escape sequences, fields, repetitions, components.

Expected values from HL7 v2.5 chapter 2: 2.5.4 (message delimiters, MSH-1/MSH-2),
2.7 (escape sequences in text: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\, \\H\\ \\N\\, \\Xhh\\,
\\Cxxyy\\ \\Mxxyyzz\\, \\Zdd\\, formatting commands .br .sp .in .ti .ce .fi .nf),
and HL7 table 0357 (message error condition codes: 100 segment sequence error).
"""

from __future__ import annotations

import pytest

from hl7v2.errors import MappingError
from hl7v2.parser import DEFAULT_DELIMITERS, NULL, Delimiters, Segment, escape, parse, unescape

D = DEFAULT_DELIMITERS
# Another set of delimiters, so that no test passes only because "^" is the default.
OTHER = Delimiters("#", "!", "@", "$", "%")


def test_the_default_delimiters_are_the_standards() -> None:
    assert (D.field, D.component, D.repetition, D.escape, D.subcomponent) == tuple("|^~\\&")


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("^~\\&", "^~\\&"),
        ("!@$%", "!@$%"),
        # MSH-2 shorter than four characters: the rest are the defaults.
        ("!", "!~\\&"),
        ("!@", "!@\\&"),
        ("!@$", "!@$&"),
        ("", "^~\\&"),
        # v2.7 adds a fifth, the truncation character: the first four are read.
        ("!@$%#", "!@$%"),
    ],
)
def test_the_delimiters_come_from_msh_2(encoding: str, expected: str) -> None:
    d = Delimiters.from_msh("#", encoding)
    assert (d.field, d.component, d.repetition, d.escape, d.subcomponent) == ("#", *expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a\\F\\b", "a|b"),
        ("a\\S\\b", "a^b"),
        ("a\\T\\b", "a&b"),
        ("a\\R\\b", "a~b"),
        ("a\\E\\b", "a\\b"),
        ("\\H\\bold\\N\\", "bold"),
        ("line\\.br\\next", "line\nnext"),
        ("\\X41\\", "A"),
        ("\\X4142\\c", "ABc"),
        ("\\XE9\\", "é"),
        ("\\C2842\\x", "x"),
        ("\\M2442\\x", "x"),
        ("\\Z01\\x", "x"),
        ("\\.sp2\\x", "x"),
        ("\\.in+2\\x", "x"),
        ("\\.ti-1\\x", "x"),
        ("\\.ce\\x", "x"),
        ("\\.fi\\x", "x"),
        ("\\.nf\\x", "x"),
    ],
)
def test_each_escape_sequence_decodes_as_the_standard_says(text: str, expected: str) -> None:
    assert unescape(text, D) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # An escape sequence at the very start, at the end, and two in a row.
        ("\\F\\", "|"),
        ("\\F\\abc", "|abc"),
        ("abc\\F\\", "abc|"),
        ("\\F\\\\S\\", "|^"),
        ("a\\F\\b\\S\\c", "a|b^c"),
        # Not a sequence: kept as received.
        ("a\\b", "a\\b"),
        ("\\", "\\"),
        ("a\\F\\b\\c", "a|b\\c"),
        ("\\Q\\", "\\Q\\"),
        ("\\XZZ\\", "\\XZZ\\"),
        ("\\X\\", "\\X\\"),
        ("no escapes", "no escapes"),
        ("", ""),
    ],
)
def test_escape_sequences_anywhere_and_what_is_not_one(text: str, expected: str) -> None:
    assert unescape(text, D) == expected


def test_the_escape_sequences_use_the_messages_own_delimiters() -> None:
    assert unescape("a$F$b$S$c$T$d$R$e$E$f", OTHER) == "a#b!c%d@e$f"
    # The default escape character means nothing with other delimiters.
    assert unescape("a\\F\\b", OTHER) == "a\\F\\b"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a|b", "a\\F\\b"),
        ("a^b", "a\\S\\b"),
        ("a~b", "a\\R\\b"),
        ("a&b", "a\\T\\b"),
        ("a\\b", "a\\E\\b"),
        ("one\r\ntwo", "one\\.br\\two"),
        ("one\rtwo", "one two"),
        ("one\ntwo", "one two"),
        ("plain", "plain"),
    ],
)
def test_escape_encodes_what_cannot_stand_in_a_component(value: str, expected: str) -> None:
    assert escape(value) == expected


def test_escape_then_unescape_gives_the_value_back() -> None:
    value = "a|b^c~d&e\\f"
    assert unescape(escape(value), D) == value
    assert unescape(escape(value, OTHER), OTHER) == value
    assert escape("a#b", OTHER) == "a$F$b"


def seg(text: str, d: Delimiters = D) -> Segment:
    return Segment(text.split(d.field), d)


def test_fields_are_numbered_from_one_and_absent_ones_are_empty() -> None:
    s = seg("PID|1||P1^^^HOSP")
    assert s.name == "PID"
    assert (s.raw(1), s.raw(2), s.raw(3), s.raw(4), s.raw(99)) == ("1", "", "P1^^^HOSP", "", "")


def test_repetitions() -> None:
    s = seg('PID|||A~B~C||""|')
    assert s.repetitions(3) == ["A", "B", "C"]
    assert s.repetitions(4) == []
    assert s.repetitions(5) == [NULL]
    assert s.repetitions(6) == []
    assert seg("PID|||A").repetitions(3) == ["A"]


def test_get_reads_repetition_component_and_subcomponent() -> None:
    s = seg("OBR|A1^B1&b2^C1~A2^B2|x&y|\\F\\^a\\S\\b")
    assert s.get(1) == "A1"
    assert s.get(1, 2) == "B1"
    assert s.get(1, 2, 2) == "b2"
    assert s.get(1, 3) == "C1"
    assert s.get(1, 1, rep=2) == "A2"
    assert s.get(1, 2, rep=2) == "B2"
    assert s.get(2, 1, 2) == "y"
    assert s.get(3, 1) == "|"
    assert s.get(3, 2) == "a^b"


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ("A^B", {"component": 3}),
        ("A^B", {"rep": 2}),
        ("A~B", {"rep": 3}),
        ("A&B", {"sub": 3}),
        ("A", {"component": 2}),
        ("A", {"sub": 2}),
        ("A", {"rep": 2}),
        ("", {}),
    ],
)
def test_what_is_not_there_reads_as_empty(value: str, where: dict[str, int]) -> None:
    assert seg("ZZZ").split(value, **where) == ""


def test_values_are_unescaped_only_at_the_end() -> None:
    s = seg("ZZZ")
    # An escaped delimiter does not split.
    assert s.split("a\\S\\b^c") == "a^b"
    assert s.split("a\\S\\b^c", 2) == "c"
    assert s.split("a\\R\\b") == "a~b"
    assert s.split("a\\T\\b&c", 1, 2) == "c"


def test_components_are_cut_but_left_escaped() -> None:
    assert seg("ZZZ").components("a^b\\S\\c^") == ["a", "b\\S\\c", ""]
    assert seg("ZZZ", OTHER).components("a!b^c") == ["a", "b^c"]


def test_other_delimiters_split_as_the_defaults_do() -> None:
    s = seg("OBR#A1!B1%b2!C1@A2", OTHER)
    assert (s.get(1, 2), s.get(1, 2, 2), s.get(1, rep=2)) == ("B1", "b2", "A2")
    # The default delimiters are plain characters here.
    assert s.split("a^b|c") == "a^b|c"


MSH = "MSH|^~\\&|RIS|HOSP|WL|BROKER|20261125||ORM^O01|C1|P|2.3.1"


def test_msh_1_is_the_field_separator_and_msh_2_the_encoding_characters() -> None:
    message = parse(MSH + "\rPID|||P1\r")
    msh = message.msh
    assert (msh.raw(1), msh.raw(2), msh.raw(3), msh.raw(9), msh.raw(10)) == (
        "|",
        "^~\\&",
        "RIS",
        "ORM^O01",
        "C1",
    )
    assert msh.get(9, 2) == "O01"


def test_a_message_with_its_own_delimiters_is_read_with_them() -> None:
    text = "MSH#!@$%#RIS#HOSP\rPID###P1!!!HOSP@P2\r"
    message = parse(text)
    assert message.delimiters == Delimiters("#", "!", "@", "$", "%")
    pid = message.first("PID")
    assert pid is not None
    assert (pid.get(3), pid.get(3, 4), pid.get(3, rep=2)) == ("P1", "HOSP", "P2")


@pytest.mark.parametrize("terminator", ["\r", "\r\n", "\n"])
def test_segment_terminators(terminator: str) -> None:
    message = parse(terminator.join([MSH, "PID|||P1", "", "PV1|1"]) + terminator)
    assert [s.name for s in message.segments] == ["MSH", "PID", "PV1"]
    pid = message.first("PID")
    assert pid is not None and pid.raw(3) == "P1"


def test_segments_are_counted_per_name() -> None:
    message = parse("\r".join([MSH, "ORC|1", "OBR|1", "ORC|2", "OBR|2", "OBR|3"]))
    assert [(s.name, s.occurrence) for s in message.all("OBR")] == [
        ("OBR", 1),
        ("OBR", 2),
        ("OBR", 3),
    ]
    assert [s.raw(1) for s in message.all("ORC")] == ["1", "2"]
    assert message.msh.occurrence == 1
    assert message.first("ZDS") is None
    assert message.all("ZDS") == []
    first = message.first("OBR")
    assert first is not None and first.raw(1) == "1"
    assert repr(first) == "<Segment OBR#1>"


@pytest.mark.parametrize("text", ["PID|||P1\r", "MSH|^~", "", "MSX|^~\\&|RIS"])
def test_a_message_must_start_with_msh(text: str) -> None:
    with pytest.raises(MappingError) as info:
        parse(text)
    assert (info.value.segment, info.value.code) == ("MSH", "100")


@pytest.mark.parametrize(("line", "segment"), [("PIDX|1", "PID"), ("P1|x", "P1"), ("P-D|x", "P-D")])
def test_a_line_that_is_not_a_segment_is_a_segment_sequence_error(line: str, segment: str) -> None:
    with pytest.raises(MappingError) as info:
        parse(MSH + "\r" + line)
    # HL7 table 0357: 100, segment sequence error.
    assert (info.value.segment, info.value.code) == (segment, "100")
    assert "is not a segment name" in info.value.text


def test_the_shortest_message_is_an_msh_with_its_delimiters() -> None:
    message = parse("MSH|^~\\&")
    assert [s.name for s in message.segments] == ["MSH"]
    assert message.delimiters == D
    assert message.msh.raw(2) == "^~\\&"
