"""Import DICOM worklist files (``*.wl``, as kept by wlmscpfs or Orthanc) into the broker.

Each file becomes a patient, an order (Accession Number), a requested procedure and
one scheduled step per item of its Scheduled Procedure Step Sequence, written through
the domain services, so importing the same file again changes nothing. Values are read
with the file's Specific Character Set and stored as Unicode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from pydicom import Dataset, dcmread
from pydicom.multival import MultiValue
from pydicom.uid import generate_uid

from core.dicom.values import InvalidValue, parse_date, parse_time
from worklist import services
from worklist.attributes import SPS_ATTRIBUTES, TOP_ATTRIBUTES, Attr, Source
from worklist.models import ScheduledProcedureStep
from worklist.status import SPSStatus

logger = logging.getLogger(__name__)

_PATIENT = "procedure__order__patient__"
_ORDER = "procedure__order__"
_PROCEDURE = "procedure__"
# Identifying attributes: passed to the services as lookups, not as field values.
_KEYS = {
    "patient_id",
    "issuer",
    "accession_number",
    "requested_procedure_id",
    "study_instance_uid",
    "sps_id",
    "start_date",
    "start_time",
    "status",
}


class WorklistFileError(Exception):
    """A worklist file that cannot be imported; the message says why."""


@dataclass
class ImportReport:
    imported: list[Path] = field(default_factory=list)
    steps: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)


def worklist_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """The files named, and the ``*.wl`` files under the folders named, sorted."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.suffix.lower() == ".wl" and p.is_file()
            )
        else:
            yield path


# Files imported in one transaction: one commit (and, on SQLite, one fsync) per batch
# instead of per file; each file still has a savepoint of its own, so a broken file is
# rolled back alone and the others of its batch are imported.
BATCH_FILES = 500


