"""DICOM value representations the apps parse the same way: UI, DA, TM (PS3.5 6.2).

Used by the worklist matcher (query values), the worklist importer (stored values) and
MPPS validation (UIDs).
"""

from __future__ import annotations

import re
from datetime import date, time

# PS3.5 9.1: components of digits, no leading zero (except "0" itself), at most 64 chars.
UID_PATTERN = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))*$")
UID_MAX_LENGTH = 64

_DA = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_TM = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")


class InvalidValue(ValueError):
    """A value that is not valid for its VR; ``tag`` names the attribute."""

    def __init__(self, tag: int, comment: str) -> None:
        super().__init__(comment)
        self.tag = tag
        self.comment = comment


def tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def is_uid(value: str) -> bool:
    return len(value) <= UID_MAX_LENGTH and bool(UID_PATTERN.match(value))


def parse_date(text: str, tag: int) -> date:
    """A DA value (``YYYYMMDD``, or the ACR-NEMA ``YYYY.MM.DD``)."""
    found = _DA.match(text.strip())
    if found is None:
        raise InvalidValue(tag, f"{tag_text(tag)} is not a DICOM date: {text!r}")
    year, month, day = (int(g) for g in found.groups())
    try:
        return date(year, month, day)
    except ValueError as exc:
        raise InvalidValue(tag, f"{tag_text(tag)} is not a valid date: {text!r}") from exc


def parse_time(text: str, tag: int, *, upper: bool) -> time:
    """A TM value as the earliest (or, ``upper``, latest) instant it stands for."""
    found = _TM.match(text.strip())
    if found is None:
        raise InvalidValue(tag, f"{tag_text(tag)} is not a DICOM time: {text!r}")
    hh, mm, ss, frac = found.groups()
    hour = int(hh)
    minute = int(mm) if mm else (59 if upper else 0)
    second = int(ss) if ss else (59 if upper else 0)
    fill = "9" if upper else "0"
    micro = int((frac or "").ljust(6, fill))
    if hour > 23 or minute > 59 or second > 60:
        raise InvalidValue(tag, f"{tag_text(tag)} is not a valid time: {text!r}")
    return time(hour, minute, min(second, 59), micro)
