"""The routing app's figures for the board, turnaround and queue-health pages.

Routing is optional for these pages: when the ``routing`` app is not installed (or has
not got these reads yet) every function here answers "nothing", and the pages leave the
routing column and figures out. The one place that knows the routing app's read names:

- ``routing.selectors.board_states(study_uids) -> {study_uid: short state text}``
- ``routing.selectors.complete_to_routed(since=date, until=date, modality=str | None)
  -> {(day, modality): figures}``, figures with ``count``, ``median`` and ``p90`` in
  seconds (as :class:`mpps.selectors.Figures`), days as :func:`mpps.selectors.turnaround`
- ``routing.selectors.queue_health() -> {"pending": n, "failed": n,
  "oldest_pending": datetime | None, "oldest_failed": datetime | None}``
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from datetime import date
from types import ModuleType
from typing import Any

from django.apps import apps


def _selectors() -> ModuleType | None:
    # Imported by name: routing is an optional app that these pages must run without
    # (not a way around a layer: frontdesk sits above routing).
    if not apps.is_installed("routing"):
        return None
    try:
        return importlib.import_module("routing.selectors")
    except ImportError:
        return None


def _call(name: str, *args: Any) -> Any:
    selectors = _selectors()
    function = getattr(selectors, name, None) if selectors is not None else None
    return function(*args) if function is not None else None


def installed() -> bool:
    """True when the routing app is installed and answers the board's question."""
    selectors = _selectors()
    return selectors is not None and hasattr(selectors, "board_states")


def board_states(study_uids: Iterable[str]) -> dict[str, str]:
    return _call("board_states", list(study_uids)) or {}


def complete_to_routed(*, since: date, until: date, modality: str | None) -> dict[Any, Any]:
    selectors = _selectors()
    function = getattr(selectors, "complete_to_routed", None) if selectors is not None else None
    return function(since=since, until=until, modality=modality) if function is not None else {}


def queue_health() -> dict[str, Any] | None:
    return _call("queue_health")
