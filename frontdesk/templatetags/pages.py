"""Template filters of the staff pages."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def person(name: str) -> str:
    """A DICOM person name for reading: "DOE^JOHN^^DR" -> "DOE, JOHN"."""
    parts = [p.strip() for p in (name or "").split("^")]
    family = parts[0] if parts else ""
    given = " ".join(p for p in parts[1:3] if p)
    if family and given:
        return f"{family}, {given}"
    return family or given or "—"


@register.filter
def minutes(seconds: float | str | None) -> str:
    """Seconds as whole minutes ("12 min"), "—" when there is no figure."""
    if seconds is None or isinstance(seconds, str):
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


@register.filter
def age(moment: datetime | None) -> str:
    """How long ago ``moment`` was, in the largest whole unit ("3 h", "2 d")."""
    if moment is None:
        return "—"
    delta: timedelta = timezone.now() - moment
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
