"""Named states of performed procedure steps and of status messages to the RIS."""

from __future__ import annotations

from django.db import models


class MPPSStatus(models.TextChoices):
    """Performed Procedure Step Status (0040,0252), PS3.3 C.4.14."""

    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"


# An MPPS in one of these may no longer be updated (PS3.4 F.7.2.2).
MPPS_FINAL = (MPPSStatus.COMPLETED, MPPSStatus.DISCONTINUED)


class OrderStatus(models.TextChoices):
    """ORC-5 order status sent to the RIS (HL7 table 0038)."""

    IN_PROCESS = "IP", "In process"
    COMPLETED = "CM", "Completed"
    DISCONTINUED = "DC", "Discontinued"


class OutboundState(models.TextChoices):
    PENDING = "PENDING", "Waiting to be sent"
    SENT = "SENT", "Accepted by the RIS"
    FAILED = "FAILED", "Gave up; holds back later messages of the order"


class AttemptOutcome(models.TextChoices):
    ACCEPTED = "AA", "Application accept"
    ERROR = "AE", "Application error"
    REJECTED = "AR", "Application reject"
    CONNECTION_FAILED = "CONNECT", "RIS unreachable"
    TIMEOUT = "TIMEOUT", "No acknowledgement in time"
    BAD_ACK = "BAD_ACK", "Unreadable or mismatched acknowledgement"
