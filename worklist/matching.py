"""Worklist query identifier -> database query (PS3.4 C.2.2.2 and K.2.2).

A pure translation: :func:`match` reads the matching keys of a C-FIND identifier and
returns a ``QuerySet`` of the scheduled steps that match, built only from indexed
conditions; nothing is filtered in Python. Rules:

- universal matching: an empty value, or only ``*``;
- single value: equality (person names on the upper-cased ``*_key`` column when
  ``pn_case_insensitive``);
- wildcards ``*`` and ``?``: GLOB on SQLite (case-sensitive, uses the b-tree index),
  LIKE on PostgreSQL (``%`` and ``_`` escaped; ``*_pattern_ops`` indexes);
- several values (backslash): any of them (list of UID matching for UI);
- DA / TM ranges, open at either end; SPS Start Date and Time together form one
  date-time range;
- Scheduled Station AE Title is multi-valued: a step matches when any value matches;
- without an SPS Status value only the steps ``OFFERED_BY_DEFAULT`` are returned.

Values of attributes the broker cannot match on are ignored and reported in
``Matching.unsupported`` (the SCP answers 0xFF01). Invalid values raise
:class:`InvalidQueryValue`; identifiers that do not fit the worklist model raise
:class:`IdentifierDoesNotMatch`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, time
from typing import Any

from django.db.models import F, Lookup, Q, QuerySet
from django.db.models.expressions import Combinable
from django.db.models.functions import Upper
from django.db.models.lookups import Exact, In
from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from core.dicom import status, values
from core.dicom.values import tag_text as _tag_text
from worklist.attributes import (
    ANNOTATIONS,
    QUERY_RETRIEVE_LEVEL,
    SPS_BY_TAG,
    SPS_SEQUENCE,
    TOP_BY_TAG,
    Attr,
    Match,
    children_by_tag,
)
from worklist.models import ScheduledProcedureStep, StationAETitle
from worklist.status import OFFERED_BY_DEFAULT


class QueryError(Exception):
    """A query the SCP answers with a failure status, Error Comment and Offending Element."""

    status = status.UNABLE_TO_PROCESS

    def __init__(self, tag: int | None, comment: str) -> None:
        super().__init__(comment)
        self.tag = tag
        self.comment = comment


class InvalidQueryValue(QueryError):
    status = status.UNABLE_TO_PROCESS_INVALID_QUERY_VALUE


class IdentifierDoesNotMatch(QueryError):
    status = status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS


@dataclass(frozen=True)
class MatchOptions:
    pn_case_insensitive: bool = False
    calling_ae_as_station: bool = False
    calling_ae: str = ""


@dataclass
class Matching:
    """The steps a query matches: ``queryset``, built from ``annotations`` and, in this
    order, one ``filter()`` per condition of ``filters`` (``worklist.statements`` reads
    them to run the same query from SQL compiled once)."""

    filters: list[Q]
    annotations: tuple[str, ...] = ()
    unsupported: list[int] = field(default_factory=list)

    @property
    def queryset(self) -> QuerySet[ScheduledProcedureStep]:
        queryset = ScheduledProcedureStep.objects.all()
        if self.annotations:
            queryset = queryset.annotate(**{name: ANNOTATIONS[name] for name in self.annotations})
        for condition in self.filters:
            queryset = queryset.filter(condition)
        return queryset


class DicomWildcard(Lookup[str]):
    """``lhs`` matches a DICOM pattern with ``*`` and ``?``, case-sensitively, by index."""

    lookup_name = "dicom_wildcard"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, Any]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        # SQLite's LIKE ignores case; GLOB does not and still uses the index.
        operator = "GLOB" if connection.vendor == "sqlite" else "LIKE"
        return f"{lhs} {operator} %s", [*lhs_params, self.bound_pattern(connection.vendor)]

    def bound_pattern(self, vendor: str) -> str:
        """The pattern's query parameter on this database."""
        pattern = str(self.rhs)
        if vendor == "sqlite":
            return glob_pattern(pattern)
        # Backslash is PostgreSQL's default LIKE escape character.
        return like_pattern(pattern)


def glob_pattern(pattern: str) -> str:
    # '[' opens a character class in GLOB; '[[]' is a literal '['.
    return pattern.replace("[", "[[]")


