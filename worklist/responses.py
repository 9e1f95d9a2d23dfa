"""Worklist C-FIND responses: exactly the requested attributes, one per scheduled step.

:func:`return_keys` reads which attributes a query asks for; :class:`ResponseBuilder`
selects only their columns (one query with joins, plus one for the station AE titles)
and turns each row into a response identifier:

- every requested attribute is present, zero-length when the step has no value;
- a requested sequence with no item, or with an empty item, returns every attribute of
  that sequence; otherwise only the requested ones;
- unknown or unsupported keys come back zero-length and are reported (0xFF01);
- Specific Character Set is always present: ISO_IR 100 when every value fits Latin-1,
  else ISO_IR 192 (UTF-8).

Values are encoded here, once, into raw elements, so pydicom writes their bytes as they
are instead of converting and validating every value of every answer.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from pydicom import Dataset
from pydicom.charset import convert_encodings
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag

from worklist.attributes import (
    ANNOTATIONS,
    TOP_BY_TAG,
    Attr,
    Source,
    children_by_tag,
)
from worklist.matching import IdentifierDoesNotMatch
from worklist.models import ScheduledProcedureStep, StationAETitle

LATIN1 = "ISO_IR 100"
UTF8 = "ISO_IR 192"
_CHARSET_TAG = BaseTag(0x00080005)


@dataclass
class Node:
    """One requested attribute; ``attr`` is None for a key the broker does not know."""

    tag: int
    vr: str
    attr: Attr | None
    children: list[Node] = field(default_factory=list)
    btag: BaseTag = field(init=False)

    def __post_init__(self) -> None:
        self.btag = BaseTag(self.tag)


@dataclass
class ReturnKeys:
    nodes: list[Node]
    unsupported: list[int]


def _all_children(attr: Attr) -> list[Node]:
    return [Node(c.tag, c.vr, c, _all_children(c)) for c in attr.children]


def _ignored(tag: int) -> bool:
    return tag == 0x00080005 or (tag & 0xFFFF) == 0


def _nodes(dataset: Dataset, known: dict[int, Attr], unsupported: list[int]) -> list[Node]:
    nodes: list[Node] = []
    for element in dataset:
        tag = int(element.tag)
        if _ignored(tag):
            continue
        attr = known.get(tag)
        vr = str(element.VR)
        if attr is None:
            unsupported.append(tag)
            nodes.append(Node(tag, vr if len(vr) == 2 else "UN", None))
            continue
        children: list[Node] = []
        if attr.is_sequence:
            items = list(element.value) if element.VR == "SQ" and element.value else []
            if len(items) > 1:
                raise IdentifierDoesNotMatch(
                    tag, f"{attr.keyword} may hold one item in a query, not {len(items)}"
                )
            if not items or len(items[0]) == 0:
                children = _all_children(attr)
            else:
                child_known = children_by_tag(attr)
                children = _nodes(items[0], child_known, unsupported)
        nodes.append(Node(tag, attr.vr, attr, children))
    return nodes


def return_keys(identifier: Dataset) -> ReturnKeys:
    unsupported: list[int] = []
    nodes = _nodes(identifier, TOP_BY_TAG, unsupported)
    return ReturnKeys(nodes=nodes, unsupported=sorted(set(unsupported)))


# --- values -> DICOM text ------------------------------------------------------------


def dicom_text(value: Any) -> str:
    """A column value as the text of a DICOM string VR."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return f"{value.year:04d}{value.month:02d}{value.day:02d}"
    if isinstance(value, time):
        text = f"{value.hour:02d}{value.minute:02d}{value.second:02d}"
        return f"{text}.{value.microsecond:06d}" if value.microsecond else text
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


# A value tree before encoding: (node, text) for a leaf, (node, [items]) for a sequence,
# where an item is a list of such entries.
_Entry = tuple[Node, Any]


