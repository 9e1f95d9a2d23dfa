"""Fixtures for dicom tests."""

from __future__ import annotations
