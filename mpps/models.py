"""Modality Performed Procedure Step instances (filled in by the MPPS issue)."""

from __future__ import annotations
