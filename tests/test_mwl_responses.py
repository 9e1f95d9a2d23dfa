"""Worklist response building: return-key rules and character sets, no sockets."""

from __future__ import annotations

from decimal import Decimal
from io import BytesIO
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from tests.fixtures_dicom import local, schedule, worklist_query
from worklist.dimse import find

pytestmark = pytest.mark.django_db


def encoded(ds: Dataset, *, implicit: bool = True, little: bool = True) -> Dataset:
    """The answer as a peer receives it: encoded as pynetdicom does, then decoded."""
    buffer = DicomBytesIO()
    buffer.is_implicit_VR = implicit
    buffer.is_little_endian = little
    write_dataset(buffer, ds)
    return read_dataset(BytesIO(buffer.getvalue()), implicit, little)


def answers(query: Dataset, *, implicit: bool = True, little: bool = True) -> list[Dataset]:
    result = find(query, implicit_vr=implicit, little_endian=little)
    return [encoded(ds, implicit=implicit, little=little) for ds in result.datasets]


def keywords(ds: Dataset) -> list[str]:
    return [element.keyword for element in ds]


def test_it_returns_exactly_the_requested_attributes_plus_the_character_set() -> None:
    schedule(patient={"sex": "M"}, order={"referring_physician": "SMITH"})
    (answer,) = answers(worklist_query(PatientName="", AccessionNumber=""))
    assert keywords(answer) == ["SpecificCharacterSet", "AccessionNumber", "PatientName"]
    assert answer.PatientName == "DOE^JOHN"
    assert answer.AccessionNumber == "A1"


def test_a_requested_attribute_without_a_value_comes_back_zero_length() -> None:
    schedule()
    (answer,) = answers(worklist_query(PatientBirthDate="", AdmissionID="", PatientWeight=""))
    for keyword in ("PatientBirthDate", "AdmissionID", "PatientWeight"):
        assert keyword in answer
        assert answer[keyword].is_empty


def test_there_is_one_response_per_scheduled_step() -> None:
    schedule(sps_id="S1")
    schedule(sps_id="S2", modality="MR")
    result = answers(worklist_query(AccessionNumber="", sps={"ScheduledProcedureStepID": ""}))
    assert [a.AccessionNumber for a in result] == ["A1", "A1"]
    steps = sorted(a.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID for a in result)
    assert steps == ["S1", "S2"]


def test_an_empty_step_item_returns_every_step_attribute() -> None:
    schedule(
        stations=("AA32", "AA33"),
        step={
            "description": "CT head",
            "station_name": "STN1",
            "location": "ROOM1",
            "performing_physician": "JOHNSON",
            "contrast_agent": "BARIUM",
            "premedication": "NONE",
            "comments": "fasting",
            "protocol_codes": [{"value": "P1", "scheme": "LOCAL", "meaning": "Head"}],
        },
    )
    (answer,) = answers(worklist_query(sps={}))
    item = answer.ScheduledProcedureStepSequence[0]
    assert item.ScheduledStationAETitle == ["AA32", "AA33"]
    assert item.ScheduledProcedureStepStartDate == "20261125"
    assert item.ScheduledProcedureStepStartTime == "090000"
    assert item.Modality == "CT"
    assert item.ScheduledPerformingPhysicianName == "JOHNSON"
    assert item.ScheduledProcedureStepDescription == "CT head"
    assert item.ScheduledStationName == "STN1"
    assert item.ScheduledProcedureStepLocation == "ROOM1"
    assert item.RequestedContrastAgent == "BARIUM"
    assert item.PreMedication == "NONE"
    assert item.ScheduledProcedureStepStatus == "SCHEDULED"
    assert item.CommentsOnTheScheduledProcedureStep == "fasting"
    code = item.ScheduledProtocolCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == (
        "P1",
        "LOCAL",
        "Head",
    )


def test_a_step_sequence_without_items_also_returns_every_step_attribute() -> None:
    schedule()
    query = worklist_query()
    query.ScheduledProcedureStepSequence = []
    (answer,) = answers(query)
    assert "ScheduledProcedureStepID" in answer.ScheduledProcedureStepSequence[0]


