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

# When the broker sends each code (ERR-3, or ERR-1.4 before v2.5). The interface
# specification is generated from this table; tests/test_conformance_hl7.py checks that it
# names every code the hl7v2 code uses.
WHEN: dict[str, str] = {
    SEGMENT_SEQUENCE_ERROR: "MSH missing or unreadable; a line that is not a segment; a segment "
    "the message needs is missing (PID for a new order, ORC, the OBR or IPC of an NW / XO "
    "order, an IPC in each OMI order group, MRG for A40 / A47, a PID before each MRG)",
    REQUIRED_FIELD_MISSING: "PID-3.1, ORC-1, the accession number (OBR-18 / IPC-1) or MRG-1 is "
    "empty; no Study Instance UID while HL7_STUDY_UID_POLICY is reject",
    DATA_TYPE_ERROR: "a date, time, UID or measurement that cannot be read; a key longer than "
    "DICOM allows (accession number, requested procedure ID, SPS ID and AE titles 16, patient "
    "ID 64 characters); bytes that are not valid in the MSH-18 character set",
    TABLE_VALUE_NOT_FOUND: "the ORC-1 / ORC-5 pair is not in the order status table",
    UNSUPPORTED_MESSAGE_TYPE: "MSH-9.1 is not a supported message type",
    UNSUPPORTED_EVENT_CODE: "MSH-9.2 is not a supported trigger event of a supported type",
    UNSUPPORTED_VERSION_ID: "MSH-12 is not a supported version of the message type; MSH-18 names "
    "a character set the broker does not support",
    UNKNOWN_KEY_IDENTIFIER: "XO, or a status change (CA, DC...), for an order or step the broker "
    "does not know; an A40 / A47 the patient records do not allow (same patient, unknown or "
    "merged prior identifier, new identifier in use)",
    DUPLICATE_KEY_IDENTIFIER: "MSH-10 repeats the control ID of a message already applied from "
    "the same sender (MSH-3 / MSH-4) but the content differs (the same message again gets AA "
    "and is not applied twice); the message is stored for review, not applied",
    APPLICATION_INTERNAL_ERROR: "a status change the step's state does not allow; a value the "
    "database refuses; a message larger than HL7_MAX_MESSAGE_BYTES (AR); any other error",
}


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
