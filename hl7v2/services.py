"""Writes of the HL7 interface: store every message, then apply it, then acknowledge."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from hl7v2.ack import ErrorDetail, build_ack
from hl7v2.models import InboundMessage
from hl7v2.msh import Header, MSHError, read_header
from hl7v2.status import Outcome

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    ack: bytes
    outcome: str
    message_id: int | None


def ack_encoding(header: Header | None) -> str:
    charset = (header.charset if header else "").upper()
    if charset.startswith("UNICODE") or "UTF" in charset:
        return "utf-8"
    return "latin-1"


def message_receive(raw: bytes, *, peer: str) -> Reply:
    """Store ``raw`` and return the ACK to send; the row is committed before returning."""
    try:
        header: Header | None = read_header(raw)
        error: ErrorDetail | None = None
    except MSHError as exc:
        header, error = None, ErrorDetail(str(exc), segment="MSH", code="100")
    code = Outcome.ACCEPTED if error is None else Outcome.REJECTED
    ack = build_ack(header, code, error).encode(ack_encoding(header), errors="replace")
    with transaction.atomic():
        message = InboundMessage.objects.create(
            raw=raw,
            peer=peer,
            sending_application=header.sending_application if header else "",
            sending_facility=header.sending_facility if header else "",
            control_id=header.control_id if header else "",
            message_type=header.message_type if header else "",
            version=header.version if header else "",
            outcome=code,
            error=error.text if error else "",
            ack=ack,
            processed_at=timezone.now(),
        )
    logger.info(
        "HL7 %s %s from %s: %s",
        message.message_type or "?",
        message.control_id or "?",
        peer,
        code,
    )
    return Reply(ack=ack, outcome=code, message_id=message.pk)
