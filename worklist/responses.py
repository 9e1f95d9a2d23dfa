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

The value getters of a query are chosen once (``_plan``); then :meth:`ResponseBuilder.encode`
writes each answer's identifier bytes directly (Little Endian transfer syntaxes, the
SCP's fast path), and :meth:`ResponseBuilder.dataset` builds a pydicom Dataset of raw
elements (Big Endian, answers too large for one PDU, .wl files, tests); both give the
same bytes.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
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

from worklist import statements
from worklist.attributes import (
    ANNOTATIONS,
    TOP_BY_TAG,
    Attr,
    Source,
    children_by_tag,
)
from worklist.matching import IdentifierDoesNotMatch, Matching
from worklist.models import ScheduledProcedureStep

LATIN1 = "ISO_IR 100"
UTF8 = "ISO_IR 192"
_CHARSET_TAG = BaseTag(0x00080005)


# Explicit VR: these VRs have a 2-byte reserved field and a 4-byte length.
_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)


_PACK_I = struct.Struct("<I").pack
_PACK_H = struct.Struct("<H").pack


@dataclass
class Node:
    """One requested attribute; ``attr`` is None for a key the broker does not know."""

    tag: int
    vr: str
    attr: Attr | None
    children: list[Node] = field(default_factory=list)
    btag: BaseTag = field(init=False)
    # The start of the element in each VR encoding; the length follows.
    implicit_prefix: bytes = field(init=False)
    explicit_prefix: bytes = field(init=False)
    long_length: bool = field(init=False)

    def __post_init__(self) -> None:
        self.btag = BaseTag(self.tag)
        self.children.sort(key=lambda node: node.tag)
        group_element = struct.pack("<HH", self.tag >> 16, self.tag & 0xFFFF)
        self.implicit_prefix = group_element
        self.long_length = self.vr in _LONG_VRS
        vr = self.vr.encode("ascii") if len(self.vr) == 2 else b"UN"
        self.explicit_prefix = group_element + vr + (b"\x00\x00" if self.long_length else b"")


_CHARSET_NODE = Node(0x00080005, "CS", None)


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
    nodes = sorted(_nodes(identifier, TOP_BY_TAG, unsupported), key=lambda node: node.tag)
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
_Getter = Callable[[tuple[Any, ...], dict[int, list[str]]], Any]


def _run(plan: list[tuple[Node, _Getter]], row: tuple[Any, ...], stations: Any) -> list[_Entry]:
    return [(node, get(row, stations)) for node, get in plan]


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
        self._top_plan = self._plan(keys.nodes)
        # Specific Character Set goes first unless a smaller tag was requested.
        self._charset_first = all(node.tag > _CHARSET_NODE.tag for node in keys.nodes)
        self._charset_elements = {
            charset: _encode_entries([(_CHARSET_NODE, charset)], "ascii", implicit_vr)
            for charset in (LATIN1, UTF8)
        }

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
        ordered = queryset.order_by(*statements.ORDER)
        rows = list(ordered.values_list(*self.columns)[:limit])
        return rows, self._stations(rows)

    def matched_rows(
        self, matching: Matching, limit: int
    ) -> tuple[list[tuple[Any, ...]], dict[int, list[str]]]:
        """As :meth:`rows` for ``matching.queryset``, from SQL compiled once per shape."""
        rows = statements.step_rows(matching, self.columns, limit)
        return rows, self._stations(rows)

    def _stations(self, rows: list[tuple[Any, ...]]) -> dict[int, list[str]]:
        stations: dict[int, list[str]] = defaultdict(list)
        if self.needs_stations and rows:
            ids = [row[0] for row in rows]
            for start in range(0, len(ids), 500):
                for step_id, title in statements.station_rows(ids[start : start + 500]):
                    stations[step_id].append(title)
        return stations

    # -- building --

    def _getter(self, node: Node) -> _Getter:
        """How to get the value of ``node`` from a row: decided once per query."""
        attr = node.attr
        if attr is None or attr.source is Source.EMPTY:
            empty: Any = [] if node.vr == "SQ" else ""
            return lambda row, stations: empty
        if attr.source is Source.STATIONS:
            return lambda row, stations: "\\".join(stations.get(row[0], ()))
        if attr.source is Source.SPS_ITEM:
            plan = self._plan(node.children)
            return lambda row, stations: [_run(plan, row, stations)]
        index = self._index[attr.column] if attr.column else -1
        if attr.source is Source.CODE_ITEM:
            plan = self._plan(node.children)
            return lambda row, stations: [_run(plan, row, stations)] if row[index] else []
        if attr.source is Source.JSON_ITEMS:
            children = node.children
            return lambda row, stations: [
                _json_item(children, item) for item in row[index] or [] if isinstance(item, dict)
            ]
        if attr.vr == "US":
            return lambda row, stations: row[index]
        if attr.vr in ("DA", "TM", "DS"):
            return lambda row, stations: dicom_text(row[index])
        return lambda row, stations: row[index] or ""

    def _plan(self, nodes: Sequence[Node]) -> list[tuple[Node, _Getter]]:
        return [(node, self._getter(node)) for node in nodes]

    def _entries(self, row: tuple[Any, ...], stations: dict[int, list[str]]) -> list[_Entry]:
        return _run(self._top_plan, row, stations)

    def dataset(self, row: tuple[Any, ...], stations: dict[int, list[str]]) -> Dataset:
        entries = self._entries(row, stations)
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
        entries = self._entries(row, stations)
        if self._charset_first:
            # Latin-1 when every value fits, else UTF-8; the first failure decides.
            try:
                body = _encode_entries(entries, "latin-1", self.implicit_vr)
                charset = LATIN1
            except UnicodeEncodeError:
                body = _encode_entries(entries, "utf-8", self.implicit_vr)
                charset = UTF8
            return self._charset_elements[charset] + body
        charset = LATIN1 if _fits_latin1(entries) else UTF8
        codec = "latin-1" if charset == LATIN1 else "utf-8"
        merged = sorted([(_CHARSET_NODE, charset), *entries], key=lambda entry: entry[0].tag)
        return _encode_entries(merged, codec, self.implicit_vr)


def _encode_entries(entries: list[_Entry], codec: str, implicit: bool) -> bytes:
    """Elements in the given (tag) order, Little Endian, defined lengths."""
    parts: list[bytes] = []
    append = parts.append
    for node, value in entries:
        vr = node.vr
        if vr == "SQ":
            items = []
            for item_entries in value:
                body = _encode_entries(item_entries, codec, implicit)
                items.append(_ITEM + _PACK_I(len(body)) + body)
            data = b"".join(items)
        elif vr == "US":
            data = b"" if value is None or value == "" else _PACK_H(int(value))
        else:
            data = value.encode(codec)
            if len(data) % 2:
                data += b"\x00" if vr == "UI" else b" "
        if implicit:
            append(node.implicit_prefix + _PACK_I(len(data)))
        elif node.long_length:
            append(node.explicit_prefix + _PACK_I(len(data)))
        else:
            append(node.explicit_prefix + _PACK_H(len(data)))
        append(data)
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
