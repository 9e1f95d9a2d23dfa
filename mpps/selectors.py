"""Reads of performed procedure steps."""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from django.db.models import Q, QuerySet
from django.utils import timezone

from mpps.models import OutboundMessage, PerformedProcedureStep, PerformedSeries, StepLink
from mpps.status import MPPSStatus, OutboundState


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


def ris_message_list() -> QuerySet[OutboundMessage]:
    return OutboundMessage.objects.select_related("order").order_by("-created_at", "-id")


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


@dataclass(frozen=True)
class Figures:
    """Durations in seconds: how many, their median and 90th percentile (None if none)."""

    count: int
    median: float | None
    p90: float | None

    @classmethod
    def of(cls, seconds: list[float]) -> Figures:
        if not seconds:
            return cls(0, None, None)
        ordered = sorted(seconds)
        # Nearest-rank percentile: the smallest value with 90 % of them at or below it.
        p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
        return cls(len(ordered), float(statistics.median(ordered)), float(p90))


@dataclass(frozen=True)
class TurnaroundRow:
    day: date
    modality: str
    order_to_start: Figures
    start_to_complete: Figures


def turnaround(*, since: date, until: date, modality: str | None = None) -> list[TurnaroundRow]:
    """Turnaround per modality and day (the local day the MPPS arrived), for days
    ``since`` to ``until`` inclusive:

    - order -> start: from the order's arrival (ORM received) to the first MPPS IN
      PROGRESS of each of its steps (both as the broker received them);
    - start -> complete: from an MPPS's start to its completion (the modality's
      Performed Procedure Step start and end date/time; the broker's receive times
      when the modality sent none), for completed MPPS.

    The same numbers for the turnaround page and the API.
    """
    start = timezone.make_aware(dt.datetime.combine(since, dt.time.min))
    end = timezone.make_aware(dt.datetime.combine(until + dt.timedelta(days=1), dt.time.min))
    links = StepLink.objects.filter(mpps__created_at__gte=start, mpps__created_at__lt=end)
    if modality:
        links = links.filter(step__modality=modality)
    rows = links.values_list(
        "step_id",
        "step__modality",
        "step__procedure__order__created_at",
        "mpps_id",
        "mpps__status",
        "mpps__created_at",
        "mpps__updated_at",
        "mpps__started_at",
        "mpps__ended_at",
    )
    first_start: dict[int, tuple[dt.datetime, dt.datetime, str]] = {}
    durations: dict[tuple[date, str], list[float]] = defaultdict(list)
    seen_mpps: set[int] = set()
    for (
        step_id,
        step_modality,
        ordered_at,
        mpps_id,
        mpps_status,
        created,
        updated,
        started,
        ended,
    ) in rows:
        known = first_start.get(step_id)
        if known is None or created < known[1]:
            first_start[step_id] = (ordered_at, created, step_modality)
        if mpps_status == MPPSStatus.COMPLETED and mpps_id not in seen_mpps:
            seen_mpps.add(mpps_id)
            began, finished = (started, ended) if started and ended else (created, updated)
            key = (timezone.localdate(created), step_modality)
            durations[key].append(max(0.0, (finished - began).total_seconds()))
    waits: dict[tuple[date, str], list[float]] = defaultdict(list)
    for ordered_at, created, step_modality in first_start.values():
        waits[(timezone.localdate(created), step_modality)].append(
            max(0.0, (created - ordered_at).total_seconds())
        )
    keys = sorted(set(waits) | set(durations))
    return [
        TurnaroundRow(
            day=day,
            modality=mod,
            order_to_start=Figures.of(waits.get((day, mod), [])),
            start_to_complete=Figures.of(durations.get((day, mod), [])),
        )
        for day, mod in keys
    ]
