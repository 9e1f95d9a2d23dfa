"""HL7 intake: store every message, dedupe it, apply it, acknowledge it.

``message_receive`` is what the MLLP listener calls for each frame; ``message_reprocess``
applies a failed message again, as received or corrected. Both return the ACK only after
the transaction that stored (and applied) the message has committed. What a message
changes in the worklist is :mod:`hl7v2.apply`'s business; which messages are accepted,
and where each field is, the mapping's (:mod:`hl7v2.mapping`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from django.db import (
    DataError,
    IntegrityError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)
from django.utils import timezone

from core import events
from core.fastpath import insert_row
from hl7v2 import apply, mapping
from hl7v2.ack import ErrorDetail, build_ack
from hl7v2.charsets import ack_codec, decode
from hl7v2.errors import (
    APPLICATION_INTERNAL_ERROR,
    DUPLICATE_KEY_IDENTIFIER,
    SEGMENT_SEQUENCE_ERROR,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    UNSUPPORTED_VERSION_ID,
    MappingError,
)
from hl7v2.models import InboundMessage
from hl7v2.msh import Header, MSHError, read_header
from hl7v2.parser import parse
from hl7v2.status import Outcome
from worklist import services as worklist

logger = logging.getLogger(__name__)

# A deadlock or a busy database is retried with the whole message; after that the
# listener sends no ACK, and the sender sends the message again.
ATTEMPTS = 4
RETRY_DELAY = 0.05


@dataclass(frozen=True)
class Reply:
    ack: bytes
    outcome: str
    message_id: int
    message_type: str = ""
    control_id: str = ""


# --- receive -----------------------------------------------------------------------------


def message_receive(raw: bytes, *, peer: str) -> Reply:
    """Store and apply ``raw``; return the ACK to send, after the commit."""
    return _with_retries(lambda: _process(raw, peer=peer, existing=None))


def message_oversized(head: bytes, size: int, max_size: int, *, peer: str) -> Reply:
    """A frame larger than the limit: stored truncated, answered AR."""
    try:
        header: Header | None = read_header(head)
    except MSHError:
        header = None
    error = ErrorDetail(
        f"message of {size} bytes is larger than the {max_size} bytes allowed "
        "(HL7_MAX_MESSAGE_BYTES); stored truncated",
        segment="MSH",
        code=APPLICATION_INTERNAL_ERROR,
    )
    return _with_retries(lambda: _store(head, peer, header, Outcome.REJECTED, error, None))


def message_reprocess(message_id: int, corrected_raw: bytes | None = None) -> Reply:
    """Apply a stored message that failed, as it was or as corrected by an operator.

    The same row is updated (outcome, error, ACK); a corrected message replaces ``raw``
    and the first version is kept in ``original_raw``. A message that was applied is not
    applied again.
    """
    message = InboundMessage.objects.get(pk=message_id)
    if message.outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE):
        raise worklist.DomainError(f"message {message_id} was already applied")
    raw = corrected_raw if corrected_raw is not None else bytes(message.raw)
    return _with_retries(lambda: _process(raw, peer=message.peer, existing=message))


# SQLite has one writer at a time (BEGIN IMMEDIATE). Queueing this process's threads on
# a lock is fairer and much faster than SQLite's sleeping busy handler; other processes
# still meet the busy timeout.
_sqlite_writer = threading.Lock()


def _writer_turn() -> AbstractContextManager[Any]:
    return _sqlite_writer if connection.vendor == "sqlite" else contextlib.nullcontext()


def _with_retries(work: Any) -> Reply:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with _writer_turn():
                reply: Reply = work()
            return reply
        except OperationalError as exc:
            if attempt == ATTEMPTS or connection.in_atomic_block:
                raise
            logger.warning(
                "HL7 database busy, deadlock or connection lost (%s), attempt %d; retrying",
                type(exc).__name__,
                attempt,
            )
            close_old_connections()  # drops a broken connection; the retry opens a new one
            time.sleep(RETRY_DELAY * attempt)
    raise AssertionError("unreachable")


def _process(raw: bytes, *, peer: str, existing: InboundMessage | None) -> Reply:
    """The steps for one message.

    1. Read MSH; unreadable -> AR. Unsupported type, event or version -> AR.
    2. Same sender + MSH-10 already applied -> AA, stored as DUPLICATE, nothing applied
       (checked here for a message being reprocessed, in step 4 for a new one).
    3. Decode per MSH-18, split, map (pure); a problem -> AE with its ERR (or DUPLICATE,
       if a copy was applied).
    4. In one transaction: store the message as AA first, then apply it. The unique
       "applied once" constraint refuses the row of a copy that was applied, or that
       another connection is applying (PostgreSQL waits for it) -> DUPLICATE, nothing
       applied.
    5. An application error rolls that whole transaction back (nothing half-applied);
       the message is then stored as AE, with its ERR, in a transaction of its own.
    """
    try:
        header = read_header(raw)
    except MSHError as exc:
        error = ErrorDetail(str(exc), segment="MSH", code=SEGMENT_SEQUENCE_ERROR)
        return _store(raw, peer, None, Outcome.REJECTED, error, existing)
    rejection = _rejection(header)
    if rejection is not None:
        return _store(raw, peer, header, Outcome.REJECTED, rejection, existing)
    # A new message is checked for "already applied" by the unique constraint, when its
    # row is inserted first thing in the transaction that applies it (step 4); a stored
    # message being reprocessed is checked here.
    if existing is not None and _already_applied(header):
        return _store_copy(raw, peer, header, existing)
    try:
        plan = _plan(raw, header)
    except MappingError as exc:
        if existing is None and _already_applied(header):
            return _store_copy(raw, peer, header, existing)
        return _store(raw, peer, header, Outcome.ERROR, ErrorDetail.from_error(exc), existing)
    except Exception as exc:
        # Decoding, splitting and mapping are pure: anything else they raise is a bug,
        # and a bug must not jam the feed. Stored and answered AE; only the kind of
        # error is logged (its text may quote the message).
        logger.error(
            "HL7 %s %s: internal error reading the message (%s)",
            header.message_type,
            header.control_id,
            type(exc).__name__,
        )
        failure = ErrorDetail(f"internal error reading the message ({type(exc).__name__})")
        return _store(raw, peer, header, Outcome.ERROR, failure, existing)
    try:
        with transaction.atomic():
            if existing is None:
                # The row first: a copy already applied (or being applied by another
                # connection, which PostgreSQL waits for) is refused by the "applied
                # once" constraint before anything is applied.
                stored = _write(raw, peer, header, Outcome.ACCEPTED, None, None, publish=False)
            apply.apply(plan, header)
            if existing is not None:
                stored = _write(raw, peer, header, Outcome.ACCEPTED, None, existing)
            else:
                _publish_processed(stored)
        _log(stored, peer, None)
        return stored
    except _AlreadyApplied:
        # A copy of this message was applied and committed by another connection
        # meanwhile; this copy's changes were rolled back.
        return _store_copy(raw, peer, header, existing)
    except OperationalError:
        raise  # retried by _with_retries
    except MappingError as exc:
        failure = ErrorDetail.from_error(exc)
    except worklist.DomainError as exc:
        failure = ErrorDetail(str(exc), code=APPLICATION_INTERNAL_ERROR)
    except (IntegrityError, DataError) as exc:
        # The database's text may quote patient data: only its kind is logged.
        logger.warning(
            "HL7 %s %s: database refused the values (%s)",
            header.message_type,
            header.control_id,
            type(exc).__name__,
        )
        failure = ErrorDetail(f"database refused the values: {type(exc).__name__}")
    except Exception as exc:  # a bug must not kill the connection; it is stored and ACKed
        # Only the kind: the exception's text and traceback may quote field values.
        logger.error(
            "HL7 %s %s: internal error (%s)",
            header.message_type,
            header.control_id,
            type(exc).__name__,
        )
        failure = ErrorDetail(f"internal error ({type(exc).__name__})")
    # Everything the message applied was rolled back with its transaction; the message
    # is stored with its error in a transaction of its own.
    return _store(raw, peer, header, Outcome.ERROR, failure, existing)


class _AlreadyApplied(Exception):
    """The "applied once" constraint refused the message row."""


def _plan(raw: bytes, header: Header) -> mapping.OrderMessage | mapping.AdtMessage:
    """Decode, split and map (pure): what the message asks the worklist to do."""
    kind, event = _type_key(header)
    structure = mapping.SUPPORTED[(kind, event)][0]
    message = parse(decode(raw, header.charset))
    if structure == mapping.ADT:
        return mapping.adt_message(message, event)
    return mapping.order_message(message, structure, apply.mapping_config())


# --- group commit -------------------------------------------------------------------------

# A batch whose messages failed this many times goes on one message at a time.
BATCH_FAILURES = 3


@dataclass(frozen=True)
class _Ready:
    """A message read, accepted and mapped: only its transaction is left to run."""

    index: int
    raw: bytes
    peer: str
    header: Header
    plan: mapping.OrderMessage | mapping.AdtMessage


class _BatchFailed(Exception):
    """A batch rolled back; ``culprit`` is the position of the message that raised, or
    None when no one message is to blame (the commit, a deadlock, a lost connection)."""

    def __init__(self, culprit: int | None) -> None:
        super().__init__(culprit)
        self.culprit = culprit


def messages_receive(items: list[tuple[bytes, str]]) -> list[Reply | Exception]:
    """Group commit: store and apply messages that arrived together in one transaction.

    Returns, in the order of ``items``, each message's ``Reply`` (its ACK, to be sent now:
    its transaction has committed) or the exception that ``message_receive`` would have
    raised for it (the database unavailable past every retry: no ACK).

    1. Read, check and map each message (pure, no lock held). Anything but a message to
       apply (unreadable, unsupported, a mapping error, ...) goes step 4's way.
    2. The others in one transaction, in order, each as ``_process`` does it: the message
       row first (the "applied once" constraint), then what it applies; one commit, and
       then every one of them is acknowledged. That is the same as applying them one
       after another, as if each had arrived just after the one before.
    3. If one message raises, the transaction rolls back (nothing of any of them stays),
       that message is set aside and the rest are run again together; after
       ``BATCH_FAILURES`` failures, or a failure no one message caused (a deadlock, a
       lost connection, the commit), the rest go one at a time.
    4. One at a time is ``message_receive`` itself: its retries, its AE with ERR, its
       duplicate answers. A message set aside never costs the others more than a retry.
    """
    results: list[Reply | Exception | None] = [None] * len(items)
    batch: list[_Ready] = []
    alone: list[int] = []
    for index, (raw, peer) in enumerate(items):
        ready = _ready(index, raw, peer)
        if ready is None:
            alone.append(index)
        else:
            batch.append(ready)
    failures = 0
    while len(batch) > 1 and failures < BATCH_FAILURES:
        try:
            with _writer_turn():
                replies = _apply_together(batch)
        except _BatchFailed as failed:
            failures += 1
            if failed.culprit is None:
                break
            alone.append(batch.pop(failed.culprit).index)
            continue
        for ready, reply in zip(batch, replies, strict=True):
            results[ready.index] = reply
            _log(reply, ready.peer, None)
        batch = []
    alone = sorted([*alone, *(ready.index for ready in batch)])
    for index in alone:
        raw, peer = items[index]
        try:
            results[index] = message_receive(raw, peer=peer)
        except Exception as exc:  # the database unavailable past every retry: no ACK
            results[index] = exc
    return [r if r is not None else AssertionError("unanswered") for r in results]


def _ready(index: int, raw: bytes, peer: str) -> _Ready | None:
    """Step 1: the message mapped, if it is a new one to apply; else None."""
    try:
        header = read_header(raw)
    except MSHError:
        return None
    if _rejection(header) is not None:
        return None
    try:
        plan = _plan(raw, header)
    except Exception:  # MappingError or a bug: told on its own, by _process
        return None
    return _Ready(index, raw, peer, header, plan)


def _apply_together(batch: list[_Ready]) -> list[Reply]:
    """Step 2: one transaction for the whole batch; raises ``_BatchFailed``."""
    replies: list[Reply] = []
    culprit: int | None = None
    try:
        with transaction.atomic():
            for position, ready in enumerate(batch):
                try:
                    stored = _write(
                        ready.raw,
                        ready.peer,
                        ready.header,
                        Outcome.ACCEPTED,
                        None,
                        None,
                        publish=False,
                    )
                    apply.apply(ready.plan, ready.header)
                except OperationalError:
                    raise  # the database, not the message: nobody to set aside
                except Exception:
                    culprit = position
                    raise
                _publish_processed(stored)
                replies.append(stored)
    except Exception as exc:
        if isinstance(exc, OperationalError):
            close_old_connections()  # drops a broken connection before the retries
        raise _BatchFailed(culprit) from exc
    return replies


def _type_key(header: Header) -> tuple[str, str]:
    parts = header.message_type.split(header.component_sep)
    return (parts[0].upper(), parts[1].upper() if len(parts) > 1 else "")


def _rejection(header: Header) -> ErrorDetail | None:
    kind, event = _type_key(header)
    entry = mapping.SUPPORTED.get((kind, event))
    if entry is None:
        known = {k for k, _ in mapping.SUPPORTED}
        code = UNSUPPORTED_EVENT_CODE if kind in known else UNSUPPORTED_MESSAGE_TYPE
        return ErrorDetail(
            f"message type {header.message_type or '(empty)'} is not supported",
            segment="MSH",
            field=9,
            code=code,
        )
    if header.version not in entry[1]:
        return ErrorDetail(
            f"version {header.version or '(empty)'} is not supported for {kind}^{event} "
            f"(supported: {', '.join(sorted(entry[1]))})",
            segment="MSH",
            field=12,
            code=UNSUPPORTED_VERSION_ID,
        )
    return None


def _applied_copies(header: Header) -> Any:
    return InboundMessage.objects.filter(
        sending_application=_text(header.sending_application, 180),
        sending_facility=_text(header.sending_facility, 180),
        control_id=_text(header.control_id, 64),
        outcome=Outcome.ACCEPTED,
    )


def _already_applied(header: Header) -> bool:
    if not header.control_id:
        return False
    return bool(_applied_copies(header).exists())


def _same_message(a: bytes, b: bytes) -> bool:
    """Equal but for segment terminators (CR, CRLF, LF), trailing ones, and MSH-7 (the
    time of sending, which some senders set anew on a resend)."""

    def norm(raw: bytes) -> bytes:
        text = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").rstrip(b"\r ")
        first, _, rest = text.partition(b"\r")
        if len(first) > 3:
            fields = first.split(first[3:4])
            if len(fields) > 6:
                fields[6] = b""  # MSH-7
            first = first[3:4].join(fields)
        return first + b"\r" + rest

    return norm(a) == norm(b)


def _store_copy(raw: bytes, peer: str, header: Header, existing: InboundMessage | None) -> Reply:
    """A message whose sender and MSH-10 were applied before.

    The same message again (a resend) -> AA, stored as DUPLICATE, nothing applied.
    Different content under the same MSH-10 -> AE naming MSH-10, stored for review:
    answering AA would tell the sender a message was applied that never was.
    """
    applied = _applied_copies(header).only("pk", "raw").first()
    if applied is None or _same_message(bytes(applied.raw), raw):
        return _store(raw, peer, header, Outcome.DUPLICATE, None, existing)
    error = ErrorDetail(
        f"control ID {header.control_id[:64]} was already used by a different message "
        f"(message log #{applied.pk}); not applied, stored for review",
        segment="MSH",
        field=10,
        code=DUPLICATE_KEY_IDENTIFIER,
    )
    return _store(raw, peer, header, Outcome.ERROR, error, existing)


def _text(value: str, size: int) -> str:
    """A header value as stored: PostgreSQL text holds no NUL character."""
    return value.replace("\x00", "")[:size]


def _store(
    raw: bytes,
    peer: str,
    header: Header | None,
    outcome: str,
    error: ErrorDetail | None,
    existing: InboundMessage | None,
) -> Reply:
    reply = _write(raw, peer, header, outcome, error, existing)
    _log(reply, peer, error)
    return reply


def _write(
    raw: bytes,
    peer: str,
    header: Header | None,
    outcome: str,
    error: ErrorDetail | None,
    existing: InboundMessage | None,
    *,
    publish: bool = True,
) -> Reply:
    """Insert (or, reprocessing, update) the message row with its ACK.

    ``publish=False``: the caller publishes the event, with ``_publish_processed``,
    once the message has been applied.
    """
    code = Outcome.ACCEPTED if outcome == Outcome.DUPLICATE else outcome
    text = build_ack(header, code, error)
    ack = text.encode(ack_codec(header.charset if header else ""), errors="replace")
    now = timezone.now()
    values: dict[str, Any] = {
        "raw": raw,
        "peer": _text(peer, 64),
        "sending_application": _text(header.sending_application, 180) if header else "",
        "sending_facility": _text(header.sending_facility, 180) if header else "",
        "control_id": _text(header.control_id, 64) if header else "",
        "message_type": _text(header.message_type, 32) if header else "",
        "version": _text(header.version, 16) if header else "",
        "outcome": outcome,
        "error": _text(error.summary(), 100_000) if error else "",
        "ack": ack,
        "processed_at": now,
    }
    # No savepoint: a refused row must roll back the whole message with it.
    with transaction.atomic(savepoint=False):
        try:
            if existing is None:
                message = InboundMessage(**values)
                insert_row(message)
            else:
                message = existing
                if bytes(existing.raw) != raw and existing.original_raw is None:
                    message.original_raw = bytes(existing.raw)
                for name, value in values.items():
                    if name != "peer":
                        setattr(message, name, value)
                message.reprocessed_at = now
                message.save()
        except IntegrityError as exc:
            raise _AlreadyApplied from exc
        reply = Reply(
            ack=ack,
            outcome=outcome,
            message_id=message.pk,
            message_type=message.message_type,
            control_id=message.control_id,
        )
        if publish:
            _publish_processed(reply)
    return reply


def _publish_processed(reply: Reply) -> None:
    events.publish(events.hl7_message_processed, message_id=reply.message_id, outcome=reply.outcome)


def _log(reply: Reply, peer: str, error: ErrorDetail | None) -> None:
    where = f" ({error.code} {error.summary().split(':')[0]})" if error and error.segment else ""
    logger.info(
        "HL7 %s %s from %s: %s%s",
        reply.message_type or "?",
        reply.control_id or "?",
        peer,
        reply.outcome,
        where,
    )
