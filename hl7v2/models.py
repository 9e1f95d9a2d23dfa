"""Every HL7 message received, stored raw before it is acknowledged."""

from __future__ import annotations

from django.db import models

from hl7v2.status import Outcome


class InboundMessage(models.Model):
    raw = models.BinaryField()
    peer = models.CharField("sender address", max_length=64, blank=True, default="")
    sending_application = models.CharField(max_length=180, blank=True, default="")
    sending_facility = models.CharField(max_length=180, blank=True, default="")
    control_id = models.CharField("MSH-10", max_length=64, blank=True, default="")
    message_type = models.CharField(max_length=32, blank=True, default="")
    version = models.CharField(max_length=16, blank=True, default="")
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.RECEIVED)
    error = models.TextField(blank=True, default="")
    ack = models.BinaryField(blank=True, default=b"")
    # The message as first received, kept when a corrected version was reprocessed.
    original_raw = models.BinaryField(null=True, blank=True)
    reprocessed_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("reprocess_inboundmessage", "Can reprocess a failed HL7 message")]
        constraints = [
            # A message (sender + MSH-10) is applied at most once, even when two copies
            # arrive at the same moment on two connections: the second insert fails and
            # its transaction, with everything it applied, is rolled back.
            models.UniqueConstraint(
                fields=["sending_application", "sending_facility", "control_id"],
                condition=models.Q(outcome=Outcome.ACCEPTED) & ~models.Q(control_id=""),
                name="hl7_in_applied_once",
            )
        ]
        indexes = [
            models.Index(
                fields=["sending_application", "sending_facility", "control_id"],
                name="hl7_in_sender_control_idx",
            ),
            models.Index(fields=["outcome", "received_at"], name="hl7_in_outcome_idx"),
            models.Index(fields=["received_at"], name="hl7_in_received_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.message_type} {self.control_id} ({self.outcome})"
