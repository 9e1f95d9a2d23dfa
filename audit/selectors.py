"""Reads of the audit trail."""

from __future__ import annotations

from django.db import models
from django.db.models import QuerySet

from audit.models import AuditEntry


def entries_for(instance: models.Model) -> QuerySet[AuditEntry]:
    """The history of one object, oldest first."""
    return AuditEntry.objects.filter(
        object_type=instance._meta.label_lower, object_id=str(instance.pk)
    ).order_by("at", "id")
