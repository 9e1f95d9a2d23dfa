"""Modality Worklist C-FIND SCP (filled in by the worklist issue)."""

from __future__ import annotations

from typing import Any

SOP_CLASSES: list[str] = []


def handlers() -> list[tuple[Any, Any]]:
    return []
