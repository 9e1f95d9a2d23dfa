"""Reads of routing: what is known of a study, jobs for the operator view."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from mpps.models import PerformedProcedureStep
from routing.models import Destination, RoutingJob, RoutingRule, StoredInstance
from routing.rules import StudyFacts
from routing.status import DELIVERED
from worklist.models import RequestedProcedure, StationAETitle


def study_facts(study_instance_uid: str) -> StudyFacts:
    """Everything rules may test, from the stored instances, the worklist and MPPS."""
    rows = StoredInstance.objects.filter(study_instance_uid=study_instance_uid).values_list(
        "modality", "calling_ae_title", "body_part", "study_description"
    )
    modalities: set[str] = set()
    callers: set[str] = set()
    body_parts: set[str] = set()
    descriptions: set[str] = set()
    for modality, caller, body_part, description in rows.distinct():
        modalities.add(modality)
        callers.add(caller)
        body_parts.add(body_part)
        descriptions.add(description)
    codes: set[str] = set()
    stations: set[str] = set()
    for code, description in RequestedProcedure.objects.filter(
        study_instance_uid=study_instance_uid
    ).values_list("code_value", "description"):
        codes.add(code)
        descriptions.add(description)
    stations.update(
        StationAETitle.objects.filter(
            step__procedure__study_instance_uid=study_instance_uid
        ).values_list("ae_title", flat=True)
    )
    stations.update(
        PerformedProcedureStep.objects.filter(
            scheduled_references__study_instance_uid=study_instance_uid
        ).values_list("station_ae_title", flat=True)
    )

    def clean(values: set[str]) -> frozenset[str]:
        return frozenset(v for v in values if v)

    return StudyFacts(
        modalities=clean(modalities),
        calling_ae_titles=clean(callers),
        station_ae_titles=clean(stations),
        procedure_codes=clean(codes),
        body_parts=clean(body_parts),
        study_descriptions=clean(descriptions),
    )


def enabled_rules() -> QuerySet[RoutingRule]:
    return RoutingRule.objects.filter(enabled=True).prefetch_related("destinations")


def destination_list() -> QuerySet[Destination]:
    return Destination.objects.order_by("name")


def rule_list() -> QuerySet[RoutingRule]:
    return RoutingRule.objects.prefetch_related("destinations").order_by("name")


def job_list(
    *, study_instance_uid: str = "", status: str = "", destination_id: int | None = None
) -> QuerySet[RoutingJob]:
    """Jobs, newest first, with their instance counts (``instances``, ``instances_sent``)."""
    jobs = RoutingJob.objects.select_related("destination").annotate(
        instance_count=Count("items"),
        sent_count=Count("items", filter=Q(items__state__in=DELIVERED)),
    )
    if study_instance_uid:
        jobs = jobs.filter(study_instance_uid=study_instance_uid)
    if status:
        jobs = jobs.filter(status=status)
    if destination_id is not None:
        jobs = jobs.filter(destination_id=destination_id)
    return jobs.order_by("-created_at", "-pk")


def instances_of_study(study_instance_uid: str) -> QuerySet[StoredInstance]:
    return StoredInstance.objects.filter(study_instance_uid=study_instance_uid).order_by("pk")
