"""Reads of performed procedure steps."""

from __future__ import annotations

import datetime as dt

from django.db.models import Q, QuerySet
from django.utils import timezone

from mpps.models import OutboundMessage, PerformedProcedureStep, PerformedSeries
from mpps.status import OutboundState


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


def ris_stalled_order_ids(*, older_than: dt.timedelta) -> list[int]:
    """Orders with a pending status message that should have been tried by now: due (or
    never tried) for longer than ``older_than`` and not held by a sender's lease. Their
    send task was lost (queue outage, a worker killed before it acknowledged)."""
    cutoff = timezone.now() - older_than
    now = timezone.now()
    return list(
        OutboundMessage.objects.filter(state=OutboundState.PENDING, created_at__lt=cutoff)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=cutoff))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .values_list("order_id", flat=True)
        .distinct()
    )
