"""REST API for integrators (token authentication; see README)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, viewsets
from rest_framework.routers import DefaultRouter

from worklist import selectors
from worklist.models import ScheduledProcedureStep


class StepOutputSerializer(serializers.ModelSerializer):
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
            "accession_number",
            "patient_id",
            "study_instance_uid",
        ]


class StepViewSet(viewsets.ReadOnlyModelViewSet):
    """Scheduled procedure steps, newest start first."""

    serializer_class = StepOutputSerializer

    def get_queryset(self):
        return selectors.step_list()


router = DefaultRouter()
router.register("steps", StepViewSet, basename="step")
urlpatterns = router.urls