class ResponseBuilder:
    """Builds response identifiers for one query, from the columns it needs."""

    def __init__(self, keys: ReturnKeys, *, implicit_vr: bool = True, little_endian: bool = True):
        self.keys = keys
        self.implicit_vr = implicit_vr
        self.little_endian = little_endian
        self.columns: list[str] = ["pk"]
        self.needs_stations = False
        self._collect(keys.nodes)
        self._index = {c: i for i, c in enumerate(self.columns)}

    def _column(self, name: str) -> None:
        if name and name not in self.columns:
            self.columns.append(name)

    def _collect(self, nodes: Sequence[Node]) -> None:
        for node in nodes:
            attr = node.attr
            if attr is None:
                continue
            if attr.source is Source.COLUMN:
                self._column(attr.column)
            elif attr.source in (Source.JSON_ITEMS, Source.CODE_ITEM):
                self._column(attr.column)
                if attr.source is Source.CODE_ITEM:
                    self._collect(node.children)
            elif attr.source is Source.STATIONS:
                self.needs_stations = True
            elif attr.source is Source.SPS_ITEM:
                self._collect(node.children)

    # -- fetching --

    def rows(
        self, queryset: QuerySet[ScheduledProcedureStep], limit: int
    ) -> tuple[list[tuple[Any, ...]], dict[int, list[str]]]:
        """At most ``limit`` rows of the needed columns, and the station AE titles."""
        annotations = {c: ANNOTATIONS[c] for c in self.columns if c in ANNOTATIONS}
        if annotations:
            queryset = queryset.annotate(**annotations)
        ordered = queryset.order_by("start_date", "start_time", "pk")
        rows = list(ordered.values_list(*self.columns)[:limit])
        stations: dict[int, list[str]] = defaultdict(list)
        if self.needs_stations and rows:
            ids = [row[0] for row in rows]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for step_id, title in (
                    StationAETitle.objects.filter(step_id__in=chunk)
                    .order_by("step_id", "pk")
                    .values_list("step_id", "ae_title")
                ):
                    stations[step_id].append(title)
        return rows, stations

    # -- building --

    def _leaf_text(self, attr: Attr, row: tuple[Any, ...], stations: dict[int, list[str]]) -> str:
        if attr.source is Source.STATIONS:
            return "\\".join(stations.get(row[0], ()))
        if attr.source is Source.EMPTY or not attr.column:
            return ""
        return dicom_text(row[self._index[attr.column]])

    def _entries(
        self, nodes: Sequence[Node], row: tuple[Any, ...], stations: dict[int, list[str]]
    ) -> list[_Entry]:
        entries: list[_Entry] = []
        for node in nodes:
            attr = node.attr
            if attr is None:
                entries.append((node, [] if node.vr == "SQ" else ""))
            elif not attr.is_sequence:
                if attr.vr == "US":
                    entries.append((node, row[self._index[attr.column]]))
                else:
                    entries.append((node, self._leaf_text(attr, row, stations)))
            elif attr.source is Source.SPS_ITEM:
                entries.append((node, [self._entries(node.children, row, stations)]))
            elif attr.source is Source.CODE_ITEM:
                has_code = bool(row[self._index[attr.column]])
                items = [self._entries(node.children, row, stations)] if has_code else []
                entries.append((node, items))
            elif attr.source is Source.JSON_ITEMS:
                value = row[self._index[attr.column]] or []
                items = [
                    _json_item(node.children, item) for item in value if isinstance(item, dict)
                ]
                entries.append((node, items))
            else:
                entries.append((node, []))
        return entries

    def dataset(self, row: tuple[Any, ...], stations: dict[int, list[str]]) -> Dataset:
        entries = self._entries(self.keys.nodes, row, stations)
        charset = LATIN1 if _fits_latin1(entries) else UTF8
        codec = "latin-1" if charset == LATIN1 else "utf-8"
        encodings = convert_encodings(charset)
        ds = Dataset()
        # Raw elements go straight into the element dict: Dataset.__setitem__ would look
        # for private creators and convert them, which is the cost we avoid.
        ds._dict[_CHARSET_TAG] = self._raw(_CHARSET_TAG, "CS", charset.encode("ascii"))
        self._fill(ds, entries, codec, encodings)
        ds.set_original_encoding(self.implicit_vr, self.little_endian, encodings)
        return ds

    def _raw(self, tag: BaseTag, vr: str, value: bytes) -> RawDataElement:
        if len(value) % 2:
            value += b"\x00" if vr == "UI" else b" "
        return RawDataElement(tag, vr, len(value), value, 0, self.implicit_vr, self.little_endian)

    def _fill(self, ds: Dataset, entries: list[_Entry], codec: str, encodings: Any) -> None:
        for node, value in entries:
            if node.vr == "SQ":
                items = []
                for item_entries in value:
                    item = Dataset(parent_encoding=encodings)
                    self._fill(item, item_entries, codec, encodings)
                    item.set_original_encoding(self.implicit_vr, self.little_endian, encodings)
                    items.append(item)
                ds._dict[node.btag] = DataElement(node.btag, "SQ", DicomSequence(items))
            elif node.vr == "US" or not isinstance(value, str):
                ds._dict[node.btag] = DataElement(
                    node.btag, node.vr, value if value != "" else None
                )
            else:
                ds._dict[node.btag] = self._raw(node.btag, node.vr, value.encode(codec))

    def datasets(
        self, rows: list[tuple[Any, ...]], stations: dict[int, list[str]]
    ) -> Iterator[Dataset]:
        for row in rows:
            yield self.dataset(row, stations)

    def encode(self, row: tuple[Any, ...], stations: dict[int, list[str]]) -> bytes:
        """The answer for ``row`` as identifier bytes (Little Endian transfer syntaxes).

        The same elements as :meth:`dataset`, written directly: building a pydicom
        Dataset and writing it costs several times more than the database query.
        """
        if not self.little_endian:
            raise ValueError("direct encoding is for Little Endian transfer syntaxes only")
        entries = self._entries(self.keys.nodes, row, stations)
        charset = LATIN1 if _fits_latin1(entries) else UTF8
        codec = "latin-1" if charset == LATIN1 else "utf-8"
        charset_entry: _Entry = (_CHARSET_NODE, charset)
        return _encode_entries([charset_entry, *entries], codec, self.implicit_vr)


