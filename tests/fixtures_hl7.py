"""Fixtures for hl7 tests."""

from __future__ import annotations
