"""Reading the fields the broker uses out of MPPS datasets: pure, no database."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from mpps.validation import PERFORMED_SERIES, SCHEDULED_STEP_ATTRIBUTES, text

_OFFSET = re.compile(r"^([+-])(\d{2})(\d{2})$")


@dataclass(frozen=True)
class StepReference:
    study_instance_uid: str
    accession_number: str = ""
    requested_procedure_id: str = ""
    sps_id: str = ""


@dataclass(frozen=True)
class Instance:
    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class Series:
    series_instance_uid: str
    series_description: str = ""
    protocol_name: str = ""
    retrieve_ae_title: str = ""
    instances: tuple[Instance, ...] = field(default_factory=tuple)


def to_json(ds: Dataset) -> dict[str, Any]:
    """DICOM JSON (PS3.18 F.2) of ``ds``; binary values inline."""
    result: dict[str, Any] = ds.to_json_dict(bulk_data_threshold=1 << 30)
    return result


def from_json(data: dict[str, Any]) -> Dataset:
    return Dataset.from_json(data)


def merged(stored: Dataset, modification: Dataset) -> Dataset:
    """The stored dataset with every element of an N-SET Modification List applied."""
    result = Dataset()
    result.update(stored)
    for element in modification:
        result[element.tag] = element
    return result


def _tz(ds: Dataset) -> dt.tzinfo:
    match = _OFFSET.match(text(ds, Tag("TimezoneOffsetFromUTC")))
    if not match:
        return timezone.get_current_timezone()
    sign = -1 if match.group(1) == "-" else 1
    return dt.timezone(sign * dt.timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))


def instant(ds: Dataset, date_keyword: str, time_keyword: str) -> dt.datetime | None:
    """DA + TM of ``ds`` as an aware datetime (local time unless the dataset has an offset)."""
    date = text(ds, Tag(date_keyword))
    if not date:
        return None
    time = text(ds, Tag(time_keyword)).replace(":", "")
    digits, _, fraction = time.partition(".")
    digits = (digits + "000000")[:6]
    try:
        value = dt.datetime.strptime(date + digits, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    if fraction:
        value = value.replace(microsecond=int((fraction + "000000")[:6]))
    return value.replace(tzinfo=_tz(ds))


def columns(ds: Dataset) -> dict[str, Any]:
    """The model columns of a PerformedProcedureStep read from its (merged) dataset."""
    return {
        "status": text(ds, Tag("PerformedProcedureStepStatus")),
        "pps_id": text(ds, Tag("PerformedProcedureStepID"))[:16],
        "station_ae_title": text(ds, Tag("PerformedStationAETitle"))[:16],
        "station_name": text(ds, Tag("PerformedStationName"))[:16],
        "location": text(ds, Tag("PerformedLocation"))[:16],
        "modality": text(ds, Tag("Modality"))[:16],
        "description": text(ds, Tag("PerformedProcedureStepDescription"))[:64],
        "started_at": instant(
            ds, "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime"
        ),
        "ended_at": instant(ds, "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime"),
        "patient_id": text(ds, Tag("PatientID"))[:64],
        "patient_name": text(ds, Tag("PatientName"))[:324],
        "study_id": text(ds, Tag("StudyID"))[:16],
    }


def step_references(ds: Dataset) -> list[StepReference]:
    refs: list[StepReference] = []
    if SCHEDULED_STEP_ATTRIBUTES not in ds:
        return refs
    for item in ds[SCHEDULED_STEP_ATTRIBUTES].value or []:
        refs.append(
            StepReference(
                study_instance_uid=text(item, Tag("StudyInstanceUID")),
                accession_number=text(item, Tag("AccessionNumber")),
                requested_procedure_id=text(item, Tag("RequestedProcedureID")),
                sps_id=text(item, Tag("ScheduledProcedureStepID")),
            )
        )
    return refs


def performed_series(ds: Dataset) -> list[Series] | None:
    """The Performed Series Sequence; ``None`` when the dataset does not carry it."""
    if PERFORMED_SERIES not in ds:
        return None
    result: list[Series] = []
    for item in ds[PERFORMED_SERIES].value or []:
        instances: list[Instance] = []
        for keyword in (
            "ReferencedImageSequence",
            "ReferencedNonImageCompositeSOPInstanceSequence",
        ):
            for ref in item.get(keyword, None) or []:
                instances.append(
                    Instance(
                        text(ref, Tag("ReferencedSOPClassUID")),
                        text(ref, Tag("ReferencedSOPInstanceUID")),
                    )
                )
        result.append(
            Series(
                series_instance_uid=text(item, Tag("SeriesInstanceUID")),
                series_description=text(item, Tag("SeriesDescription"))[:64],
                protocol_name=text(item, Tag("ProtocolName"))[:64],
                retrieve_ae_title=text(item, Tag("RetrieveAETitle"))[:16],
                instances=tuple(instances),
            )
        )
    return result
