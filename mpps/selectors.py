"""Reads of performed procedure steps."""

from __future__ import annotations

from django.db.models import QuerySet

from mpps.models import OutboundMessage, PerformedProcedureStep, PerformedSeries


def mpps_list() -> QuerySet[PerformedProcedureStep]:
    return PerformedProcedureStep.objects.prefetch_related("links__step").order_by("-created_at")


def mpps_unscheduled() -> QuerySet[PerformedProcedureStep]:
    """Performed steps linked to no scheduled step (emergencies, walk-ins): to be linked."""
    return mpps_list().filter(links__isnull=True)


def performed_series_for_study(study_instance_uid: str) -> QuerySet[PerformedSeries]:
    """Series the modalities reported for a study, with their instances (for routing)."""
    return (
        PerformedSeries.objects.filter(
            mpps__links__step__procedure__study_instance_uid=study_instance_uid
        )
        .prefetch_related("instances")
        .distinct()
    )


def ris_messages_for_order(order_id: int) -> QuerySet[OutboundMessage]:
    return (
        OutboundMessage.objects.filter(order_id=order_id)
        .prefetch_related("tries")
        .order_by("sequence")
    )
