"""Routing's figures for the board, turnaround and queue-health pages.

Routing is optional for these pages: while the ``routing`` app is not installed every
function here answers "nothing" and the pages leave the routing column and figures
out. This is the one module that reads routing's tables (``routing.models.RoutingJob``:
``study_instance_uid``, ``destination.name``, ``status`` from ``routing.status.JobStatus``,
``created_at``, ``finished_at``). Its modules are imported by name because the pages
must also run without that app; frontdesk sits above routing in the layers.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from types import ModuleType
from typing import Any

from django.apps import apps
from django.db.models import Count, Max, Min
from django.utils import timezone

from mpps.models import StepLink
from mpps.selectors import Figures
from mpps.status import MPPSStatus

# Job states (routing.status.JobStatus values).
_WAITING = ("SCHEDULED", "IN_PROCESS")
_DONE = ("COMPLETED", "WARNING")
_FAILED = "FAILED"


def _module(name: str) -> ModuleType | None:
    if not apps.is_installed("routing"):
        return None
    try:
        return importlib.import_module(f"routing.{name}")
    except ImportError:
        return None


def _jobs() -> Any:
    models = _module("models")
    job = getattr(models, "RoutingJob", None) if models is not None else None
    return job.objects if job is not None else None


def installed() -> bool:
    return _jobs() is not None


def board_states(study_uids: Iterable[str]) -> dict[str, str]:
    """A few words per study: "Sent to PACS", "Sending to PACS", "Failed: AI"."""
    jobs = _jobs()
    uids = list(study_uids)
    if jobs is None or not uids:
        return {}
    by_study: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for uid, status, destination in (
        jobs.filter(study_instance_uid__in=uids)
        .order_by("created_at", "pk")
        .values_list("study_instance_uid", "status", "destination__name")
    ):
        by_study[uid][status].append(destination)
    states = {}
    for uid, statuses in by_study.items():
        if statuses.get(_FAILED):
            states[uid] = "Failed: " + ", ".join(statuses[_FAILED])
        elif waiting := [d for s in _WAITING for d in statuses.get(s, [])]:
            states[uid] = "Sending to " + ", ".join(waiting)
        elif done := [d for s in _DONE for d in statuses.get(s, [])]:
            states[uid] = "Sent to " + ", ".join(done)
        else:
            states[uid] = "Canceled"
    return states


def complete_to_routed(
    *, since: date, until: date, modality: str | None
) -> dict[tuple[date, str], Figures]:
    """Completed MPPS (their end) until the study's last successful routing job finished,
    per local day the MPPS arrived and step modality (the days and modalities of
    :func:`mpps.selectors.turnaround`)."""
    jobs = _jobs()
    if jobs is None:
        return {}
    zone = timezone.get_current_timezone()
    start = datetime.combine(since, time.min, tzinfo=zone)
    end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=zone)
    links = StepLink.objects.filter(
        mpps__created_at__gte=start, mpps__created_at__lt=end, mpps__status=MPPSStatus.COMPLETED
    )
    if modality:
        links = links.filter(step__modality=modality)
    completed: dict[str, tuple[date, str, datetime]] = {}
    for uid, step_modality, created, ended, updated in links.values_list(
        "step__procedure__study_instance_uid",
        "step__modality",
        "mpps__created_at",
        "mpps__ended_at",
        "mpps__updated_at",
    ):
        done = ended or updated
        if uid not in completed or done > completed[uid][2]:
            completed[uid] = (timezone.localdate(created), step_modality, done)
    routed = dict(
        jobs.filter(study_instance_uid__in=list(completed), status__in=_DONE)
        .values("study_instance_uid")
        .annotate(at=Max("finished_at"))
        .values_list("study_instance_uid", "at")
    )
    seconds: dict[tuple[date, str], list[float]] = defaultdict(list)
    for uid, (day, step_modality, done) in completed.items():
        if routed.get(uid) is not None:
            seconds[(day, step_modality)].append(max(0.0, (routed[uid] - done).total_seconds()))
    return {key: Figures.of(values) for key, values in seconds.items()}


def queue_health() -> dict[str, Any] | None:
    """Routing jobs waiting and failed, with the oldest of each."""
    jobs = _jobs()
    if jobs is None:
        return None
    waiting = jobs.filter(status__in=_WAITING).aggregate(n=Count("pk"), oldest=Min("created_at"))
    failed = jobs.filter(status=_FAILED).aggregate(n=Count("pk"), oldest=Min("finished_at"))
    return {
        "pending": waiting["n"],
        "failed": failed["n"],
        "oldest_pending": waiting["oldest"],
        "oldest_failed": failed["oldest"],
    }
