"""Reads for the staff pages: the front desk's worklist, the board's rows, queue health.

Each page asks for one day's steps with their patient, order, procedure and linked MPPS
in a fixed number of queries, whatever the number of steps.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from frontdesk import routing_hook
from frontdesk.status import StatusWord, step_word
from hl7v2.selectors import messages_failed
from mpps.models import OutboundMessage, PerformedProcedureStep
from mpps.status import MPPSStatus, OutboundState
from worklist.models import ScheduledProcedureStep, StationAETitle
from worklist.selectors import step_list


@dataclass(frozen=True)
class Progress:
    """What the scanner reported for a step (its linked MPPS), in a few words."""

    status: str  # the latest MPPS's status, "" when none was received
    started_at: datetime | None = None
    ended_at: datetime | None = None
    series: int = 0
    images: int = 0

    @property
    def text(self) -> str:
        if not self.status:
            return ""
        parts = []
        if self.started_at is not None:
            parts.append(f"started {timezone.localtime(self.started_at):%H:%M}")
        if self.status != MPPSStatus.IN_PROGRESS and self.ended_at is not None:
            verb = "done" if self.status == MPPSStatus.COMPLETED else "stopped"
            parts.append(f"{verb} {timezone.localtime(self.ended_at):%H:%M}")
        if self.series:
            parts.append(
                f"{self.series} series, {self.images} image{'s' if self.images != 1 else ''}"
            )
        return " · ".join(parts) or self.status.lower()


@dataclass(frozen=True)
class StepRow:
    """One scheduled step as the front desk and the board show it."""

    step: ScheduledProcedureStep
    status: StatusWord
    progress: Progress
    routing: str = ""

    @property
    def patient(self) -> Any:
        return self.step.procedure.order.patient

    @property
    def order(self) -> Any:
        return self.step.procedure.order

    @property
    def procedure(self) -> Any:
        return self.step.procedure

    @property
    def stations(self) -> str:
        return ", ".join(t.ae_title for t in self.step.station_ae_titles.all())

    @property
    def procedure_text(self) -> str:
        procedure = self.step.procedure
        return procedure.description or procedure.code_meaning or self.step.description or "—"


@dataclass
class BoardGroup:
    modality: str
    station: str
    rows: list[StepRow] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for row in self.rows:
            counts[row.status.css] += 1
        return dict(counts)


def _progress(steps: Sequence[ScheduledProcedureStep]) -> dict[int, list[Progress]]:
    """The MPPS linked to each of ``steps``, oldest first, with series and image counts."""
    found: dict[int, list[Progress]] = defaultdict(list)
    if not steps:
        return found
    performed = (
        PerformedProcedureStep.objects.filter(links__step__in=[s.pk for s in steps])
        .annotate(n_series=Count("series", distinct=True), n_images=Count("series__instances"))
        .values("links__step", "status", "started_at", "ended_at", "n_series", "n_images")
        .order_by("created_at", "id")
    )
    for row in performed:
        found[row["links__step"]].append(
            Progress(
                status=row["status"],
                started_at=row["started_at"],
                ended_at=row["ended_at"],
                series=row["n_series"],
                images=row["n_images"],
            )
        )
    return found


def step_rows(steps: Iterable[ScheduledProcedureStep]) -> list[StepRow]:
    """``steps`` (from :func:`worklist.selectors.step_list`) with their status words,
    MPPS progress and, when routing is installed, routing state."""
    steps = list(steps)
    progress = _progress(steps)
    routing = (
        routing_hook.board_states({s.procedure.study_instance_uid for s in steps})
        if routing_hook.installed()
        else {}
    )
    rows = []
    for step in steps:
        performed = progress.get(step.pk, [])
        rows.append(
            StepRow(
                step=step,
                status=step_word(step.status, [p.status for p in performed]),
                progress=performed[-1] if performed else Progress(status=""),
                routing=routing.get(step.procedure.study_instance_uid, ""),
            )
        )
    return rows


def _name_terms(text: str) -> list[str]:
    """The words of a typed name, as the upper-cased name key holds them ("doe, jo" ->
    ["DOE", "JO"])."""
    return [t for t in re.split(r"[\s,^]+", text.upper()) if t]


def desk_steps(
    *,
    day: date | None,
    search: str = "",
    modality: str = "",
    station: str = "",
    status: str = "",
) -> QuerySet[ScheduledProcedureStep]:
    """The front desk's worklist: one day's steps (every day with ``day=None``), by time.

    ``search`` matches a patient ID or accession number exactly (or by prefix), or a name
    that holds every typed word (case-insensitive); ``station`` is a Scheduled Station AE
    Title or a station name.
    """
    steps = step_list().order_by("start", "id")
    if day is not None:
        steps = steps.filter(start_date=day)
    if modality:
        steps = steps.filter(modality=modality)
    if station:
        steps = steps.filter(
            Q(station_ae_titles__ae_title=station) | Q(station_name=station)
        ).distinct()
    if status:
        steps = steps.filter(status=status)
    search = search.strip()
    if search:
        by_id = Q(procedure__order__patient__patient_id__istartswith=search) | Q(
            procedure__order__accession_number__istartswith=search
        )
        terms = _name_terms(search)
        by_name = Q()
        for term in terms:
            by_name &= Q(procedure__order__patient__name_key__contains=term)
        steps = steps.filter(by_id | by_name) if terms else steps.filter(by_id)
    return steps


def board(*, day: date) -> list[BoardGroup]:
    """The day's steps per modality and station (first Scheduled Station AE Title, else
    station name), each group by scheduled time."""
    groups: dict[tuple[str, str], BoardGroup] = {}
    for row in step_rows(desk_steps(day=day)):
        step = row.step
        titles = [t.ae_title for t in step.station_ae_titles.all()]
        station = titles[0] if titles else step.station_name
        key = (step.modality, station)
        if key not in groups:
            groups[key] = BoardGroup(modality=step.modality or "—", station=station or "—")
        groups[key].rows.append(row)
    return [groups[k] for k in sorted(groups)]


def board_signature(*, day: date) -> str:
    """A short digest of everything the board shows for ``day``: the steps (status, time,
    station), their patient, order and procedure (changed when any is saved), their
    MPPS (status and version: every N-SET counts) and routing state.

    Much cheaper than the board itself (plain columns, no rendering): an open board polls
    with the digest it shows and is only sent the board again when it differs.
    """
    steps = list(
        ScheduledProcedureStep.objects.filter(start_date=day)
        .order_by("pk")
        .values_list(
            "pk",
            "status",
            "start",
            "modality",
            "station_name",
            "description",
            "updated_at",
            "procedure__updated_at",
            "procedure__order__updated_at",
            "procedure__order__patient__updated_at",
            "procedure__study_instance_uid",
        )
    )
    stations = list(
        StationAETitle.objects.filter(step__start_date=day)
        .order_by("step_id", "ae_title")
        .values_list("step_id", "ae_title")
    )
    performed = list(
        PerformedProcedureStep.objects.filter(links__step__start_date=day)
        .order_by("pk")
        .values_list("pk", "links__step", "status", "version")
    )
    routing = (
        sorted(routing_hook.board_states({row[-1] for row in steps}).items())
        if routing_hook.installed()
        else []
    )
    digest = hashlib.blake2b(digest_size=12)
    digest.update(repr((steps, stations, performed, routing)).encode())
    return digest.hexdigest()


def filter_choices() -> dict[str, list[str]]:
    """Modalities and stations known to the worklist, for the front desk's filters."""
    steps = ScheduledProcedureStep.objects
    modalities = steps.exclude(modality="").values_list("modality", flat=True).distinct()
    stations = (
        steps.filter(station_ae_titles__isnull=False)
        .values_list("station_ae_titles__ae_title", flat=True)
        .distinct()
    )
    return {"modalities": sorted(modalities), "stations": sorted(stations)}


