"""System checks of the HL7 configuration (ids ``hl7v2.E0xx``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register

from hl7v2.mapping import status_table_parse


@register(Tags.compatibility)
def check_status_table(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    try:
        status_table_parse(settings.HL7_ORDER_STATUS_TABLE)
    except ValueError as exc:
        return [Error(f"HL7_ORDER_STATUS_TABLE: {exc}", id="hl7v2.E001")]
    return []
