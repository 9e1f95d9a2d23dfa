"""REST API of MPPS and the RIS outbox: performed steps (read), RIS status messages (read,
resend), turnaround figures."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from core.api import require
from mpps import outbox, selectors
from mpps.models import OutboundMessage, PerformedProcedureStep
from mpps.status import MPPSStatus, OutboundState


class MPPSOutputSerializer(serializers.ModelSerializer[PerformedProcedureStep]):
    step_ids = serializers.SerializerMethodField()

    class Meta:
        model = PerformedProcedureStep
        fields = [
            "id",
            "sop_instance_uid",
            "status",
            "pps_id",
            "modality",
            "station_ae_title",
            "station_name",
            "location",
            "description",
            "started_at",
            "ended_at",
            "patient_id",
            "calling_ae_title",
            "step_ids",
            "created_at",
            "updated_at",
        ]

    def get_step_ids(self, obj: PerformedProcedureStep) -> list[int]:
        return [link.step_id for link in obj.links.all()]


class MPPSDetailSerializer(MPPSOutputSerializer):
    class Meta(MPPSOutputSerializer.Meta):
        fields = [*MPPSOutputSerializer.Meta.fields, "dataset"]


class MPPSFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=MPPSStatus.choices)
    modality = django_filters.CharFilter()
    station_ae_title = django_filters.CharFilter()
    patient_id = django_filters.CharFilter()
    scheduled = django_filters.BooleanFilter(method="filter_scheduled")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = PerformedProcedureStep
        fields = ["status", "modality", "station_ae_title", "patient_id", "created_after"]

    def filter_scheduled(
        self, queryset: QuerySet[PerformedProcedureStep], name: str, value: bool
    ) -> QuerySet[PerformedProcedureStep]:
        return queryset.filter(links__isnull=not value).distinct()


class MPPSViewSet(viewsets.ReadOnlyModelViewSet[PerformedProcedureStep]):
    """Performed procedure steps as the modalities reported them (newest first)."""

    filterset_class = MPPSFilter

    def get_queryset(self) -> QuerySet[PerformedProcedureStep]:
        return selectors.mpps_list()

    def get_serializer_class(self) -> Any:
        return MPPSDetailSerializer if self.action == "retrieve" else MPPSOutputSerializer


class RISMessageSerializer(serializers.ModelSerializer[OutboundMessage]):
    accession_number = serializers.CharField(source="order.accession_number")

    class Meta:
        model = OutboundMessage
        fields = [
            "id",
            "order",
            "accession_number",
            "sequence",
            "mpps",
            "order_status",
            "message_type",
            "control_id",
            "state",
            "attempts",
            "next_attempt_at",
            "last_error",
            "created_at",
            "sent_at",
        ]


class RISMessageDetailSerializer(RISMessageSerializer):
    class Meta(RISMessageSerializer.Meta):
        fields = [*RISMessageSerializer.Meta.fields, "raw"]


class RISMessageFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=OutboundState.choices)
    order_status = django_filters.CharFilter()
    accession_number = django_filters.CharFilter(field_name="order__accession_number")

    class Meta:
        model = OutboundMessage
        fields = ["state", "order_status", "accession_number"]


class RISMessageViewSet(viewsets.ReadOnlyModelViewSet[OutboundMessage]):
    """Order status messages for the RIS (the outbox). ``resend`` sends a failed one again
    (``mpps.resend_outboundmessage``)."""

    filterset_class = RISMessageFilter
    action_permissions = {"resend": ["mpps.resend_outboundmessage"]}

    def get_queryset(self) -> QuerySet[OutboundMessage]:
        return selectors.ris_message_list()

    def get_serializer_class(self) -> Any:
        return RISMessageSerializer if self.action == "list" else RISMessageDetailSerializer

    @extend_schema(request=None, responses=RISMessageDetailSerializer)
    @action(detail=True, methods=["post"])
    def resend(self, request: Request, pk: str | None = None) -> Response:
        message = self.get_object()
        if message.state != OutboundState.FAILED:
            raise ValidationError(
                {"detail": f"only failed messages are resent (this one is {message.state})"}
            )
        outbox.message_retry(message)
        message.refresh_from_db()
        return Response(RISMessageDetailSerializer(message).data)


_FIGURES = inline_serializer(
    "Figures",
    {
        "count": serializers.IntegerField(),
        "median": serializers.FloatField(allow_null=True),
        "p90": serializers.FloatField(allow_null=True),
    },
)


class TurnaroundView(APIView):
    """Order -> start and start -> complete (seconds: count, median, 90th percentile) per
    modality and day, for ``?since=``..``?until=`` (default: the last 7 days)."""

    permission_classes = [require("worklist.view_scheduledprocedurestep")]

    @extend_schema(
        parameters=[
            OpenApiParameter("since", str, description="YYYY-MM-DD"),
            OpenApiParameter("until", str, description="YYYY-MM-DD"),
            OpenApiParameter("modality", str),
        ],
        responses=inline_serializer(
            "Turnaround",
            {
                "since": serializers.DateField(),
                "until": serializers.DateField(),
                "rows": inline_serializer(
                    "TurnaroundRow",
                    {
                        "day": serializers.DateField(),
                        "modality": serializers.CharField(),
                        "order_to_start": _FIGURES,
                        "start_to_complete": _FIGURES,
                    },
                    many=True,
                ),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        until = _date(request, "until") or timezone.localdate()
        since = _date(request, "since") or until - dt.timedelta(days=6)
        if since > until:
            raise ValidationError({"since": "after until"})
        if (until - since).days > 366:
            raise ValidationError({"since": "at most a year at a time"})
        rows = selectors.turnaround(
            since=since, until=until, modality=request.query_params.get("modality") or None
        )
        return Response(
            {
                "since": since.isoformat(),
                "until": until.isoformat(),
                "rows": [{**asdict(row), "day": row.day.isoformat()} for row in rows],
            }
        )


def _date(request: Request, name: str) -> Any:
    text = request.query_params.get(name)
    if not text:
        return None
    try:
        return serializers.DateField().to_internal_value(text)
    except serializers.ValidationError as exc:
        raise ValidationError({name: exc.detail}) from exc


router = SimpleRouter()
router.register("mpps", MPPSViewSet, basename="mpps")
router.register("ris-messages", RISMessageViewSet, basename="ris-message")
urlpatterns = [
    *router.urls,
    path("figures/turnaround/", TurnaroundView.as_view(), name="turnaround"),
]