@dataclass(frozen=True)
class Queue:
    """One queue on the queue-health page: how many wait or failed, and since when."""

    name: str
    waiting: int
    failed: int
    oldest: datetime | None
    help: str

    @property
    def healthy(self) -> bool:
        return self.failed == 0 and self.waiting == 0


def queue_health() -> list[Queue]:
    """HL7 messages in error, RIS status messages not yet acknowledged, routing jobs."""
    hl7 = messages_failed().aggregate(n=Count("id"), oldest=Min("received_at"))
    ris = OutboundMessage.objects.exclude(state=OutboundState.SENT).aggregate(
        waiting=Count("id", filter=Q(state=OutboundState.PENDING)),
        failed=Count("id", filter=Q(state=OutboundState.FAILED)),
        oldest=Min("created_at"),
    )
    queues = [
        Queue(
            name="HL7 messages in error",
            waiting=0,
            failed=hl7["n"],
            oldest=hl7["oldest"],
            help="Answered AE or AR; correct and reprocess them in the HL7 message log.",
        ),
        Queue(
            name="RIS status messages not acknowledged",
            waiting=ris["waiting"],
            failed=ris["failed"],
            oldest=ris["oldest"],
            help="Order status (IP / CM / DC) the RIS has not accepted yet; failed ones "
            "hold back later messages of their order until resent.",
        ),
    ]
    routing = routing_hook.queue_health()
    if routing is not None:
        oldest = [t for t in (routing.get("oldest_pending"), routing.get("oldest_failed")) if t]
        queues.append(
            Queue(
                name="Routing jobs",
                waiting=int(routing.get("pending", 0)),
                failed=int(routing.get("failed", 0)),
                oldest=min(oldest) if oldest else None,
                help="Studies waiting to be sent to their destinations, and sends that failed.",
            )
        )
    return queues
