"""The HL7 message log for staff: every message as received, its outcome and ACK.

Read-only, except for the one correction path the intake supports: reprocessing a
failed message (after the cause, e.g. a missing device or patient, has been fixed).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from hl7v2 import intake, selectors
from hl7v2.models import InboundMessage
from hl7v2.status import Outcome


def _segments(data: bytes | memoryview | None) -> str:
    # The log shows what arrived; undecodable bytes are shown, not hidden.
    text = bytes(data or b"").decode("utf-8", errors="backslashreplace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


@admin.register(InboundMessage)
class InboundMessageAdmin(admin.ModelAdmin[InboundMessage]):
    list_display = [
        "received_at",
        "message_type",
        "control_id",
        "sending_application",
        "sending_facility",
        "peer",
        "outcome",
    ]
    list_filter = ["outcome", "message_type", "version"]
    search_fields = ["control_id", "sending_application", "sending_facility"]
    date_hierarchy = "received_at"
    # Everything shown is read-only: the log records what was received and answered.
    readonly_fields = [
        "received_at",
        "processed_at",
        "reprocessed_at",
        "peer",
        "sending_application",
        "sending_facility",
        "message_type",
        "version",
        "control_id",
        "outcome",
        "error",
        "message",
        "acknowledgement",
        "original_message",
    ]
    fields = tuple(readonly_fields)
    actions = ["reprocess"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[InboundMessage]:
        return selectors.message_list().defer(None)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # The log is the record of what the RIS sent: it is never edited away.
        return False

    @admin.display(description="message")
    def message(self, obj: InboundMessage) -> str:
        return _segments(obj.raw)

    @admin.display(description="ACK sent")
    def acknowledgement(self, obj: InboundMessage) -> str:
        return _segments(obj.ack)

    @admin.display(description="message as first received")
    def original_message(self, obj: InboundMessage) -> str:
        return _segments(obj.original_raw) if obj.original_raw is not None else ""

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("hl7v2.reprocess_inboundmessage")

    @admin.action(description="Reprocess the selected failed messages", permissions=["reprocess"])
    def reprocess(self, request: HttpRequest, queryset: QuerySet[InboundMessage]) -> None:
        failed = queryset.filter(outcome__in=(Outcome.ERROR, Outcome.REJECTED))
        outcomes: dict[str, int] = {}
        for message_id in failed.values_list("pk", flat=True):
            reply = intake.message_reprocess(message_id)
            outcomes[reply.outcome] = outcomes.get(reply.outcome, 0) + 1
        skipped = queryset.count() - sum(outcomes.values())
        summary = ", ".join(f"{count} {code}" for code, count in sorted(outcomes.items()))
        self.message_user(
            request,
            f"Reprocessed: {summary or 'none'}; skipped (not failed): {skipped}.",
            messages.SUCCESS if outcomes else messages.WARNING,
        )