def test_a_step_item_with_keys_returns_only_those_keys() -> None:
    schedule()
    (answer,) = answers(worklist_query(sps={"Modality": "", "ScheduledStationAETitle": ""}))
    item = answer.ScheduledProcedureStepSequence[0]
    assert keywords(item) == ["Modality", "ScheduledStationAETitle"]


def test_an_empty_code_item_returns_the_whole_code() -> None:
    schedule(procedure={"code_value": "RPC1", "code_scheme": "LOCAL", "code_meaning": "MR brain"})
    schedule(accession="A2", sps_id="S2")
    query = worklist_query(AccessionNumber="")
    query.RequestedProcedureCodeSequence = [Dataset()]
    with_code, without_code = sorted(answers(query), key=lambda a: a.AccessionNumber)
    code = with_code.RequestedProcedureCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == (
        "RPC1",
        "LOCAL",
        "MR brain",
    )
    assert len(without_code.RequestedProcedureCodeSequence) == 0


def test_unknown_keys_come_back_empty_and_are_reported() -> None:
    schedule()
    query = worklist_query(
        PatientName="", StudyDescription="", sps={"ScheduledProcedureStepEndDate": ""}
    )
    query.add_new(0x00091010, "LO", "")
    result = find(query)
    (answer,) = [encoded(ds) for ds in result.datasets]
    assert result.unsupported == [0x00081030, 0x00091010, 0x00400004]
    assert answer.StudyDescription == ""
    assert answer[0x00091010].is_empty
    assert answer.ScheduledProcedureStepSequence[0].ScheduledProcedureStepEndDate == ""


def test_known_keys_only_are_not_reported() -> None:
    schedule()
    assert find(worklist_query(PatientName="", sps={})).unsupported == []


def test_the_requested_procedure_priority_falls_back_to_the_order_priority() -> None:
    schedule(order={"priority": "STAT"})
    schedule(accession="A2", order={"priority": "ROUTINE"}, procedure={"priority": "HIGH"})
    result = answers(worklist_query(AccessionNumber="", RequestedProcedurePriority=""))
    assert sorted((a.AccessionNumber, a.RequestedProcedurePriority) for a in result) == [
        ("A1", "STAT"),
        ("A2", "HIGH"),
    ]
    matched = answers(worklist_query(AccessionNumber="", RequestedProcedurePriority="STAT"))
    assert [a.AccessionNumber for a in matched] == ["A1"]


def test_patient_values_are_formatted_as_dicom() -> None:
    schedule(
        patient={
            "birth_date": "1678-03-04",
            "weight_kg": Decimal("70.50"),
            "size_m": Decimal("1.80"),
            "pregnancy_status": 4,
            "other_ids": [{"patient_id": "X9", "issuer": "OTHER"}],
        },
        start=local(2026, 11, 25, 8, 56),
    )
    query = worklist_query(
        PatientBirthDate="",
        PatientWeight="",
        PatientSize="",
        PregnancyStatus=None,
        OtherPatientIDsSequence=[],
        sps={"ScheduledProcedureStepStartTime": ""},
    )
    for implicit, little in [(True, True), (False, True), (False, False)]:
        (answer,) = answers(query, implicit=implicit, little=little)
        assert answer.PatientBirthDate == "16780304"
        assert answer.PatientWeight == 70.5
        assert answer.PatientSize == 1.8
        assert answer.PregnancyStatus == 4
        other = answer.OtherPatientIDsSequence[0]
        assert (other.PatientID, other.IssuerOfPatientID, other.TypeOfPatientID) == (
            "X9",
            "OTHER",
            "TEXT",
        )
        assert answer.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime == "085600"


def test_latin1_names_are_answered_in_iso_ir_100() -> None:
    schedule(patient_name="Müller^Jürgen")
    (answer,) = answers(worklist_query(PatientName=""))
    assert answer.SpecificCharacterSet == "ISO_IR 100"
    assert answer.PatientName == "Müller^Jürgen"


