"""The value rules of worklist matching, without a database: wildcards, ranges, values.

Expected values from PS3.4 C.2.2.2 (matching): universal matching (a zero-length value
or only "*"), wildcard matching ("*" any run, "?" one character), range matching
("<low>-<high>", "<low>-", "-<high>") of DA (PS3.5: YYYYMMDD) and TM (HH[MM[SS[.F]]]),
single value matching; failures are PS3.4 Table K.4-1's "Unable to process" with our
0xC001 for an invalid value (docs/worklist.md).
"""

from __future__ import annotations

import datetime as dt

import pytest
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue

from worklist.matching import (
    InvalidQueryValue,
    QueryError,
    date_range,
    element_values,
    glob_pattern,
    is_universal,
    like_pattern,
    time_range,
)

DATE_TAG = 0x00400002  # Scheduled Procedure Step Start Date
TIME_TAG = 0x00400003  # Scheduled Procedure Step Start Time
INVALID_QUERY_VALUE = 0xC001


@pytest.mark.parametrize(
    ("value", "universal"),
    [
        ("", True),
        ("*", True),
        ("***", True),
        ("*A", False),
        ("A*", False),
        ("?", False),
        (" ", False),
    ],
)
def test_universal_matching_is_empty_or_only_asterisks(value: str, universal: bool) -> None:
    assert is_universal(value) is universal


@pytest.mark.parametrize(
    ("pattern", "like"),
    [
        ("DOE*", "DOE%"),
        ("D?E", "D_E"),
        ("100%", "100\\%"),
        ("A_B", "A\\_B"),
        ("A\\B", "A\\\\B"),
        ("A\\*", "A\\\\%"),
        ("*_?%", "%\\__\\%"),
    ],
)
def test_a_dicom_pattern_becomes_a_like_pattern_with_sqls_own_characters_escaped(
    pattern: str, like: str
) -> None:
    assert like_pattern(pattern) == like


def test_a_dicom_pattern_keeps_brackets_literal_for_glob() -> None:
    assert glob_pattern("A[1]*") == "A[[]1]*"
    assert glob_pattern("DOE*") == "DOE*"


def test_element_values_are_strings_without_trailing_padding() -> None:
    assert element_values(DataElement(0x00100020, "LO", "P1 ")) == ["P1"]
    assert element_values(DataElement(0x00100020, "LO", None)) == []
    assert element_values(DataElement(0x00100020, "LO", MultiValue(str, ["A ", " B"]))) == [
        "A",
        " B",
    ]
    assert element_values(DataElement(0x00100020, "LO", ["A", "B\x00"])) == ["A", "B"]
    # Leading spaces are significant (PS3.5 6.2: only trailing padding is not).
    assert element_values(DataElement(0x00100020, "LO", "  P1")) == ["  P1"]
    # Only spaces and NULs are padding: a value ending in another character keeps it.
    assert element_values(DataElement(0x00100020, "LO", "P1X ")) == ["P1X"]
    assert element_values(DataElement(0x00100020, "LO", ["AX", "BX\x00"])) == ["AX", "BX"]


def test_an_element_of_unknown_vr_is_read_as_ascii() -> None:
    element = DataElement(0x00091010, "UN", b"AB \x00")
    assert element_values(element) == ["AB"]
    assert element_values(DataElement(0x00091010, "UN", b"A\xffB")) == ["A\ufffdB"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20261126", (dt.date(2026, 11, 26), dt.date(2026, 11, 26))),
        ("20261125-20261127", (dt.date(2026, 11, 25), dt.date(2026, 11, 27))),
        ("20261126-", (dt.date(2026, 11, 26), None)),
        ("-20261126", (None, dt.date(2026, 11, 26))),
        ("20261126-20261126", (dt.date(2026, 11, 26), dt.date(2026, 11, 26))),
        (" 20261125 - 20261127 ", (dt.date(2026, 11, 25), dt.date(2026, 11, 27))),
    ],
)
def test_a_date_range_has_its_two_ends_and_an_open_end_is_none(
    text: str, expected: tuple[dt.date | None, dt.date | None]
) -> None:
    assert date_range(text, DATE_TAG) == expected


