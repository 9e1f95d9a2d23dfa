"""The HL7 v2 -> DICOM Modality Worklist mapping, as one table (the IHE mapping
of the project's design notes, summarised in docs/conformance/hl7-interface.md).

Pure: it turns a parsed message into field maps for ``worklist.services`` and never touches
the database. Each row of ``ORDER_ROWS`` / ``PATIENT_ROWS`` names the DICOM attribute,
where its value goes, and where it comes from in ORM^O01 (also used for OMG^O19) and in
OMI^O23. A value of HL7 ``""`` becomes ``None`` (clear); an empty field is left out
(unchanged).

Site-configurable parts (``MappingConfig``): the ORC-1/ORC-5 -> SPS status table. The
station AE title source and the Study Instance UID policy need the database and are
applied by ``hl7v2.apply``.

Every HL7 field position lives here: the rows, the few fields read outside them
(``ORDER_CONTROL``, ``PATIENT_IDENTIFIER``, ...), and :func:`key_field`, which tells the
apply step where a key was read so that its errors name the field.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from django.utils import timezone

from hl7v2.errors import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    TABLE_VALUE_NOT_FOUND,
    MappingError,
)
from hl7v2.parser import NULL, Message, Segment
from worklist.status import Priority, SPSStatus


class _Absent:
    """The field was empty: leave the stored value unchanged."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()

ORM: Final = "ORM"  # ORM^O01 v2.3-2.4 and OMG^O19 v2.5
OMI: Final = "OMI"  # OMI^O23 v2.5

# ORC-1 values with a meaning beyond the status table.
ORDER_CONTROL_NEW = "NW"  # creates (or updates) the order
ORDER_CONTROL_CHANGE = "XO"  # changes an existing order

# --- messages the interface accepts ---------------------------------------------------

ADT: Final = "ADT"
ORDER_VERSIONS_V2: Final = frozenset({"2.3", "2.3.1", "2.4"})
ORDER_VERSIONS_V25: Final = frozenset({"2.5", "2.5.1"})
ADT_VERSIONS: Final = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1"})
ADT_DEMOGRAPHICS: Final = frozenset({"A01", "A04", "A05", "A08", "A31"})
ADT_MERGE: Final = "A40"
ADT_CHANGE_ID: Final = "A47"

# (MSH-9.1, MSH-9.2) -> (structure of the mapping, versions accepted)
SUPPORTED: Final[dict[tuple[str, str], tuple[str, frozenset[str]]]] = {
    ("ORM", "O01"): (ORM, ORDER_VERSIONS_V2),
    ("OMG", "O19"): (ORM, ORDER_VERSIONS_V25),
    ("OMI", "O23"): (OMI, ORDER_VERSIONS_V25),
    **{
        (ADT, event): (ADT, ADT_VERSIONS) for event in (*ADT_DEMOGRAPHICS, ADT_MERGE, ADT_CHANGE_ID)
    },
}
# Any other ORC-1 in the table (CA, DC, SC...) only changes the status of existing steps.

DEFAULT_STATUS_TABLE: Final[dict[tuple[str, str], str]] = {
    ("NW", "SC"): SPSStatus.SCHEDULED,
    ("NW", "IP"): SPSStatus.SCHEDULED,
    ("XO", "SC"): SPSStatus.SCHEDULED,
    ("CA", "CA"): SPSStatus.CANCELED,
    ("DC", "CA"): SPSStatus.DISCONTINUED,
    ("XO", "CM"): SPSStatus.COMPLETED,
    ("SC", "CM"): SPSStatus.COMPLETED,
}

PRIORITIES: Final = {
    "S": Priority.STAT,
    "A": Priority.HIGH,
    "P": Priority.HIGH,
    "C": Priority.HIGH,
    "R": Priority.ROUTINE,
    "T": Priority.MEDIUM,
}
SEXES: Final = {"M": "M", "F": "F", "O": "O", "A": "O", "N": "O", "U": ""}
PREGNANT_AMBULATORY_STATUS = "B6"  # HL7 table 0009
DEFINITELY_PREGNANT = 3  # Pregnancy Status (0010,21C0)

# OBX-3 identifiers (code or text, any case) of body weight and height; LOINC codes too.
BODY_WEIGHT_IDS: Final = {"BODY WEIGHT", "WEIGHT", "29463-7", "3141-9"}
BODY_HEIGHT_IDS: Final = {"BODY HEIGHT", "HEIGHT", "8302-2", "8308-9"}
WEIGHT_UNITS: Final = {"": 1, "KG": 1, "G": Decimal("0.001"), "LB": Decimal("0.45359237")}
HEIGHT_UNITS: Final = {"": 1, "M": 1, "CM": Decimal("0.01"), "IN": Decimal("0.0254")}

