"""Named states of routing, and the DIMSE status codes of the Storage SCP."""

from __future__ import annotations

from django.db import models


class JobStatus(models.TextChoices):
    """A routing job's status (the task states of dcm4chee-arc's export queue)."""

    SCHEDULED = "SCHEDULED", "Scheduled"
    IN_PROCESS = "IN_PROCESS", "In process"
    COMPLETED = "COMPLETED", "Completed"
    WARNING = "WARNING", "Completed with warnings"
    FAILED = "FAILED", "Failed"
    CANCELED = "CANCELED", "Canceled"


# At most one job per (study, destination) is in one of these.
OPEN = (JobStatus.SCHEDULED, JobStatus.IN_PROCESS)
FINISHED = (JobStatus.COMPLETED, JobStatus.WARNING, JobStatus.FAILED, JobStatus.CANCELED)


class ItemState(models.TextChoices):
    """What became of one instance of a job."""

    PENDING = "PENDING", "Not sent yet"
    SENT = "SENT", "Stored by the destination"
    FAILED = "FAILED", "Refused or not sent"
    COMMITTED = "COMMITTED", "Stored and committed by the destination"


# Items the destination already has: never sent again.
DELIVERED = (ItemState.SENT, ItemState.COMMITTED)


class Trigger(models.TextChoices):
    MPPS = "MPPS", "MPPS completed, every listed instance received"
    TIMEOUT = "TIMEOUT", "MPPS completed, some listed instances never arrived"
    STABLE = "STABLE", "No new instance for ROUTING_STABLE_SECONDS"
    MANUAL = "MANUAL", "Routed by an operator"


# C-STORE response statuses (PS3.4 B.2.3).
STORE_SUCCESS = 0x0000
STORE_OUT_OF_RESOURCES = 0xA700
STORE_DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
STORE_CANNOT_UNDERSTAND = 0xC000
# Warnings: stored, with coercion or discarded elements (B.2.3); still a success.
STORE_WARNINGS = (0xB000, 0xB006, 0xB007)

# Storage Commitment Push Model (PS3.4 J.3), the broker as SCU on its listener: the
# N-EVENT-REPORT response statuses (PS3.7 10.1.1.1.8 and Annex C) and the N-ACTION
# refusal (the broker is no Storage Commitment SCP).
REPORT_SUCCESS = 0x0000
REPORT_PROCESSING_FAILURE = 0x0110
REPORT_NO_SUCH_EVENT_TYPE = 0x0113
REPORT_INVALID_ARGUMENT_VALUE = 0x0115
REPORT_NO_SUCH_SOP_CLASS = 0x0118
REPORT_CLASS_INSTANCE_CONFLICT = 0x0119
ACTION_NO_SUCH_ACTION = 0x0123