@pytest.mark.parametrize(
    "text", ["20261127-20261125", "2026-11-26", "-", "20261126--", "2026112", "20261326"]
)
def test_a_bad_date_or_range_is_an_invalid_value_naming_its_tag(text: str) -> None:
    with pytest.raises(InvalidQueryValue) as info:
        date_range(text, DATE_TAG)
    assert (info.value.tag, info.value.status) == (DATE_TAG, INVALID_QUERY_VALUE)
    assert str(info.value) == info.value.comment
    assert info.value.comment


def test_a_reversed_range_says_so() -> None:
    with pytest.raises(InvalidQueryValue, match="range ends before it starts"):
        date_range("20261127-20261125", DATE_TAG)
    with pytest.raises(InvalidQueryValue, match="range ends before it starts"):
        time_range("1200-0900", TIME_TAG)
    with pytest.raises(InvalidQueryValue, match="not a valid range"):
        time_range("09-10-11", TIME_TAG)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A single time matches the whole of its precision: 09 is 09:00:00 to 09:59:59.999999.
        ("09", (dt.time(9), dt.time(9, 59, 59, 999999))),
        ("0930", (dt.time(9, 30), dt.time(9, 30, 59, 999999))),
        ("093015", (dt.time(9, 30, 15), dt.time(9, 30, 15, 999999))),
        ("0800-1000", (dt.time(8), dt.time(10, 0, 59, 999999))),
        ("1200-", (dt.time(12), None)),
        ("-0900", (None, dt.time(9, 0, 59, 999999))),
        ("1000-1000", (dt.time(10), dt.time(10, 0, 59, 999999))),
    ],
)
def test_a_time_range_covers_the_precision_of_its_ends(
    text: str, expected: tuple[dt.time | None, dt.time | None]
) -> None:
    assert time_range(text, TIME_TAG) == expected


def test_an_unordered_time_range_may_end_earlier_in_the_day() -> None:
    # Combined with a date range spanning midnight: 22:00 on the first day to 02:00.
    assert time_range("2200-0200", TIME_TAG, ordered=False) == (
        dt.time(22),
        dt.time(2, 0, 59, 999999),
    )


@pytest.mark.parametrize("text", ["25", "0960", "1200-2500", "-99"])
def test_a_bad_time_names_its_tag(text: str) -> None:
    with pytest.raises(InvalidQueryValue) as info:
        time_range(text, TIME_TAG)
    assert info.value.tag == TIME_TAG


def test_a_query_error_carries_tag_and_comment() -> None:
    error = QueryError(0x00100010, "bad name")
    assert (error.tag, error.comment, str(error)) == (0x00100010, "bad name", "bad name")
    assert QueryError.status == 0xC000  # Unable to process


@pytest.mark.parametrize(
    "sps",
    [
        {"ScheduledProcedureStepStartDate": ["20261125", "20261126"]},
        {"ScheduledProcedureStepStartTime": ["0900", "1000"]},
    ],
)
def test_a_date_or_time_key_takes_one_value_or_one_range(sps: dict[str, list[str]]) -> None:
    from tests.fixtures_dicom import worklist_query
    from worklist.matching import match

    with pytest.raises(InvalidQueryValue) as info:
        match(worklist_query(sps=sps))
    tag = DATE_TAG if "ScheduledProcedureStepStartDate" in sps else TIME_TAG
    assert info.value.tag == tag
    assert "takes one value or one range" in info.value.comment


# --- through match(): the identifier's structure (no database needed to build it) -------


def test_offending_element_names_the_tag_or_nothing() -> None:
    from worklist.matching import offending

    assert offending(None) is None
    assert offending(DATE_TAG) == [DATE_TAG]


def test_a_time_range_may_be_a_single_instant() -> None:
    # The end's precision reaches the start: not "ends before it starts".
    assert time_range("100000.999999-100000", TIME_TAG) == (
        dt.time(10, 0, 0, 999999),
        dt.time(10, 0, 0, 999999),
    )


def test_a_bad_end_of_a_date_range_names_its_tag() -> None:
    with pytest.raises(InvalidQueryValue) as info:
        date_range("20261125-20261399", DATE_TAG)
    assert info.value.tag == DATE_TAG


