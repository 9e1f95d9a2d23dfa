"""Reading the MSH segment without a full parse: enough to log and acknowledge."""

from __future__ import annotations

from dataclasses import dataclass

# The MSH fields the broker reads (MSH-1 and MSH-2 give the delimiters), and what for.
# The interface specification is generated from this table; a test checks it against
# ``read_header``.
FIELDS: dict[int, str] = {
    1: "Field separator",
    2: "Encoding characters (component, repetition, escape, subcomponent)",
    3: "Sending application: with MSH-4 and MSH-10 it identifies a message (a copy already "
    "applied is acknowledged AA and not applied again); the ACK's MSH-5; status messages "
    "about the order go to this application (their MSH-5)",
    4: "Sending facility: as MSH-3 (the ACK's MSH-6)",
    5: "Receiving application: the ACK's MSH-3 (HL7_RECEIVING_APPLICATION if empty); not checked",
    6: "Receiving facility: the ACK's MSH-4 (HL7_RECEIVING_FACILITY if empty); not checked",
    9: "Message type and trigger event (.1, .2): see the supported messages",
    10: "Message control ID: duplicate detection (with MSH-3 / MSH-4); echoed in MSA-2",
    11: "Processing ID: echoed in the ACK; not checked",
    12: "Version ID (.1): checked against the versions supported for the message type",
    18: "Character set (first repetition): how the message is decoded; echoed in the ACK",
}


class MSHError(ValueError):
    """The message does not start with a readable MSH segment."""


@dataclass(frozen=True)
class Header:
    field_sep: str
    encoding_chars: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_type: str  # e.g. "ORM^O01"
    control_id: str
    processing_id: str
    version: str
    charset: str  # MSH-18, first repetition

    @property
    def component_sep(self) -> str:
        return self.encoding_chars[0]


def read_header(raw: bytes) -> Header:
    """Read MSH fields from raw bytes (MSH is always ASCII-compatible)."""
    if not raw.startswith(b"MSH") or len(raw) < 8:
        raise MSHError("message does not start with an MSH segment")
    first = raw.split(b"\r", 1)[0].split(b"\n", 1)[0].decode("latin-1")
    if len(first) < 8:
        # "MSH\r..." or "MSH|^~\r": no field separator, or nothing after it.
        raise MSHError("MSH segment is too short to hold its fields")
    sep = first[3]
    if sep.isalnum() or sep in " \x00":
        raise MSHError(f"MSH-1 field separator {sep!r} is not usable")
    parts = first.split(sep)
    if len(parts) < 12:
        raise MSHError("MSH segment has fewer than 12 fields")
    encoding = parts[1]
    if len(encoding) < 3:
        raise MSHError("MSH-2 encoding characters are missing")

    def msh(n: int) -> str:
        # parts[0] is "MSH" and MSH-1 is the separator itself, so MSH-n is parts[n-1].
        return parts[n - 1] if len(parts) > n - 1 else ""

    rep = encoding[1] if len(encoding) > 1 else "~"
    comp = encoding[0]
    message_type = comp.join(msh(9).split(comp)[:2])
    return Header(
        field_sep=sep,
        encoding_chars=encoding,
        sending_application=msh(3),
        sending_facility=msh(4),
        receiving_application=msh(5),
        receiving_facility=msh(6),
        message_type=message_type,
        control_id=msh(10),
        processing_id=msh(11),
        version=msh(12).split(comp)[0],
        charset=msh(18).split(rep)[0],
    )
