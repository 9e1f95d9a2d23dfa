from __future__ import annotations

from django.contrib import admin

from worklist.models import (
    Device,
    Order,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
    StationAETitle,
)


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin[Patient]):
    list_display = ["patient_id", "issuer", "name", "birth_date", "sex", "merged_into"]
    search_fields = ["patient_id", "name_key"]


class ProcedureInline(admin.TabularInline[RequestedProcedure, Order]):
    model = RequestedProcedure
    extra = 0


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin[Order]):
    list_display = ["accession_number", "patient", "priority", "created_at"]
    search_fields = ["accession_number", "placer_order_number", "filler_order_number"]
    raw_id_fields = ["patient"]
    inlines = [ProcedureInline]


class StationInline(admin.TabularInline[StationAETitle, ScheduledProcedureStep]):
    model = StationAETitle
    extra = 0


@admin.register(ScheduledProcedureStep)
class StepAdmin(admin.ModelAdmin[ScheduledProcedureStep]):
    list_display = ["sps_id", "modality", "start", "status", "station_name", "procedure"]
    list_filter = ["status", "modality"]
    search_fields = ["sps_id", "procedure__order__accession_number"]
    raw_id_fields = ["procedure"]
    inlines = [StationInline]


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin[Device]):
    list_display = ["ae_title", "role", "modality", "host", "port", "station_name", "location"]
    list_filter = ["role", "modality", "is_active"]
