"""Operator view of routing: destinations (with C-ECHO), rules, jobs (retry / cancel,
with their permissions) and the spool. Actions call the same services as the API."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from routing import selectors, services
from routing.models import Destination, JobItem, RoutingJob, RoutingRule, StoredInstance


@admin.register(Destination)
class DestinationAdmin(admin.ModelAdmin[Destination]):
    list_display = ["name", "ae_title", "host", "port", "enabled", "paused", "max_associations"]
    list_filter = ["enabled", "paused"]
    search_fields = ["name", "ae_title", "host"]
    actions = ["echo"]

    @admin.action(description="C-ECHO the selected destinations", permissions=["change"])
    def echo(self, request: HttpRequest, queryset: QuerySet[Destination]) -> None:
        for destination in queryset:
            code, error = services.destination_echo(destination)
            if code is None:
                self.message_user(request, f"{destination.name}: {error}", messages.ERROR)
            else:
                self.message_user(
                    request, f"{destination.name}: answered, status 0x{code:04X}", messages.SUCCESS
                )


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin[RoutingRule]):
    list_display = ["name", "enabled", "modality", "calling_ae_title", "station_ae_title"]
    list_filter = ["enabled"]
    filter_horizontal = ["destinations"]


class JobItemInline(admin.TabularInline[JobItem, RoutingJob]):
    model = JobItem
    extra = 0
    fields = ["sop_instance_uid", "state", "status_code", "error", "sent_at"]
    readonly_fields = ["sop_instance_uid", "state", "status_code", "error", "sent_at"]
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RoutingJob)
class RoutingJobAdmin(admin.ModelAdmin[RoutingJob]):
    list_display = [
        "pk",
        "study_instance_uid",
        "destination",
        "status",
        "trigger",
        "instances",
        "instances_sent",
        "attempts",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "destination", "trigger"]
    search_fields = ["study_instance_uid"]
    inlines = [JobItemInline]
    actions = ["retry", "cancel"]
    readonly_fields = [
        "study_instance_uid",
        "destination",
        "status",
        "trigger",
        "attempts",
        "last_error",
        "missing_uids",
        "next_attempt_at",
        "lease_until",
        "created_at",
        "started_at",
        "finished_at",
    ]
    exclude = ["lease_owner"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[RoutingJob]:
        return selectors.job_list()

    @admin.display(description="instances")
    def instances(self, job: Any) -> int:
        return int(job.instance_count)

    @admin.display(description="sent")
    def instances_sent(self, job: Any) -> int:
        return int(job.sent_count)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("routing.retry_routingjob")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("routing.cancel_routingjob")

    @admin.action(
        description="Retry the selected jobs (undelivered instances)", permissions=["retry"]
    )
    def retry(self, request: HttpRequest, queryset: QuerySet[RoutingJob]) -> None:
        done = sum(services.job_retry(job.pk) for job in queryset)
        self.message_user(request, f"{done} job(s) scheduled again.")

    @admin.action(description="Cancel the selected jobs", permissions=["cancel"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[RoutingJob]) -> None:
        done = sum(services.job_cancel(job.pk) for job in queryset)
        self.message_user(request, f"{done} job(s) canceled.")


@admin.register(StoredInstance)
class StoredInstanceAdmin(admin.ModelAdmin[StoredInstance]):
    list_display = [
        "sop_instance_uid",
        "study_instance_uid",
        "modality",
        "calling_ae_title",
        "size",
        "received_at",
        "routed",
    ]
    list_filter = ["routed", "modality"]
    search_fields = ["study_instance_uid", "sop_instance_uid"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