def test_names_beyond_latin1_are_answered_in_utf8() -> None:
    schedule(patient_name="Yamada^Tarou=山田^太郎", step={"performing_physician": "Łukasz"})
    (answer,) = answers(
        worklist_query(PatientName="", sps={"ScheduledPerformingPhysicianName": ""})
    )
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    assert answer.PatientName == "Yamada^Tarou=山田^太郎"
    assert answer.ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName == "Łukasz"


def test_each_answer_chooses_its_own_character_set() -> None:
    schedule(patient_id="P1", accession="A1", patient_name="SMITH^JOHN")
    schedule(patient_id="P2", accession="A2", patient_name="Ωμέγα^Άλφα")
    result = answers(worklist_query(AccessionNumber="", PatientName=""))
    charsets = {a.AccessionNumber: a.SpecificCharacterSet for a in result}
    assert charsets == {"A1": "ISO_IR 100", "A2": "ISO_IR 192"}


def test_answers_beyond_the_maximum_are_not_built() -> None:
    for n in range(5):
        schedule(patient_id=f"P{n}", accession=f"A{n}")
    result = find(worklist_query(AccessionNumber=""), max_answers=3)
    assert result.truncated
    assert result.count == 3
    assert len(list(result.datasets)) == 3
    exact = find(worklist_query(AccessionNumber=""), max_answers=5)
    assert not exact.truncated
    assert exact.count == 5


@pytest.mark.parametrize("implicit", [True, False])
def test_direct_encoding_gives_the_same_bytes_as_pydicom(implicit: bool) -> None:
    from pynetdicom.dsutils import encode

    from worklist.responses import ResponseBuilder, return_keys

    schedule(
        patient_name="Yamada^Tarou=山田^太郎",
        stations=("AA32", "AA33"),
        patient={"pregnancy_status": 2, "weight_kg": Decimal("80.1")},
        procedure={"code_value": "C1", "code_scheme": "L", "code_meaning": "odd"},
        step={
            "protocol_codes": [
                {"value": "P", "scheme": "S", "meaning": "Łódź"},
                {"value": "Q", "scheme": "S", "meaning": "two items"},
            ]
        },
    )
    schedule(accession="A2", sps_id="S2", patient_id="P2", patient_name="PLAIN^ASCII")
    query = worklist_query(
        PatientName="",
        PregnancyStatus=None,
        PatientWeight="",
        StudyInstanceUID="",
        StudyDescription="",
        sps={},
    )
    query.RequestedProcedureCodeSequence = []
    query.ReferencedStudySequence = []
    result = find(query, implicit_vr=implicit, little_endian=True)
    builder: ResponseBuilder = result.builder
    assert isinstance(return_keys(query).nodes, list)
    for row in result.rows:
        direct = builder.encode(row, result.stations)
        assert direct == encode(builder.dataset(row, result.stations), implicit, True)


@pytest.mark.parametrize("implicit", [True, False])
def test_values_with_spaces_in_the_step_item_keep_their_bytes_either_way(implicit: bool) -> None:
    from pynetdicom.dsutils import encode

    # Leading and trailing spaces are not significant in AE and LO (PS3.5 6.2), so pydicom
    # drops them when it decodes a value; a Dataset answer must not be decoded on the way
    # out, or its bytes would differ from the direct encoding's.
    schedule(stations=(" CT1", "CT2 "), step={"description": "MR brain "})
    query = worklist_query(
        sps={"ScheduledStationAETitle": "", "ScheduledProcedureStepDescription": ""}
    )
    for little in (True, False):
        result = find(query, implicit_vr=implicit, little_endian=little)
        (row,) = result.rows
        data = encode(result.builder.dataset(row, result.stations), implicit, little) or b""
        assert b" CT1\\CT2 " in data
        assert b"MR brain  " in data  # the value, and a space to even length
        if little:
            assert data == result.builder.encode(row, result.stations)


