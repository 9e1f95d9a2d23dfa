"""Reads of the scheduling domain."""

from __future__ import annotations

from django.db.models import QuerySet

from worklist.models import ScheduledProcedureStep


def step_list() -> QuerySet[ScheduledProcedureStep]:
    return (
        ScheduledProcedureStep.objects.select_related("procedure__order__patient")
        .prefetch_related("station_ae_titles")
        .order_by("-start", "-id")
    )
