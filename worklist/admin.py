"""The scheduling data in the admin. It never writes around the services: demographics
go through ``patient_correct``, a new start through ``step_reschedule``, status changes
through ``step_change_status`` (actions), so events, RIS status and the audit trail are the
same as from HL7, MPPS and the front desk. Orders and procedures are read-only here (they
come from HL7, the front desk's order entry and the API)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from audit.selectors import entries_for
from worklist import services
from worklist.models import (
    Device,
    Order,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
    StationAETitle,
)
from worklist.status import FINAL, SPSStatus


def _changes(obj: Model | None) -> str:
    """The object's audit entries, newest first, as a small table (read-only)."""
    if obj is None or obj.pk is None:
        return ""
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (f"{e.at:%Y-%m-%d %H:%M:%S}", e.actor_name or "system", e.action, e.before, e.after)
            for e in entries_for(obj).order_by("-at", "-id")[:50]
        ),
    )
    if not rows:
        return "no change by a person recorded"
    return format_html(
        "<table><tr><th>when</th><th>who</th><th>what</th><th>before</th><th>after</th></tr>"
        "{}</table>",
        rows,
    )


class ChangesMixin:
    """Shows the audit trail of the object on its page, to those who may read it."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        if obj is not None and request.user.has_perm("audit.view_auditentry"):
            fields.append("changes")
        return fields

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = [f for f in super().get_fields(request, obj) if f != "changes"]  # type: ignore[misc]
        if obj is not None and request.user.has_perm("audit.view_auditentry"):
            fields.append("changes")
        return fields

    @admin.display(description="audit trail")
    def changes(self, obj: Model) -> str:
        return _changes(obj)


@admin.register(Patient)
class PatientAdmin(ChangesMixin, admin.ModelAdmin[Patient]):
    list_display = ["patient_id", "issuer", "name", "birth_date", "sex", "merged_into"]
    search_fields = ["patient_id", "name_key"]
    # The identifier changes only by HL7 A47 / merge (patient_change_identifier).
    readonly_fields = ["patient_id", "issuer", "merged_into", "other_ids"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Patient, form: Any, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in form.changed_data}
        services.patient_correct(actor=request.user, patient_pk=obj.pk, fields=fields)


class ProcedureInline(admin.TabularInline[RequestedProcedure, Order]):
    model = RequestedProcedure
    extra = 0
    can_delete = False


@admin.register(Order)
class OrderAdmin(ChangesMixin, admin.ModelAdmin[Order]):
    list_display = ["accession_number", "patient", "priority", "created_at"]
    search_fields = ["accession_number", "placer_order_number", "filler_order_number"]
    raw_id_fields = ["patient"]
    inlines = [ProcedureInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class StationInline(admin.TabularInline[StationAETitle, ScheduledProcedureStep]):
    model = StationAETitle
    extra = 0
    can_delete = False
    readonly_fields = ["ae_title"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def _status_action(new_status: str, description: str) -> Any:
    def action(
        modeladmin: StepAdmin, request: HttpRequest, queryset: QuerySet[ScheduledProcedureStep]
    ) -> None:
        changed, refused = 0, []
        for step_id in queryset.values_list("pk", flat=True):
            try:
                services.step_change_status(
                    actor=request.user, step_id=step_id, new_status=new_status
                )
                changed += 1
            except services.DomainError as exc:
                refused.append(str(exc))
        if changed:
            modeladmin.message_user(request, f"{changed} step(s) now {new_status}.")
        for reason in refused:
            modeladmin.message_user(request, reason, messages.WARNING)

    action.__name__ = f"mark_{new_status.lower()}"
    return admin.action(description=description, permissions=["change"])(action)


@admin.register(ScheduledProcedureStep)
class StepAdmin(ChangesMixin, admin.ModelAdmin[ScheduledProcedureStep]):
    list_display = ["sps_id", "modality", "start", "status", "station_name", "procedure"]
    list_filter = ["status", "modality"]
    search_fields = ["sps_id", "procedure__order__accession_number"]
    # Only the start is edited here (step_reschedule); the status by the actions.
    fields = ["procedure", "sps_id", "status", "start", "modality", "station_name", "location"]
    readonly_fields = ["procedure", "sps_id", "status", "modality", "station_name", "location"]
    inlines = [StationInline]
    actions = [
        _status_action(SPSStatus.ARRIVED, "Mark the selected steps arrived"),
        _status_action(SPSStatus.CANCELED, "Cancel the selected steps"),
        _status_action(SPSStatus.DISCONTINUED, "Discontinue the selected steps"),
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.status in FINAL:
            fields.append("start")  # a final step is not rescheduled
        return fields

    def save_model(
        self, request: HttpRequest, obj: ScheduledProcedureStep, form: Any, change: bool
    ) -> None:
        if "start" in form.changed_data and obj.start is not None:
            services.step_reschedule(actor=request.user, step_id=obj.pk, start=obj.start)


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin[Device]):
    list_display = ["ae_title", "role", "modality", "host", "port", "station_name", "location"]
    list_filter = ["role", "modality", "is_active"]
