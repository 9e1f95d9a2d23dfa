"""The RIS outbox: order status messages queued with the change that caused them, and
sent in order, one order at a time, by the ``mpps.tasks`` worker task.

Ordering: each order's messages carry a sequence number, and the sender only ever
sends the oldest unsent message of an order; a message that failed for good holds
back the later ones until an operator retries it. So CM never reaches the RIS
before the IP of the same order.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import fastpath
from mpps import ris, rules
from mpps.models import OutboundAttempt, OutboundMessage
from mpps.status import OutboundState
from worklist.models import Order, ScheduledProcedureStep

logger = logging.getLogger(__name__)


def order_info(order: Order) -> ris.OrderInfo:
    patient = order.patient
    procedures = []
    for procedure in order.procedures.order_by("pk").prefetch_related("steps__station_ae_titles"):
        steps = tuple(
            ris.StepInfo(
                sps_id=s.sps_id,
                modality=s.modality,
                description=s.description,
                station_ae_title=next((t.ae_title for t in s.station_ae_titles.all()), ""),
            )
            for s in sorted(procedure.steps.all(), key=lambda s: s.pk)
        )
        procedures.append(
            ris.ProcedureInfo(
                requested_procedure_id=procedure.requested_procedure_id,
                study_instance_uid=procedure.study_instance_uid,
                code_value=procedure.code_value,
                code_meaning=procedure.code_meaning,
                code_scheme=procedure.code_scheme,
                description=procedure.description,
                steps=steps,
            )
        )
    return ris.OrderInfo(
        patient_id=patient.patient_id,
        patient_issuer=patient.issuer,
        patient_name=patient.name,
        birth_date=patient.birth_date,
        sex=patient.sex,
        admission_id=order.admission_id,
        accession_number=order.accession_number,
        placer_order_number=order.placer_order_number,
        filler_order_number=order.filler_order_number,
        placer_application=order.placer_application,
        procedures=tuple(procedures),
    )


def _queue(order: Order, order_status: str, *, sequence: int, mpps_id: int | None) -> None:
    message = OutboundMessage(
        order=order,
        sequence=sequence,
        mpps_id=mpps_id,
        order_status=order_status,
        message_type=settings.RIS_HL7_MESSAGE,
    )
    # SQL compiled once (core.fastpath): two of these for every performed step.
    fastpath.insert_row(message)
    message.control_id = f"BRKST{message.pk}"
    message.raw = ris.build_status_message(
        order_info(order),
        order_status=order_status,
        message_type=message.message_type,
        control_id=message.control_id,
        sending_application=settings.HL7_RECEIVING_APPLICATION,
        sending_facility=settings.HL7_RECEIVING_FACILITY,
        now=timezone.localtime(),
    )
    message.save(update_fields=["control_id", "raw"])


def lock_orders(order_ids: Iterable[int]) -> list[Order]:
    """Inside the caller's transaction: lock the orders, in id order (so that two callers
    cannot deadlock, and as HL7 intake takes them: order, then steps).

    With an RIS to tell, the rows come whole with their patient (for the status message;
    only the orders are locked); without, only their ids are read.
    """
    query = Order.objects.select_for_update(of=("self",)).filter(pk__in=set(order_ids))
    if not settings.RIS_HL7_HOST:
        return [Order(pk=pk) for pk in query.order_by("pk").values_list("pk", flat=True)]
    return list(query.select_related("patient").order_by("pk"))


def order_status_follow(order_ids: Iterable[int], *, mpps_id: int | None = None) -> None:
    """Inside the caller's transaction: queue each order's new status, if it changed.

    The order rows are locked (see :func:`lock_orders`) so that two concurrent MPPS
    updates of one order number their messages one after the other.
    """
    if settings.RIS_HL7_HOST:
        locked_status_follow(lock_orders(order_ids), mpps_id=mpps_id)


def locked_status_follow(orders: Iterable[Order], *, mpps_id: int | None = None) -> None:
    """:func:`order_status_follow` for orders the caller has locked with
    :func:`lock_orders` in this transaction."""
    if not settings.RIS_HL7_HOST:
        return
    for order in orders:
        # Every step of the order with the statuses of its performed steps: one row per
        # link (LEFT JOIN), and one with None for a step without any.
        performed: dict[int, list[str]] = defaultdict(list)
        statuses: dict[int, str] = {}
        for pk, status, mpps_status in (
            ScheduledProcedureStep.objects.filter(procedure__order=order)
            .order_by("pk")
            .values_list("pk", "status", "mpps_links__mpps__status")
        ):
            statuses[pk] = status
            if mpps_status is not None:
                performed[pk].append(mpps_status)
        wanted = rules.order_status_of((status, performed[pk]) for pk, status in statuses.items())
        queued = list(
            OutboundMessage.objects.filter(order=order)
            .order_by("sequence")
            .values_list("sequence", "order_status")
        )
        new = rules.statuses_to_queue([status for _, status in queued], wanted)
        if not new:
            continue
        top = queued[-1][0] if queued else 0
        for offset, order_status in enumerate(new, start=1):
            _queue(order, order_status, sequence=top + offset, mpps_id=mpps_id)
        _send_after_commit(order.pk)


@transaction.atomic
def step_order_follow(step_id: int) -> None:
    """Queue the status of the order of ``step_id`` for the RIS, if it changed (a step
    made final by the front desk, the API or HL7 can finish a performed order)."""
    order_id = (
        ScheduledProcedureStep.objects.filter(pk=step_id)
        .values_list("procedure__order_id", flat=True)
        .first()
    )
    if order_id is not None:
        order_status_follow([order_id])


# The worker task that calls :func:`order_send` (``mpps.tasks`` registers it under this
# name). Queued by name, so that this module need not import the tasks that import it.
SEND_TASK = "mpps.tasks.ris_order_send"


def _send_after_commit(order_id: int) -> None:
    # robust: a queue outage must not fail the DICOM answer; the message stays pending
    # in the outbox and ``ris_pending_send`` picks it up.
    transaction.on_commit(lambda: current_app.send_task(SEND_TASK, args=(order_id,)), robust=True)


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failure: doubling, capped."""
    delay: float = settings.RIS_HL7_RETRY_DELAY * (2 ** max(attempts - 1, 0))
    return float(min(delay, settings.RIS_HL7_RETRY_MAX_DELAY))