def like_pattern(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def is_universal(value: str) -> bool:
    return value == "" or set(value) == {"*"}


def element_values(element: DataElement) -> list[str]:
    """The values of a query element as decoded strings (the query's character set)."""
    value = element.value
    if value is None:
        return []
    if isinstance(value, bytes):
        # Only an element of unknown VR arrives undecoded; it is never a matching key.
        return [value.decode("ascii", "replace").rstrip(" \x00")]
    items: Iterable[Any] = value if isinstance(value, MultiValue | list) else [value]
    return [str(item).rstrip(" \x00") for item in items]


# --- DA / TM ----------------------------------------------------------------------


def parse_date(text: str, tag: int) -> date:
    try:
        return values.parse_date(text, tag)
    except values.InvalidValue as exc:
        raise InvalidQueryValue(exc.tag, exc.comment) from exc


def parse_time(text: str, tag: int, *, upper: bool) -> time:
    try:
        return values.parse_time(text, tag, upper=upper)
    except values.InvalidValue as exc:
        raise InvalidQueryValue(exc.tag, exc.comment) from exc


def _split_range(text: str, tag: int) -> tuple[str, str]:
    if text.count("-") > 1 or text.strip() == "-":
        raise InvalidQueryValue(tag, f"{_tag_text(tag)} is not a valid range: {text!r}")
    if "-" in text:
        low, _, high = text.partition("-")
        return low.strip(), high.strip()
    return text, text


def date_range(text: str, tag: int) -> tuple[date | None, date | None]:
    low_text, high_text = _split_range(text, tag)
    low = parse_date(low_text, tag) if low_text else None
    high = parse_date(high_text, tag) if high_text else None
    if low and high and low > high:
        raise InvalidQueryValue(tag, f"{_tag_text(tag)} range ends before it starts: {text!r}")
    return low, high


def time_range(text: str, tag: int, *, ordered: bool = True) -> tuple[time | None, time | None]:
    """``ordered=False``: the range may end on an earlier time of day (it is combined with
    a date range that spans midnight)."""
    low_text, high_text = _split_range(text, tag)
    low = parse_time(low_text, tag, upper=False) if low_text else None
    high = parse_time(high_text, tag, upper=True) if high_text else None
    if ordered and low and high and low > high:
        raise InvalidQueryValue(tag, f"{_tag_text(tag)} range ends before it starts: {text!r}")
    return low, high


def _single(values: list[str], tag: int) -> str:
    if len(values) > 1:
        raise InvalidQueryValue(tag, f"{_tag_text(tag)} takes one value or one range")
    return values[0] if values else ""


def _date_q(column: str, values: list[str], tag: int) -> Q | None:
    text = _single(values, tag)
    if is_universal(text):
        return None
    low, high = date_range(text, tag)
    if low and low == high:
        return Q(**{column: low})
    q = Q()
    if low:
        q &= Q(**{f"{column}__gte": low})
    if high:
        q &= Q(**{f"{column}__lte": high})
    return q


def sps_start_q(date_values: list[str] | None, time_values: list[str] | None) -> Q | None:
    """SPS Start Date and Time; both given: one date-time range (PS3.4 C.2.2.2.5.1)."""
    date_tag, time_tag = 0x00400002, 0x00400003
    date_text = _single(date_values or [], date_tag)
    time_text = _single(time_values or [], time_tag)
    dates = None if is_universal(date_text) else date_range(date_text, date_tag)
    one_day = dates is None or dates[0] == dates[1]
    times = None if is_universal(time_text) else time_range(time_text, time_tag, ordered=one_day)
    q = Q()
    if dates and times:
        (d_low, d_high), (t_low, t_high) = dates, times
        if d_low and d_low == d_high:
            q &= Q(start_date=d_low)
            if t_low:
                q &= Q(start_time__gte=t_low)
            if t_high:
                q &= Q(start_time__lte=t_high)
            return q
        t_low = t_low or time.min
        t_high = t_high or time.max
        if d_low:
            q &= (
                Q(start_date__gte=d_low)
                if t_low == time.min
                else Q(start_date__gt=d_low) | Q(start_date=d_low, start_time__gte=t_low)
            )
        if d_high:
            q &= (
                Q(start_date__lte=d_high)
                if t_high == time.max
                else Q(start_date__lt=d_high) | Q(start_date=d_high, start_time__lte=t_high)
            )
    elif dates:
        d_low, d_high = dates
        if d_low and d_low == d_high:
            # Equality, not a one-day range: the index then also gives the time order.
            return Q(start_date=d_low)
        if d_low:
            q &= Q(start_date__gte=d_low)
        if d_high:
            q &= Q(start_date__lte=d_high)
    elif times:
        t_low, t_high = times
        if t_low:
            q &= Q(start_time__gte=t_low)
        if t_high:
            q &= Q(start_time__lte=t_high)
    else:
        return None
    return q


# --- strings ----------------------------------------------------------------------


def text_q(lhs: Combinable, values: list[str], *, upper: bool = False) -> Q | None:
    """Single value, wildcard or any-of-several matching of a string column."""
    conditions: list[Q] = []
    for value in values:
        if is_universal(value):
            return None
        if upper:
            value = value.upper()
        if "*" in value or "?" in value:
            conditions.append(Q(DicomWildcard(lhs, value)))
        else:
            conditions.append(Q(Exact(lhs, value)))
    if not conditions:
        return None
    combined = conditions[0]
    for condition in conditions[1:]:
        combined |= condition
    return combined


def _uid_q(column: str, values: list[str]) -> Q | None:
    uids = [v for v in values if v]
    if not uids or any(is_universal(v) for v in uids):
        return None
    if len(uids) == 1:
        return Q(**{column: uids[0]})
    return Q(In(F(column), uids))


def _person_name_q(attr: Attr, values: list[str], options: MatchOptions) -> Q | None:
    if not options.pn_case_insensitive:
        return text_q(F(attr.column), values)
    if attr.key_column:
        return text_q(F(attr.key_column), values, upper=True)
    return text_q(Upper(F(attr.column)), values, upper=True)


def _station_q(values: list[str]) -> Q | None:
    inner = text_q(F("ae_title"), values)
    if inner is None:
        return None
    return Q(pk__in=StationAETitle.objects.filter(inner).values("step_id"))


# --- the identifier ---------------------------------------------------------------


@dataclass
class _Collected:
    conditions: list[Q] = field(default_factory=list)
    unsupported: list[int] = field(default_factory=list)
    annotations: set[str] = field(default_factory=set)
    status_given: bool = False
    station_given: bool = False
    sps_date: list[str] | None = None
    sps_time: list[str] | None = None


def _attr_condition(
    attr: Attr, element: DataElement, options: MatchOptions, out: _Collected
) -> None:
    if attr.is_sequence:
        _sequence_conditions(attr, element, options, out)
        return
    values = element_values(element)
    universal = all(is_universal(v) for v in values)
    kind = attr.match
    if kind is Match.STATUS and values and any(v for v in values):
        out.status_given = True
    if kind is Match.STATION_AE and any(v for v in values):
        out.station_given = True
    if kind is Match.SPS_DATE:
        out.sps_date = values
        return
    if kind is Match.SPS_TIME:
        out.sps_time = values
        return
    if universal:
        return
    if kind is Match.NONE:
        out.unsupported.append(attr.tag)
        return
    if attr.column in ANNOTATIONS:
        out.annotations.add(attr.column)
    condition: Q | None
    if kind in (Match.TEXT, Match.STATUS):
        condition = text_q(F(attr.column), values)
    elif kind is Match.PERSON_NAME:
        condition = _person_name_q(attr, values, options)
    elif kind is Match.UID:
        condition = _uid_q(attr.column, values)
    elif kind is Match.DATE:
        condition = _date_q(attr.column, values, attr.tag)
    elif kind is Match.STATION_AE:
        condition = _station_q(values)
    else:  # pragma: no cover - every Match kind is handled above
        raise AssertionError(kind)
    if condition is not None:
        out.conditions.append(condition)


def _sequence_conditions(
    attr: Attr, element: DataElement, options: MatchOptions, out: _Collected
) -> None:
    if element.VR != "SQ" or element.value is None:
        raise IdentifierDoesNotMatch(attr.tag, f"{attr.keyword} must be a sequence")
    items = list(element.value)
    if len(items) > 1:
        raise IdentifierDoesNotMatch(
            attr.tag, f"{attr.keyword} may hold one item in a query, not {len(items)}"
        )
    if not items:
        return
    known = SPS_BY_TAG if attr is SPS_SEQUENCE else children_by_tag(attr)
    for child_element in items[0]:
        tag = int(child_element.tag)
        if _ignored_tag(tag):
            continue
        child = known.get(tag)
        if child is None:
            if element_values(child_element) and not all(
                is_universal(v) for v in element_values(child_element)
            ):
                out.unsupported.append(tag)
            continue
        _attr_condition(child, child_element, options, out)


def _ignored_tag(tag: int) -> bool:
    """Tags that are not query keys: Specific Character Set, group lengths."""
    return tag == 0x00080005 or (tag & 0xFFFF) == 0


def match(identifier: Dataset, options: MatchOptions | None = None) -> Matching:
    """Translate the matching keys of ``identifier`` into a QuerySet of steps.

    1. Collect one condition per matching key with a value (sequences: per item key).
    2. Combine SPS Start Date and Time into one range.
    3. Add the station (calling AE, if configured) and the default status filter.
    """
    options = options or MatchOptions()
    out = _Collected()
    if QUERY_RETRIEVE_LEVEL in identifier:
        raise IdentifierDoesNotMatch(
            QUERY_RETRIEVE_LEVEL,
            "Query/Retrieve Level belongs to a Query/Retrieve identifier, not a worklist query",
        )
    for element in identifier:
        tag = int(element.tag)
        if _ignored_tag(tag):
            continue
        attr = TOP_BY_TAG.get(tag)
        if attr is None:
            values = element_values(element) if element.VR != "SQ" else []
            if any(not is_universal(v) for v in values):
                out.unsupported.append(tag)
            continue
        _attr_condition(attr, element, options, out)

    start = sps_start_q(out.sps_date, out.sps_time)
    if start is not None:
        out.conditions.append(start)
    if options.calling_ae_as_station and options.calling_ae and not out.station_given:
        station = _station_q([options.calling_ae.strip()])
        if station is not None:
            out.conditions.append(station)
    filters = (
        out.conditions if out.status_given else [Q(status__in=OFFERED_BY_DEFAULT), *out.conditions]
    )
    return Matching(
        filters=filters,
        annotations=tuple(sorted(out.annotations)),
        unsupported=sorted(set(out.unsupported)),
    )


def offending(tag: int | None) -> list[Any] | None:
    """Offending Element (0000,0901) value for ``tag``."""
    return None if tag is None else [Tag(tag)]
