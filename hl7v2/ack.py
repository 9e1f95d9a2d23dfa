"""Building original-mode acknowledgements (ACK with MSA, and ERR on errors)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from hl7v2.msh import Header


@dataclass(frozen=True)
class ErrorDetail:
    """Where and why: ERR-2 location (segment, sequence, field) and ERR-3/ERR-8 text."""

    text: str
    segment: str = ""
    field: int | None = None
    code: str = "207"  # HL7 table 0357: 207 application internal error


def _escape(value: str, header: Header | None) -> str:
    fs = header.field_sep if header else "|"
    enc = header.encoding_chars if header else "^~\\&"
    esc = enc[2] if len(enc) > 2 else "\\"
    out = value.replace(esc, f"{esc}E{esc}")
    for char, code in ((fs, "F"), (enc[0], "S"), (enc[1], "R"), (enc[3:4] or "&", "T")):
        out = out.replace(char, f"{esc}{code}{esc}")
    return out.replace("\r", " ").replace("\n", " ")


def build_ack(header: Header | None, code: str, error: ErrorDetail | None = None) -> str:
    """An ACK for ``header`` with MSA-1 = ``code`` (AA, AE, AR); MSH-3..6 swapped."""
    fs = header.field_sep if header else "|"
    enc = header.encoding_chars if header else "^~\\&"
    comp = enc[0]
    now = timezone.now().strftime("%Y%m%d%H%M%S")
    version = (header.version if header else "") or "2.5.1"
    trigger = header.message_type.split(comp)[1] if header and comp in header.message_type else ""
    control = header.control_id if header else ""
    msh = [
        "MSH",
        enc,
        header.receiving_application if header else settings.HL7_RECEIVING_APPLICATION,
        header.receiving_facility if header else settings.HL7_RECEIVING_FACILITY,
        header.sending_application if header else "",
        header.sending_facility if header else "",
        now,
        "",
        f"ACK{comp}{trigger}{comp}ACK" if trigger else "ACK",
        f"ACK{control}"[:20] if control else f"ACK{now}",
        header.processing_id if header and header.processing_id else "P",
        version,
    ]
    if header and header.charset:
        msh += ["", "", "", "", "", header.charset]
    segments = [fs.join(msh)]
    msa = ["MSA", code, control]
    if error is not None:
        msa.append(_escape(error.text, header)[:80])
    segments.append(fs.join(msa))
    if error is not None:
        location = ""
        if error.segment:
            location = comp.join([error.segment, "1", str(error.field or "")])
        severity = "E"
        text = _escape(error.text, header)
        # ERR-1 (v2.3 style) and ERR-2..ERR-8 (v2.5 style) so either reader finds it.
        err = ["ERR", location, location, f"{error.code}{comp}{text}{comp}HL70357", severity]
        err += ["", "", "", text]
        segments.append(fs.join(err))
    return "\r".join(segments) + "\r"
