"""What the router reads of a received instance: the few attributes it files and routes
by, read from the encoded bytes once. The bytes themselves are kept as received."""

from __future__ import annotations

import re
from dataclasses import dataclass
from io import BytesIO

from pydicom import dcmread
from pydicom.dataset import Dataset

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


def read_header(part10: bytes) -> Header:
    """Read the routing attributes of a DICOM Part 10 byte string; raise
    :class:`InvalidInstance` if it cannot be read or was cut short.

    pydicom does not complain about a truncated last element: a value shorter than its
    length is checked here, and an image whose encapsulated pixel data lost its end
    (pydicom then drops the element) is caught by its missing pixel data.
    """
    try:
        ds = dcmread(BytesIO(part10))
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
