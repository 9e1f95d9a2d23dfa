"""Fixtures for mpps tests."""

from __future__ import annotations
