from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from mpps import outbox, services
from mpps.models import (
    OutboundAttempt,
    OutboundMessage,
    PerformedProcedureStep,
    PerformedSeries,
    StepLink,
)
from mpps.status import OutboundState


class ScheduledFilter(admin.SimpleListFilter):
    title = "scheduled"
    parameter_name = "scheduled"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Linked to the worklist"), ("no", "Unscheduled")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "no":
            return queryset.filter(links__isnull=True)
        if self.value() == "yes":
            return queryset.filter(links__isnull=False).distinct()
        return queryset


class StepLinkInline(admin.TabularInline[StepLink, PerformedProcedureStep]):
    model = StepLink
    extra = 0
    raw_id_fields = ["step"]
    can_delete = False


class SeriesInline(admin.TabularInline[PerformedSeries, PerformedProcedureStep]):
    model = PerformedSeries
    extra = 0
    readonly_fields = ["series_instance_uid", "series_description", "protocol_name"]
    can_delete = False


@admin.register(PerformedProcedureStep)
class PerformedProcedureStepAdmin(admin.ModelAdmin[PerformedProcedureStep]):
    list_display = [
        "pps_id",
        "status",
        "modality",
        "station_ae_title",
        "started_at",
        "ended_at",
        "is_scheduled",
    ]
    list_filter = ["status", ScheduledFilter, "modality"]
    search_fields = ["sop_instance_uid", "pps_id", "scheduled_references__accession_number"]
    readonly_fields = ["sop_instance_uid", "status", "version", "dataset", "created_at"]
    inlines = [StepLinkInline, SeriesInline]

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not StepLink:
            super().save_formset(request, form, formset, change)
            return
        # Linking (the unscheduled case) goes through the service, so the steps and the
        # RIS follow; links are not removed here.
        links = formset.save(commit=False)
        new = [link.step for link in links if link.pk is None]
        if new:
            services.mpps_link(mpps=form.instance, steps=new)

    @admin.display(boolean=True, description="scheduled")
    def is_scheduled(self, obj: PerformedProcedureStep) -> bool:
        return obj.links.exists()


class AttemptInline(admin.TabularInline[OutboundAttempt, OutboundMessage]):
    model = OutboundAttempt
    extra = 0
    can_delete = False
    readonly_fields = ["started_at", "finished_at", "outcome", "error", "ack"]


@admin.register(OutboundMessage)
class OutboundMessageAdmin(admin.ModelAdmin[OutboundMessage]):
    list_display = ["order", "sequence", "order_status", "state", "attempts", "sent_at"]
    list_filter = ["state", "order_status"]
    readonly_fields = [
        "order",
        "sequence",
        "mpps",
        "order_status",
        "message_type",
        "control_id",
        "raw",
        "state",
        "attempts",
        "next_attempt_at",
        "last_error",
        "sent_at",
    ]
    inlines = [AttemptInline]
    actions = ["retry"]

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("mpps.resend_outboundmessage")

    @admin.action(description="Send the selected failed messages again", permissions=["resend"])
    def retry(self, request: HttpRequest, queryset: QuerySet[OutboundMessage]) -> None:
        for message in queryset.filter(state=OutboundState.FAILED):
            outbox.message_retry(message)
