"""MPPS refusals in detail: statuses, tags and comments; DA and TM values; performed series.

Expected values from the standard, as literals: PS3.7 C.4 (N-CREATE / N-SET statuses),
PS3.4 F.7.2.2 (error ID 0xA710), PS3.5 Table 6.2-1 (DA: YYYYMMDD; TM: HH, HHMM,
HHMMSS, HHMMSS.FFFFFF with HH 00-23, MM 00-59, SS 00-60), PS3.5 6.2 (LO: 64 characters,
the Error Comment).
"""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from mpps import dataset as mpps_dataset
from mpps import validation
from mpps.validation import check_create, check_set
from tests.fixtures_mpps import n_create_dataset, n_set_dataset, series_item, step_item

MISSING_ATTRIBUTE = 0x0120
MISSING_ATTRIBUTE_VALUE = 0x0121
INVALID_ATTRIBUTE_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_SOP_INSTANCE = 0x0112
INVALID_OBJECT_INSTANCE = 0x0117
NO_LONGER_UPDATABLE = 0xA710

SERIES_UID = 0x0020000E
REFERENCED_SOP_CLASS_UID = 0x00081150
REFERENCED_SOP_INSTANCE_UID = 0x00081155

LONG_UID = "1.2." + "3" * 60  # 64 characters, the longest UID


def create() -> Dataset:
    return n_create_dataset(items=[step_item(None, ScheduledProcedureStepID="SPS1")])


def refuse_set(modification: Dataset, current_status: str = "IN PROGRESS") -> validation.Refusal:
    merged = mpps_dataset.merged(create(), modification)
    refusal = check_set(modification, current_status=current_status, merged=merged)
    assert refusal is not None
    return refusal


# --- the database-bound refusals -------------------------------------------------------


def test_the_refusals_the_services_send_carry_the_standards_status_and_say_why() -> None:
    uid = "1.2.3.4"
    cases = [
        (validation.duplicate_instance(uid), DUPLICATE_SOP_INSTANCE, "SOP Instance 1.2.3.4 exists"),
        (validation.busy(uid), PROCESSING_FAILURE, "concurrent updates of 1.2.3.4, try again"),
        (
            validation.invalid_instance(uid),
            INVALID_OBJECT_INSTANCE,
            "not a valid SOP Instance UID: 1.2.3.4",
        ),
        (validation.unknown_instance(uid), NO_SUCH_SOP_INSTANCE, "no SOP Instance 1.2.3.4"),
    ]
    for refusal, code, comment in cases:
        assert (refusal.status, refusal.comment, refusal.tags, refusal.error_id) == (
            code,
            comment,
            (),
            None,
        )


@pytest.mark.parametrize(
    "make",
    [
        validation.duplicate_instance,
        validation.busy,
        validation.invalid_instance,
        validation.unknown_instance,
    ],
)
def test_an_error_comment_is_cut_to_64_characters(make: object) -> None:
    refusal = make(LONG_UID)  # type: ignore[operator]
    assert len(refusal.comment) == 64
    assert LONG_UID[:20] in refusal.comment


def test_a_final_instance_is_refused_with_0x0110_and_error_id_a710() -> None:
    refusal = validation.no_longer_updatable()
    assert (refusal.status, refusal.error_id) == (PROCESSING_FAILURE, NO_LONGER_UPDATABLE)
    # PS3.4 F.7.2.2's wording.
    assert refusal.comment == "Performed Procedure Step Object may no longer be updated"


# --- comments of the attribute refusals ------------------------------------------------


def test_a_refusal_names_the_tags_and_the_first_ones_keyword() -> None:
    ds = create()
    del ds.PerformedProcedureStepID
    refusal = check_create(ds)
    assert refusal is not None
    assert refusal.status == MISSING_ATTRIBUTE
    assert refusal.comment == "Missing 00400253 PerformedProcedureStepID"


def test_several_tags_are_listed_with_commas_and_the_comment_is_cut_at_64() -> None:
    assert validation.tag_list([0x00100010, 0x00100020]) == "00100010,00100020"
    assert validation.tag_list([]) == ""
    ds = create()
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID"):
        delattr(ds, keyword)
    refusal = check_create(ds)
    assert refusal is not None
    assert refusal.tags == (0x00100010, 0x00100020, 0x00100030, 0x00100040, 0x00200010)
    assert (
        refusal.comment == "Missing 00100010,00100020,00100030,00100040,00200010 PatientName"[:64]
    )
    assert len(refusal.comment) == 64


def test_the_comment_words_of_each_refusal() -> None:
    empty = create()
    empty.PerformedStationAETitle = ""
    refusal = check_create(empty)
    assert refusal is not None
    assert refusal.comment == "No value 00400241 PerformedStationAETitle"
    wrong = create()
    wrong.PerformedProcedureStepStatus = "COMPLETED"
    refusal = check_create(wrong)
    assert refusal is not None
    assert refusal.comment == "Invalid 00400252 PerformedProcedureStepStatus"
    modification = n_set_dataset()
    modification.PatientName = "OTHER^NAME"
    assert refuse_set(modification).comment == "Not settable 00100010 PatientName"
    assert refuse_set(modification).status == INVALID_ATTRIBUTE_VALUE


