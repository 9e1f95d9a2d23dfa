"""Building original-mode acknowledgements (ACK with MSA, and ERR on errors)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from hl7v2.errors import APPLICATION_INTERNAL_ERROR, MappingError
from hl7v2.msh import Header
from hl7v2.parser import Delimiters, escape

# MSA-1 acknowledgment codes (HL7 table 0008), original mode.
APPLICATION_ACCEPT = "AA"
APPLICATION_ERROR = "AE"
APPLICATION_REJECT = "AR"

# Versions before 2.5 put the location and the code in ERR-1 (CM_ELD); 2.5 and later in
# ERR-2 (ERL), ERR-3 (CWE), ERR-4 (severity) and ERR-8 (user message).
_ELD_VERSIONS = ("2.1", "2.2", "2.3", "2.3.1", "2.4")
MSA3_MAX = 80


@dataclass(frozen=True)
class ErrorDetail:
    """Where and why: ERR location (segment, occurrence, field), table 0357 code and text."""

    text: str
    segment: str = ""
    field: int | None = None
    occurrence: int = 1
    code: str = APPLICATION_INTERNAL_ERROR

    @classmethod
    def from_error(cls, exc: MappingError) -> ErrorDetail:
        return cls(exc.text, exc.segment, exc.field, exc.occurrence, exc.code)

    def summary(self) -> str:
        where = f"{self.segment}-{self.field}" if self.segment and self.field else self.segment
        return f"{where}: {self.text}" if where else self.text


def _delimiters(header: Header | None) -> Delimiters:
    if header is None:
        return Delimiters()
    return Delimiters.from_msh(header.field_sep, header.encoding_chars)


def build_ack(header: Header | None, code: str, error: ErrorDetail | None = None) -> str:
    """An ACK for ``header`` with MSA-1 = ``code`` (AA, AE, AR).

    MSH-3..6 are the message's MSH-5, 6, 3, 4 (swapped); MSA-2 echoes MSH-10; the
    version, processing ID and character set (MSH-18) are the message's own.
    """
    d = _delimiters(header)
    comp = d.component
    now = timezone.now().strftime("%Y%m%d%H%M%S+0000")
    version = (header.version if header else "") or "2.5.1"
    trigger = header.message_type.split(comp)[1] if header and comp in header.message_type else ""
    control = header.control_id if header else ""
    receiving_app = header.receiving_application if header else ""
    receiving_fac = header.receiving_facility if header else ""
    msh = [
        "MSH",
        d.component + d.repetition + d.escape + d.subcomponent,
        receiving_app or settings.HL7_RECEIVING_APPLICATION,
        receiving_fac or settings.HL7_RECEIVING_FACILITY,
        header.sending_application if header else "",
        header.sending_facility if header else "",
        now,
        "",
        f"ACK{comp}{trigger}{comp}ACK" if trigger and version not in _ELD_VERSIONS[:3] else "ACK",
        f"ACK{control}"[:20] if control else f"ACK{now[:14]}",
        header.processing_id if header and header.processing_id else "P",
        version,
    ]
    if header and header.charset:
        msh += ["", "", "", "", "", header.charset]
    segments = [d.field.join(msh)]
    msa = ["MSA", code, control]
    if error is not None:
        msa.append(escape(error.summary(), d)[:MSA3_MAX])
    segments.append(d.field.join(msa))
    if error is not None:
        segments.append(_err(error, version, d))
    return "\r".join(segments) + "\r"


def _err(error: ErrorDetail, version: str, d: Delimiters) -> str:
    comp, sub = d.component, d.subcomponent
    text = escape(error.text, d)
    field = str(error.field) if error.field else ""
    occurrence = str(error.occurrence) if error.segment else ""
    if version in _ELD_VERSIONS:
        # ERR-1 CM_ELD: segment ^ sequence ^ field position ^ code & text & table
        location = comp.join([error.segment, occurrence, field])
        code = sub.join([error.code, text.replace(sub, " "), "HL70357"])
        return d.field.join(["ERR", f"{location}{comp}{code}"])
    location = comp.join([error.segment, occurrence, field]) if error.segment else ""
    severity = "E"
    return d.field.join(
        ["ERR", "", location, comp.join([error.code, text, "HL70357"]), severity, "", "", "", text]
    )