def test_a_dataset_answer_reads_as_its_bytes_do() -> None:
    schedule()
    query = worklist_query(PatientName="")
    query.add_new(0x00291010, "UN", b"")  # unknown keys of VRs that are not text
    query.add_new(0x00431010, "FL", None)
    query.add_new(0x00091010, "LO", "")
    # Explicit VR, so that the bytes carry the VRs of the keys pydicom does not know.
    (answer,) = find(query, implicit_vr=False).datasets
    received = encoded(answer, implicit=False)
    for tag in (0x00080005, 0x00091010, 0x00100010, 0x00291010, 0x00431010):
        assert answer[tag].value == received[tag].value, hex(tag)
    # pydicom's empty values: None for a zero-length UN or FL, "" for text.
    assert (answer[0x00291010].value, answer[0x00431010].value) == (None, None)
    assert answer[0x00091010].value == ""


# --- return keys -------------------------------------------------------------------------


def test_the_character_set_and_group_lengths_of_a_query_are_not_return_keys() -> None:
    schedule()
    query = worklist_query(SpecificCharacterSet="ISO_IR 100", PatientName="", sps={"Modality": ""})
    query.add_new(0x00100000, "UL", 12)
    query.ScheduledProcedureStepSequence[0].add_new(0x00400000, "UL", 8)
    result = find(query)
    (answer,) = [encoded(ds) for ds in result.datasets]
    assert result.unsupported == []
    assert keywords(answer) == [
        "SpecificCharacterSet",
        "PatientName",
        "ScheduledProcedureStepSequence",
    ]
    assert keywords(answer.ScheduledProcedureStepSequence[0]) == ["Modality"]


def test_a_step_sequence_of_two_items_is_refused() -> None:
    from worklist.matching import IdentifierDoesNotMatch
    from worklist.responses import return_keys

    query = worklist_query()
    query.ScheduledProcedureStepSequence = [Dataset(), Dataset()]
    with pytest.raises(IdentifierDoesNotMatch) as info:
        return_keys(query)
    assert info.value.tag == 0x00400100
    assert (
        info.value.comment == "ScheduledProcedureStepSequence may hold one item in a query, not 2"
    )


def test_an_unknown_key_keeps_its_vr_or_becomes_un() -> None:
    from pynetdicom.dsutils import encode

    schedule()
    query = worklist_query(PatientName="", SmallestImagePixelValue=None)  # (0028,0106) US or SS
    query.add_new(0x00091010, "LO", "")
    query.add_new(0x00098010, "LO", "")  # an element number of 0x8000 or more
    result = find(query, implicit_vr=False)
    assert result.unsupported == [0x00091010, 0x00098010, 0x00280106]
    row = result.rows[0]
    # Explicit VR Little Endian (PS3.5 7.1.2): tag, VR, a 2-byte length of 0; UN has two
    # reserved bytes and a 4-byte length.
    for data in (
        result.builder.encode(row, result.stations),
        encode(result.builder.dataset(row, result.stations), False, True) or b"",
    ):
        assert b"\x09\x00\x10\x10LO\x00\x00" in data
        assert b"\x09\x00\x10\x80LO\x00\x00" in data
        assert b"\x28\x00\x06\x01UN\x00\x00\x00\x00\x00\x00" in data


def test_unknown_keys_in_a_code_item_come_back_empty() -> None:
    schedule(patient={"other_ids": [{"patient_id": "X9", "issuer": "OTHER"}]})
    item = Dataset()
    item.PatientID = ""
    item.add_new(0x00100024, "SQ", [])  # Issuer of Patient ID Qualifiers Sequence
    item.add_new(0x00101000, "LO", "")  # Other Patient IDs (retired)
    query = worklist_query(OtherPatientIDsSequence=[item])
    result = find(query)
    assert result.unsupported == [0x00100024, 0x00101000]
    (answer,) = [encoded(ds) for ds in result.datasets]
    other = answer.OtherPatientIDsSequence[0]
    assert other.PatientID == "X9"
    assert len(other[0x00100024].value) == 0
    assert other[0x00101000].is_empty
    from pynetdicom.dsutils import encode

    row = result.rows[0]
    direct = result.builder.encode(row, result.stations)
    assert direct == encode(result.builder.dataset(row, result.stations), True, True)


# --- values ------------------------------------------------------------------------------


