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
