"""Named DIMSE status codes (PS3.4 / PS3.7 Annex C)."""

from __future__ import annotations

from dataclasses import dataclass

SUCCESS = 0x0000
CANCEL = 0xFE00
PENDING = 0xFF00
PENDING_WARNING_OPTIONAL_KEYS = 0xFF01

# C-FIND failures
OUT_OF_RESOURCES = 0xA700
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
UNABLE_TO_PROCESS = 0xC000

# N-CREATE / N-SET (PS3.7 C.4)
PROCESSING_FAILURE = 0x0110
NO_SUCH_ATTRIBUTE = 0x0105
INVALID_ATTRIBUTE_VALUE = 0x0106
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_SOP_INSTANCE = 0x0112
MISSING_ATTRIBUTE = 0x0120
MISSING_ATTRIBUTE_VALUE = 0x0121
# Error ID (0000,0902) text for an MPPS that may no longer be updated (PS3.4 F.7.2.2).
MPPS_NO_LONGER_UPDATABLE = 0xA710

# N-CREATE / N-SET on a SOP class this service does not serve (PS3.7 C.4).
NO_SUCH_SOP_CLASS = 0x0118

# C-FIND "unable to process" (0xC000-0xCFFF) causes of the worklist SCP, each sent with
# an Error Comment (0000,0902) and, where one attribute is at fault, Offending Element.
UNABLE_TO_PROCESS_INVALID_QUERY_VALUE = 0xC001
UNABLE_TO_PROCESS_UNDECODABLE_IDENTIFIER = 0xC002
UNABLE_TO_PROCESS_DATABASE_ERROR = 0xC003
UNABLE_TO_PROCESS_INTERNAL_ERROR = 0xC004
# Sent after MWL_MAX_ANSWERS pending answers when more entries match (0xA700, "Refused:
# Out of Resources", with an Error Comment): the scanner should narrow its query.
TOO_MANY_MATCHES = OUT_OF_RESOURCES
# N-CREATE with an Affected SOP Instance UID that is not a valid UID (PS3.7 C.4).
INVALID_OBJECT_INSTANCE = 0x0117


@dataclass(frozen=True)
class Returned:
    """A status one DIMSE service of the broker can return, and what it means there.

    Each service module declares its own (``STATUSES``); the conformance statement is
    generated from them (``manage.py conformance``).
    """

    operation: str  # "C-FIND", "N-CREATE", ...
    code: int
    meaning: str
    error_id: int | None = None  # Error ID (0000,0903) sent with it