def test_column_values_as_dicom_text() -> None:
    from datetime import date, datetime, time

    from worklist.responses import dicom_text

    assert dicom_text(None) == ""
    assert dicom_text("A1") == "A1"
    assert dicom_text(datetime(2026, 11, 25, 9, 30)) == "20261125"  # DA: YYYYMMDD
    assert dicom_text(date(1678, 3, 4)) == "16780304"
    assert dicom_text(time(8, 56)) == "085600"  # TM: HHMMSS.FFFFFF
    assert dicom_text(time(8, 56, 1, 250000)) == "085601.250000"
    assert dicom_text(Decimal("70.50")) == "70.5"  # DS without exponent
    assert dicom_text(Decimal("100.00")) == "100"
    assert dicom_text(7) == "7"


def test_the_station_ae_titles_of_a_step_without_any_are_empty() -> None:
    schedule(stations=())
    (answer,) = answers(worklist_query(sps={"ScheduledStationAETitle": ""}))
    assert answer.ScheduledProcedureStepSequence[0].ScheduledStationAETitle == ""


def test_titles_are_read_only_when_asked_for(django_assert_num_queries: Any) -> None:
    schedule(stations=("AA32", "AA33"))
    with django_assert_num_queries(1):
        find(worklist_query(PatientName="", sps={"Modality": ""}))
    with django_assert_num_queries(2):
        result = find(worklist_query(sps={"ScheduledStationAETitle": ""}))
    assert result.stations[result.rows[0][0]] == ["AA32", "AA33"]


def test_answers_come_in_order_of_the_step_start() -> None:
    schedule(sps_id="S1", start=local(2026, 11, 26, 9, 0))
    schedule(sps_id="S2", start=local(2026, 11, 25, 10, 0))
    schedule(sps_id="S3", start=local(2026, 11, 25, 8, 0))
    schedule(sps_id="S4", start=local(2026, 11, 25, 8, 0))
    result = answers(worklist_query(sps={"ScheduledProcedureStepID": ""}))
    steps = [a.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID for a in result]
    assert steps == ["S3", "S4", "S2", "S1"]


def test_answers_with_the_same_start_come_in_the_order_they_were_scheduled() -> None:
    from worklist.models import ScheduledProcedureStep

    steps = [schedule(sps_id=f"S{n}", start=local(2026, 11, 25, 8, 0)) for n in range(1, 13)]
    # Rewrite the steps newest first, changing an indexed column: PostgreSQL then stores
    # each new row version after the others, so its scans (heap and index) and its sort
    # meet these ties newest first. SQLite keeps them in rowid order either way.
    for step in reversed(steps):
        ScheduledProcedureStep.objects.filter(pk=step.pk).update(modality="MR")
    query = worklist_query(sps={"ScheduledProcedureStepID": ""})
    result = answers(query)
    steps_in_order = [a.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID for a in result]
    assert steps_in_order == [f"S{n}" for n in range(1, 13)]
    # With a limit, the first five scheduled of the tie.
    first = find(query, max_answers=5)
    assert [row[0] for row in first.rows] == [step.pk for step in steps[:5]]


def test_station_titles_come_in_the_order_they_were_given() -> None:
    from worklist.models import StationAETitle

    step = schedule(stations=("CT9", "CT1", "CT5", "CT3", "CT7"))
    titles = list(StationAETitle.objects.filter(step=step).order_by("-pk"))
    # Rewrite them last first (to another value and back): PostgreSQL then stores them
    # in the reverse order of their pk; the answer keeps the order the titles came in.
    for title in titles:
        StationAETitle.objects.filter(pk=title.pk).update(ae_title="MOVED")
        StationAETitle.objects.filter(pk=title.pk).update(ae_title=title.ae_title)
    (answer,) = answers(worklist_query(sps={"ScheduledStationAETitle": ""}))
    item = answer.ScheduledProcedureStepSequence[0]
    assert item.ScheduledStationAETitle == ["CT9", "CT1", "CT5", "CT3", "CT7"]


def test_a_value_beyond_latin1_in_the_step_item_makes_the_answer_utf8() -> None:
    from worklist.responses import ResponseBuilder

    schedule(step={"performing_physician": "Łukasz"})
    query = worklist_query(PatientName="", sps={"ScheduledPerformingPhysicianName": ""})
    (answer,) = answers(query)
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    result = find(query)
    builder: ResponseBuilder = result.builder
    direct = read_dataset(BytesIO(builder.encode(result.rows[0], result.stations)), True, True)
    assert direct.SpecificCharacterSet == "ISO_IR 192"


