"""Reads of the scheduling domain."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.db.models import Count, Prefetch, QuerySet

from worklist.models import Order, Patient, RequestedProcedure, ScheduledProcedureStep


def step_list() -> QuerySet[ScheduledProcedureStep]:
    return (
        ScheduledProcedureStep.objects.select_related("procedure__order__patient")
        .prefetch_related("station_ae_titles")
        .order_by("-start", "-id")
    )


def board_counts(day: date) -> list[dict[str, Any]]:
    """The board's figures: how many of the day's steps (local SPS start date) are in each
    status, per modality: ``[{"modality", "status", "count"}]``, by modality then status."""
    rows = (
        ScheduledProcedureStep.objects.filter(start_date=day)
        .values("modality", "status")
        .annotate(count=Count("id"))
        .order_by("modality", "status")
    )
    return [dict(r) for r in rows]


def patient_list() -> QuerySet[Patient]:
    return Patient.objects.order_by("patient_id", "issuer", "id")


def order_list() -> QuerySet[Order]:
    return (
        Order.objects.select_related("patient")
        .prefetch_related(
            Prefetch("procedures", queryset=RequestedProcedure.objects.order_by("pk")),
            Prefetch(
                "procedures__steps",
                queryset=ScheduledProcedureStep.objects.order_by("pk").prefetch_related(
                    "station_ae_titles"
                ),
            ),
        )
        .order_by("-created_at", "-id")
    )
