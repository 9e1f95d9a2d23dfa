"""REST API of the scheduling domain: patients, orders (with procedures and steps), steps,
the board's figures, and the MWL-RS resource (``worklist/mwlrs.py``).

Reads go through ``worklist.selectors``, writes through ``worklist.services`` (input
serializers validate, the service writes, output serializers render). Permissions: the
model permissions of the caller's role (``core.api.ModelPermissions``, reads included).
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db import transaction
from django.db.models import QuerySet
from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from core.api import require
from worklist import mwlrs, selectors, services
from worklist.models import Order, Patient, RequestedProcedure, ScheduledProcedureStep
from worklist.status import FINAL, Priority, SPSStatus


def domain_call(work: Any) -> Any:
    """Run a service; a DomainError becomes a 400 with its message."""
    try:
        return work()
    except services.DomainError as exc:
        raise ValidationError({"detail": str(exc)}) from exc


# --- output ---------------------------------------------------------------------------


class PatientOutputSerializer(serializers.ModelSerializer[Patient]):
    class Meta:
        model = Patient
        fields = [
            "id",
            "patient_id",
            "issuer",
            "name",
            "birth_date",
            "sex",
            "address",
            "medical_alerts",
            "allergies",
            "pregnancy_status",
            "weight_kg",
            "size_m",
            "other_ids",
            "merged_into",
            "created_at",
            "updated_at",
        ]


class StepOutputSerializer(serializers.ModelSerializer[ScheduledProcedureStep]):
    accession_number = serializers.CharField(source="procedure.order.accession_number")
    patient_id = serializers.CharField(source="procedure.order.patient.patient_id")
    study_instance_uid = serializers.CharField(source="procedure.study_instance_uid")
    station_ae_titles: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        many=True, read_only=True, slug_field="ae_title"
    )

    class Meta:
        model = ScheduledProcedureStep
        fields = [
            "id",
            "sps_id",
            "status",
            "modality",
            "start",
            "station_ae_titles",
            "station_name",
            "location",
            "description",
            "performing_physician",
            "accession_number",
            "patient_id",
            "study_instance_uid",
            "updated_at",
        ]


class NestedStepSerializer(serializers.ModelSerializer[ScheduledProcedureStep]):
    station_ae_titles: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        many=True, read_only=True, slug_field="ae_title"
    )

    class Meta:
        model = ScheduledProcedureStep
        fields = [
            "id",
            "sps_id",
            "status",
            "modality",
            "start",
            "station_ae_titles",
            "station_name",
            "location",
            "description",
            "performing_physician",
        ]


class ProcedureOutputSerializer(serializers.ModelSerializer[RequestedProcedure]):
    steps = NestedStepSerializer(many=True, read_only=True)

    class Meta:
        model = RequestedProcedure
        fields = [
            "id",
            "requested_procedure_id",
            "study_instance_uid",
            "description",
            "code_value",
            "code_scheme",
            "code_meaning",
            "priority",
            "steps",
        ]


class OrderOutputSerializer(serializers.ModelSerializer[Order]):
    patient = PatientOutputSerializer(read_only=True)
    procedures = ProcedureOutputSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "accession_number",
            "accession_issuer",
            "placer_order_number",
            "filler_order_number",
            "requesting_physician",
            "referring_physician",
            "priority",
            "reason",
            "comments",
            "patient",
            "procedures",
            "created_at",
            "updated_at",
        ]


# --- input ----------------------------------------------------------------------------


class _Input(serializers.Serializer[Any]):
    def present(self) -> dict[str, Any]:
        """The validated values the client sent (absent keys stay absent)."""
        return {k: v for k, v in self.validated_data.items() if k in self.initial_data}


class PatientInputSerializer(_Input):
    patient_id = serializers.CharField(max_length=64)
    issuer = serializers.CharField(max_length=64, required=False, allow_blank=True)
    name = serializers.CharField(max_length=324, required=False, allow_blank=True)
    birth_date = serializers.DateField(required=False, allow_null=True)
    sex = serializers.ChoiceField(["M", "F", "O", ""], required=False)


class PatientCorrectSerializer(_Input):
    name = serializers.CharField(max_length=324, required=False, allow_blank=True)
    birth_date = serializers.DateField(required=False, allow_null=True)
    sex = serializers.ChoiceField(["M", "F", "O", ""], required=False)
    address = serializers.CharField(max_length=255, required=False, allow_blank=True)
    medical_alerts = serializers.CharField(required=False, allow_blank=True)
    allergies = serializers.CharField(required=False, allow_blank=True)


class StepInputSerializer(serializers.Serializer[Any]):
    sps_id = serializers.CharField(max_length=16, required=False, allow_blank=True)
    modality = serializers.CharField(max_length=16)
    start = serializers.DateTimeField()
    station_ae_title = serializers.CharField(max_length=16, required=False, allow_blank=True)
    station_name = serializers.CharField(max_length=16, required=False, allow_blank=True)
    location = serializers.CharField(max_length=16, required=False, allow_blank=True)
    description = serializers.CharField(max_length=64, required=False, allow_blank=True)
    performing_physician = serializers.CharField(max_length=324, required=False, allow_blank=True)


class ProcedureInputSerializer(serializers.Serializer[Any]):
    requested_procedure_id = serializers.CharField(max_length=16, required=False, allow_blank=True)
    study_instance_uid = serializers.CharField(max_length=64, required=False, allow_blank=True)
    description = serializers.CharField(max_length=64, required=False, allow_blank=True)
    code_value = serializers.CharField(max_length=64, required=False, allow_blank=True)
    code_scheme = serializers.CharField(max_length=64, required=False, allow_blank=True)
    code_meaning = serializers.CharField(max_length=64, required=False, allow_blank=True)
    steps = StepInputSerializer(many=True, required=False)


class OrderInputSerializer(_Input):
    patient = PatientInputSerializer()
    accession_number = serializers.CharField(max_length=16, required=False, allow_blank=True)
    placer_order_number = serializers.CharField(max_length=64, required=False, allow_blank=True)
    filler_order_number = serializers.CharField(max_length=64, required=False, allow_blank=True)
    requesting_physician = serializers.CharField(max_length=324, required=False, allow_blank=True)
    referring_physician = serializers.CharField(max_length=324, required=False, allow_blank=True)
    priority = serializers.ChoiceField(Priority.choices, required=False, allow_blank=True)
    reason = serializers.CharField(max_length=255, required=False, allow_blank=True)
    comments = serializers.CharField(required=False, allow_blank=True)
    procedures = ProcedureInputSerializer(many=True)


class OrderUpdateSerializer(OrderInputSerializer):
    patient = PatientInputSerializer(required=False)
    procedures = ProcedureInputSerializer(many=True, required=False)


class StatusInputSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(SPSStatus.choices)


class RescheduleInputSerializer(serializers.Serializer[Any]):
    start = serializers.DateTimeField()
    station_ae_title = serializers.CharField(
        max_length=16, required=False, allow_blank=True, allow_null=True, default=None
    )


def _order_maps(data: dict[str, Any], order: Order | None) -> dict[str, Any]:
    patient = dict(data.pop("patient", None) or {})
    if order is not None and not patient:
        patient = {"patient_id": order.patient.patient_id, "issuer": order.patient.issuer}
    procedures = [dict(p) for p in data.pop("procedures", None) or []]
    for procedure in procedures:
        procedure["steps"] = [dict(s) for s in procedure.get("steps", [])]
    if order is not None:
        data["accession_number"] = order.accession_number
        data["accession_issuer"] = order.accession_issuer
    return {"patient": patient, "order": data, "procedures": procedures}


# --- filters ----------------------------------------------------------------------------


class PatientFilter(django_filters.FilterSet):
    patient_id = django_filters.CharFilter()
    issuer = django_filters.CharFilter()
    name = django_filters.CharFilter(field_name="name_key", method="filter_name")
    birth_date = django_filters.DateFilter()

    class Meta:
        model = Patient
        fields = ["patient_id", "issuer", "name", "birth_date"]

    def filter_name(self, queryset: QuerySet[Patient], name: str, value: str) -> QuerySet[Patient]:
        return queryset.filter(name_key__contains=value.upper())


class OrderFilter(django_filters.FilterSet):
    accession_number = django_filters.CharFilter()
    patient_id = django_filters.CharFilter(field_name="patient__patient_id")
    placer_order_number = django_filters.CharFilter()
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = Order
        fields = ["accession_number", "patient_id", "placer_order_number", "created_after"]


class StepFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=SPSStatus.choices)
    modality = django_filters.CharFilter()
    station_ae_title = django_filters.CharFilter(field_name="station_ae_titles__ae_title")
    station_name = django_filters.CharFilter()
    date = django_filters.DateFilter(field_name="start_date")
    date_from = django_filters.DateFilter(field_name="start_date", lookup_expr="gte")
    date_to = django_filters.DateFilter(field_name="start_date", lookup_expr="lte")
    accession_number = django_filters.CharFilter(field_name="procedure__order__accession_number")
    patient_id = django_filters.CharFilter(field_name="procedure__order__patient__patient_id")
    study_instance_uid = django_filters.CharFilter(field_name="procedure__study_instance_uid")

    class Meta:
        model = ScheduledProcedureStep
        fields = [
            "status",
            "modality",
            "station_ae_title",
            "station_name",
            "date",
            "date_from",
            "date_to",
            "accession_number",
            "patient_id",
            "study_instance_uid",
        ]


# --- views ------------------------------------------------------------------------------


class PatientViewSet(mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet[Patient]):
    """Patients. PATCH corrects demographics (``patient_correct``; not the identifier)."""

    serializer_class = PatientOutputSerializer
    filterset_class = PatientFilter
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[Patient]:
        return selectors.patient_list()

    @extend_schema(request=PatientCorrectSerializer, responses=PatientOutputSerializer)
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        patient = self.get_object()
        data = PatientCorrectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        patient = domain_call(
            lambda: services.patient_correct(
                actor=request.user, patient_pk=patient.pk, fields=data.present()
            )
        )
        return Response(PatientOutputSerializer(patient).data)


class OrderViewSet(
    mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet[Order]
):
    """Orders with their procedures and steps. POST enters an order (``order_enter``:
    missing accession number, procedure IDs, SPS IDs and Study Instance UIDs are
    generated); PATCH updates it or adds procedures and steps; ``cancel`` cancels every
    step that is not final."""

    serializer_class = OrderOutputSerializer
    filterset_class = OrderFilter
    http_method_names = ["get", "post", "patch", "head", "options"]
    action_permissions = {"cancel": ["worklist.change_scheduledprocedurestep"]}

    def get_queryset(self) -> QuerySet[Order]:
        return selectors.order_list()

    def _render(self, order_pk: int, code: int = status.HTTP_200_OK) -> Response:
        order = selectors.order_list().get(pk=order_pk)
        return Response(OrderOutputSerializer(order).data, status=code)

    @extend_schema(request=OrderInputSerializer, responses={201: OrderOutputSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = OrderInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        maps = _order_maps(dict(data.validated_data), None)
        order = domain_call(lambda: services.order_enter(actor=request.user, **maps))
        return self._render(order.pk, status.HTTP_201_CREATED)

    @extend_schema(request=OrderUpdateSerializer, responses=OrderOutputSerializer)
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        order = self.get_object()
        data = OrderUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        maps = _order_maps(data.present(), order)
        domain_call(lambda: services.order_enter(actor=request.user, **maps))
        return self._render(order.pk)

    @extend_schema(request=None, responses=OrderOutputSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        order = self.get_object()
        steps = ScheduledProcedureStep.objects.filter(procedure__order=order).exclude(
            status__in=FINAL
        )
        with transaction.atomic():
            for step_id in steps.values_list("pk", flat=True):
                try:
                    services.step_cancel(actor=request.user, step_id=step_id)
                except services.DomainError:
                    # Completed or discontinued meanwhile: it stays as it is.
                    continue
        return self._render(order.pk)


class StepViewSet(viewsets.ReadOnlyModelViewSet[ScheduledProcedureStep]):
    """Scheduled procedure steps, newest start first; ``status`` and ``reschedule``
    change them through the services."""

    serializer_class = StepOutputSerializer
    filterset_class = StepFilter
    action_permissions = {
        "change_status": ["worklist.change_scheduledprocedurestep"],
        "reschedule": ["worklist.change_scheduledprocedurestep"],
    }

    def get_queryset(self) -> QuerySet[ScheduledProcedureStep]:
        return selectors.step_list().distinct()

    def _render(self, step_pk: int) -> Response:
        return Response(StepOutputSerializer(selectors.step_list().get(pk=step_pk)).data)

    @extend_schema(request=StatusInputSerializer, responses=StepOutputSerializer)
    @action(detail=True, methods=["post"], url_path="status")
    def change_status(self, request: Request, pk: str | None = None) -> Response:
        step = self.get_object()
        data = StatusInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        new_status = data.validated_data["status"]
        domain_call(
            lambda: services.step_change_status(
                actor=request.user, step_id=step.pk, new_status=new_status
            )
        )
        return self._render(step.pk)

    @extend_schema(request=RescheduleInputSerializer, responses=StepOutputSerializer)
    @action(detail=True, methods=["post"])
    def reschedule(self, request: Request, pk: str | None = None) -> Response:
        step = self.get_object()
        data = RescheduleInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        domain_call(
            lambda: services.step_reschedule(
                actor=request.user,
                step_id=step.pk,
                start=data.validated_data["start"],
                station_ae_title=data.validated_data["station_ae_title"],
            )
        )
        return self._render(step.pk)


class BoardFiguresView(APIView):
    """Today's (or ``?date=``'s) steps: how many per modality and status."""

    permission_classes = [require("worklist.view_scheduledprocedurestep")]

    @extend_schema(
        parameters=[OpenApiParameter("date", str, description="YYYY-MM-DD; default today")],
        responses=inline_serializer(
            "BoardFigures",
            {
                "date": serializers.DateField(),
                "counts": inline_serializer(
                    "BoardCount",
                    {
                        "modality": serializers.CharField(),
                        "status": serializers.CharField(),
                        "count": serializers.IntegerField(),
                    },
                    many=True,
                ),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        day = _date_param(request, "date") or timezone.localdate()
        return Response({"date": day.isoformat(), "counts": selectors.board_counts(day)})


def _date_param(request: Request, name: str) -> Any:
    text = request.query_params.get(name)
    if not text:
        return None
    field = serializers.DateField()
    try:
        return field.to_internal_value(text)
    except serializers.ValidationError as exc:
        raise ValidationError({name: exc.detail}) from exc


router = SimpleRouter()
router.register("patients", PatientViewSet, basename="patient")
router.register("orders", OrderViewSet, basename="order")
router.register("steps", StepViewSet, basename="step")
urlpatterns = [
    *router.urls,
    path("figures/board/", BoardFiguresView.as_view(), name="board-figures"),
    *mwlrs.urlpatterns,
]