PATIENT_ID_MAX = 64  # DICOM LO
UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
TS_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$")


@dataclass(frozen=True)
class MappingConfig:
    status_table: dict[tuple[str, str], str] = field(
        default_factory=lambda: dict(DEFAULT_STATUS_TABLE)
    )


def status_table_parse(text: str) -> dict[tuple[str, str], str]:
    """Read ``NW_SC=SCHEDULED,CA_CA=CANCELED,...``; empty text gives the default table."""
    if not text.strip():
        return dict(DEFAULT_STATUS_TABLE)
    table: dict[tuple[str, str], str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        pair, sep, status = item.partition("=")
        control, underscore, order_status = pair.strip().partition("_")
        status = status.strip().upper()
        if not sep or not underscore or not control or status not in SPSStatus.values:
            raise ValueError(
                f"{item.strip()!r} is not ORC1_ORC5=STATUS with a status out of "
                f"{', '.join(SPSStatus.values)}"
            )
        table[(control.upper(), order_status.strip().upper())] = status
    return table


# --- readers: (segment, field number) -> value -------------------------------------------
# Called only when the field holds a value (not empty, not ""). May return ABSENT. The
# first line of a reader's docstring says what it reads (the interface specification,
# docs/conformance/hl7-interface.md, is generated from the rows and these lines).

Reader = Callable[[Segment, int], Any]


def text(component: int = 1, sub: int = 1) -> Reader:
    def read(seg: Segment, n: int) -> Any:
        value = seg.get(n, component, sub).strip()
        if value == NULL:
            return None
        return value or ABSENT

    read.__doc__ = f"component {component}" + (f", subcomponent {sub}" if sub > 1 else "")
    return read


plain_text: Final = text()


def coded_text(seg: Segment, n: int) -> Any:
    """CE/CWE: the text (.2), else the code (.1)."""
    return seg.get(n, 2).strip() or seg.get(n, 1).strip() or ABSENT


def _pn(family: str, given: str, middle: str, prefix: str, suffix: str) -> str:
    parts = [p.replace("^", " ").replace("\\", " ").strip() for p in (family, given, middle)]
    parts += [p.replace("^", " ").replace("\\", " ").strip() for p in (prefix, suffix)]
    return "^".join(parts).rstrip("^")


def person_name(seg: Segment, n: int) -> Any:
    """XPN (family&..^given^middle^suffix^prefix) -> DICOM PN family^given^middle^prefix^suffix."""
    g = seg.get
    name = _pn(g(n, 1, 1), g(n, 2), g(n, 3), g(n, 5), g(n, 4))
    return name or ABSENT


def staff_name(seg: Segment, n: int) -> Any:
    """XCN (id^family&..^given^middle^suffix^prefix) -> DICOM PN."""
    g = seg.get
    name = _pn(g(n, 2, 1), g(n, 3), g(n, 4), g(n, 6), g(n, 5))
    return name or ABSENT


def staff_name_in_component(seg: Segment, n: int) -> Any:
    """NDL / CM technician (OBR-34): the name is component 1, cut into subcomponents."""
    g = seg.get
    name = _pn(g(n, 1, 2), g(n, 1, 3), g(n, 1, 4), g(n, 1, 6), g(n, 1, 5))
    return name or ABSENT


def address(seg: Segment, n: int) -> Any:
    """XAD, first repetition: its components as sent, joined by ^ (street^other^city^...)."""
    first = seg.repetitions(n)[0]
    comps = [seg.split(c) for c in seg.components(first)]
    return "^".join(c.strip() for c in comps).rstrip("^") or ABSENT


def hl7_date(seg: Segment, n: int) -> Any:
    """DT / TS: the date, YYYYMMDD (a time part is ignored)."""
    value = seg.get(n, 1).strip()
    digits = value[:8]
    try:
        if len(digits) < 8 or not digits.isdigit():
            raise ValueError(value)
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        raise MappingError(
            f"{value!r} is not a date (YYYYMMDD)",
            segment=seg.name,
            field=n,
            occurrence=seg.occurrence,
            code=DATA_TYPE_ERROR,
        ) from None


def parse_timestamp(value: str) -> dt.datetime:
    """HL7 TS/DTM -> aware datetime; without a UTC offset it is in TIME_ZONE."""
    match = TS_RE.match(value.strip())
    if not match:
        raise ValueError(value)
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0").ljust(6, "0")[:6])
    naive = dt.datetime(
        int(year),
        int(month or 1),
        int(day or 1),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        micro,
    )
    if offset:
        sign = -1 if offset[0] == "-" else 1
        delta = dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
        return naive.replace(tzinfo=dt.timezone(sign * delta))
    return timezone.make_aware(naive, timezone.get_default_timezone())


def timestamp(component: int = 1) -> Reader:
    def read(seg: Segment, n: int) -> Any:
        value = seg.get(n, component, 1).strip()
        if not value:
            return ABSENT
        if value == NULL:
            return None
        try:
            return parse_timestamp(value)
        except ValueError:
            raise MappingError(
                f"{value!r} is not a date/time (YYYYMMDD[HHMM[SS]][+/-ZZZZ])",
                segment=seg.name,
                field=n,
                occurrence=seg.occurrence,
                code=DATA_TYPE_ERROR,
            ) from None

    read.__doc__ = (
        f"TS/DTM in component {component}; with a UTC offset as sent, else in TIME_ZONE"
        if component > 1
        else "TS/DTM; with a UTC offset as sent, else in TIME_ZONE"
    )
    return read


def sex(seg: Segment, n: int) -> Any:
    """M, F, O as sent; A and N -> O; U -> empty; anything else -> O."""
    return SEXES.get(seg.get(n).strip().upper(), "O")


def priority(component: int) -> Reader:
    def read(seg: Segment, n: int) -> Any:
        return PRIORITIES.get(seg.get(n, component).strip().upper(), ABSENT)

    read.__doc__ = f"component {component}: " + ", ".join(
        f"{code} -> {value}" for code, value in PRIORITIES.items()
    )
    return read


def pregnancy(seg: Segment, n: int) -> Any:
    """B6 (pregnant) in any repetition -> 3 (definitely pregnant); else unchanged."""
    codes = {seg.split(rep).strip().upper() for rep in seg.repetitions(n)}
    return DEFINITELY_PREGNANT if PREGNANT_AMBULATORY_STATUS in codes else ABSENT


def code_list(value: int, scheme: int, meaning: int) -> Reader:
    """A coded entry -> [{"value", "scheme", "meaning"}] (empty code -> no item)."""

    def read(seg: Segment, n: int) -> Any:
        out = []
        for rep in seg.repetitions(n):
            code = seg.split(rep, value).strip()
            if code:
                out.append(
                    {
                        "value": code,
                        "scheme": seg.split(rep, scheme).strip(),
                        "meaning": seg.split(rep, meaning).strip(),
                    }
                )
        return out or ABSENT

    read.__doc__ = f"each repetition: code .{value}, scheme .{scheme}, meaning .{meaning}"
    return read


def repeated_text(component: int = 1) -> Reader:
    def read(seg: Segment, n: int) -> Any:
        values = [seg.split(rep, component).strip() for rep in seg.repetitions(n)]
        return [v for v in values if v] or ABSENT

    read.__doc__ = f"component {component} of each repetition"
    return read


# --- readers over every occurrence of a segment in scope ----------------------------------

SegmentsReader = Callable[[list[Segment]], Any]


def notes(segments: list[Segment]) -> Any:
    """NTE-3 of every NTE (each repetition a line)."""
    lines: list[str] = []
    for seg in segments:
        if seg.raw(3) == NULL and len(segments) == 1:
            return None
        lines += [seg.split(rep) for rep in seg.repetitions(3) if rep != NULL]
    return "\n".join(lines) if lines else ABSENT


def allergies(segments: list[Segment]) -> Any:
    """AL1-3 of every AL1, as a DICOM multi-value (backslash separated)."""
    if len(segments) == 1 and segments[0].raw(3) == NULL:
        return None
    values = [coded_text(seg, 3) for seg in segments if seg.raw(3)]
    values = [v.replace("\\", " ") for v in values if isinstance(v, str)]
    return "\\".join(values) if values else ABSENT


def _observation(identifiers: set[str], units: dict[str, Any], maximum: Decimal) -> SegmentsReader:
    def read(segments: list[Segment]) -> Any:
        for seg in segments:
            ids = {seg.get(3, 1).strip().upper(), seg.get(3, 2).strip().upper()}
            if not ids & identifiers:
                continue
            raw = seg.get(5).strip()
            if raw == NULL:
                return None
            unit = seg.get(6, 1).strip().upper().strip("[]").removesuffix("_AV").removesuffix("_I")
            try:
                number = Decimal(raw) * units[unit]
            except (InvalidOperation, KeyError):
                raise MappingError(
                    f"{raw[:40]!r} {seg.get(6, 1)[:20]!r} is not a measurement in a known unit",
                    segment="OBX",
                    field=5,
                    occurrence=seg.occurrence,
                    code=DATA_TYPE_ERROR,
                ) from None
            # NaN, Infinity and 1E+99 are Decimals too; compared or quantized they raise.
            if not number.is_finite() or not 0 <= number < maximum:
                raise MappingError(
                    f"{raw[:40]} is out of range",
                    segment="OBX",
                    field=5,
                    occurrence=seg.occurrence,
                    code=DATA_TYPE_ERROR,
                )
            number = number.quantize(Decimal("0.01"))
            if not 0 <= number < maximum:
                raise MappingError(
                    f"{raw} is out of range",
                    segment="OBX",
                    field=5,
                    occurrence=seg.occurrence,
                    code=DATA_TYPE_ERROR,
                )
            return number
        return ABSENT

    read.__doc__ = (
        f"OBX-5 in the unit of OBX-6 ({', '.join(u for u in units if u) or 'none'}; empty: "
        f"{next(u for u in units if u)}) of the first OBX whose OBX-3 (.1 or .2) is one of "
        f"{', '.join(sorted(identifiers))}"
    )
    return read


body_weight = _observation(BODY_WEIGHT_IDS, WEIGHT_UNITS, Decimal("10000"))
body_height = _observation(BODY_HEIGHT_IDS, HEIGHT_UNITS, Decimal("100"))


# --- sources ---------------------------------------------------------------------------


class Scope:
    """The segments a row may read: the step's (IPC), its order group's, the message's."""

    def __init__(self, *levels: dict[str, list[Segment]]) -> None:
        self.levels = levels

    def all(self, name: str) -> list[Segment]:
        for level in self.levels:
            if level.get(name):
                return level[name]
        return []

    def first(self, name: str) -> Segment | None:
        found = self.all(name)
        return found[0] if found else None


@dataclass(frozen=True)
class Field:
    """One field of the first such segment in scope."""

    segment: str
    field: int
    read: Reader = plain_text

    def extract(self, scope: Scope) -> Any:
        seg = scope.first(self.segment)
        if seg is None:
            return ABSENT
        raw = seg.raw(self.field)
        if raw == "":
            return ABSENT
        if raw == NULL:
            return None
        return self.read(seg, self.field)

    def label(self) -> str:
        return f"{self.segment}-{self.field}"


@dataclass(frozen=True)
class Every:
    """Every such segment in scope."""

    segment: str
    read: SegmentsReader

    def extract(self, scope: Scope) -> Any:
        segments = scope.all(self.segment)
        return self.read(segments) if segments else ABSENT

    def label(self) -> str:
        return self.segment


@dataclass(frozen=True)
class FirstOf:
    """The first source that has a value (HL7 ``""`` counts as a value)."""

    sources: tuple[Field | Every, ...]

    def extract(self, scope: Scope) -> Any:
        for source in self.sources:
            value = source.extract(scope)
            if value is not ABSENT:
                return value
        return ABSENT

    def label(self) -> str:
        return " else ".join(s.label() for s in self.sources)


Source = Field | Every | FirstOf

# Fields read outside the rows: identifiers and the order control.
ORDER_CONTROL: Final = Field("ORC", 1)
ORDER_STATUS: Final = Field("ORC", 5)
PATIENT_IDENTIFIER: Final = Field("PID", 3)
PRIOR_PATIENT_IDENTIFIER: Final = Field("MRG", 1)


class _Same:
    """The OMI column equals the ORM column."""


SAME: Final = _Same()


@dataclass(frozen=True)
class Row:
    attribute: str  # DICOM attribute (tag)
    target: tuple[str, str]  # (level, field): patient/order/procedure/step field, or key
    orm: Source | None  # ORM^O01 and OMG^O19; None: not in the message (device registry)
    omi: Source | _Same | None = SAME

    def source(self, structure: str) -> Source | None:
        if structure == OMI and not isinstance(self.omi, _Same):
            return self.omi
        return self.orm


PATIENT = "patient"
ORDER = "order"
PROCEDURE = "procedure"
STEP = "step"
KEY = "key"

PATIENT_ROWS: Final = (
    Row("Patient's Name (0010,0010)", (PATIENT, "name"), Field("PID", 5, person_name)),
    Row("Patient's Birth Date (0010,0030)", (PATIENT, "birth_date"), Field("PID", 7, hl7_date)),
    Row("Patient's Sex (0010,0040)", (PATIENT, "sex"), Field("PID", 8, sex)),
    Row("Patient's Address (0010,1040)", (PATIENT, "address"), Field("PID", 11, address)),
    Row("Patient's Weight (0010,1030)", (PATIENT, "weight_kg"), Every("OBX", body_weight)),
    Row("Patient's Size (0010,1020)", (PATIENT, "size_m"), Every("OBX", body_height)),
    Row("Pregnancy Status (0010,21C0)", (PATIENT, "pregnancy_status"), Field("PV1", 15, pregnancy)),
    Row("Allergies (0010,2110)", (PATIENT, "allergies"), Every("AL1", allergies)),
)

OBSERVATION_ROWS: Final = tuple(
    r for r in PATIENT_ROWS if isinstance(r.orm, Every) and r.orm.segment == "OBX"
)

_START_ORM = FirstOf(
    (Field("ORC", 7, timestamp(4)), Field("TQ1", 7, timestamp()), Field("OBR", 27, timestamp(4)))
)
_START_OMI = FirstOf((Field("TQ1", 7, timestamp()), Field("ORC", 7, timestamp(4))))
_PRIORITY_ORM = FirstOf((Field("ORC", 7, priority(6)), Field("TQ1", 9, priority(1))))
_PRIORITY_OMI = FirstOf((Field("TQ1", 9, priority(1)), Field("ORC", 7, priority(6))))

ORDER_ROWS: Final = (
    Row("Medical Alerts (0010,2000)", (PATIENT, "medical_alerts"), Field("OBR", 13)),
    Row("Patient State (0038,0500)", (ORDER, "patient_state"), Field("OBR", 12, coded_text)),
    Row(
        "Referring Physician's Name (0008,0090)",
        (ORDER, "referring_physician"),
        Field("PV1", 8, staff_name),
    ),
    Row(
        "Admission ID (0038,0010)",
        (ORDER, "admission_id"),
        FirstOf((Field("PV1", 19), Field("PID", 18))),
    ),
    Row("Placer Order Number (0040,2016)", (ORDER, "placer_order_number"), Field("ORC", 2)),
    Row("Filler Order Number (0040,2017)", (ORDER, "filler_order_number"), Field("ORC", 3)),
    Row(
        "Accession Number (0008,0050)", (KEY, "accession_number"), Field("OBR", 18), Field("IPC", 1)
    ),
    Row(
        "Requested Procedure ID (0040,1001)",
        (KEY, "requested_procedure_id"),
        Field("OBR", 19),
        Field("IPC", 2),
    ),
    Row(
        "Study Instance UID (0020,000D)",
        (KEY, "study_instance_uid"),
        Field("ZDS", 1),
        Field("IPC", 3),
    ),
    Row(
        "Requested Procedure Description (0032,1060)",
        (PROCEDURE, "description"),
        FirstOf((Field("OBR", 44, text(2)), Field("OBR", 4, text(2)))),
    ),
    Row("Requested Procedure Code Value", (PROCEDURE, "code_value"), Field("OBR", 44, text(1))),
    Row("Requested Procedure Code Meaning", (PROCEDURE, "code_meaning"), Field("OBR", 44, text(2))),
    Row("Requested Procedure Coding Scheme", (PROCEDURE, "code_scheme"), Field("OBR", 44, text(3))),
    Row(
        "Requested Procedure Priority (0040,1003)",
        (PROCEDURE, "priority"),
        _PRIORITY_ORM,
        _PRIORITY_OMI,
    ),
    Row("Requested Procedure Priority (order)", (ORDER, "priority"), _PRIORITY_ORM, _PRIORITY_OMI),
    Row(
        "Reason for the Requested Procedure (0040,1002)",
        (ORDER, "reason"),
        Field("OBR", 31, coded_text),
    ),
    Row(
        "Patient Transport Arrangements (0040,1004)",
        (ORDER, "transport_arrangements"),
        Field("OBR", 30),
    ),
    Row(
        "Requesting Physician (0032,1032)",
        (ORDER, "requesting_physician"),
        Field("OBR", 16, staff_name),
    ),
    Row("Requested Procedure Comments (0040,1400)", (PROCEDURE, "comments"), Every("NTE", notes)),
    Row(
        "Scheduled Procedure Step ID (0040,0009)",
        (KEY, "sps_id"),
        Field("OBR", 20),
        Field("IPC", 4),
    ),
    Row("Modality (0008,0060)", (STEP, "modality"), Field("OBR", 24), Field("IPC", 5)),
    Row(
        "Scheduled Station AE Title (0040,0001)",
        (KEY, "station_ae_titles"),
        Field("ORC", 18, repeated_text(1)),
        Field("IPC", 9, repeated_text(1)),
    ),
    Row("Scheduled Station Name (0040,0010)", (STEP, "station_name"), None, Field("IPC", 7)),
    Row("Scheduled Procedure Step Location (0040,0011)", (STEP, "location"), None, Field("IPC", 8)),
    Row("SPS Start Date/Time (0040,0002/0003)", (STEP, "start"), _START_ORM, _START_OMI),
    Row(
        "SPS Description (0040,0007)",
        (STEP, "description"),
        Field("OBR", 4, text(5)),
        Field("IPC", 6, text(2)),
    ),
    Row(
        "Scheduled Protocol Code Sequence (0040,0008)",
        (STEP, "protocol_codes"),
        Field("OBR", 4, code_list(4, 6, 5)),
        Field("IPC", 6, code_list(1, 3, 2)),
    ),
    Row(
        "Scheduled Performing Physician's Name (0040,0006)",
        (STEP, "performing_physician"),
        Field("OBR", 34, staff_name_in_component),
    ),
)


def _row_fields() -> dict[tuple[str, str, str], Field]:
    out = {}
    for row in ORDER_ROWS:
        for structure in (ORM, OMI):
            source = row.source(structure)
            if isinstance(source, Field):
                out[(structure, *row.target)] = source
    return out


_ROW_FIELDS: Final = _row_fields()


def key_field(structure: str, name: str, level: str = KEY) -> Field:
    """Where ``name`` (a key, or an order field) is read in ``structure``: for errors
    that name the field (``key_field(OMI, "accession_number")`` is IPC-1)."""
    return _ROW_FIELDS[(structure, level, name)]


@dataclass(frozen=True)
class KeyField:
    """A field the mapping reads outside the rows: keys and the order control."""

    field: str  # e.g. "PID-3"
    messages: str
    use: str


KEY_FIELDS: Final = (
    KeyField(
        PATIENT_IDENTIFIER.label(),
        "all",
        "Patient ID (0010,0020) = .1 of the first repetition, Issuer of Patient ID "
        "(0010,0021) = .4.1; the other repetitions -> Other Patient IDs Sequence (0010,1002). "
        "Required",
    ),
    KeyField(
        ORDER_CONTROL.label(),
        "orders",
        "Order Control, required. NW creates or updates the order, XO changes an existing "
        "one; any other value only changes the status of existing steps. With ORC-5 it "
        "gives the SPS status (order status table)",
    ),
    KeyField(ORDER_STATUS.label(), "orders", "Order Status, with ORC-1 (order status table)"),
    KeyField(
        "ORC-2, ORC-3",
        "orders",
        "Placer / filler order number: identify the order of a status change (CA, DC...) "
        "that has no accession number",
    ),
    KeyField(
        PRIOR_PATIENT_IDENTIFIER.label(),
        "ADT^A40, ADT^A47",
        "Prior patient identifier (.1, issuer .4.1): A40 merges that patient into the PID-3 "
        "patient, A47 renames it to PID-3. Required",
    ),
)


# --- results ---------------------------------------------------------------------------


@dataclass
class PatientUpdate:
    patient_id: str
    issuer: str
    fields: dict[str, Any]


@dataclass
class StepUpdate:
    """One scheduled step of an order message: keys, field maps and the status."""

    order_control: str
    order_status: str
    sps_status: str
    accession_number: str
    placer_order_number: str
    filler_order_number: str
    requested_procedure_id: str
    study_instance_uid: str
    sps_id: str
    order_fields: dict[str, Any]
    procedure_fields: dict[str, Any]
    step_fields: dict[str, Any]
    station_ae_titles: list[str]
    orc: Segment
    key_segment: Segment  # OBR (ORM) or IPC (OMI): where the keys were read
    structure: str = ORM  # ORM or OMI: with key_field, where each key was read


@dataclass
class OrderMessage:
    patient: PatientUpdate | None
    steps: list[StepUpdate]


@dataclass
class Merge:
    patient: PatientUpdate  # PID: the surviving patient / the new identifier
    prior_id: str  # MRG-1: the merged patient / the old identifier
    prior_issuer: str
    mrg: Segment


@dataclass
class AdtMessage:
    event: str
    patient: PatientUpdate
    merges: list[Merge]


# --- mapping ---------------------------------------------------------------------------


def _require(seg: Segment | None, name: str, why: str) -> Segment:
    if seg is None:
        raise MappingError(
            f"{name} segment is missing ({why})", segment=name, code=SEGMENT_SEQUENCE_ERROR
        )
    return seg


def _identifiers(seg: Segment, n: int) -> list[tuple[str, str]]:
    """CX repetitions -> [(id, issuer)]; the issuer is the assigning authority (.4.1)."""
    out = []
    for rep in seg.repetitions(n):
        if rep == NULL:
            continue
        ident = seg.split(rep, 1).strip()
        if ident:
            out.append((ident, seg.split(rep, 4, 1).strip()))
    return out


def patient_update(scope: Scope) -> PatientUpdate:
    """PID (with PV1, AL1, OBX) -> the patient's keys and demographics."""
    pid = _require(scope.first("PID"), "PID", "the patient")
    ids = _identifiers(pid, PATIENT_IDENTIFIER.field)
    if not ids:
        raise MappingError(
            "Patient ID (PID-3.1) is missing",
            segment="PID",
            field=PATIENT_IDENTIFIER.field,
            occurrence=pid.occurrence,
            code=REQUIRED_FIELD_MISSING,
        )
    if len(ids[0][0]) > PATIENT_ID_MAX or len(ids[0][1]) > PATIENT_ID_MAX:
        raise MappingError(
            f"Patient ID or its issuer is longer than {PATIENT_ID_MAX} characters",
            segment="PID",
            field=PATIENT_IDENTIFIER.field,
            occurrence=pid.occurrence,
            code=DATA_TYPE_ERROR,
        )
    fields = _collect(PATIENT_ROWS, ORM, scope)[PATIENT]
    fields["other_ids"] = [{"patient_id": i, "issuer": s} for i, s in ids[1:]]
    return PatientUpdate(patient_id=ids[0][0], issuer=ids[0][1], fields=fields)


def _collect(rows: Iterable[Row], structure: str, scope: Scope) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {PATIENT: {}, ORDER: {}, PROCEDURE: {}, STEP: {}, KEY: {}}
    for row in rows:
        source = row.source(structure)
        if source is None:
            continue
        value = source.extract(scope)
        if value is not ABSENT:
            out[row.target[0]][row.target[1]] = value
    return out


def _key(keys: dict[str, Any], name: str) -> str:
    value = keys.get(name)
    return value.strip() if isinstance(value, str) else ""


def _groups(message: Message) -> tuple[dict[str, list[Segment]], list[list[Segment]]]:
    """Cut an order message into the patient part and the ORC-led order groups."""
    head: dict[str, list[Segment]] = {}
    groups: list[list[Segment]] = []
    for seg in message.segments[1:]:
        if seg.name == "ORC":
            groups.append([seg])
        elif groups:
            groups[-1].append(seg)
        elif seg.name != "NTE":  # notes on the message or patient are not procedure notes
            head.setdefault(seg.name, []).append(seg)
    return head, groups


def _index(segments: Iterable[Segment]) -> dict[str, list[Segment]]:
    out: dict[str, list[Segment]] = {}
    for seg in segments:
        out.setdefault(seg.name, []).append(seg)
    return out


def order_message(message: Message, structure: str, config: MappingConfig) -> OrderMessage:
    """ORM^O01 / OMG^O19 / OMI^O23 -> the patient and one StepUpdate per step.

    1. The segments before the first ORC describe the patient (PID, PV1, AL1, OBX).
    2. Each ORC starts an order group; in OMI each IPC of the group is one step, in ORM
       the group's OBR is one step.
    3. Each step's values are read through the table, step scope first (IPC), then its
       group (ORC, TQ1, OBR, NTE, OBX, ZDS), then the message.
    4. ORC-1/ORC-5 give the step status through the configured table.
    """
    head, groups = _groups(message)
    if not groups:
        raise MappingError(
            "the message has no ORC segment", segment="ORC", code=SEGMENT_SEQUENCE_ERROR
        )
    message_scope = head
    steps: list[StepUpdate] = []
    patient_fields: dict[str, Any] = {}
    for group in groups:
        # The group's own segments; OBX/NTE after an IPC still belong to the group.
        group_index = _index(s for s in group if s.name != "IPC")
        ipcs = [s for s in group if s.name == "IPC"]
        if structure == OMI and not ipcs:
            orc = group[0]
            raise MappingError(
                "order group has no IPC segment",
                segment="IPC",
                occurrence=orc.occurrence,
                code=SEGMENT_SEQUENCE_ERROR,
            )
        step_scopes = [{"IPC": [ipc]} for ipc in ipcs] if structure == OMI else [{}]
        for step_index in step_scopes:
            scope = Scope(step_index, group_index, message_scope)
            values = _collect(ORDER_ROWS, structure, scope)
            patient_fields.update(values[PATIENT])
            # Weight and height observed with the order (OBX after OBR) are the patient's.
            patient_fields.update(
                _collect(OBSERVATION_ROWS, structure, Scope(group_index))[PATIENT]
            )
            steps.append(_step_update(scope, structure, values, config))
    patient = None
    if "PID" in head:
        patient = patient_update(Scope(head))
        patient.fields.update(patient_fields)
    return OrderMessage(patient=patient, steps=steps)


def _step_update(
    scope: Scope, structure: str, values: dict[str, dict[str, Any]], config: MappingConfig
) -> StepUpdate:
    orc = scope.first("ORC")
    assert orc is not None
    key_name = "IPC" if structure == OMI else "OBR"
    key_segment = scope.first(key_name)
    control = orc.get(ORDER_CONTROL.field).strip().upper()
    order_status = orc.get(ORDER_STATUS.field).strip().upper()
    if not control:
        raise MappingError(
            "Order Control (ORC-1) is missing",
            segment="ORC",
            field=ORDER_CONTROL.field,
            occurrence=orc.occurrence,
            code=REQUIRED_FIELD_MISSING,
        )
    sps_status = config.status_table.get((control, order_status))
    if sps_status is None:
        raise MappingError(
            f"unsupported order control / status ORC-1/ORC-5 = {control}/{order_status or '(empty)'}",
            segment="ORC",
            field=(ORDER_STATUS if order_status else ORDER_CONTROL).field,
            occurrence=orc.occurrence,
            code=TABLE_VALUE_NOT_FOUND,
        )
    keys = values[KEY]
    if key_segment is None:
        if control in (ORDER_CONTROL_NEW, ORDER_CONTROL_CHANGE):
            _require(key_segment, key_name, "the requested procedure")
        key_segment = orc
    accession = _key(keys, "accession_number")
    placer = orc.get(key_field(structure, "placer_order_number", ORDER).field).strip()
    filler = orc.get(key_field(structure, "filler_order_number", ORDER).field).strip()
    if not accession and (control in (ORDER_CONTROL_NEW, ORDER_CONTROL_CHANGE) or not placer):
        raise MappingError(
            "Accession Number is missing",
            segment=key_name,
            field=key_field(structure, "accession_number").field,
            occurrence=key_segment.occurrence,
            code=REQUIRED_FIELD_MISSING,
        )
    procedure_id = _key(keys, "requested_procedure_id")
    sps_id = _key(keys, "sps_id")
    uid = _key(keys, "study_instance_uid")
    if uid and not (len(uid) <= 64 and UID_RE.match(uid)):
        src = key_field(structure, "study_instance_uid")
        raise MappingError(
            f"{uid!r} is not a valid UID",
            segment=src.segment,
            field=src.field,
            code=DATA_TYPE_ERROR,
        )
    titles = keys.get("station_ae_titles")
    step_fields = dict(values[STEP])
    step_fields["status"] = sps_status
    return StepUpdate(
        order_control=control,
        order_status=order_status,
        sps_status=sps_status,
        accession_number=accession,
        placer_order_number=placer if placer != NULL else "",
        filler_order_number=filler if filler != NULL else "",
        requested_procedure_id=procedure_id,
        study_instance_uid=uid,
        sps_id=sps_id,
        order_fields=values[ORDER],
        procedure_fields=values[PROCEDURE],
        step_fields=step_fields,
        station_ae_titles=titles if isinstance(titles, list) else [],
        orc=orc,
        key_segment=key_segment,
        structure=structure,
    )


def adt_message(message: Message, event: str) -> AdtMessage:
    """ADT -> the patient (PID/PV1/AL1/OBX) and, for A40/A47, each PID/MRG pair."""
    head = _index(s for s in message.segments[1:] if s.name != "NTE")
    patient = patient_update(Scope(head))
    merges: list[Merge] = []
    pending: PatientUpdate | None = None
    for seg in message.segments[1:]:
        if seg.name == "PID":
            pending = patient_update(Scope({"PID": [seg]}))
        elif seg.name == "MRG":
            if pending is None:
                raise MappingError(
                    "MRG segment without a PID before it",
                    segment="MRG",
                    occurrence=seg.occurrence,
                    code=SEGMENT_SEQUENCE_ERROR,
                )
            prior = _identifiers(seg, PRIOR_PATIENT_IDENTIFIER.field)
            if not prior:
                raise MappingError(
                    "Prior Patient Identifier (MRG-1) is missing",
                    segment="MRG",
                    field=PRIOR_PATIENT_IDENTIFIER.field,
                    occurrence=seg.occurrence,
                    code=REQUIRED_FIELD_MISSING,
                )
            merges.append(Merge(pending, prior[0][0], prior[0][1], seg))
    return AdtMessage(event=event, patient=patient, merges=merges)
