"""Reads of performed procedure steps."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from mpps.models import OutboundMessage, PerformedProcedureStep, PerformedSeries, StepLink
from mpps.status import MPPSStatus


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


# --- turnaround ---------------------------------------------------------------------


@dataclass(frozen=True)
class TurnaroundSample:
    """One performed scheduled step: when it was ordered, started and completed."""

    day: date  # local date the step started
    modality: str
    study_instance_uid: str
    ordered_at: datetime  # the order was received (HL7 ORM / OMI, or entered)
    started_at: datetime  # the first MPPS IN PROGRESS
    completed_at: datetime | None  # the last MPPS COMPLETED, None while not completed


@dataclass(frozen=True)
class Spread:
    """Median and 90th percentile (linear interpolation) of some durations, in seconds."""

    count: int
    median: float | None
    p90: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Spread:
        values = sorted(seconds)
        if not values:
            return cls(0, None, None)
        if len(values) == 1:
            return cls(1, values[0], values[0])
        p90 = statistics.quantiles(values, n=10, method="inclusive")[-1]
        return cls(len(values), statistics.median(values), p90)


@dataclass(frozen=True)
class TurnaroundFigure:
    day: date
    modality: str
    order_to_start: Spread
    start_to_complete: Spread
    complete_to_routed: Spread


def turnaround_samples(
    *, first_day: date, last_day: date, modality: str = ""
) -> list[TurnaroundSample]:
    """Steps whose first MPPS started between ``first_day`` and ``last_day`` (local days,
    both included), optionally of one modality (the step's, else the MPPS's)."""
    zone = timezone.get_current_timezone()
    since = datetime.combine(first_day, time.min, tzinfo=zone)
    until = datetime.combine(last_day + timedelta(days=1), time.min, tzinfo=zone)
    links = (
        StepLink.objects.filter(mpps__started_at__gte=since, mpps__started_at__lt=until)
        .values(
            "step_id",
            "step__modality",
            "mpps__modality",
            "step__procedure__study_instance_uid",
            "step__procedure__order__created_at",
            "mpps__status",
            "mpps__started_at",
            "mpps__ended_at",
        )
        .order_by("step_id", "mpps__started_at")
    )
    per_step: dict[int, dict[str, Any]] = {}
    for link in links:
        sample = per_step.setdefault(
            link["step_id"],
            {
                "modality": link["step__modality"] or link["mpps__modality"],
                "study_instance_uid": link["step__procedure__study_instance_uid"],
                "ordered_at": link["step__procedure__order__created_at"],
                "started_at": link["mpps__started_at"],
                "completed_at": None,
            },
        )
        ended = link["mpps__ended_at"]
        if (
            link["mpps__status"] == MPPSStatus.COMPLETED
            and ended is not None
            and (sample["completed_at"] is None or ended > sample["completed_at"])
        ):
            sample["completed_at"] = ended
    samples = [
        TurnaroundSample(day=timezone.localtime(s["started_at"]).date(), **s)
        for s in per_step.values()
    ]
    if modality:
        samples = [s for s in samples if s.modality == modality]
    return samples


def turnaround_figures(
    samples: Iterable[TurnaroundSample], *, routed_at: Mapping[str, datetime] | None = None
) -> list[TurnaroundFigure]:
    """Median and 90th percentile of order -> start, start -> complete and complete ->
    routed (``routed_at``: when each study was routed) per day and modality."""
    routed_at = routed_at or {}
    groups: dict[tuple[date, str], list[TurnaroundSample]] = defaultdict(list)
    for sample in samples:
        groups[(sample.day, sample.modality)].append(sample)
    figures = []
    for (day, modality), group in sorted(groups.items()):
        routed = [
            (routed_at[s.study_instance_uid] - s.completed_at).total_seconds()
            for s in group
            if s.completed_at is not None and s.study_instance_uid in routed_at
        ]
        figures.append(
            TurnaroundFigure(
                day=day,
                modality=modality,
                order_to_start=Spread.of(
                    [max(0.0, (s.started_at - s.ordered_at).total_seconds()) for s in group]
                ),
                start_to_complete=Spread.of(
                    [
                        (s.completed_at - s.started_at).total_seconds()
                        for s in group
                        if s.completed_at is not None
                    ]
                ),
                complete_to_routed=Spread.of([max(0.0, r) for r in routed]),
            )
        )
    return figures
