"""Per-association counters, for the one log line written when an association ends.

Service handlers (worklist C-FIND, MPPS) call :func:`count`; the listener writes
:func:`summary` with the peer, the AE titles and how the association ended.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_ATTRIBUTE = "_broker_counts"


def count(assoc: Any, name: str, amount: int = 1) -> None:
    with _lock:
        counts: dict[str, int] | None = getattr(assoc, _ATTRIBUTE, None)
        if counts is None:
            counts = {}
            setattr(assoc, _ATTRIBUTE, counts)
        counts[name] = counts.get(name, 0) + amount


def counts(assoc: Any) -> dict[str, int]:
    with _lock:
        return dict(getattr(assoc, _ATTRIBUTE, None) or {})


def summary(assoc: Any) -> str:
    counts: dict[str, int] = getattr(assoc, _ATTRIBUTE, None) or {}
    return ", ".join(f"{name}={value}" for name, value in counts.items())
