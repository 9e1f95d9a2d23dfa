"""The staff pages that read: home, front-desk worklist, board, turnaround, queue health.

Pages that change something are in :mod:`frontdesk.actions`.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.views.generic import TemplateView

from frontdesk import charts, routing_hook, selectors
from frontdesk.access import (
    ADD_ORDERS,
    CHANGE_PATIENTS,
    CHANGE_STEPS,
    VIEW_QUEUES,
    VIEW_STEPS,
    StaffPage,
    may_use_pages,
)
from frontdesk.forms import DeskFilterForm
from mpps.selectors import turnaround

# The longest period the turnaround page computes at once.
MAX_TURNAROUND_DAYS = 92


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The front desk for those who change the worklist, else the board, else a page
    saying that this account has no pages (integrators use the API)."""
    if not may_use_pages(request.user):
        return render(request, "frontdesk/no_pages.html", status=403)
    if request.user.has_perm(CHANGE_STEPS):
        return redirect("frontdesk:desk")
    if request.user.has_perm(VIEW_STEPS):
        return redirect("frontdesk:board")
    return render(request, "frontdesk/no_pages.html", status=403)


def _day(value: str | None, default: date) -> date:
    parsed = parse_date(value) if value else None
    return parsed or default


class DeskView(StaffPage, TemplateView):
    """Today's worklist (or another day's) with search, filters and the step actions."""

    permission_required = VIEW_STEPS
    template_name = "frontdesk/desk.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        today = timezone.localdate()
        choices = selectors.filter_choices()
        data = self.request.GET.copy()
        if "date" not in data:
            data["date"] = today.isoformat()
        form = DeskFilterForm(data, **choices)
        form.is_valid()
        filters = getattr(form, "cleaned_data", {})
        day = None if filters.get("all_days") else filters.get("date") or today
        steps = selectors.desk_steps(
            day=day,
            search=filters.get("q", ""),
            modality=filters.get("modality", ""),
            station=filters.get("station", ""),
            status=filters.get("status", ""),
        )
        user = self.request.user
        context.update(
            form=form,
            today=today,
            day=day,
            rows=selectors.step_rows(steps[:500]),
            truncated=steps[500:501].exists(),
            can_change_steps=user.has_perm(CHANGE_STEPS),
            can_change_patients=user.has_perm(CHANGE_PATIENTS),
            can_add_orders=user.has_perm(ADD_ORDERS),
            previous_day=(day or today) - timedelta(days=1),
            next_day=(day or today) + timedelta(days=1),
        )
        return context


class BoardView(StaffPage, TemplateView):
    """Today's steps per modality and station; the rows refresh themselves (htmx polls
    :class:`BoardRowsView`). ``?wall=1``: the wall display, without any controls."""

    permission_required = VIEW_STEPS
    template_name = "frontdesk/board.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        today = timezone.localdate()
        day = _day(self.request.GET.get("date"), today)
        wall = self.request.GET.get("wall") in ("1", "true", "yes")
        query = self.request.GET.copy()
        # Before the board is read: a change landing in between makes the next poll
        # differ (and fetch the board again) instead of being missed.
        query["shown"] = selectors.board_signature(day=day)
        context.update(
            day=day,
            today=today,
            wall=wall,
            groups=selectors.board(day=day),
            routing=routing_hook.installed(),
            refresh_seconds=settings.BOARD_REFRESH_SECONDS,
            rows_query=f"?{query.urlencode()}",
        )
        return context


class BoardRowsView(BoardView):
    """The board's groups alone, for htmx's poll. ``shown`` is the digest of the board the
    browser shows (:func:`frontdesk.selectors.board_signature`): while nothing changed
    the answer is an empty 204, which htmx leaves as it is."""

    template_name = "frontdesk/board_groups.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        shown = request.GET.get("shown")
        if shown:
            day = _day(request.GET.get("date"), timezone.localdate())
            if shown == selectors.board_signature(day=day):
                return HttpResponse(status=204)
        return super().get(request, *args, **kwargs)


def _chart_series(
    rows: list[dict[str, Any]], metric: str, modalities: list[str]
) -> list[charts.Series]:
    series = []
    for modality in modalities:
        medians: dict[date, float | None] = {}
        p90s: dict[date, float | None] = {}
        for row in rows:
            figures = row[metric]
            if row["modality"] != modality or figures is None:
                continue
            medians[row["day"]] = figures.median / 60 if figures.median is not None else None
            p90s[row["day"]] = figures.p90 / 60 if figures.p90 is not None else None
        series.append(charts.Series(name=modality, median=medians, p90=p90s))
    return series


class TurnaroundView(StaffPage, TemplateView):
    """Median and 90th percentile of order -> start, start -> complete (and complete ->
    routed when routing is installed) per modality and day, for a chosen period. The
    figures are :func:`mpps.selectors.turnaround`'s, the same as the API's."""

    permission_required = VIEW_STEPS
    template_name = "frontdesk/turnaround.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        today = timezone.localdate()
        last = _day(self.request.GET.get("to"), today)
        first = _day(self.request.GET.get("from"), last - timedelta(days=6))
        if first > last:
            first, last = last, first
        first = max(first, last - timedelta(days=MAX_TURNAROUND_DAYS - 1))
        modality = self.request.GET.get("modality", "").strip().upper()
        routing = routing_hook.installed()
        routed = (
            routing_hook.complete_to_routed(since=first, until=last, modality=modality or None)
            if routing
            else {}
        )
        rows: list[dict[str, Any]] = [
            {
                "day": row.day,
                "modality": row.modality,
                "order_to_start": row.order_to_start,
                "start_to_complete": row.start_to_complete,
                "complete_to_routed": routed.get((row.day, row.modality)),
            }
            for row in turnaround(since=first, until=last, modality=modality or None)
        ]
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        modalities = sorted({row["modality"] for row in rows})
        metrics = [
            ("order_to_start", "Order → start", "order received until the scanner started"),
            ("start_to_complete", "Start → complete", "scanner started until it completed"),
        ]
        if routing:
            metrics.append(("complete_to_routed", "Complete → routed", "completed until sent on"))
        context.update(
            first=first,
            last=last,
            modality=modality,
            periods=[
                ("Last 7 days", today - timedelta(days=6), today),
                ("Last 30 days", today - timedelta(days=29), today),
                ("Last 90 days", today - timedelta(days=89), today),
            ],
            rows=rows,
            legend=charts.legend_colours(modalities),
            charts=[
                {
                    "title": title,
                    "help": help_text,
                    "metric": metric,
                    "svg": charts.line_chart(
                        title=title, days=days, series=_chart_series(rows, metric, modalities)
                    ),
                }
                for metric, title, help_text in metrics
            ],
            routing=routing,
        )
        return context


class QueueHealthView(StaffPage, TemplateView):
    """What is stuck: HL7 messages in error, status messages the RIS has not taken,
    routing jobs waiting or failed; with the age of the oldest."""

    permission_required = VIEW_QUEUES
    template_name = "frontdesk/queues.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(queues=selectors.queue_health(), now=timezone.now())
        return context
