"""The Modality Worklist attributes this broker knows (PS3.4 K.6, Table K.6-1).

One table, shared by matching (``worklist.matching``), response building
(``worklist.responses``) and the ``.wl`` importer. Each attribute says where its value
lives, as a ``values()`` path relative to ``ScheduledProcedureStep``, and how a query
value of it is matched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from django.db.models import F, Value
from django.db.models.expressions import Combinable
from django.db.models.functions import Coalesce, NullIf


class Match(Enum):
    """How a query value of an attribute is turned into a database condition."""

    TEXT = "text"  # single value, wildcards, list of values
    PERSON_NAME = "pn"  # TEXT, on the upper-cased *_key column when case-insensitive
    UID = "uid"  # single value or list of UIDs, no wildcards
    DATE = "date"  # DA single value or range
    SPS_DATE = "sps_date"  # DA, combined with SPS start time into one range
    SPS_TIME = "sps_time"  # TM, combined with SPS start date into one range
    STATION_AE = "station_ae"  # any value of the multi-valued Scheduled Station AE Title
    STATUS = "status"  # TEXT; and its absence means "the steps offered by default"
    NONE = "none"  # return key only: a value other than universal is not supported


class Source(Enum):
    """Where a response value comes from."""

    COLUMN = "column"  # one selected column (or annotation)
    JSON_ITEMS = "json_items"  # a JSON list column: one sequence item per entry
    CODE_ITEM = "code_item"  # columns of one code item, present when its value is set
    STATIONS = "stations"  # the StationAETitle rows of the step
    EMPTY = "empty"  # nothing stored: always zero-length / no items
    SPS_ITEM = "sps_item"  # the step itself: one item


@dataclass(frozen=True)
class Attr:
    tag: int
    keyword: str
    vr: str
    column: str = ""  # values() path or annotation name; for JSON children: the JSON key
    key_column: str = ""  # upper-cased person name column, for case-insensitive matching
    match: Match = Match.TEXT
    source: Source = Source.COLUMN
    children: tuple[Attr, ...] = field(default=())
    constant: str = ""  # for JSON children with a fixed value (Type of Patient ID)

    @property
    def is_sequence(self) -> bool:
        return self.vr == "SQ"


_PATIENT = "procedure__order__patient__"
_ORDER = "procedure__order__"
_PROCEDURE = "procedure__"

# Computed columns a query or a response may need; added to the queryset only then.
ANNOTATIONS: dict[str, Combinable] = {
    # Requested Procedure Priority: the procedure's own, else the order's (ORC-7.6).
    "rp_priority": Coalesce(NullIf(F(_PROCEDURE + "priority"), Value("")), F(_ORDER + "priority")),
}


def _code_items(prefix: str) -> tuple[Attr, ...]:
    return (
        Attr(0x00080100, "CodeValue", "SH", prefix + "code_value"),
        Attr(0x00080102, "CodingSchemeDesignator", "SH", prefix + "code_scheme"),
        Attr(0x00080104, "CodeMeaning", "LO", prefix + "code_meaning"),
    )


def _json_code_items() -> tuple[Attr, ...]:
    return (
        Attr(0x00080100, "CodeValue", "SH", "value", match=Match.NONE),
        Attr(0x00080102, "CodingSchemeDesignator", "SH", "scheme", match=Match.NONE),
        Attr(0x00080104, "CodeMeaning", "LO", "meaning", match=Match.NONE),
    )


def _reference_items() -> tuple[Attr, ...]:
    return (
        Attr(0x00081150, "ReferencedSOPClassUID", "UI", match=Match.NONE, source=Source.EMPTY),
        Attr(0x00081155, "ReferencedSOPInstanceUID", "UI", match=Match.NONE, source=Source.EMPTY),
    )


SPS_ATTRIBUTES: tuple[Attr, ...] = (
    Attr(
        0x00400001, "ScheduledStationAETitle", "AE", match=Match.STATION_AE, source=Source.STATIONS
    ),
    Attr(0x00400002, "ScheduledProcedureStepStartDate", "DA", "start_date", match=Match.SPS_DATE),
    Attr(0x00400003, "ScheduledProcedureStepStartTime", "TM", "start_time", match=Match.SPS_TIME),
    Attr(0x00080060, "Modality", "CS", "modality"),
    Attr(
        0x00400006,
        "ScheduledPerformingPhysicianName",
        "PN",
        "performing_physician",
        key_column="performing_physician_key",
        match=Match.PERSON_NAME,
    ),
    Attr(0x00400007, "ScheduledProcedureStepDescription", "LO", "description"),
    Attr(
        0x00400008,
        "ScheduledProtocolCodeSequence",
        "SQ",
        "protocol_codes",
        match=Match.NONE,
        source=Source.JSON_ITEMS,
        children=_json_code_items(),
    ),
    Attr(0x00400009, "ScheduledProcedureStepID", "SH", "sps_id"),
    Attr(0x00400010, "ScheduledStationName", "SH", "station_name"),
    Attr(0x00400011, "ScheduledProcedureStepLocation", "SH", "location"),
    Attr(0x00400012, "PreMedication", "LO", "premedication"),
    Attr(0x00321070, "RequestedContrastAgent", "LO", "contrast_agent"),
    Attr(0x00400020, "ScheduledProcedureStepStatus", "CS", "status", match=Match.STATUS),
    Attr(0x00400400, "CommentsOnTheScheduledProcedureStep", "LT", "comments", match=Match.NONE),
)

SPS_SEQUENCE = Attr(
    0x00400100,
    "ScheduledProcedureStepSequence",
    "SQ",
    match=Match.NONE,
    source=Source.SPS_ITEM,
    children=SPS_ATTRIBUTES,
)

TOP_ATTRIBUTES: tuple[Attr, ...] = (
    SPS_SEQUENCE,
    # Requested Procedure
    Attr(0x00401001, "RequestedProcedureID", "SH", _PROCEDURE + "requested_procedure_id"),
    Attr(0x00321060, "RequestedProcedureDescription", "LO", _PROCEDURE + "description"),
    Attr(
        0x00321064,
        "RequestedProcedureCodeSequence",
        "SQ",
        _PROCEDURE + "code_value",
        match=Match.NONE,
        source=Source.CODE_ITEM,
        children=_code_items(_PROCEDURE),
    ),
    Attr(0x0020000D, "StudyInstanceUID", "UI", _PROCEDURE + "study_instance_uid", match=Match.UID),
    Attr(
        0x00081110,
        "ReferencedStudySequence",
        "SQ",
        match=Match.NONE,
        source=Source.EMPTY,
        children=_reference_items(),
    ),
    Attr(0x00401003, "RequestedProcedurePriority", "SH", "rp_priority"),
    Attr(0x00401400, "RequestedProcedureComments", "LT", _PROCEDURE + "comments", match=Match.NONE),
    # Imaging Service Request
    Attr(0x00080050, "AccessionNumber", "SH", _ORDER + "accession_number"),
    Attr(
        0x00321032,
        "RequestingPhysician",
        "PN",
        _ORDER + "requesting_physician",
        match=Match.PERSON_NAME,
    ),
    Attr(
        0x00080090,
        "ReferringPhysicianName",
        "PN",
        _ORDER + "referring_physician",
        key_column=_ORDER + "referring_physician_key",
        match=Match.PERSON_NAME,
    ),
    Attr(
        0x00402016, "PlacerOrderNumberImagingServiceRequest", "LO", _ORDER + "placer_order_number"
    ),
    Attr(
        0x00402017, "FillerOrderNumberImagingServiceRequest", "LO", _ORDER + "filler_order_number"
    ),
    Attr(0x00402400, "ImagingServiceRequestComments", "LT", _ORDER + "comments", match=Match.NONE),
    Attr(0x00401002, "ReasonForTheRequestedProcedure", "LO", _ORDER + "reason"),
    Attr(0x00401004, "PatientTransportArrangements", "LO", _ORDER + "transport_arrangements"),
    # Visit
    Attr(0x00380010, "AdmissionID", "LO", _ORDER + "admission_id"),
    Attr(0x00380500, "PatientState", "LO", _ORDER + "patient_state"),
    # Patient
    Attr(
        0x00100010,
        "PatientName",
        "PN",
        _PATIENT + "name",
        key_column=_PATIENT + "name_key",
        match=Match.PERSON_NAME,
    ),
    Attr(0x00100020, "PatientID", "LO", _PATIENT + "patient_id"),
    Attr(0x00100021, "IssuerOfPatientID", "LO", _PATIENT + "issuer"),
    Attr(
        0x00101002,
        "OtherPatientIDsSequence",
        "SQ",
        _PATIENT + "other_ids",
        match=Match.NONE,
        source=Source.JSON_ITEMS,
        children=(
            Attr(0x00100020, "PatientID", "LO", "patient_id", match=Match.NONE),
            Attr(0x00100021, "IssuerOfPatientID", "LO", "issuer", match=Match.NONE),
            Attr(0x00100022, "TypeOfPatientID", "CS", match=Match.NONE, constant="TEXT"),
        ),
    ),
    Attr(0x00100030, "PatientBirthDate", "DA", _PATIENT + "birth_date", match=Match.DATE),
    Attr(0x00100040, "PatientSex", "CS", _PATIENT + "sex"),
    Attr(0x00101020, "PatientSize", "DS", _PATIENT + "size_m", match=Match.NONE),
    Attr(0x00101030, "PatientWeight", "DS", _PATIENT + "weight_kg", match=Match.NONE),
    Attr(0x00101040, "PatientAddress", "LO", _PATIENT + "address", match=Match.NONE),
    Attr(0x00102000, "MedicalAlerts", "LO", _PATIENT + "medical_alerts", match=Match.NONE),
    Attr(0x00102110, "Allergies", "LO", _PATIENT + "allergies", match=Match.NONE),
    Attr(0x001021C0, "PregnancyStatus", "US", _PATIENT + "pregnancy_status", match=Match.NONE),
    Attr(
        0x00081120,
        "ReferencedPatientSequence",
        "SQ",
        match=Match.NONE,
        source=Source.EMPTY,
        children=_reference_items(),
    ),
)

TOP_BY_TAG: dict[int, Attr] = {a.tag: a for a in TOP_ATTRIBUTES}
SPS_BY_TAG: dict[int, Attr] = {a.tag: a for a in SPS_ATTRIBUTES}

SPECIFIC_CHARACTER_SET = 0x00080005
QUERY_RETRIEVE_LEVEL = 0x00080052


def children_by_tag(attr: Attr) -> dict[int, Attr]:
    return {c.tag: c for c in attr.children}
