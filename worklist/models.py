"""The DICOM Modality Worklist information model (PS3.4 K.6).

Patient 1-n Order (Imaging Service Request) 1-n Requested Procedure 1-n Scheduled
Procedure Step n-n Station AE Title.

Person names are stored twice: as received (DICOM PN, ``FAMILY^GIVEN^...``) and
upper-cased in a ``*_key`` column, so that exact and case-insensitive matching both use
an index. Every attribute a worklist query can filter on has an index.
"""

from __future__ import annotations

from django.db import models

from worklist.status import DeviceRole, Priority, SPSStatus


def name_key(name: str) -> str:
    """The case-insensitive matching key of a person name."""
    return name.upper()


class Patient(models.Model):
    patient_id = models.CharField("Patient ID", max_length=64)
    issuer = models.CharField("Issuer of Patient ID", max_length=64, blank=True, default="")
    name = models.CharField("Patient's Name", max_length=324, blank=True, default="")
    name_key = models.CharField(max_length=324, blank=True, default="", editable=False)
    birth_date = models.DateField(null=True, blank=True)
    sex = models.CharField(max_length=1, blank=True, default="")
    address = models.CharField(max_length=255, blank=True, default="")
    medical_alerts = models.TextField(blank=True, default="")
    allergies = models.TextField(blank=True, default="")
    # Pregnancy Status (0010,21C0): 1 not pregnant, 2 possibly, 3 definitely, 4 unknown.
    pregnancy_status = models.PositiveSmallIntegerField(null=True, blank=True)
    weight_kg = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    size_m = models.DecimalField(max_digits=4, decimal_places=2, null=True, blank=True)
    # [{"patient_id": ..., "issuer": ...}] from PID-3 repetitions after the first.
    other_ids = models.JSONField(default=list, blank=True)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_patients"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["patient_id", "issuer"], name="patient_id_issuer_unique"
            )
        ]
        indexes = [
            models.Index(fields=["patient_id"], name="patient_id_idx"),
            models.Index(fields=["name"], name="patient_name_idx"),
            models.Index(fields=["name_key"], name="patient_name_key_idx"),
            models.Index(fields=["birth_date"], name="patient_birth_date_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.patient_id}^^^{self.issuer}" if self.issuer else self.patient_id

    def save(self, *args: object, **kwargs: object) -> None:
        self.name_key = name_key(self.name)
        super().save(*args, **kwargs)  # type: ignore[arg-type]


class Order(models.Model):
    """Imaging Service Request: one accession number."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="orders")
    accession_number = models.CharField(max_length=16)
    accession_issuer = models.CharField(max_length=64, blank=True, default="")
    placer_order_number = models.CharField(max_length=64, blank=True, default="")
    filler_order_number = models.CharField(max_length=64, blank=True, default="")
    requesting_physician = models.CharField(max_length=324, blank=True, default="")
    referring_physician = models.CharField(max_length=324, blank=True, default="")
    referring_physician_key = models.CharField(
        max_length=324, blank=True, default="", editable=False
    )
    priority = models.CharField(max_length=8, choices=Priority.choices, blank=True, default="")
    reason = models.CharField(max_length=255, blank=True, default="")
    admission_id = models.CharField(max_length=64, blank=True, default="")
    patient_state = models.CharField(max_length=64, blank=True, default="")
    transport_arrangements = models.CharField(max_length=64, blank=True, default="")
    comments = models.TextField(blank=True, default="")
    # Sender of the order (MSH-3/MSH-4), for status messages back to it.
    placer_application = models.CharField(max_length=180, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["accession_number", "accession_issuer"], name="accession_issuer_unique"
            )
        ]
        indexes = [
            models.Index(fields=["accession_number"], name="order_accession_idx"),
            models.Index(fields=["referring_physician"], name="order_referring_idx"),
            models.Index(fields=["referring_physician_key"], name="order_referring_key_idx"),
            models.Index(fields=["placer_order_number"], name="order_placer_idx"),
            models.Index(fields=["filler_order_number"], name="order_filler_idx"),
        ]

    def __str__(self) -> str:
        return self.accession_number

    def save(self, *args: object, **kwargs: object) -> None:
        self.referring_physician_key = name_key(self.referring_physician)
        super().save(*args, **kwargs)  # type: ignore[arg-type]


class RequestedProcedure(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="procedures")
    requested_procedure_id = models.CharField(max_length=16)
    study_instance_uid = models.CharField(max_length=64, unique=True)
    description = models.CharField(max_length=64, blank=True, default="")
    code_value = models.CharField(max_length=64, blank=True, default="")
    code_scheme = models.CharField(max_length=64, blank=True, default="")
    code_meaning = models.CharField(max_length=64, blank=True, default="")
    priority = models.CharField(max_length=8, choices=Priority.choices, blank=True, default="")
    comments = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["order", "requested_procedure_id"], name="procedure_id_per_order_unique"
            )
        ]
        indexes = [
            models.Index(fields=["requested_procedure_id"], name="procedure_id_idx"),
            models.Index(fields=["code_value"], name="procedure_code_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.order.accession_number}/{self.requested_procedure_id}"


class ScheduledProcedureStep(models.Model):
    procedure = models.ForeignKey(
        RequestedProcedure, on_delete=models.CASCADE, related_name="steps"
    )
    sps_id = models.CharField("Scheduled Procedure Step ID", max_length=16)
    modality = models.CharField(max_length=16, blank=True, default="")
    station_name = models.CharField(max_length=16, blank=True, default="")
    location = models.CharField(max_length=16, blank=True, default="")
    # The instant, timezone-aware; plus its local date and time of day (TIME_ZONE) for
    # DICOM DA / TM matching, which is in local time. Kept in step by the services.
    start = models.DateTimeField(null=True, blank=True)
    start_date = models.DateField(null=True, blank=True, editable=False)
    start_time = models.TimeField(null=True, blank=True, editable=False)
    performing_physician = models.CharField(max_length=324, blank=True, default="")
    performing_physician_key = models.CharField(
        max_length=324, blank=True, default="", editable=False
    )
    description = models.CharField(max_length=64, blank=True, default="")
    # Requested Contrast Agent (0032,1070) and Pre-Medication (0040,0012): worklist
    # return keys that file-based worklists carry and scanners display.
    contrast_agent = models.CharField(max_length=64, blank=True, default="")
    premedication = models.CharField(max_length=64, blank=True, default="")
    # [{"value": ..., "scheme": ..., "meaning": ...}]
    protocol_codes = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=12, choices=SPSStatus.choices, default=SPSStatus.SCHEDULED)
    comments = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["procedure", "sps_id"], name="sps_id_per_procedure")
        ]
        indexes = [
            models.Index(fields=["status", "start"], name="sps_status_start_idx"),
            models.Index(fields=["start"], name="sps_start_idx"),
            models.Index(fields=["start_date", "start_time"], name="sps_start_date_time_idx"),
            models.Index(fields=["start_time"], name="sps_start_time_idx"),
            models.Index(fields=["modality", "start"], name="sps_modality_start_idx"),
            # The scanner's query: its modality, today (DA / TM match on local date, time).
            models.Index(
                fields=["modality", "start_date", "start_time"], name="sps_modality_date_time_idx"
            ),
            models.Index(fields=["sps_id"], name="sps_id_idx"),
            models.Index(fields=["station_name"], name="sps_station_name_idx"),
            models.Index(fields=["location"], name="sps_location_idx"),
            models.Index(fields=["performing_physician"], name="sps_performing_idx"),
            models.Index(fields=["performing_physician_key"], name="sps_performing_key_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.sps_id} ({self.modality}, {self.status})"

    def save(self, *args: object, **kwargs: object) -> None:
        from django.utils import timezone

        self.performing_physician_key = name_key(self.performing_physician)
        if self.start is not None:
            local = timezone.localtime(self.start)
            self.start_date = local.date()
            self.start_time = local.time().replace(tzinfo=None)
        else:
            self.start_date = None
            self.start_time = None
        super().save(*args, **kwargs)  # type: ignore[arg-type]


class StationAETitle(models.Model):
    """One value of the multi-valued Scheduled Station AE Title (0040,0001)."""

    step = models.ForeignKey(
        ScheduledProcedureStep, on_delete=models.CASCADE, related_name="station_ae_titles"
    )
    ae_title = models.CharField(max_length=16)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["step", "ae_title"], name="station_ae_per_step")
        ]
        indexes = [models.Index(fields=["ae_title", "step"], name="station_ae_idx")]

    def __str__(self) -> str:
        return self.ae_title


class Device(models.Model):
    """A known DICOM node: a modality that queries us, or a routing destination."""

    ae_title = models.CharField("AE title", max_length=16, unique=True)
    role = models.CharField(max_length=12, choices=DeviceRole.choices, default=DeviceRole.MODALITY)
    host = models.CharField(max_length=255, blank=True, default="")
    port = models.PositiveIntegerField(null=True, blank=True)
    station_name = models.CharField(max_length=16, blank=True, default="")
    location = models.CharField(max_length=16, blank=True, default="")
    modality = models.CharField(max_length=16, blank=True, default="")
    description = models.CharField(max_length=255, blank=True, default="")
    use_tls = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["modality", "location"], name="device_modality_location_idx")
        ]

    def __str__(self) -> str:
        return f"{self.ae_title} ({self.role})"
