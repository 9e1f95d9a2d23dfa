"""Modality Performed Procedure Step instances, what they performed, and what the RIS
was told about them.

The whole received dataset is kept as DICOM JSON (``dataset``) beside the columns the
broker filters and links on, so nothing a modality sent is lost.
"""

from __future__ import annotations

from django.db import models

from mpps.status import AttemptOutcome, MPPSStatus, OrderStatus, OutboundState


class PerformedProcedureStep(models.Model):
    sop_instance_uid = models.CharField("SOP Instance UID", max_length=64, unique=True)
    status = models.CharField(
        max_length=12, choices=MPPSStatus.choices, default=MPPSStatus.IN_PROGRESS
    )
    # Incremented on every update: N-SETs on one instance are applied one after another.
    version = models.PositiveIntegerField(default=1)
    pps_id = models.CharField("Performed Procedure Step ID", max_length=16, blank=True, default="")
    station_ae_title = models.CharField(max_length=16, blank=True, default="")
    station_name = models.CharField(max_length=16, blank=True, default="")
    location = models.CharField(max_length=16, blank=True, default="")
    modality = models.CharField(max_length=16, blank=True, default="")
    description = models.CharField(max_length=64, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    patient_id = models.CharField(max_length=64, blank=True, default="")
    patient_name = models.CharField(max_length=324, blank=True, default="")
    study_id = models.CharField(max_length=16, blank=True, default="")
    # Calling AE title of the association that created it.
    calling_ae_title = models.CharField(max_length=16, blank=True, default="")
    dataset = models.JSONField("received attributes (DICOM JSON)", default=dict)
    steps = models.ManyToManyField(
        "worklist.ScheduledProcedureStep",
        through="StepLink",
        related_name="performed_steps",
        blank=True,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "performed procedure step"
        indexes = [
            models.Index(fields=["status", "created_at"], name="mpps_status_created_idx"),
            models.Index(fields=["patient_id"], name="mpps_patient_id_idx"),
            models.Index(fields=["started_at"], name="mpps_started_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.pps_id or self.sop_instance_uid} ({self.status})"


class ScheduledReference(models.Model):
    """One item of the Scheduled Step Attributes Sequence (0040,0270), as received."""

    mpps = models.ForeignKey(
        PerformedProcedureStep, on_delete=models.CASCADE, related_name="scheduled_references"
    )
    study_instance_uid = models.CharField(max_length=64)
    accession_number = models.CharField(max_length=16, blank=True, default="")
    requested_procedure_id = models.CharField(max_length=16, blank=True, default="")
    sps_id = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["study_instance_uid"], name="mpps_ref_study_idx"),
            models.Index(fields=["accession_number"], name="mpps_ref_accession_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.accession_number}/{self.requested_procedure_id}/{self.sps_id}"


class StepLink(models.Model):
    """An MPPS performed (part of) a scheduled step. An MPPS without links is unscheduled."""

    mpps = models.ForeignKey(PerformedProcedureStep, on_delete=models.CASCADE, related_name="links")
    step = models.ForeignKey(
        "worklist.ScheduledProcedureStep", on_delete=models.CASCADE, related_name="mpps_links"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["mpps", "step"], name="mpps_step_link_unique")
        ]

    def __str__(self) -> str:
        return f"{self.mpps_id} -> {self.step_id}"


class PerformedSeries(models.Model):
    """An item of the Performed Series Sequence (0040,0340)."""

    mpps = models.ForeignKey(
        PerformedProcedureStep, on_delete=models.CASCADE, related_name="series"
    )
    series_instance_uid = models.CharField(max_length=64)
    series_description = models.CharField(max_length=64, blank=True, default="")
    protocol_name = models.CharField(max_length=64, blank=True, default="")
    retrieve_ae_title = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        verbose_name_plural = "performed series"
        constraints = [
            models.UniqueConstraint(
                fields=["mpps", "series_instance_uid"], name="mpps_series_unique"
            )
        ]
        indexes = [models.Index(fields=["series_instance_uid"], name="mpps_series_uid_idx")]

    def __str__(self) -> str:
        return self.series_instance_uid


class PerformedInstance(models.Model):
    """A Referenced Image (or Non-Image Composite) SOP Instance of a performed series."""

    series = models.ForeignKey(PerformedSeries, on_delete=models.CASCADE, related_name="instances")
    sop_class_uid = models.CharField(max_length=64)
    sop_instance_uid = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["series", "sop_instance_uid"], name="mpps_instance_unique"
            )
        ]
        indexes = [models.Index(fields=["sop_instance_uid"], name="mpps_instance_uid_idx")]

    def __str__(self) -> str:
        return self.sop_instance_uid


class OutboundMessage(models.Model):
    """An order status message for the RIS: an outbox, one ordered queue per order.

    ``sequence`` numbers the messages of one order; the sender only ever sends the
    oldest unsent message of an order, so CM can never overtake IP.
    """

    order = models.ForeignKey(
        "worklist.Order", on_delete=models.CASCADE, related_name="ris_messages"
    )
    sequence = models.PositiveIntegerField()
    mpps = models.ForeignKey(
        PerformedProcedureStep,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="ris_messages",
    )
    order_status = models.CharField(max_length=2, choices=OrderStatus.choices)
    message_type = models.CharField(max_length=16)
    control_id = models.CharField("MSH-10", max_length=20, blank=True, default="")
    raw = models.TextField(blank=True, default="")
    state = models.CharField(
        max_length=8, choices=OutboundState.choices, default=OutboundState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A worker sending this message holds it until then; another one waits.
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("resend_outboundmessage", "Can send a RIS status message again")]
        constraints = [
            models.UniqueConstraint(fields=["order", "sequence"], name="ris_message_sequence")
        ]
        indexes = [
            models.Index(fields=["state", "order", "sequence"], name="ris_message_state_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.order_status} #{self.sequence} ({self.state})"


class OutboundAttempt(models.Model):
    """One try to deliver an :class:`OutboundMessage`, with the RIS's answer."""

    message = models.ForeignKey(OutboundMessage, on_delete=models.CASCADE, related_name="tries")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    outcome = models.CharField(max_length=8, choices=AttemptOutcome.choices)
    ack = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["message", "started_at"], name="ris_attempt_message_idx")]

    def __str__(self) -> str:
        return f"{self.outcome} at {self.started_at:%Y-%m-%d %H:%M:%S}"
