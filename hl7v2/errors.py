"""Errors that become an ERR segment: where (segment, occurrence, field) and why."""

from __future__ import annotations

# HL7 table 0357, message error condition codes.
SEGMENT_SEQUENCE_ERROR = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT_CODE = "201"
UNSUPPORTED_PROCESSING_ID = "202"
UNSUPPORTED_VERSION_ID = "203"
UNKNOWN_KEY_IDENTIFIER = "204"
DUPLICATE_KEY_IDENTIFIER = "205"
APPLICATION_RECORD_LOCKED = "206"
APPLICATION_INTERNAL_ERROR = "207"


class MappingError(ValueError):
    """The message cannot be applied: ``text`` says why, the rest says where."""

    def __init__(
        self,
        text: str,
        *,
        segment: str = "",
        field: int | None = None,
        occurrence: int = 1,
        code: str = APPLICATION_INTERNAL_ERROR,
    ) -> None:
        super().__init__(text)
        self.text = text
        self.segment = segment
        self.field = field
        self.occurrence = occurrence
        self.code = code

    def where(self) -> str:
        if not self.segment:
            return ""
        return f"{self.segment}-{self.field}" if self.field else self.segment

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.text}" if where else self.text
