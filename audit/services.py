"""Writing the audit trail (called by the write services, inside their transaction)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from audit.models import AuditEntry

# Bookkeeping columns that change on every save and say nothing about the change.
_SKIPPED = {"created_at", "updated_at"}


def object_type(instance: models.Model) -> str:
    """``app_label.modelname``, as in Django's permission names."""
    return instance._meta.label_lower


def snapshot(
    instance: models.Model, *, extra: Mapping[str, Any] | None = None, skip: Iterable[str] = ()
) -> dict[str, Any]:
    """The instance's column values as JSON values (dates as ISO text, foreign keys as ids)."""
    skipped = _SKIPPED | set(skip)
    values: dict[str, Any] = {}
    for field in instance._meta.concrete_fields:
        if field.name in skipped or field.primary_key:
            continue
        values[field.attname] = getattr(instance, field.attname)
    if extra:
        values.update(extra)
    return json.loads(json.dumps(values, cls=DjangoJSONEncoder))


def audit_record(
    *,
    actor: Any,
    action: str,
    instance: models.Model,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> AuditEntry | None:
    """One entry for one changed object; nothing when before and after are equal.

    Only the fields that differ are kept (all of them for a creation or removal).
    """
    if before is not None and after is not None:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        if not changed:
            return None
        before = {k: before.get(k) for k in changed}
        after = {k: after.get(k) for k in changed}
    user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEntry.objects.create(
        actor=user,
        actor_name=user.get_username() if user is not None else "",
        action=action,
        object_type=object_type(instance),
        object_id=str(instance.pk),
        before=dict(before) if before is not None else None,
        after=dict(after) if after is not None else None,
    )