def _lease() -> dt.timedelta:
    return dt.timedelta(seconds=2 * settings.RIS_HL7_TIMEOUT + 30)


@dataclass(frozen=True)
class SendResult:
    sent: int
    # Seconds after which to call again; None when nothing is left to do now.
    retry_in: float | None


def order_send(order_id: int) -> SendResult:
    """Send the order's unsent status messages, oldest first, until one fails.

    Steps: take the oldest unsent message; stop if it failed for good or waits for its
    backoff; claim it with a lease (a conditional UPDATE, so two workers never send it
    at once); deliver; record the attempt and the new state; go on with the next one.
    """
    sent = 0
    while True:
        head = (
            OutboundMessage.objects.filter(order_id=order_id)
            .exclude(state=OutboundState.SENT)
            .order_by("sequence")
            .first()
        )
        if head is None or head.state == OutboundState.FAILED:
            return SendResult(sent, None)
        if not settings.RIS_HL7_HOST:
            logger.warning("RIS status for order %s not sent: RIS_HL7_HOST is empty", order_id)
            return SendResult(sent, None)
        now = timezone.now()
        if head.next_attempt_at and head.next_attempt_at > now:
            return SendResult(sent, (head.next_attempt_at - now).total_seconds())
        claimed = (
            OutboundMessage.objects.filter(pk=head.pk, state=OutboundState.PENDING)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .update(lease_until=now + _lease())
        )
        if claimed != 1:
            # Another worker holds this order's head and goes on with the rest itself;
            # look again once its lease is over, in case that worker died.
            return SendResult(sent, _lease().total_seconds())
        delivery = ris.deliver(
            head.raw,
            head.control_id,
            host=settings.RIS_HL7_HOST,
            port=settings.RIS_HL7_PORT,
            timeout=settings.RIS_HL7_TIMEOUT,
        )
        retry_in = _record(head, delivery, started_at=now)
        if not delivery.accepted:
            return SendResult(sent, retry_in)
        sent += 1


@transaction.atomic
def _record(
    message: OutboundMessage, delivery: ris.Delivery, *, started_at: dt.datetime
) -> float | None:
    finished = timezone.now()
    OutboundAttempt.objects.create(
        message=message,
        started_at=started_at,
        finished_at=finished,
        outcome=delivery.outcome,
        ack=delivery.ack,
        error=delivery.error,
    )
    attempts = message.attempts + 1
    fields: dict[str, object] = {"attempts": attempts, "lease_until": None}
    retry_in: float | None = None
    if delivery.accepted:
        fields |= {"state": OutboundState.SENT, "sent_at": finished, "last_error": ""}
        logger.info(
            "RIS status %s for order %s accepted (%s)",
            message.order_status,
            message.order_id,
            message.control_id,
        )
    elif attempts >= settings.RIS_HL7_MAX_ATTEMPTS:
        fields |= {"state": OutboundState.FAILED, "last_error": delivery.error}
        # The outcome only: the RIS's error text may quote patient data (it is kept
        # with the attempt, in the admin).
        logger.error(
            "RIS status %s for order %s failed %d times, giving up: %s",
            message.order_status,
            message.order_id,
            attempts,
            delivery.outcome,
        )
    else:
        retry_in = backoff(attempts)
        fields |= {
            "last_error": delivery.error,
            "next_attempt_at": finished + dt.timedelta(seconds=retry_in),
        }
        logger.warning(
            "RIS status %s for order %s not accepted (%s), retry in %.1f s",
            message.order_status,
            message.order_id,
            delivery.outcome,
            retry_in,
        )
    OutboundMessage.objects.filter(pk=message.pk).update(**fields)
    return retry_in


@transaction.atomic
def message_retry(message: OutboundMessage) -> None:
    """An operator sends a failed message again (and so releases its order's queue)."""
    OutboundMessage.objects.filter(pk=message.pk, state=OutboundState.FAILED).update(
        state=OutboundState.PENDING, attempts=0, next_attempt_at=None, lease_until=None
    )
    _send_after_commit(message.order_id)


def pending_order_ids() -> list[int]:
    return list(
        OutboundMessage.objects.filter(state=OutboundState.PENDING)
        .values_list("order_id", flat=True)
        .distinct()
    )
