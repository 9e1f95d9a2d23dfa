"""REST API of routing: destinations, rules and jobs (token or session auth; see README).

Permissions are the API's model permissions (``core.api.ModelPermissions``: reads need
``view_``), so the site's roles apply, plus ``routing.retry_routingjob`` /
``routing.cancel_routingjob`` for the job actions and ``routing.change_destination`` for
C-ECHO.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from routing import selectors, services
from routing.models import Destination, RoutingJob, RoutingRule
from routing.rules import CONDITIONS
from routing.status import JobStatus

_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class DestinationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Destination
        fields = [
            "id",
            "name",
            "ae_title",
            "host",
            "port",
            "use_tls",
            "transfer_syntaxes",
            "max_associations",
            "storage_commitment",
            "enabled",
            "paused",
            "description",
        ]

    def validate_ae_title(self, value: str) -> str:
        if not _AE_TITLE.match(value) or not value.strip():
            raise serializers.ValidationError(
                "1 to 16 printable ASCII characters without a backslash"
            )
        return value.strip()

    def validate_port(self, value: int) -> int:
        if not 1 <= value <= 65535:
            raise serializers.ValidationError("between 1 and 65535")
        return value

    def validate_transfer_syntaxes(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(
            isinstance(v, str) and _UID.match(v) for v in value
        ):
            raise serializers.ValidationError("a list of transfer syntax UIDs")
        return value

    def validate_max_associations(self, value: int) -> int:
        if not 1 <= value <= 32:
            raise serializers.ValidationError("between 1 and 32")
        return value


class EchoSerializer(serializers.Serializer):
    status = serializers.IntegerField(allow_null=True, help_text="C-ECHO status (0: success)")
    error = serializers.CharField(required=False, help_text="Why there was no answer")


class DestinationViewSet(viewsets.ModelViewSet):
    serializer_class = DestinationSerializer
    queryset = Destination.objects.order_by("name")
    action_permissions = {"echo": ["routing.change_destination"]}

    @extend_schema(request=None, responses={200: EchoSerializer, 502: EchoSerializer})
    @action(detail=True, methods=["post"])
    def echo(self, request: Request, pk: str | None = None) -> Response:
        code, error = services.destination_echo(self.get_object())
        if code is None:
            return Response({"status": None, "error": error}, status=status.HTTP_502_BAD_GATEWAY)
        return Response({"status": code})


class RuleSerializer(serializers.ModelSerializer):
    destinations = serializers.PrimaryKeyRelatedField(
        many=True, queryset=Destination.objects.all(), allow_empty=False
    )

    class Meta:
        model = RoutingRule
        fields = ["id", "name", "enabled", *CONDITIONS, "destinations"]
        extra_kwargs = {
            name: {"required": False, "allow_blank": True, "allow_null": True}
            for name in CONDITIONS
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Absent, null or empty: the condition matches everything.
        for name in CONDITIONS:
            if name in attrs and attrs[name] is None:
                attrs[name] = ""
        return attrs


class RuleViewSet(viewsets.ModelViewSet):
    serializer_class = RuleSerializer
    queryset = selectors.rule_list()

    def perform_create(self, serializer: serializers.BaseSerializer[Any]) -> None:
        with transaction.atomic():
            serializer.save()

    def perform_update(self, serializer: serializers.BaseSerializer[Any]) -> None:
        with transaction.atomic():
            serializer.save()


class JobSerializer(serializers.ModelSerializer):
    destination_name = serializers.CharField(source="destination.name", read_only=True)
    instances = serializers.IntegerField(source="instance_count", read_only=True)
    instances_sent = serializers.IntegerField(source="sent_count", read_only=True)

    class Meta:
        model = RoutingJob
        fields = [
            "id",
            "study_instance_uid",
            "destination",
            "destination_name",
            "status",
            "trigger",
            "attempts",
            "last_error",
            "instances",
            "instances_sent",
            "missing_uids",
            "next_attempt_at",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("study_instance_uid", str, description="Study Instance UID"),
            OpenApiParameter("status", str, enum=list(JobStatus.values)),
            OpenApiParameter("destination", int, description="Destination id"),
        ]
    )
)
class JobViewSet(viewsets.ReadOnlyModelViewSet):
    """Routing jobs, newest first; filters ``study_instance_uid``, ``status``,
    ``destination`` (id)."""

    serializer_class = JobSerializer
    queryset = RoutingJob.objects.none()  # for the permissions; the rows: get_queryset
    action_permissions = {
        "retry": ["routing.retry_routingjob"],
        "cancel": ["routing.cancel_routingjob"],
    }

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular reading the schema
            return selectors.job_list()
        params = self.request.query_params
        destination = params.get("destination", "")
        status_name = params.get("status", "")
        if status_name and status_name not in JobStatus.values:
            raise serializers.ValidationError({"status": f"one of {', '.join(JobStatus.values)}"})
        if destination and not destination.isdigit():
            raise serializers.ValidationError({"destination": "a destination id"})
        return selectors.job_list(
            study_instance_uid=params.get("study_instance_uid", ""),
            status=status_name,
            destination_id=int(destination) if destination else None,
        )

    def _after(self, done: bool, pk: int, verb: str) -> Response:
        job = selectors.job_list().get(pk=pk)
        body = JobSerializer(job).data
        if not done:
            return Response(
                {"detail": f"job {pk} cannot be {verb} in status {job.status}", "job": body},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(body)

    @extend_schema(request=None, responses={200: JobSerializer, 409: JobSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        return self._after(services.job_retry(job.pk), job.pk, "retried")

    @extend_schema(request=None, responses={200: JobSerializer, 409: JobSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        return self._after(services.job_cancel(job.pk), job.pk, "canceled")


router = SimpleRouter()
router.register("destinations", DestinationViewSet, basename="destination")
router.register("routing-rules", RuleViewSet, basename="routing-rule")
router.register("routing-jobs", JobViewSet, basename="routing-job")
urlpatterns = router.urls
