"""Order status messages back to the RIS (IHE RAD-3 style) and the MLLP client that
delivers them.

Building and reading messages is pure; :func:`deliver` is the only part with a socket.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from dataclasses import dataclass, field

from core.mllp import FrameDecoder, frame
from mpps.status import AttemptOutcome

FIELD_SEP = "|"
ENCODING = "^~\\&"
# ACK codes in original and enhanced mode.
_ACCEPTED = {"AA", "CA"}
_ERRORS = {"AE", "CE"}
_REJECTS = {"AR", "CR"}
MAX_ACK_BYTES = 1024 * 1024

# RIS_HL7_MESSAGE -> (MSH-9, MSH-12)
MESSAGE_TYPES = {
    "ORM^O01": ("ORM^O01", "2.3.1"),
    "OMI^O23": ("OMI^O23^OMI_O23", "2.5.1"),
}


@dataclass(frozen=True)
class StepInfo:
    sps_id: str
    modality: str = ""
    description: str = ""
    station_ae_title: str = ""


@dataclass(frozen=True)
class ProcedureInfo:
    requested_procedure_id: str
    study_instance_uid: str
    code_value: str = ""
    code_meaning: str = ""
    code_scheme: str = ""
    description: str = ""
    steps: tuple[StepInfo, ...] = ()


@dataclass(frozen=True)
class OrderInfo:
    """What the status message says about the order: read from the database once."""

    patient_id: str
    patient_issuer: str
    patient_name: str  # DICOM PN: FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX
    birth_date: dt.date | None
    sex: str
    admission_id: str
    accession_number: str
    placer_order_number: str
    filler_order_number: str
    placer_application: str  # "APP^FACILITY" of the order's sender
    procedures: tuple[ProcedureInfo, ...] = field(default_factory=tuple)


def escape(value: str) -> str:
    """HL7 escape sequences for the delimiters inside a value (v2.x section 2.7)."""
    out = value.replace("\\", "\\E\\")
    for char, code in (("|", "F"), ("^", "S"), ("~", "R"), ("&", "T")):
        out = out.replace(char, f"\\{code}\\")
    return out.replace("\r", " ").replace("\n", " ")


def components(*values: str) -> str:
    """Join escaped components, dropping empty trailing ones."""
    parts = [escape(v) for v in values]
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts)


def xpn(dicom_name: str) -> str:
    """DICOM PN (family^given^middle^prefix^suffix) as HL7 XPN (family^given^middle^suffix^prefix)."""
    alphabetic = dicom_name.split("=")[0]
    family, given, middle, prefix, suffix = ([*alphabetic.split("^"), "", "", "", "", ""])[:5]
    return components(family, given, middle, suffix, prefix)


def segment(name: str, fields: dict[int, str]) -> str:
    """A segment from {field number: already-escaped value}."""
    last = max((n for n, v in fields.items() if v), default=0)
    return FIELD_SEP.join([name, *(fields.get(n, "") for n in range(1, last + 1))])


def split_application(value: str) -> tuple[str, str]:
    for sep in ("^", "|"):
        if sep in value:
            app, _, facility = value.partition(sep)
            return app, facility
    return value, ""


def build_status_message(
    order: OrderInfo,
    *,
    order_status: str,
    message_type: str,
    control_id: str,
    sending_application: str,
    sending_facility: str,
    now: dt.datetime,
) -> str:
    """ORM^O01 (v2.3.1) or OMI^O23 (v2.5.1) with ORC-1 = SC and ORC-5 = ``order_status``.

    One ORC/OBR group per requested procedure of the order (OMI: plus one IPC per
    scheduled step), each carrying the placer / filler order numbers and the accession.
    """
    msh9, version = MESSAGE_TYPES[message_type]
    stamp = now.strftime("%Y%m%d%H%M%S")
    receiving_app, receiving_facility = split_application(order.placer_application)
    text = order.patient_name + "".join(p.description + p.code_meaning for p in order.procedures)
    charset = "" if text.isascii() else "UNICODE UTF-8"
    msh = FIELD_SEP.join(
        [
            "MSH",
            ENCODING,
            escape(sending_application),
            escape(sending_facility),
            escape(receiving_app),
            escape(receiving_facility),
            stamp,
            "",
            msh9,
            escape(control_id),
            "P",
            version,
            *(["", "", "", "", "", charset] if charset else []),
        ]
    )
    segments = [msh]
    segments.append(
        segment(
            "PID",
            {
                1: "1",
                3: components(order.patient_id, "", "", order.patient_issuer),
                5: xpn(order.patient_name),
                7: order.birth_date.strftime("%Y%m%d") if order.birth_date else "",
                8: escape(order.sex),
            },
        )
    )
    segments.append(segment("PV1", {1: "1", 2: "U", 19: escape(order.admission_id)}))
    placer = escape(order.placer_order_number)
    filler = escape(order.filler_order_number or order.accession_number)
    procedures = order.procedures or (ProcedureInfo("", ""),)
    for index, procedure in enumerate(procedures, start=1):
        segments.append(segment("ORC", {1: "SC", 2: placer, 3: filler, 5: order_status, 9: stamp}))
        code = components(procedure.code_value, procedure.code_meaning, procedure.code_scheme)
        first_step = procedure.steps[0] if procedure.steps else StepInfo("")
        obr = {
            1: str(index),
            2: placer,
            3: filler,
            4: code or escape(procedure.description),
            44: code,
        }
        if version == "2.3.1":
            obr |= {
                18: escape(order.accession_number),
                19: escape(procedure.requested_procedure_id),
                20: escape(first_step.sps_id),
                24: escape(first_step.modality),
            }
        segments.append(segment("OBR", obr))
        if version == "2.5.1":
            for step in procedure.steps or (StepInfo(""),):
                segments.append(
                    segment(
                        "IPC",
                        {
                            1: escape(order.accession_number),
                            2: escape(procedure.requested_procedure_id),
                            3: escape(procedure.study_instance_uid),
                            4: escape(step.sps_id),
                            5: escape(step.modality),
                            9: escape(step.station_ae_title),
                        },
                    )
                )
    return "\r".join(segments) + "\r"


def message_encoding(raw: str) -> str:
    return "latin-1" if raw.isascii() else "utf-8"


@dataclass(frozen=True)
class Delivery:
    outcome: str  # AttemptOutcome
    ack: str = ""
    error: str = ""

    @property
    def accepted(self) -> bool:
        return self.outcome == AttemptOutcome.ACCEPTED


def read_ack(ack: str, control_id: str) -> Delivery:
    """Judge an acknowledgement: MSA-1 accept / error / reject, MSA-2 = our MSH-10."""
    segments = [s for s in ack.replace("\n", "\r").split("\r") if s]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 4:
        return Delivery(AttemptOutcome.BAD_ACK, ack, "answer is not an HL7 message")
    sep = segments[0][3]
    msa = next((s.split(sep) for s in segments if s.startswith("MSA")), None)
    if msa is None or len(msa) < 2:
        return Delivery(AttemptOutcome.BAD_ACK, ack, "acknowledgement has no MSA segment")
    code = msa[1].strip().upper()
    acked = msa[2].strip() if len(msa) > 2 else ""
    if acked != control_id:
        return Delivery(
            AttemptOutcome.BAD_ACK, ack, f"MSA-2 {acked!r} does not acknowledge {control_id!r}"
        )
    text = msa[3] if len(msa) > 3 else ""
    err = next((s for s in segments if s.startswith("ERR")), "")
    detail = "; ".join(x for x in (text, err) if x)
    if code in _ACCEPTED:
        return Delivery(AttemptOutcome.ACCEPTED, ack)
    if code in _ERRORS:
        return Delivery(AttemptOutcome.ERROR, ack, detail or "application error")
    if code in _REJECTS:
        return Delivery(AttemptOutcome.REJECTED, ack, detail or "application reject")
    return Delivery(AttemptOutcome.BAD_ACK, ack, f"unknown MSA-1 {code!r}")


def deliver(raw: str, control_id: str, *, host: str, port: int, timeout: float) -> Delivery:
    """Send one message over MLLP and wait for its acknowledgement."""
    data = raw.encode(message_encoding(raw))
    deadline = time.monotonic() + timeout
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return Delivery(AttemptOutcome.CONNECTION_FAILED, error=f"{host}:{port}: {exc}")
    with conn:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sendall(frame(data))
            decoder = FrameDecoder(max_size=MAX_ACK_BYTES)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                conn.settimeout(remaining)
                chunk = conn.recv(65536)
                if not chunk:
                    return Delivery(
                        AttemptOutcome.CONNECTION_FAILED,
                        error="RIS closed the connection without an acknowledgement",
                    )
                for complete in decoder.feed(chunk):
                    if not isinstance(complete, bytes | bytearray):
                        # An oversized frame: no acknowledgement we could read.
                        return Delivery(AttemptOutcome.BAD_ACK, error="acknowledgement too large")
                    return read_ack(complete.decode("utf-8", errors="replace"), control_id)
        except TimeoutError:
            return Delivery(AttemptOutcome.TIMEOUT, error=f"no acknowledgement in {timeout:g} s")
        except OSError as exc:
            return Delivery(AttemptOutcome.CONNECTION_FAILED, error=f"{host}:{port}: {exc}")
