"""REST API of the HL7 message log: read every inbound message, reprocess a failed one
(``hl7v2.reprocess_inboundmessage``)."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from hl7v2 import intake, selectors
from hl7v2.models import InboundMessage
from hl7v2.status import Outcome
from worklist.services import DomainError


def _text(data: bytes | memoryview | None) -> str:
    return bytes(data or b"").decode("utf-8", errors="backslashreplace")


class MessageSerializer(serializers.ModelSerializer[InboundMessage]):
    class Meta:
        model = InboundMessage
        fields = [
            "id",
            "received_at",
            "processed_at",
            "reprocessed_at",
            "peer",
            "sending_application",
            "sending_facility",
            "control_id",
            "message_type",
            "version",
            "outcome",
            "error",
        ]


class MessageDetailSerializer(MessageSerializer):
    raw = serializers.SerializerMethodField()
    ack = serializers.SerializerMethodField()

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "raw", "ack"]

    def get_raw(self, obj: InboundMessage) -> str:
        return _text(obj.raw)

    def get_ack(self, obj: InboundMessage) -> str:
        return _text(obj.ack)


class MessageFilter(django_filters.FilterSet):
    outcome = django_filters.MultipleChoiceFilter(choices=Outcome.choices)
    message_type = django_filters.CharFilter()
    control_id = django_filters.CharFilter()
    sending_application = django_filters.CharFilter()
    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = InboundMessage
        fields = ["outcome", "message_type", "control_id", "sending_application"]


class InboundMessageViewSet(viewsets.ReadOnlyModelViewSet[InboundMessage]):
    """Every HL7 message received, newest first, with its outcome (and, one at a time,
    the message and the ACK sent)."""

    filterset_class = MessageFilter
    action_permissions = {"reprocess": ["hl7v2.reprocess_inboundmessage"]}

    def get_queryset(self) -> QuerySet[InboundMessage]:
        if self.action == "list":
            return selectors.message_list()
        return selectors.message_list().defer(None)

    def get_serializer_class(self) -> Any:
        return MessageSerializer if self.action == "list" else MessageDetailSerializer

    @extend_schema(request=None, responses=MessageDetailSerializer)
    @action(detail=True, methods=["post"])
    def reprocess(self, request: Request, pk: str | None = None) -> Response:
        message = self.get_object()
        if message.outcome not in (Outcome.ERROR, Outcome.REJECTED):
            raise ValidationError({"detail": "only failed messages (AE, AR) are reprocessed"})
        try:
            intake.message_reprocess(message.pk)
        except DomainError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(MessageDetailSerializer(self.get_queryset().get(pk=message.pk)).data)


router = SimpleRouter()
router.register("hl7-messages", InboundMessageViewSet, basename="hl7-message")
urlpatterns = router.urls
