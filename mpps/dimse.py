"""Modality Performed Procedure Step N-CREATE / N-SET SCP (filled in by the MPPS issue)."""

from __future__ import annotations

from typing import Any

SOP_CLASSES: list[str] = []


def handlers() -> list[tuple[Any, Any]]:
    return []
