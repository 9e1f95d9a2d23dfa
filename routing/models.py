"""Routing of completed studies: received instances, destinations, rules and jobs.

The database is the source of truth. A job row holds its instances (one item each, with
what the destination answered), its schedule (``next_attempt_at``) and, while a worker
sends it, a lease; Celery messages carry only the job id.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from routing.status import OPEN, ItemState, JobStatus, Trigger


class Destination(models.Model):
    """A DICOM node studies are forwarded to (PACS, AI node, teleradiology)."""

    name = models.CharField(max_length=64, unique=True)
    ae_title = models.CharField("AE title", max_length=16)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    use_tls = models.BooleanField("TLS", default=False)
    # Transfer syntax UIDs it accepts; empty: whatever it accepts of those proposed
    # (the stored one, then Explicit and Implicit VR Little Endian).
    transfer_syntaxes = models.JSONField(default=list, blank=True)
    max_associations = models.PositiveSmallIntegerField("maximum parallel associations", default=2)
    storage_commitment = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    # Paused: jobs are kept and scheduled but not sent until resumed.
    paused = models.BooleanField(default=False)
    description = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.ae_title}@{self.host}:{self.port})"


class RoutingRule(models.Model):
    """Where studies go. Every condition left empty matches everything; a study goes to
    the union of the destinations of every enabled rule it matches."""

    name = models.CharField(max_length=64, unique=True)
    enabled = models.BooleanField(default=True)
    modality = models.CharField(max_length=16, blank=True, default="")
    calling_ae_title = models.CharField(
        "calling (sending) AE title", max_length=16, blank=True, default=""
    )
    station_ae_title = models.CharField(
        "scheduled station AE title", max_length=16, blank=True, default=""
    )
    procedure_code = models.CharField(
        "requested procedure code", max_length=64, blank=True, default=""
    )
    body_part = models.CharField("body part examined", max_length=16, blank=True, default="")
    # DICOM wildcards: * any characters, ? one; case-insensitive.
    study_description = models.CharField(
        "study description pattern", max_length=64, blank=True, default=""
    )
    destinations = models.ManyToManyField(Destination, related_name="rules")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name


class StoredInstance(models.Model):
    """One SOP instance in the spool, as received (the file is its bytes, not decoded)."""

    sop_instance_uid = models.CharField("SOP Instance UID", max_length=64, unique=True)
    sop_class_uid = models.CharField("SOP Class UID", max_length=64)
    study_instance_uid = models.CharField(max_length=64)
    series_instance_uid = models.CharField(max_length=64)
    transfer_syntax_uid = models.CharField(max_length=64)
    modality = models.CharField(max_length=16, blank=True, default="")
    body_part = models.CharField(max_length=16, blank=True, default="")
    study_description = models.CharField(max_length=64, blank=True, default="")
    calling_ae_title = models.CharField(max_length=16, blank=True, default="")
    size = models.PositiveBigIntegerField()
    digest = models.CharField("SHA-256", max_length=64)
    # Relative to ROUTING_SPOOL_DIR; one file per content (its name holds the digest).
    path = models.CharField(max_length=255)
    received_at = models.DateTimeField()
    # False until the instance is in the jobs of its study (a replaced copy: again).
    routed = models.BooleanField(default=False)

    class Meta:
        verbose_name = "stored instance"
        indexes = [
            models.Index(fields=["study_instance_uid"], name="routing_instance_study_idx"),
            models.Index(
                fields=["routed", "study_instance_uid", "received_at"],
                name="routing_instance_pending_idx",
            ),
            models.Index(fields=["received_at"], name="routing_instance_received_idx"),
        ]

    def __str__(self) -> str:
        return self.sop_instance_uid


class CompletenessWait(models.Model):
    """A final MPPS waiting for the instances it lists to arrive in the spool."""

    mpps = models.OneToOneField(
        "mpps.PerformedProcedureStep", on_delete=models.CASCADE, related_name="routing_wait"
    )
    study_uids = models.JSONField(default=list)
    expected = models.JSONField("SOP instance UIDs listed", default=list)
    deadline = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)
    missing = models.JSONField(default=list, blank=True)

    class Meta:
        indexes = [models.Index(fields=["done_at", "deadline"], name="routing_wait_open_idx")]

    def __str__(self) -> str:
        return f"MPPS {self.mpps_id}: {len(self.expected)} instance(s)"


class RoutingJob(models.Model):
    """Forwarding (some of) one study's instances to one destination."""

    study_instance_uid = models.CharField(max_length=64)
    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="jobs")
    status = models.CharField(max_length=12, choices=JobStatus.choices, default=JobStatus.SCHEDULED)
    trigger = models.CharField(max_length=8, choices=Trigger.choices, default=Trigger.STABLE)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    # Instances the final MPPS listed that never arrived (the job is then WARNING).
    missing_uids = models.JSONField(default=list, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The worker sending it holds it until then (renewed while it sends).
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "routing job"
        constraints = [
            models.UniqueConstraint(
                fields=["study_instance_uid", "destination"],
                condition=Q(status__in=OPEN),
                name="routing_one_open_job",
            )
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="routing_job_due_idx"),
            models.Index(fields=["study_instance_uid"], name="routing_job_study_idx"),
        ]
        permissions = [
            ("retry_routingjob", "Can retry routing jobs"),
            ("cancel_routingjob", "Can cancel routing jobs"),
        ]

    def __str__(self) -> str:
        return f"{self.study_instance_uid} -> {self.destination_id} ({self.status})"


class JobItem(models.Model):
    """One instance of a job and what the destination answered for it."""

    job = models.ForeignKey(RoutingJob, on_delete=models.CASCADE, related_name="items")
    # Kept when the instance leaves the spool (retention), so the job still counts it.
    instance = models.ForeignKey(
        StoredInstance, null=True, on_delete=models.SET_NULL, related_name="job_items"
    )
    sop_instance_uid = models.CharField(max_length=64)
    state = models.CharField(max_length=10, choices=ItemState.choices, default=ItemState.PENDING)
    # The destination's C-STORE status, if it answered.
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=255, blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "sop_instance_uid"], name="routing_item_unique")
        ]
        indexes = [models.Index(fields=["job", "state"], name="routing_item_state_idx")]

    def __str__(self) -> str:
        return f"{self.sop_instance_uid} ({self.state})"


class CommitmentRequest(models.Model):
    """One Storage Commitment request (N-ACTION) sent for a job, kept so that its report
    (N-EVENT-REPORT) can be matched by Transaction UID whenever and on whichever
    association it comes: on the requesting association, or on a new one the destination
    opens to the listener (PS3.4 J.3.3)."""

    job = models.ForeignKey(RoutingJob, on_delete=models.CASCADE, related_name="commitments")
    transaction_uid = models.CharField("Transaction UID", max_length=64, unique=True)
    # The SOP Instance UIDs the request listed.
    sop_instance_uids = models.JSONField(default=list)
    requested_at = models.DateTimeField()
    reported_at = models.DateTimeField(null=True, blank=True)
    committed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "storage commitment request"

    def __str__(self) -> str:
        return f"{self.transaction_uid} (job {self.job_id})"
