"""What the router reads of a received instance: the few attributes it files and routes
by, read from the encoded bytes once. The bytes themselves are kept as received."""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_UNDEFINED = 0xFFFFFFFF
# UIDs name spool folders and files: digits and dots only (leading zeros, which some
# modalities send, are tolerated).
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class InvalidInstance(ValueError):
    """The bytes are not a whole, readable DICOM dataset."""


@dataclass(frozen=True)
class Header:
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    body_part: str
    study_description: str


def _text(ds: Dataset, keyword: str, limit: int) -> str:
    value = ds.get(keyword, "")
    return str(value or "").strip()[:limit]


def read_header(dataset: bytes | memoryview, transfer_syntax_uid: str) -> Header:
    """Read the routing attributes of an encoded dataset (no file meta) in the given
    transfer syntax; raise :class:`InvalidInstance` if it cannot be read or was cut short.

    pydicom does not complain about a truncated last element: a value shorter than its
    length is checked here, and an image whose encapsulated pixel data lost its end
    (pydicom then drops the element) is caught by its missing pixel data.
    """
    try:
        syntax = UID(transfer_syntax_uid)
        data = bytes(dataset)
        if syntax.is_deflated:
            data = zlib.decompress(data, -zlib.MAX_WBITS)
        ds = read_dataset(
            BytesIO(data),
            is_implicit_VR=syntax.is_implicit_VR,
            is_little_endian=syntax.is_little_endian,
        )
        elements = ds._dict
        if elements:
            last = elements[max(elements)]
            length = getattr(last, "length", None)
            value = getattr(last, "value", None)
            if (
                length is not None
                and length != _UNDEFINED
                and isinstance(value, bytes | bytearray)
                and len(value) != length
            ):
                raise InvalidInstance(f"truncated: element {last.tag} is cut short")
        if "Rows" in ds and not any(tag in elements for tag in _PIXEL_TAGS):
            raise InvalidInstance("truncated: an image without its pixel data")
        header = Header(
            sop_class_uid=_text(ds, "SOPClassUID", 64),
            sop_instance_uid=_text(ds, "SOPInstanceUID", 64),
            study_instance_uid=_text(ds, "StudyInstanceUID", 64),
            series_instance_uid=_text(ds, "SeriesInstanceUID", 64),
            modality=_text(ds, "Modality", 16),
            body_part=_text(ds, "BodyPartExamined", 16),
            study_description=_text(ds, "StudyDescription", 64),
        )
    except InvalidInstance:
        raise
    except Exception as exc:  # pydicom raises many types on bad input
        raise InvalidInstance(f"unreadable: {exc}") from exc
    for name in ("sop_class_uid", "sop_instance_uid", "study_instance_uid", "series_instance_uid"):
        if not getattr(header, name):
            raise InvalidInstance(f"no {name.replace('_', ' ')}")
        if name != "sop_class_uid" and not _UID.match(getattr(header, name)):
            raise InvalidInstance(f"{name.replace('_', ' ')} is not a UID")
    return header


def _element(group_element: int, vr: bytes, value: bytes) -> bytes:
    tag = struct.pack("<HH", group_element >> 16, group_element & 0xFFFF)
    if vr == b"OB":
        return tag + vr + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return tag + vr + struct.pack("<H", len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _padded(value: str) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


def part10_header(
    *, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, source_ae_title: str
) -> bytes:
    """Preamble, prefix and File Meta Information (PS3.10 7.1) for a received dataset,
    written here rather than through pydicom: it is a handful of fixed elements, and
    this runs for every instance received."""
    body = b"".join(
        [
            _element(0x00020001, b"OB", b"\x00\x01"),
            _element(0x00020002, b"UI", _uid(sop_class_uid)),
            _element(0x00020003, b"UI", _uid(sop_instance_uid)),
            _element(0x00020010, b"UI", _uid(transfer_syntax_uid)),
            _element(0x00020012, b"UI", _uid(PYNETDICOM_IMPLEMENTATION_UID)),
            _element(0x00020013, b"SH", _padded(PYNETDICOM_IMPLEMENTATION_VERSION)),
            *([_element(0x00020016, b"AE", _padded(source_ae_title))] if source_ae_title else []),
        ]
    )
    length = _element(0x00020000, b"UL", struct.pack("<I", len(body)))
    return b"\x00" * 128 + b"DICM" + length + body
