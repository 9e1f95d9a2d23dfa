"""Named states of the scheduling domain."""

from __future__ import annotations

from django.db import models


class SPSStatus(models.TextChoices):
    """Scheduled Procedure Step Status (0040,0020), PS3.3 C.4.10."""

    SCHEDULED = "SCHEDULED"
    ARRIVED = "ARRIVED"
    READY = "READY"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"
    CANCELED = "CANCELED"


# Steps a scanner is offered when its query does not name an SPS Status.
OFFERED_BY_DEFAULT = (SPSStatus.SCHEDULED, SPSStatus.ARRIVED, SPSStatus.READY)
# Steps that may no longer change state.
FINAL = (SPSStatus.COMPLETED, SPSStatus.DISCONTINUED, SPSStatus.CANCELED)


class Priority(models.TextChoices):
    """Requested Procedure Priority (0040,1003)."""

    STAT = "STAT"
    HIGH = "HIGH"
    ROUTINE = "ROUTINE"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


class DeviceRole(models.TextChoices):
    MODALITY = "MODALITY", "Modality (queries the worklist, sends MPPS)"
    DESTINATION = "DESTINATION", "Routing destination (PACS, workstation, AI node)"
