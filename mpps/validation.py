"""PS3.4 Annex F rules for MPPS N-CREATE and N-SET: pure functions over datasets.

Each check returns ``None`` when the request may be applied, or a :class:`Refusal`
naming the DIMSE status and the offending tags. The protocol handlers turn a refusal
into the response; the services decide the database-bound cases (duplicate and unknown
instances, a concurrent final N-SET).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from core.dicom import status
from core.dicom.values import is_uid
from mpps.status import MPPS_FINAL, MPPSStatus

SCHEDULED_STEP_ATTRIBUTES = Tag("ScheduledStepAttributesSequence")
PERFORMED_SERIES = Tag("PerformedSeriesSequence")
PPS_STATUS = Tag("PerformedProcedureStepStatus")
PPS_START_DATE = Tag("PerformedProcedureStepStartDate")
PPS_START_TIME = Tag("PerformedProcedureStepStartTime")
PPS_END_DATE = Tag("PerformedProcedureStepEndDate")
PPS_END_TIME = Tag("PerformedProcedureStepEndTime")

# N-CREATE, type 1: present with a value.
CREATE_TYPE_1 = tuple(
    Tag(k)
    for k in (
        "ScheduledStepAttributesSequence",
        "PerformedProcedureStepID",
        "PerformedStationAETitle",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "PerformedProcedureStepStatus",
        "Modality",
    )
)
# N-CREATE, type 2: present, may be empty.
CREATE_TYPE_2 = tuple(
    Tag(k)
    for k in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "ReferencedPatientSequence",
        "PerformedStationName",
        "PerformedLocation",
        "PerformedProcedureStepDescription",
        "PerformedProcedureTypeDescription",
        "ProcedureCodeSequence",
        "PerformedProcedureStepEndDate",
        "PerformedProcedureStepEndTime",
        "StudyID",
        "PerformedProtocolCodeSequence",
        "PerformedSeriesSequence",
    )
)
# N-SET may change only these (PS3.4 Table F.7.2-1: the status, end, descriptions and
# codes, the series, and the radiation dose and billing modules). Patient, scheduled
# step, PPS ID, station and start attributes are fixed by the N-CREATE.
SET_ALLOWED = frozenset(
    Tag(k)
    for k in (
        "SpecificCharacterSet",
        "PerformedProcedureStepStatus",
        "PerformedProcedureStepEndDate",
        "PerformedProcedureStepEndTime",
        "PerformedProcedureStepDescription",
        "PerformedProcedureTypeDescription",
        "CommentsOnThePerformedProcedureStep",
        "PerformedProcedureStepDiscontinuationReasonCodeSequence",
        "ProcedureCodeSequence",
        "PerformedProtocolCodeSequence",
        "PerformedSeriesSequence",
        # Radiation Dose module
        "AnatomicStructureSpaceOrRegionSequence",
        "TotalTimeOfFluoroscopy",
        "TotalNumberOfExposures",
        "DistanceSourceToDetector",
        "DistanceSourceToEntrance",
        "EntranceDose",
        "EntranceDoseInmGy",
        "ExposedArea",
        "ImageAndFluoroscopyAreaDoseProduct",
        "CommentsOnRadiationDose",
        "ExposureDoseSequence",
        # Billing and Material Management Codes module
        "BillingProcedureStepSequence",
        "FilmConsumptionSequence",
        "BillingSuppliesAndDevicesSequence",
    )
)
# Before an MPPS becomes COMPLETED or DISCONTINUED these must have values (F.7.2.2.2).
FINAL_REQUIRED = (PPS_END_DATE, PPS_END_TIME)

_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?$")


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: DIMSE status, the tags at fault, a short comment."""

    status: int
    comment: str
    tags: tuple[int, ...] = ()
    error_id: int | None = None


def tag_list(tags: Iterable[int]) -> str:
    return ",".join(f"{int(t):08X}" for t in tags)


def _refusal(code: int, what: str, tags: Sequence[int]) -> Refusal:
    # Error Comment is LO (64 characters): the tags, the keyword of the first one.
    first = keyword_for_tag(tags[0]) if tags else ""
    comment = f"{what} {tag_list(tags)} {first}".strip()[:64]
    return Refusal(code, comment, tuple(tags))


def no_longer_updatable() -> Refusal:
    return Refusal(
        status.PROCESSING_FAILURE,
        "Performed Procedure Step Object may no longer be updated",
        error_id=status.MPPS_NO_LONGER_UPDATABLE,
    )


def duplicate_instance(uid: str) -> Refusal:
    return Refusal(status.DUPLICATE_SOP_INSTANCE, f"SOP Instance {uid} exists"[:64])


def busy(uid: str) -> Refusal:
    return Refusal(status.PROCESSING_FAILURE, f"concurrent updates of {uid}, try again"[:64])


def invalid_instance(uid: str) -> Refusal:
    return Refusal(status.INVALID_OBJECT_INSTANCE, f"not a valid SOP Instance UID: {uid}"[:64])


def unknown_instance(uid: str) -> Refusal:
    return Refusal(status.NO_SUCH_SOP_INSTANCE, f"no SOP Instance {uid}"[:64])