_CHARSET_NODE = Node(0x00080005, "CS", None)
# Explicit VR: these VRs have a 2-byte reserved field and a 4-byte length.
_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)


def _element_header(tag: int, vr: str, length: int, implicit: bool) -> bytes:
    if implicit:
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, length)
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode("ascii"), 0, length)
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode("ascii"), length)


def _encode_entries(entries: list[_Entry], codec: str, implicit: bool) -> bytes:
    """Elements in tag order, Little Endian, defined lengths."""
    parts: list[bytes] = []
    for node, value in sorted(entries, key=lambda entry: entry[0].tag):
        vr = node.vr
        if vr == "SQ":
            items = []
            for item_entries in value:
                body = _encode_entries(item_entries, codec, implicit)
                items.append(_ITEM + struct.pack("<I", len(body)) + body)
            data = b"".join(items)
        elif vr == "US":
            data = b"" if value is None or value == "" else struct.pack("<H", int(value))
        else:
            data = value.encode(codec)
            if len(data) % 2:
                data += b"\x00" if vr == "UI" else b" "
        parts.append(_element_header(node.tag, vr, len(data), implicit))
        parts.append(data)
    return b"".join(parts)


def _json_item(children: Sequence[Node], item: dict[str, Any]) -> list[_Entry]:
    entries: list[_Entry] = []
    for child in children:
        attr = child.attr
        if attr is None:
            entries.append((child, [] if child.vr == "SQ" else ""))
        elif attr.constant:
            entries.append((child, attr.constant))
        else:
            entries.append((child, dicom_text(item.get(attr.column))))
    return entries


def _texts(entries: list[_Entry]) -> Iterator[str]:
    for node, value in entries:
        if isinstance(value, str):
            yield value
        elif node.vr == "SQ":
            for item in value:
                yield from _texts(item)


def _fits_latin1(entries: list[_Entry]) -> bool:
    try:
        "".join(_texts(entries)).encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
