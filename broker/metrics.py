"""Prometheus metrics for ``/metrics``: no patient data, only counts and ages.

Two sources, both safe with many processes:

- **From the database, at scrape time** (a custom collector): HL7 messages in the log by
  outcome and the age of the oldest failed one, MPPS by status, RIS status messages by
  state and the age of the oldest unsent one, the age of the last worker heartbeat. Any
  web process answers the same, whichever process did the work.
- **Counted by the DICOM listener** (associations by how they ended, DIMSE requests,
  C-FIND answers): prometheus-client counters in multiprocess mode. Every process
  writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` (``BROKER_VAR_DIR/metrics``
  by default, set in settings before prometheus-client is imported) and the web
  process sums them. The web process and the listener must share that folder (one
  machine, or a shared volume); ``manage.py serve`` empties it at start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from django.db.models import Count, Max, Min
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from broker.models import WorkerHeartbeat
from hl7v2.models import InboundMessage
from hl7v2.status import Outcome
from mpps.models import OutboundMessage, PerformedProcedureStep
from mpps.status import OutboundState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DICOM_ASSOCIATIONS = Counter(
    "broker_dicom_associations",
    "DICOM associations ended, by how they ended",
    ["ending"],
)
DICOM_REQUESTS = Counter(
    "broker_dicom_requests", "DIMSE requests served (C-FIND, N-CREATE, ...)", ["kind"]
)
DICOM_ANSWERS = Counter("broker_dicom_cfind_answers", "Worklist C-FIND pending answers sent")

# outcome.count() names that are not DIMSE requests.
_NOT_REQUESTS = {"answers"}


def association_ended(ending: str, counts: dict[str, int]) -> None:
    """Called by the DICOM listener when an association thread ends."""
    DICOM_ASSOCIATIONS.labels(ending=ending.split(" ", 1)[0]).inc()
    for name, value in counts.items():
        if name == "answers":
            DICOM_ANSWERS.inc(value)
        elif name not in _NOT_REQUESTS:
            DICOM_REQUESTS.labels(kind=name[:32]).inc(value)


def _age(moment: Any) -> float:
    return max(0.0, (timezone.now() - moment).total_seconds()) if moment else 0.0


class DatabaseCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        hl7 = GaugeMetricFamily(
            "broker_hl7_messages", "HL7 messages in the message log, by outcome", labels=["outcome"]
        )
        by_outcome = dict(
            InboundMessage.objects.values_list("outcome").annotate(n=Count("pk")).order_by()
        )
        for outcome in Outcome:
            hl7.add_metric([outcome.value], by_outcome.get(outcome.value, 0))
        yield hl7
        failed = InboundMessage.objects.filter(
            outcome__in=(Outcome.ERROR, Outcome.REJECTED)
        ).aggregate(oldest=Min("received_at"))["oldest"]
        yield GaugeMetricFamily(
            "broker_hl7_oldest_failed_age_seconds",
            "Age of the oldest HL7 message answered AE/AR and not reprocessed (0: none)",
            value=_age(failed),
        )
        mpps = GaugeMetricFamily(
            "broker_mpps", "Performed procedure steps, by status", labels=["status"]
        )
        for status, n in (
            PerformedProcedureStep.objects.values_list("status").annotate(n=Count("pk")).order_by()
        ):
            mpps.add_metric([status], n)
        yield mpps
        ris = GaugeMetricFamily(
            "broker_ris_messages", "Status messages to the RIS, by state", labels=["state"]
        )
        by_state = dict(
            OutboundMessage.objects.values_list("state").annotate(n=Count("pk")).order_by()
        )
        for state in OutboundState:
            ris.add_metric([state.value], by_state.get(state.value, 0))
        yield ris
        unsent = OutboundMessage.objects.filter(state=OutboundState.PENDING).aggregate(
            oldest=Min("created_at")
        )["oldest"]
        yield GaugeMetricFamily(
            "broker_ris_oldest_unsent_age_seconds",
            "Age of the oldest status message not yet accepted by the RIS (0: none)",
            value=_age(unsent),
        )
        seen = WorkerHeartbeat.objects.aggregate(last=Max("seen_at"))["last"]
        yield GaugeMetricFamily(
            "broker_worker_heartbeat_age_seconds",
            "Seconds since a Celery worker last ran the heartbeat task (-1: never)",
            value=_age(seen) if seen else -1.0,
        )


def render() -> bytes:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    registry.register(DatabaseCollector())
    return generate_latest(registry)