def text(ds: Dataset, tag: int) -> str:
    """The value of a string element as one string ('' when absent or empty)."""
    if tag not in ds:
        return ""
    value = ds[tag].value
    if value is None:
        return ""
    # pydicom gives a multi-valued element as a MultiValue, which is no list.
    if isinstance(value, list | tuple | MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _is_empty(ds: Dataset, tag: int) -> bool:
    element = ds[tag]
    if element.VR == "SQ":
        return len(element.value or []) == 0
    return text(ds, tag) == ""


def is_date(value: str) -> bool:
    if not _DA.match(value):
        return False
    month, day = int(value[4:6]), int(value[6:8])
    return 1 <= month <= 12 and 1 <= day <= 31


def is_time(value: str) -> bool:
    # ACR-NEMA style "HH:MM:SS" is still sent by old modalities (PS3.5 6.2 note).
    match = _TM.match(value.replace(":", ""))
    if not match:
        return False
    hour, minute, second = match.group(1), match.group(2), match.group(3)
    return (
        int(hour) < 24
        and (minute is None or int(minute) < 60)
        and (second is None or int(second) < 61)
    )


def _invalid_dates(ds: Dataset) -> list[int]:
    bad: list[int] = []
    for date_tag, time_tag in ((PPS_START_DATE, PPS_START_TIME), (PPS_END_DATE, PPS_END_TIME)):
        date, time = text(ds, date_tag), text(ds, time_tag)
        if date and not is_date(date):
            bad.append(date_tag)
        if time and not is_time(time):
            bad.append(time_tag)
    return bad


def _series_problems(ds: Dataset) -> tuple[list[int], list[int]]:
    """(missing values, invalid values) inside the Performed Series Sequence."""
    missing: list[int] = []
    invalid: list[int] = []
    if PERFORMED_SERIES not in ds:
        return missing, invalid
    for series in ds[PERFORMED_SERIES].value or []:
        uid = text(series, Tag("SeriesInstanceUID"))
        if not uid:
            missing.append(Tag("SeriesInstanceUID"))
        elif not is_uid(uid):
            invalid.append(Tag("SeriesInstanceUID"))
        for keyword in (
            "ReferencedImageSequence",
            "ReferencedNonImageCompositeSOPInstanceSequence",
        ):
            for ref in series.get(keyword, None) or []:
                for ref_tag in (Tag("ReferencedSOPClassUID"), Tag("ReferencedSOPInstanceUID")):
                    value = text(ref, ref_tag)
                    if not value:
                        missing.append(ref_tag)
                    elif not is_uid(value):
                        invalid.append(ref_tag)
    return missing, invalid


def _dedupe(tags: Sequence[int]) -> list[int]:
    return list(dict.fromkeys(int(t) for t in tags))


def check_create(ds: Dataset) -> Refusal | None:
    """Check an N-CREATE Attribute List (PS3.4 F.7.2.1).

    Steps: attributes that must be present (0x0120), type 1 attributes with a value
    (0x0121), then values: status IN PROGRESS, dates and times, UIDs (0x0106).
    """
    absent: list[int] = [t for t in (*CREATE_TYPE_1, *CREATE_TYPE_2) if t not in ds]
    if absent:
        return _refusal(status.MISSING_ATTRIBUTE, "Missing", absent)

    empty: list[int] = [t for t in CREATE_TYPE_1 if _is_empty(ds, t)]
    for item in ds[SCHEDULED_STEP_ATTRIBUTES].value or []:
        if not text(item, Tag("StudyInstanceUID")):
            empty.append(Tag("StudyInstanceUID"))
    series_missing, series_invalid = _series_problems(ds)
    empty += series_missing
    if empty:
        return _refusal(status.MISSING_ATTRIBUTE_VALUE, "No value", _dedupe(empty))

    invalid: list[int] = []
    if text(ds, PPS_STATUS) != MPPSStatus.IN_PROGRESS:
        invalid.append(PPS_STATUS)
    invalid += _invalid_dates(ds)
    for item in ds[SCHEDULED_STEP_ATTRIBUTES].value:
        if not is_uid(text(item, Tag("StudyInstanceUID"))):
            invalid.append(Tag("StudyInstanceUID"))
    invalid += series_invalid
    if invalid:
        return _refusal(status.INVALID_ATTRIBUTE_VALUE, "Invalid", _dedupe(invalid))
    return None


def check_set(modification: Dataset, *, current_status: str, merged: Dataset) -> Refusal | None:
    """Check an N-SET Modification List against the instance it would change (F.7.2.2).

    ``merged`` is the stored dataset with the modification applied.
    Steps: a final instance may not change (0x0110, error 0xA710); attributes N-SET may
    not touch (0x0106); values (0x0106); what a final state needs (0x0121).
    """
    if current_status in MPPS_FINAL:
        return no_longer_updatable()

    not_allowed: list[int] = [elem.tag for elem in modification if elem.tag not in SET_ALLOWED]
    if not_allowed:
        return _refusal(status.INVALID_ATTRIBUTE_VALUE, "Not settable", not_allowed)

    invalid: list[int] = []
    if PPS_STATUS in modification and text(modification, PPS_STATUS) not in MPPSStatus.values:
        invalid.append(PPS_STATUS)
    invalid += _invalid_dates(modification)
    series_missing, series_invalid = _series_problems(modification)
    invalid += series_invalid
    if invalid:
        return _refusal(status.INVALID_ATTRIBUTE_VALUE, "Invalid", _dedupe(invalid))

    missing: list[int] = list(series_missing)
    if text(merged, PPS_STATUS) in MPPS_FINAL:
        missing += [t for t in FINAL_REQUIRED if not text(merged, t)]
    if missing:
        return _refusal(status.MISSING_ATTRIBUTE_VALUE, "No value", _dedupe(missing))
    return None
