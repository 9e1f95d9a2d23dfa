"""PS3.4 Annex F rules, without a database or a socket."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from core.dicom import status
from mpps import dataset as mpps_dataset
from mpps.validation import check_create, check_set
from tests.fixtures_mpps import n_create_dataset, n_set_dataset, step_item


def _create() -> Dataset:
    return n_create_dataset(items=[step_item(None, ScheduledProcedureStepID="SPS1")])


def _set(modification: Dataset, current_status: str = "IN PROGRESS") -> object:
    merged = mpps_dataset.merged(_create(), modification)
    return check_set(modification, current_status=current_status, merged=merged)


def test_it_accepts_a_complete_n_create() -> None:
    assert check_create(_create()) is None


def test_it_reports_a_missing_type_1_attribute_with_0x0120_and_its_tag() -> None:
    ds = _create()
    del ds.PerformedProcedureStepID
    refusal = check_create(ds)
    assert refusal is not None
    assert refusal.status == status.MISSING_ATTRIBUTE
    assert refusal.tags == (Tag("PerformedProcedureStepID"),)
    assert "00400253" in refusal.comment


def test_it_reports_a_missing_type_2_attribute_with_0x0120() -> None:
    ds = _create()
    del ds.PatientName
    del ds.PerformedSeriesSequence
    refusal = check_create(ds)
    assert refusal is not None
    assert refusal.status == status.MISSING_ATTRIBUTE
    assert set(refusal.tags) == {Tag("PatientName"), Tag("PerformedSeriesSequence")}


def test_it_accepts_empty_type_2_attributes() -> None:
    ds = _create()
    ds.PatientName = ""
    ds.StudyID = ""
    assert check_create(ds) is None


def test_it_reports_an_empty_type_1_attribute_with_0x0121() -> None:
    ds = _create()
    ds.Modality = ""
    refusal = check_create(ds)
    assert refusal is not None
    assert refusal.status == status.MISSING_ATTRIBUTE_VALUE
    assert refusal.tags == (Tag("Modality"),)


def test_it_requires_a_study_instance_uid_in_each_scheduled_step_item() -> None:
    ds = _create()
    ds.ScheduledStepAttributesSequence[0].StudyInstanceUID = ""
    refusal = check_create(ds)
    assert refusal is not None
    assert refusal.status == status.MISSING_ATTRIBUTE_VALUE
    assert refusal.tags == (Tag("StudyInstanceUID"),)


def test_it_requires_at_least_one_scheduled_step_item() -> None:
    ds = _create()
    ds.ScheduledStepAttributesSequence = []
    refusal = check_create(ds)
    assert refusal is not None
    assert refusal.tags == (Tag("ScheduledStepAttributesSequence"),)


def test_it_refuses_an_n_create_that_is_not_in_progress_with_0x0106() -> None:
    ds = _create()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    refusal = check_create(ds)
    assert refusal is not None
    assert refusal.status == status.INVALID_ATTRIBUTE_VALUE
    assert refusal.tags == (Tag("PerformedProcedureStepStatus"),)


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_it_refuses_a_malformed_start_date_and_time_with_0x0106() -> None:
    ds = _create()
    ds.PerformedProcedureStepStartDate = "2026-11-25"
    ds.PerformedProcedureStepStartTime = "256000"
    refusal = check_create(ds)
    assert refusal is not None
    assert refusal.status == status.INVALID_ATTRIBUTE_VALUE
    assert set(refusal.tags) == {
        Tag("PerformedProcedureStepStartDate"),
        Tag("PerformedProcedureStepStartTime"),
    }


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_it_accepts_old_style_times_with_colons() -> None:
    ds = _create()
    ds.PerformedProcedureStepStartTime = "09:30:00"
    assert check_create(ds) is None


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_it_refuses_a_malformed_study_instance_uid_with_0x0106() -> None:
    ds = _create()
    ds.ScheduledStepAttributesSequence[0].StudyInstanceUID = "1.2.abc"
    refusal = check_create(ds)
    assert refusal is not None
    assert refusal.status == status.INVALID_ATTRIBUTE_VALUE


def test_it_accepts_a_final_n_set() -> None:
    assert _set(n_set_dataset("COMPLETED")) is None
    assert _set(n_set_dataset("DISCONTINUED")) is None


def test_it_accepts_an_interim_n_set_that_stays_in_progress() -> None:
    modification = Dataset()
    modification.PerformedProcedureStepDescription = "CT HEAD AND NECK"
    assert _set(modification) is None


def test_it_refuses_patient_and_start_attributes_in_n_set_with_0x0106() -> None:
    modification = n_set_dataset()
    modification.PatientID = "OTHER"
    modification.PerformedProcedureStepStartTime = "100000"
    refusal = _set(modification)
    assert refusal is not None
    assert refusal.status == status.INVALID_ATTRIBUTE_VALUE  # type: ignore[attr-defined]
    assert set(refusal.tags) == {  # type: ignore[attr-defined]
        Tag("PatientID"),
        Tag("PerformedProcedureStepStartTime"),
    }


def test_it_refuses_an_unknown_status_value_in_n_set() -> None:
    refusal = _set(n_set_dataset("DONE"))
    assert refusal is not None
    assert refusal.status == status.INVALID_ATTRIBUTE_VALUE  # type: ignore[attr-defined]


def test_it_requires_end_date_and_time_to_complete_with_0x0121() -> None:
    modification = Dataset()
    modification.PerformedProcedureStepStatus = "COMPLETED"
    refusal = _set(modification)
    assert refusal is not None
    assert refusal.status == status.MISSING_ATTRIBUTE_VALUE  # type: ignore[attr-defined]
    assert set(refusal.tags) == {  # type: ignore[attr-defined]
        Tag("PerformedProcedureStepEndDate"),
        Tag("PerformedProcedureStepEndTime"),
    }


def test_it_requires_uids_in_performed_series_items() -> None:
    modification = n_set_dataset()
    modification.PerformedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID = ""
    refusal = _set(modification)
    assert refusal is not None
    assert refusal.status == status.MISSING_ATTRIBUTE_VALUE  # type: ignore[attr-defined]
    assert refusal.tags == (Tag("ReferencedSOPInstanceUID"),)  # type: ignore[attr-defined]


def test_it_refuses_any_update_of_a_completed_instance_with_0x0110_and_error_a710() -> None:
    for final in ("COMPLETED", "DISCONTINUED"):
        refusal = _set(n_set_dataset(), current_status=final)
        assert refusal is not None
        assert refusal.status == status.PROCESSING_FAILURE  # type: ignore[attr-defined]
        assert refusal.error_id == status.MPPS_NO_LONGER_UPDATABLE  # type: ignore[attr-defined]


def test_it_reads_the_columns_and_start_instant_from_the_dataset() -> None:
    ds = _create()
    ds.TimezoneOffsetFromUTC = "+0100"
    columns = mpps_dataset.columns(ds)
    assert columns["status"] == "IN PROGRESS"
    assert columns["modality"] == "CT"
    assert columns["started_at"].isoformat() == "2026-11-25T09:30:00+01:00"
    assert columns["ended_at"] is None


def test_it_keeps_the_whole_dataset_as_dicom_json() -> None:
    ds = _create()
    data = mpps_dataset.to_json(ds)
    assert data["00400253"]["vr"] == "SH"
    assert mpps_dataset.from_json(data) == ds


def test_it_reads_performed_series_and_instances() -> None:
    series = mpps_dataset.performed_series(n_set_dataset(series=2))
    assert series is not None
    assert len(series) == 2
    assert len(series[0].instances) == 2
    assert mpps_dataset.performed_series(Dataset()) is None
