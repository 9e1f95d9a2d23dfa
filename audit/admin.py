"""The audit trail in the admin: read-only, for administrators (``audit.view_auditentry``)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin[AuditEntry]):
    list_display = ["at", "actor_name", "action", "object_type", "object_id"]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_name", "object_id", "action"]
    date_hierarchy = "at"
    readonly_fields = [
        "at",
        "actor",
        "actor_name",
        "action",
        "object_type",
        "object_id",
        "before",
        "after",
    ]
    fields = tuple(readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # The record of who changed what is never edited, not even by a superuser.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
