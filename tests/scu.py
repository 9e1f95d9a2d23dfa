"""Client-side (SCU) help for the tests and benchmarks; no Django needed."""

from __future__ import annotations

# One copy of the pynetdicom requestor workaround, shared with routing's sender.
from core.dicom.requestor import keep_responses

__all__ = ["keep_responses"]
