"""Worklist matching rules (PS3.4 C.2.2.2, K.2.2), on the database layer, no sockets."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest
from pydicom import Dataset

from tests.fixtures_dicom import local, schedule, worklist_query
from worklist.matching import (
    IdentifierDoesNotMatch,
    InvalidQueryValue,
    MatchOptions,
    glob_pattern,
    like_pattern,
    match,
)

pytestmark = [
    pytest.mark.django_db,
    # The queries built here hold invalid values and wildcards on purpose; pydicom warns.
    pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning"),
]


def sps_ids(identifier: Dataset, **options: Any) -> list[str]:
    queryset = match(identifier, MatchOptions(**options)).queryset
    return sorted(queryset.values_list("sps_id", flat=True))


@pytest.fixture
def three_steps() -> None:
    schedule(
        patient_id="P1",
        patient_name="VIVALDI^ANTONIO",
        accession="A1",
        sps_id="S1",
        modality="MR",
        start=local(2026, 11, 25, 8, 30),
        stations=("AA32", "AA33"),
        patient={"birth_date": "1678-03-04"},
        order={"referring_physician": "Smith^Anna"},
        procedure={"code_value": "RPC1", "code_scheme": "LOCAL", "code_meaning": "MR brain"},
        step={"performing_physician": "Johnson^Paul"},
    )
    schedule(
        patient_id="P2",
        patient_name="MOZART^WOLFGANG^AMADEUS",
        accession="A2",
        sps_id="S2",
        modality="CT",
        start=local(2026, 11, 25, 14, 0),
        stations=("CT1",),
        patient={"birth_date": "1756-01-27"},
    )
    schedule(
        patient_id="P3",
        patient_name="Bach^Johann_Sebastian",
        accession="A3",
        sps_id="S3",
        modality="CT",
        start=local(2026, 11, 26, 9, 15),
        stations=("CT1",),
        patient={"birth_date": "1685-03-31"},
    )


def test_an_empty_query_matches_every_offered_step(three_steps: None) -> None:
    assert sps_ids(worklist_query()) == ["S1", "S2", "S3"]


def test_empty_and_asterisk_values_are_universal(three_steps: None) -> None:
    query = worklist_query(PatientName="", PatientID="*", sps={"Modality": "**"})
    assert sps_ids(query) == ["S1", "S2", "S3"]


def test_single_value_matching_is_exact(three_steps: None) -> None:
    assert sps_ids(worklist_query(PatientID="P2")) == ["S2"]
    assert sps_ids(worklist_query(PatientID="P")) == []
    assert sps_ids(worklist_query(AccessionNumber="A3")) == ["S3"]


def test_person_names_match_case_sensitively_by_default(three_steps: None) -> None:
    assert sps_ids(worklist_query(PatientName="VIVALDI^ANTONIO")) == ["S1"]
    assert sps_ids(worklist_query(PatientName="vivaldi^antonio")) == []
    assert sps_ids(worklist_query(PatientName="bach*")) == []


def test_person_names_match_case_insensitively_when_configured(three_steps: None) -> None:
    assert sps_ids(worklist_query(PatientName="vivaldi^antonio"), pn_case_insensitive=True) == [
        "S1"
    ]
    assert sps_ids(worklist_query(PatientName="bach*"), pn_case_insensitive=True) == ["S3"]
    referring = worklist_query(ReferringPhysicianName="SMITH^ANNA")
    assert sps_ids(referring) == []
    assert sps_ids(referring, pn_case_insensitive=True) == ["S1"]
    requesting = worklist_query(RequestingPhysician="nobody*")
    assert sps_ids(requesting, pn_case_insensitive=True) == []


def test_a_person_name_without_a_key_column_matches_case_insensitively_when_configured() -> None:
    # Requesting Physician (0032,1032) has no upper-cased search column: it is compared
    # upper-cased in SQL.
    schedule(sps_id="S9", order={"requesting_physician": "Jones^Mary"})
    schedule(patient_id="P8", accession="A8", sps_id="S8", order={"requesting_physician": "Bo^Li"})
    exact = worklist_query(RequestingPhysician="Jones^Mary")
    assert sps_ids(exact) == ["S9"]
    assert sps_ids(worklist_query(RequestingPhysician="JONES^MARY")) == []
    assert sps_ids(worklist_query(RequestingPhysician="JONES^MARY"), pn_case_insensitive=True) == [
        "S9"
    ]
    assert sps_ids(worklist_query(RequestingPhysician="jones*"), pn_case_insensitive=True) == ["S9"]
    assert sps_ids(worklist_query(RequestingPhysician="jones*")) == []
    assert sps_ids(worklist_query(RequestingPhysician="b?^LI"), pn_case_insensitive=True) == ["S8"]


def test_asterisk_matches_any_run_of_characters(three_steps: None) -> None:
    assert sps_ids(worklist_query(PatientName="MO*")) == ["S2"]
    assert sps_ids(worklist_query(PatientName="*^A*")) == ["S1", "S2"]


def test_question_mark_matches_exactly_one_character(three_steps: None) -> None:
    assert sps_ids(worklist_query(PatientID="P?")) == ["S1", "S2", "S3"]
    assert sps_ids(worklist_query(PatientName="VIVALD?^ANTONIO")) == ["S1"]
    assert sps_ids(worklist_query(PatientName="VIVAL?^ANTONIO")) == []


def test_sql_wildcard_characters_in_a_query_are_literal(three_steps: None) -> None:
    assert sps_ids(worklist_query(PatientName="Bach^Johann_*")) == ["S3"]
    assert sps_ids(worklist_query(PatientName="Bach^Johann%")) == []
    assert sps_ids(worklist_query(PatientName="Bach^Johann?Seb*")) == ["S3"]
    assert sps_ids(worklist_query(PatientName="MOZART^WOLFGANG_AMADEUS")) == []
    assert sps_ids(worklist_query(PatientName="[MB]*")) == []


def test_patterns_are_escaped_for_each_database() -> None:
    assert like_pattern("A%B_C*D?") == "A\\%B\\_C%D_"
    assert glob_pattern("[A]*") == "[[]A]*"


def test_several_values_match_any_of_them(three_steps: None) -> None:
    assert sps_ids(worklist_query(PatientID=["P1", "P3"])) == ["S1", "S3"]


def test_a_list_of_uids_matches_any_of_them(three_steps: None) -> None:
    from worklist.models import RequestedProcedure

    uids = dict(
        RequestedProcedure.objects.values_list("order__accession_number", "study_instance_uid")
    )
    first, third = uids["A1"], uids["A3"]
    # Three different UIDs, so that matching one is not matching all.
    assert len(set(uids.values())) == 3
    assert sps_ids(worklist_query(StudyInstanceUID=[first, third])) == ["S1", "S3"]
    assert sps_ids(worklist_query(StudyInstanceUID=third)) == ["S3"]
    assert sps_ids(worklist_query(StudyInstanceUID="1.2.3.4")) == []


def test_a_list_of_uids_holding_a_universal_value_matches_every_step(three_steps: None) -> None:
    # Any of the values may match (C.2.2.2.2), and "*" alone matches every step.
    assert sps_ids(worklist_query(StudyInstanceUID=["1.2.3.4", "*"])) == ["S1", "S2", "S3"]


def test_a_date_matches_a_single_day(three_steps: None) -> None:
    assert sps_ids(worklist_query(sps={"ScheduledProcedureStepStartDate": "20261125"})) == [
        "S1",
        "S2",
    ]
    assert sps_ids(worklist_query(PatientBirthDate="17560127")) == ["S2"]


def test_date_ranges_may_be_open_at_either_end(three_steps: None) -> None:
    def by_date(value: str) -> list[str]:
        return sps_ids(worklist_query(sps={"ScheduledProcedureStepStartDate": value}))

    assert by_date("20261125-20261126") == ["S1", "S2", "S3"]
    assert by_date("20261126-") == ["S3"]
    assert by_date("-20261125") == ["S1", "S2"]
    assert sps_ids(worklist_query(PatientBirthDate="-17000101")) == ["S1", "S3"]


def test_an_open_ended_date_range_runs_to_the_last_day(three_steps: None) -> None:
    # PS3.4 C.2.2.2.5.1: "<date>-" matches that date and every later one, not one day.
    schedule(patient_id="P4", accession="A4", sps_id="S4", start=local(2026, 12, 24, 9, 0))
    by_date = lambda value: sps_ids(  # noqa: E731
        worklist_query(sps={"ScheduledProcedureStepStartDate": value})
    )
    assert by_date("20261126-") == ["S3", "S4"]
    assert by_date("20261127-") == ["S4"]
    assert by_date("-20261126") == ["S1", "S2", "S3"]


def test_time_ranges_match_the_time_of_day(three_steps: None) -> None:
    def by_time(value: str) -> list[str]:
        return sps_ids(worklist_query(sps={"ScheduledProcedureStepStartTime": value}))

    assert by_time("120000-") == ["S2"]
    assert by_time("-0900") == ["S1"]
    assert by_time("0800-1000") == ["S1", "S3"]
    assert by_time("14") == ["S2"]
    assert by_time("0830") == ["S1"]


def test_start_date_and_time_together_form_one_range(three_steps: None) -> None:
    query = worklist_query(
        sps={
            "ScheduledProcedureStepStartDate": "20261125-20261126",
            "ScheduledProcedureStepStartTime": "1000-0900",
        }
    )
    # From 25 Nov 10:00 to 26 Nov 09:00: S2 (25th 14:00) only; a time-of-day filter
    # would have found nothing for 10:00-09:00.
    assert sps_ids(query) == ["S2"]
    same_day = worklist_query(
        sps={
            "ScheduledProcedureStepStartDate": "20261125",
            "ScheduledProcedureStepStartTime": "0800-0900",
        }
    )
    assert sps_ids(same_day) == ["S1"]
    open_end = worklist_query(
        sps={
            "ScheduledProcedureStepStartDate": "20261125-",
            "ScheduledProcedureStepStartTime": "1200-",
        }
    )
    assert sps_ids(open_end) == ["S2", "S3"]


@pytest.fixture
def five_steps(three_steps: None) -> None:
    # Around the three: S0 the evening before, S4 the morning after.
    schedule(patient_id="P0", accession="A0", sps_id="S0", start=local(2026, 11, 24, 23, 0))
    schedule(patient_id="P4", accession="A4", sps_id="S4", start=local(2026, 11, 27, 7, 0))


# PS3.4 C.2.2.2.5.1: SPS Start Date and Start Time given together are one date-time
# range, from (low date, low time) to (high date, high time); an end left open is open
# in date and time. Steps: S0 24 Nov 23:00, S1 25 Nov 08:30, S2 25 Nov 14:00,
# S3 26 Nov 09:15, S4 27 Nov 07:00.
@pytest.mark.parametrize(
    ("date", "time", "expected"),
    [
        ("20261125-", "1200-", ["S2", "S3", "S4"]),
        ("-20261126", "-0900", ["S0", "S1", "S2"]),
        ("20261125-20261126", "-1000", ["S1", "S2", "S3"]),
        ("20261125-20261126", "0900-", ["S2", "S3"]),
        ("20261125-20261126", "0900-0930", ["S2", "S3"]),
        ("20261125-20261126", "0830-0915", ["S1", "S2", "S3"]),
        ("20261125-20261126", "0831-0914", ["S2"]),
        # The low time belongs to the low date: with none, it bounds nothing.
        ("-20261125", "1000-", ["S0", "S1", "S2"]),
        # The high time belongs to the high date: with none, it bounds nothing.
        ("20261126-", "-0800", ["S3", "S4"]),
        # One day (also written as a range): the times are a time-of-day range.
        ("20261125", "1000-", ["S2"]),
        ("20261125", "-1000", ["S1"]),
        ("20261125-20261125", "0800-1000", ["S1"]),
        ("20261125", "", ["S1", "S2"]),
        # Dates alone, a range of two days: both ends bound.
        ("20261125-20261126", "", ["S1", "S2", "S3"]),
        # Time alone: the time of day, on any date.
        ("", "0900-1000", ["S3"]),
        ("", "-0900", ["S1", "S4"]),
        ("", "1400-", ["S0", "S2"]),
        ("", "1400", ["S2"]),
    ],
)
def test_start_date_and_time_ranges_with_open_ends(
    five_steps: None, date: str, time: str, expected: list[str]
) -> None:
    sps = {"ScheduledProcedureStepStartDate": date, "ScheduledProcedureStepStartTime": time}
    assert sps_ids(worklist_query(sps=sps)) == expected


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("ScheduledProcedureStepStartDate", "2026-13-45"),
        ("ScheduledProcedureStepStartDate", "20261345"),
        ("ScheduledProcedureStepStartDate", "20261126-20261125"),
        ("ScheduledProcedureStepStartDate", "2026-11-25-2026"),
        ("ScheduledProcedureStepStartDate", "-"),
        ("ScheduledProcedureStepStartTime", "2500"),
        ("ScheduledProcedureStepStartTime", "1200-1100"),
        ("ScheduledProcedureStepStartTime", "noon"),
    ],
)
def test_invalid_dates_times_and_ranges_are_refused_naming_the_attribute(
    keyword: str, value: str
) -> None:
    with pytest.raises(InvalidQueryValue) as refused:
        match(worklist_query(sps={keyword: value}))
    assert (
        refused.value.tag
        == {
            "ScheduledProcedureStepStartDate": 0x00400002,
            "ScheduledProcedureStepStartTime": 0x00400003,
        }[keyword]
    )
    assert value in refused.value.comment


def test_an_invalid_birth_date_is_refused() -> None:
    with pytest.raises(InvalidQueryValue) as refused:
        match(worklist_query(PatientBirthDate="19991332"))
    assert refused.value.tag == 0x00100030


def test_keys_inside_the_step_sequence_match_the_same_step(three_steps: None) -> None:
    query = worklist_query(sps={"Modality": "CT", "ScheduledProcedureStepStartDate": "20261126"})
    assert sps_ids(query) == ["S3"]
    assert sps_ids(worklist_query(sps={"Modality": "MR", "ScheduledStationAETitle": "CT1"})) == []


def test_the_item_character_set_and_group_lengths_are_not_keys(three_steps: None) -> None:
    query = worklist_query(sps={"SpecificCharacterSet": "ISO_IR 100", "Modality": "MR"})
    item = query.ScheduledProcedureStepSequence[0]
    item.add_new(0x00080000, "UL", 0)  # group length, before Modality in the item
    item.add_new(0x00400000, "UL", 0)
    item.ScheduledProcedureStepID = "S1"
    assert sps_ids(query) == ["S1"]
    item.ScheduledProcedureStepID = "S2"
    assert sps_ids(query) == []
    assert match(query).unsupported == []


def test_names_inside_the_step_sequence_ignore_case_when_configured(three_steps: None) -> None:
    query = worklist_query(sps={"ScheduledPerformingPhysicianName": "johnson^paul"})
    assert sps_ids(query) == []
    assert sps_ids(query, pn_case_insensitive=True) == ["S1"]
    exact = worklist_query(sps={"ScheduledPerformingPhysicianName": "Johnson^Paul"})
    assert sps_ids(exact) == ["S1"]


def test_keys_inside_the_requested_procedure_code_sequence_match(three_steps: None) -> None:
    query = worklist_query()
    item = Dataset()
    item.CodeValue = "RPC1"
    item.CodingSchemeDesignator = ""
    query.RequestedProcedureCodeSequence = [item]
    assert sps_ids(query) == ["S1"]


def test_a_step_matches_when_any_of_its_station_ae_titles_matches(three_steps: None) -> None:
    assert sps_ids(worklist_query(sps={"ScheduledStationAETitle": "AA33"})) == ["S1"]
    assert sps_ids(worklist_query(sps={"ScheduledStationAETitle": "AA32"})) == ["S1"]
    assert sps_ids(worklist_query(sps={"ScheduledStationAETitle": "AA3?"})) == ["S1"]
    assert sps_ids(worklist_query(sps={"ScheduledStationAETitle": "CT1"})) == ["S2", "S3"]
    assert sps_ids(worklist_query(sps={"ScheduledStationAETitle": "AA3"})) == []


def test_a_step_with_two_matching_station_titles_is_returned_once(three_steps: None) -> None:
    assert sps_ids(worklist_query(sps={"ScheduledStationAETitle": "AA*"})) == ["S1"]


def test_only_scheduled_arrived_and_ready_steps_are_offered_by_default(three_steps: None) -> None:
    for n, status in enumerate(
        ["ARRIVED", "READY", "STARTED", "COMPLETED", "DISCONTINUED", "CANCELED"]
    ):
        schedule(patient_id=f"Q{n}", accession=f"B{n}", sps_id=f"T{n}", status=status)
    assert sps_ids(worklist_query()) == ["S1", "S2", "S3", "T0", "T1"]
    assert sps_ids(worklist_query(sps={"ScheduledProcedureStepStatus": ""})) == [
        "S1",
        "S2",
        "S3",
        "T0",
        "T1",
    ]


def test_a_query_naming_the_status_gets_exactly_that_status(three_steps: None) -> None:
    schedule(patient_id="Q1", accession="B1", sps_id="T1", status="COMPLETED")
    schedule(patient_id="Q2", accession="B2", sps_id="T2", status="CANCELED")
    assert sps_ids(worklist_query(sps={"ScheduledProcedureStepStatus": "COMPLETED"})) == ["T1"]
    assert sps_ids(
        worklist_query(sps={"ScheduledProcedureStepStatus": ["CANCELED", "COMPLETED"]})
    ) == [
        "T1",
        "T2",
    ]
    assert len(sps_ids(worklist_query(sps={"ScheduledProcedureStepStatus": "*"}))) == 5


def test_the_calling_ae_stands_for_the_station_when_configured(three_steps: None) -> None:
    assert sps_ids(worklist_query(), calling_ae="CT1") == ["S1", "S2", "S3"]
    assert sps_ids(worklist_query(), calling_ae="CT1", calling_ae_as_station=True) == ["S2", "S3"]
    explicit = worklist_query(sps={"ScheduledStationAETitle": "AA33"})
    assert sps_ids(explicit, calling_ae="CT1", calling_ae_as_station=True) == ["S1"]
    everything = worklist_query(sps={"ScheduledStationAETitle": "*"})
    assert sps_ids(everything, calling_ae="CT1", calling_ae_as_station=True) == ["S1", "S2", "S3"]


def test_the_calling_ae_stands_for_the_station_alongside_other_keys(three_steps: None) -> None:
    options = {"calling_ae": "CT1", "calling_ae_as_station": True}
    # S1 is the MR step, scheduled on AA32 and AA33, not on CT1.
    assert sps_ids(worklist_query(sps={"Modality": "MR"}), **options) == []
    assert sps_ids(worklist_query(PatientID="P1"), **options) == []
    assert sps_ids(worklist_query(PatientID="P2"), **options) == ["S2"]
    no_title = worklist_query(PatientID="P1", sps={"ScheduledStationAETitle": ""})
    assert sps_ids(no_title, **options) == []


def test_values_of_keys_the_broker_cannot_match_are_reported(three_steps: None) -> None:
    query = worklist_query(PatientWeight="70", sps={"CommentsOnTheScheduledProcedureStep": "x"})
    query.add_new(0x00091010, "LO", "private")
    result = match(query)
    assert sorted(result.queryset.values_list("sps_id", flat=True)) == ["S1", "S2", "S3"]
    assert result.unsupported == [0x00091010, 0x00101030, 0x00400400]


def test_universal_values_of_unsupported_keys_are_not_reported(three_steps: None) -> None:
    query = worklist_query(PatientWeight="", sps={"CommentsOnTheScheduledProcedureStep": "*"})
    assert match(query).unsupported == []
    # (0040,0004) SPS End Date is not a worklist key at all; asked for, not matched on.
    unknown = worklist_query(sps={"ScheduledProcedureStepEndDate": ""})
    assert match(unknown).unsupported == []
    unknown.ScheduledProcedureStepSequence[0].ScheduledProcedureStepEndDate = "*"
    assert match(unknown).unsupported == []


def test_an_unknown_sequence_asking_for_return_keys_is_not_reported(three_steps: None) -> None:
    # Procedure Code Sequence (0008,1032) is not in the worklist; its item asks, not matches.
    query = worklist_query()
    item = Dataset()
    item.CodeValue = ""
    item.CodeMeaning = "*"
    query.ProcedureCodeSequence = [item]
    result = match(query)
    assert result.unsupported == []
    assert sorted(result.queryset.values_list("sps_id", flat=True)) == ["S1", "S2", "S3"]


def test_a_query_retrieve_identifier_does_not_match_the_worklist_model() -> None:
    with pytest.raises(IdentifierDoesNotMatch) as refused:
        match(worklist_query(QueryRetrieveLevel="STUDY", PatientID="P1"))
    # 0xA900 Identifier does not match SOP Class (PS3.4 Table K.4-1), naming (0008,0052).
    assert (refused.value.status, refused.value.tag) == (0xA900, 0x00080052)
    assert refused.value.comment == (
        "Query/Retrieve Level belongs to a Query/Retrieve identifier, not a worklist query"
    )


def test_a_step_sequence_with_two_items_does_not_match_the_worklist_model() -> None:
    query = worklist_query()
    query.ScheduledProcedureStepSequence = [Dataset(), Dataset()]
    with pytest.raises(IdentifierDoesNotMatch):
        match(query)


def test_a_step_sequence_that_is_not_a_sequence_does_not_match_the_worklist_model() -> None:
    query = worklist_query()
    query.add_new(0x00400100, "LO", "CT")
    with pytest.raises(IdentifierDoesNotMatch):
        match(query)


def test_query_values_are_decoded_with_the_query_character_set() -> None:
    schedule(patient_id="U1", accession="U1", sps_id="U1", patient_name="Müller^Jürgen")
    schedule(patient_id="U2", accession="U2", sps_id="U2", patient_name="山田^太郎")
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset
    from pydicom.filewriter import write_dataset

    def roundtrip(charset: str, name: str) -> Dataset:
        query = worklist_query(SpecificCharacterSet=charset, PatientName=name)
        buffer = DicomBytesIO()
        buffer.is_little_endian = True
        buffer.is_implicit_VR = True
        write_dataset(buffer, query)
        return read_dataset(BytesIO(buffer.getvalue()), True, True)

    assert sps_ids(roundtrip("ISO_IR 100", "Müller^Jürgen")) == ["U1"]
    assert sps_ids(roundtrip("ISO_IR 192", "Müller^Jürgen")) == ["U1"]
    assert sps_ids(roundtrip("ISO_IR 192", "山田*")) == ["U2"]


def test_the_typical_scanner_query_uses_indexes(three_steps: None) -> None:
    from django.db import connection

    query = worklist_query(
        sps={
            "ScheduledStationAETitle": "CT1",
            "ScheduledProcedureStepStartDate": "20261125",
            "Modality": "CT",
        }
    )
    plan = match(query).queryset.explain()
    if connection.vendor == "sqlite":
        assert "SCAN worklist_scheduledprocedurestep" not in plan
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan
    else:
        assert "Index" in plan