def test_a_refusal_without_tags_has_just_its_words() -> None:
    refusal = validation._refusal(PROCESSING_FAILURE, "Broken", [])
    assert (refusal.comment, refusal.tags) == ("Broken", ())


# --- text values ----------------------------------------------------------------------


def test_text_reads_absent_empty_and_multi_valued_elements() -> None:
    ds = Dataset()
    ds.PatientName = "  DOE^JOHN "
    ds.OtherPatientIDs = ["A", "B"]
    ds.StudyID = None
    assert validation.text(ds, Tag("PatientName")) == "DOE^JOHN"
    assert validation.text(ds, Tag("OtherPatientIDs")) == "A\\B"
    assert validation.text(ds, Tag("StudyID")) == ""
    assert validation.text(ds, Tag("PatientID")) == ""


# --- DA and TM (PS3.5 Table 6.2-1) --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("20261125", True),
        ("20260101", True),
        ("20261231", True),
        ("20260131", True),
        ("20260100", False),
        ("20260132", False),
        ("20260001", False),
        ("20261301", False),
        ("20261001", True),
        ("20260910", True),
        ("2026112", False),
        ("202611251", False),
        ("2026-11-25", False),
        ("", False),
    ],
)
def test_a_date_is_yyyymmdd_with_a_real_month_and_day(value: str, valid: bool) -> None:
    assert validation.is_date(value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("09", True),
        ("0930", True),
        ("093000", True),
        ("093000.123456", True),
        ("000000", True),
        ("235959", True),
        ("235960", True),  # a leap second
        ("240000", False),
        ("236000", False),
        ("235961", False),
        ("2400", False),
        ("0960", False),
        ("0959", True),
        ("09:30:00", True),  # ACR-NEMA style, PS3.5 6.2
        ("9", False),
        ("093", False),
        ("093000.", False),
        ("093000.1234567", False),
        ("ab", False),
        ("", False),
    ],
)
def test_a_time_is_hh_mm_ss_fraction_within_the_day(value: str, valid: bool) -> None:
    assert validation.is_time(value) is valid


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("PerformedProcedureStepStartDate", "20261325"),
        ("PerformedProcedureStepStartTime", "250000"),
    ],
)
def test_a_bad_start_is_refused_naming_the_element(keyword: str, value: str) -> None:
    ds = create()
    setattr(ds, keyword, value)
    refusal = check_create(ds)
    assert refusal is not None
    assert (refusal.status, refusal.tags) == (INVALID_ATTRIBUTE_VALUE, (int(Tag(keyword)),))


def test_a_bad_end_in_n_set_is_refused_naming_both_elements() -> None:
    modification = n_set_dataset()
    modification.PerformedProcedureStepEndDate = "20261199"
    modification.PerformedProcedureStepEndTime = "246000"
    refusal = refuse_set(modification)
    assert (refusal.status, refusal.tags) == (INVALID_ATTRIBUTE_VALUE, (0x00400250, 0x00400251))


# --- Performed Series Sequence ----------------------------------------------------------


def with_series(ds: Dataset, series: Dataset) -> Dataset:
    ds.PerformedSeriesSequence = [series]
    return ds


def test_a_series_without_its_uid_is_0x0121_and_a_malformed_one_0x0106() -> None:
    missing = series_item()
    missing.SeriesInstanceUID = ""
    refusal = check_create(with_series(create(), missing))
    assert refusal is not None
    assert (refusal.status, refusal.tags) == (MISSING_ATTRIBUTE_VALUE, (SERIES_UID,))
    bad = series_item()
    bad.SeriesInstanceUID = "1.2.abc"
    refusal = check_create(with_series(create(), bad))
    assert refusal is not None
    assert (refusal.status, refusal.tags) == (INVALID_ATTRIBUTE_VALUE, (SERIES_UID,))
    # The same in an N-SET.
    assert refuse_set(with_series(n_set_dataset(), bad)).tags == (SERIES_UID,)
    assert refuse_set(with_series(n_set_dataset(), missing)).tags == (SERIES_UID,)


@pytest.mark.parametrize(
    "sequence", ["ReferencedImageSequence", "ReferencedNonImageCompositeSOPInstanceSequence"]
)
def test_the_references_of_a_series_need_valid_uids(sequence: str) -> None:
    series = series_item(n_images=0)
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.67"
    ref.ReferencedSOPInstanceUID = ""
    setattr(series, sequence, [ref])
    refusal = check_create(with_series(create(), series))
    assert refusal is not None
    assert (refusal.status, refusal.tags) == (
        MISSING_ATTRIBUTE_VALUE,
        (REFERENCED_SOP_INSTANCE_UID,),
    )
    ref.ReferencedSOPInstanceUID = "1.2.3"
    ref.ReferencedSOPClassUID = "not.a.uid"
    refusal = check_create(with_series(create(), series))
    assert refusal is not None
    assert (refusal.status, refusal.tags) == (INVALID_ATTRIBUTE_VALUE, (REFERENCED_SOP_CLASS_UID,))


def test_a_series_without_reference_sequences_is_fine() -> None:
    series = series_item(n_images=0)
    del series.ReferencedImageSequence
    del series.ReferencedNonImageCompositeSOPInstanceSequence
    assert check_create(with_series(create(), series)) is None


def test_an_empty_performed_series_sequence_is_fine() -> None:
    ds = create()
    ds.PerformedSeriesSequence = []
    assert check_create(ds) is None
