"""Reads of the HL7 interface (for the admin, the API and operators)."""

from __future__ import annotations

from django.db.models import QuerySet

from hl7v2.models import InboundMessage
from hl7v2.status import Outcome


def message_list() -> QuerySet[InboundMessage]:
    """Every stored message, newest first, without the raw bytes."""
    return InboundMessage.objects.defer("raw", "ack", "original_raw").order_by(
        "-received_at", "-id"
    )


def messages_failed() -> QuerySet[InboundMessage]:
    """Messages answered AE or AR: the ones an operator may correct and reprocess."""
    return message_list().filter(outcome__in=(Outcome.ERROR, Outcome.REJECTED))
