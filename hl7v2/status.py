"""Named outcomes of HL7 messages."""

from __future__ import annotations

from django.db import models


class Outcome(models.TextChoices):
    RECEIVED = "RECEIVED", "Received, not yet processed"
    ACCEPTED = "AA", "Application accept"
    ERROR = "AE", "Application error"
    REJECTED = "AR", "Application reject"
    DUPLICATE = "DUPLICATE", "Repeated control ID, not applied again"