# --- encoding (PS3.5 6.2: UI values are padded with 00H, other strings with a space) ----


@pytest.mark.parametrize("implicit", [True, False])
def test_odd_length_values_are_padded(implicit: bool) -> None:
    from pynetdicom.dsutils import encode

    schedule(study_uid="1.2.3", accession="ACC")
    query = worklist_query(StudyInstanceUID="", AccessionNumber="")
    result = find(query, implicit_vr=implicit)
    row = result.rows[0]
    for data in (
        result.builder.encode(row, result.stations),
        encode(result.builder.dataset(row, result.stations), implicit, True) or b"",
    ):
        assert b"1.2.3\x00" in data
        assert b"ACC " in data


@pytest.mark.parametrize("implicit", [True, False])
def test_a_key_before_the_character_set_keeps_the_tag_order(implicit: bool) -> None:
    from pynetdicom.dsutils import encode

    schedule(patient_id="P1", accession="A1", patient_name="Müller^Jürgen")
    schedule(patient_id="P2", accession="A2", patient_name="Yamada^Tarou=山田^太郎")
    query = worklist_query(AccessionNumber="", PatientName="")
    query.add_new(0x00080001, "UL", None)  # Length to End (retired): sorts before (0008,0005)
    result = find(query, implicit_vr=implicit)
    charsets = []
    for row in result.rows:
        direct = result.builder.encode(row, result.stations)
        assert direct == encode(result.builder.dataset(row, result.stations), implicit, True)
        answer = read_dataset(BytesIO(direct), implicit, True)
        assert [e.tag for e in answer][:2] == [0x00080001, 0x00080005]
        charsets.append((answer.AccessionNumber, answer.SpecificCharacterSet, answer.PatientName))
    assert sorted(charsets) == [
        ("A1", "ISO_IR 100", "Müller^Jürgen"),
        ("A2", "ISO_IR 192", "Yamada^Tarou=山田^太郎"),
    ]


def test_direct_encoding_is_for_little_endian_only() -> None:
    schedule()
    result = find(worklist_query(PatientName=""), little_endian=False)
    with pytest.raises(
        ValueError, match=r"^direct encoding is for Little Endian transfer syntaxes only$"
    ):
        result.builder.encode(result.rows[0], result.stations)


def test_the_titles_of_many_steps_are_all_read() -> None:
    # The titles are fetched for 500 steps at a time; 501 steps need two fetches.
    from worklist.models import ScheduledProcedureStep, StationAETitle

    first = schedule(sps_id="S0", stations=("T0",))
    steps = ScheduledProcedureStep.objects.bulk_create(
        ScheduledProcedureStep(procedure=first.procedure, sps_id=f"S{n}") for n in range(1, 501)
    )
    StationAETitle.objects.bulk_create(
        StationAETitle(step=step, ae_title=f"T{step.sps_id[1:]}") for step in steps
    )
    query = worklist_query(sps={"ScheduledProcedureStepID": "", "ScheduledStationAETitle": ""})
    result = find(query, max_answers=1000)
    items = [ds.ScheduledProcedureStepSequence[0] for ds in result.datasets]
    titles = {item.ScheduledProcedureStepID: item.ScheduledStationAETitle for item in items}
    assert titles == {f"S{n}": f"T{n}" for n in range(501)}


def test_a_builder_answers_in_implicit_vr_little_endian_by_default() -> None:
    from worklist.models import ScheduledProcedureStep
    from worklist.responses import ResponseBuilder, return_keys

    schedule()
    builder = ResponseBuilder(return_keys(worklist_query(PatientName="")))
    rows, stations = builder.rows(ScheduledProcedureStep.objects.all(), 10)
    # Implicit VR Little Endian (PS3.5 7.1.3): the tag, then a 4-byte length.
    assert builder.encode(rows[0], stations).startswith(
        b"\x08\x00\x05\x00\x0a\x00\x00\x00ISO_IR 100"
    )