def import_paths(
    paths: Iterable[str | Path],
    *,
    batch: int = BATCH_FILES,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import every worklist file named (or under the folders named).

    ``progress(done, total)`` is called after each batch commits.
    """
    report = ImportReport()
    files = list(worklist_files(paths))
    for first in range(0, len(files), max(batch, 1)):
        with transaction.atomic():
            for path in files[first : first + max(batch, 1)]:
                try:
                    steps = import_file(path)
                except Exception as exc:  # a broken file must not stop the others
                    reason = str(exc) or type(exc).__name__
                    logger.warning("worklist file %s not imported: %s", path, reason)
                    report.failed.append((path, reason))
                    continue
                report.imported.append(path)
                report.steps += len(steps)
        if progress is not None:
            progress(len(report.imported) + len(report.failed), len(files))
    return report


def import_file(path: Path) -> list[ScheduledProcedureStep]:
    try:
        dataset = dcmread(path, force=True)
    except FileNotFoundError:
        raise WorklistFileError("no such file") from None
    except Exception as exc:
        raise WorklistFileError(f"not a DICOM file ({exc})") from exc
    if len(dataset) == 0:
        raise WorklistFileError("not a DICOM file (no attributes)")
    return import_dataset(dataset)


def _text(dataset: Dataset, keyword: str) -> str:
    value = dataset.get(keyword)
    if value is None:
        return ""
    if isinstance(value, MultiValue | list):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _value(attr: Attr, dataset: Dataset) -> Any:
    """The model value of ``attr`` in ``dataset``."""
    element = dataset[attr.tag]
    raw = element.value
    if raw is None or raw == "":
        return None
    if attr.vr == "DA":
        return parse_date(str(raw), attr.tag)
    if attr.vr == "DS":
        try:
            return Decimal(str(raw))
        except InvalidOperation as exc:
            raise WorklistFileError(f"{attr.keyword} is not a number: {raw!r}") from exc
    if attr.vr == "US":
        return int(raw)
    if attr.vr == "PN":
        return str(raw)
    if isinstance(raw, str):
        return raw.strip()
    return "\\".join(str(v) for v in raw)


def _fields(dataset: Dataset, attrs: Iterable[Attr]) -> dict[str, dict[str, Any]]:
    """Field maps per model (patient, order, procedure, step) from one dataset level."""
    maps: dict[str, dict[str, Any]] = {"patient": {}, "order": {}, "procedure": {}, "step": {}}
    for attr in attrs:
        if attr.tag not in dataset or attr.source is not Source.COLUMN or not attr.column:
            continue
        column = attr.column
        if column == "rp_priority":
            model, name = "procedure", "priority"
        elif column.startswith(_PATIENT):
            model, name = "patient", column.removeprefix(_PATIENT)
        elif column.startswith(_ORDER):
            model, name = "order", column.removeprefix(_ORDER)
        elif column.startswith(_PROCEDURE):
            model, name = "procedure", column.removeprefix(_PROCEDURE)
        else:
            model, name = "step", column
        if name in _KEYS:
            continue
        maps[model][name] = _value(attr, dataset)
    return maps


def _code_items(dataset: Dataset, keyword: str) -> list[Dataset]:
    return list(dataset.get(keyword) or [])


def _start(item: Dataset) -> datetime | None:
    day_text = _text(item, "ScheduledProcedureStepStartDate")
    if not day_text:
        return None
    try:
        day: date = parse_date(day_text, 0x00400002)
        time_text = _text(item, "ScheduledProcedureStepStartTime")
        at = parse_time(time_text, 0x00400003, upper=False) if time_text else time.min
    except InvalidValue as exc:
        raise WorklistFileError(exc.comment) from exc
    return timezone.make_aware(datetime.combine(day, at))


@transaction.atomic
def import_dataset(dataset: Dataset) -> list[ScheduledProcedureStep]:
    """Create or update the patient, order, procedure and steps of one worklist entry.

    1. Patient (Patient ID + Issuer), 2. order (Accession Number), 3. requested
    procedure (Requested Procedure ID, else the accession; Study Instance UID, else one
    derived from those ids so that a re-import finds it again), 4. one step per item.
    """
    patient_id = _text(dataset, "PatientID")
    if not patient_id:
        raise WorklistFileError("no Patient ID")
    accession = _text(dataset, "AccessionNumber")
    if not accession:
        raise WorklistFileError("no Accession Number")
    rp_id = _text(dataset, "RequestedProcedureID") or accession
    study_uid = _text(dataset, "StudyInstanceUID") or generate_uid(
        prefix=settings.BROKER_UID_ROOT, entropy_srcs=[patient_id, accession, rp_id]
    )
    top = _fields(dataset, TOP_ATTRIBUTES)
    codes = _code_items(dataset, "RequestedProcedureCodeSequence")
    if codes:
        top["procedure"].update(
            code_value=_text(codes[0], "CodeValue"),
            code_scheme=_text(codes[0], "CodingSchemeDesignator"),
            code_meaning=_text(codes[0], "CodeMeaning"),
        )
    other_ids = _code_items(dataset, "OtherPatientIDsSequence")
    if other_ids:
        top["patient"]["other_ids"] = [
            {"patient_id": _text(i, "PatientID"), "issuer": _text(i, "IssuerOfPatientID")}
            for i in other_ids
        ]

    patient = services.patient_upsert(
        patient_id=patient_id, issuer=_text(dataset, "IssuerOfPatientID"), fields=top["patient"]
    )
    order, _ = services.order_upsert(
        patient=patient, accession_number=accession, fields=top["order"]
    )
    procedure = services.procedure_upsert(
        order=order,
        requested_procedure_id=rp_id,
        study_instance_uid=study_uid,
        fields=top["procedure"],
    )
    items = list(dataset.get("ScheduledProcedureStepSequence") or [])
    if not items:
        raise WorklistFileError("no Scheduled Procedure Step Sequence item")
    steps = []
    for number, item in enumerate(items, start=1):
        fields = _fields(item, SPS_ATTRIBUTES)["step"]
        fields["start"] = _start(item)
        status = _text(item, "ScheduledProcedureStepStatus")
        fields["status"] = status if status in SPSStatus.values else SPSStatus.SCHEDULED
        protocol = _code_items(item, "ScheduledProtocolCodeSequence")
        if protocol:
            fields["protocol_codes"] = [
                {
                    "value": _text(c, "CodeValue"),
                    "scheme": _text(c, "CodingSchemeDesignator"),
                    "meaning": _text(c, "CodeMeaning"),
                }
                for c in protocol
            ]
        stations = item.get("ScheduledStationAETitle")
        titles = [] if stations is None else [str(t).strip() for t in _as_list(stations)]
        sps_id = _text(item, "ScheduledProcedureStepID") or (
            rp_id if len(items) == 1 else f"{rp_id}.{number}"
        )
        steps.append(
            services.step_upsert(
                procedure=procedure, sps_id=sps_id, fields=fields, station_ae_titles=titles
            )
        )
    return steps


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [value] if value else []
    return list(value)


def order_maps(dataset: Dataset) -> dict[str, Any]:
    """A worklist entry as the keyword arguments of ``services.order_enter`` (MWL-RS POST).

    Read with the same table and conversions as a file import; identifiers that are
    absent stay empty, for ``order_enter`` to generate.
    """
    top = _fields(dataset, TOP_ATTRIBUTES)
    patient: dict[str, Any] = {
        "patient_id": _text(dataset, "PatientID"),
        "issuer": _text(dataset, "IssuerOfPatientID"),
        **top["patient"],
    }
    other_ids = _code_items(dataset, "OtherPatientIDsSequence")
    if other_ids:
        patient["other_ids"] = [
            {"patient_id": _text(i, "PatientID"), "issuer": _text(i, "IssuerOfPatientID")}
            for i in other_ids
        ]
    order = {"accession_number": _text(dataset, "AccessionNumber"), **top["order"]}
    procedure: dict[str, Any] = {
        "requested_procedure_id": _text(dataset, "RequestedProcedureID"),
        "study_instance_uid": _text(dataset, "StudyInstanceUID"),
        **top["procedure"],
    }
    codes = _code_items(dataset, "RequestedProcedureCodeSequence")
    if codes:
        procedure.update(
            code_value=_text(codes[0], "CodeValue"),
            code_scheme=_text(codes[0], "CodingSchemeDesignator"),
            code_meaning=_text(codes[0], "CodeMeaning"),
        )
    steps = []
    for item in dataset.get("ScheduledProcedureStepSequence") or []:
        fields: dict[str, Any] = _fields(item, SPS_ATTRIBUTES)["step"]
        fields["sps_id"] = _text(item, "ScheduledProcedureStepID")
        if "ScheduledProcedureStepStartDate" in item:
            fields["start"] = _start(item)
        status = _text(item, "ScheduledProcedureStepStatus")
        if status:
            if status not in SPSStatus.values:
                raise WorklistFileError(f"{status!r} is not a Scheduled Procedure Step Status")
            fields["status"] = status
        protocol = _code_items(item, "ScheduledProtocolCodeSequence")
        if protocol:
            fields["protocol_codes"] = [
                {
                    "value": _text(c, "CodeValue"),
                    "scheme": _text(c, "CodingSchemeDesignator"),
                    "meaning": _text(c, "CodeMeaning"),
                }
                for c in protocol
            ]
        stations = item.get("ScheduledStationAETitle")
        if stations is not None:
            fields["station_ae_titles"] = [str(t).strip() for t in _as_list(stations)]
        steps.append(fields)
    procedure["steps"] = steps
    return {"patient": patient, "order": order, "procedures": [procedure]}