def test_only_trailing_padding_is_dropped_from_an_unknown_vr() -> None:
    assert element_values(DataElement(0x00091010, "UN", b"AX \x00")) == ["AX"]


def test_two_birth_dates_are_an_invalid_value_naming_the_tag() -> None:
    from tests.fixtures_dicom import worklist_query
    from worklist.matching import match

    with pytest.raises(InvalidQueryValue) as info:
        match(worklist_query(PatientBirthDate=["19700101", "19800101"]))
    assert info.value.tag == 0x00100030


SPS_SEQUENCE_TAG = 0x00400100
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900


def test_the_sps_must_be_a_sequence_of_at_most_one_item() -> None:
    from pydicom import Dataset

    from worklist.matching import IdentifierDoesNotMatch, match

    not_a_sequence = Dataset()
    not_a_sequence.add_new(SPS_SEQUENCE_TAG, "LO", "CT")
    with pytest.raises(IdentifierDoesNotMatch) as info:
        match(not_a_sequence)
    assert (info.value.tag, info.value.status) == (
        SPS_SEQUENCE_TAG,
        IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
    )
    assert info.value.comment == "ScheduledProcedureStepSequence must be a sequence"
    two = Dataset()
    two.ScheduledProcedureStepSequence = [Dataset(), Dataset()]
    with pytest.raises(IdentifierDoesNotMatch) as info:
        match(two)
    assert info.value.tag == SPS_SEQUENCE_TAG
    assert (
        info.value.comment == "ScheduledProcedureStepSequence may hold one item in a query, not 2"
    )


def test_every_unsupported_key_in_the_sps_item_is_reported() -> None:
    from pydicom import Dataset

    from worklist.matching import match

    item = Dataset()
    # Neither is a matching key here: (0040,0400) is returned only, (0040,0004) unknown.
    item.CommentsOnTheScheduledProcedureStep = "x"
    item.ScheduledProcedureStepEndDate = "20261125"
    item.Modality = "CT"
    item.RequestedContrastAgent = ""  # universal: asks for the value, nothing to match
    query = Dataset()
    query.ScheduledProcedureStepSequence = [item]
    assert sorted(match(query).unsupported) == [0x00400004, 0x00400400]


@pytest.mark.django_db
def test_birth_date_ranges_have_both_ends() -> None:
    from tests.fixtures_dicom import schedule, worklist_query
    from worklist.matching import MatchOptions, match

    for n, born in enumerate(("1950-05-05", "1970-01-02", "1990-12-31")):
        schedule(
            patient_id=f"P{n}", accession=f"A{n}", sps_id=f"S{n}", patient={"birth_date": born}
        )

    def ids(value: str) -> list[str]:
        query = worklist_query(PatientBirthDate=value)
        return sorted(match(query, MatchOptions()).queryset.values_list("sps_id", flat=True))

    assert ids("19600101-19800101") == ["S1"]
    assert ids("19700102") == ["S1"]
    assert ids("19700102-") == ["S1", "S2"]
    assert ids("-19700102") == ["S0", "S1"]
    assert ids("19500505-19901231") == ["S0", "S1", "S2"]


@pytest.mark.django_db
def test_names_ignore_case_when_the_site_asks() -> None:
    from tests.fixtures_dicom import schedule, worklist_query
    from worklist.matching import MatchOptions, match

    schedule(patient_name="DOE^JOHN", order={"referring_physician": "Smith^Anna"})

    def count(options: MatchOptions, **keys: str) -> int:
        return match(worklist_query(**keys), options).queryset.count()

    exact, folded = MatchOptions(), MatchOptions(pn_case_insensitive=True)
    assert count(exact, PatientName="doe^john") == 0
    assert count(folded, PatientName="doe^john") == 1
    assert count(folded, PatientName="do*") == 1
    assert count(folded, ReferringPhysicianName="SMITH^ANNA") == 1
    assert count(exact, ReferringPhysicianName="SMITH^ANNA") == 0
    assert count(folded, PatientName="SMITH*") == 0
