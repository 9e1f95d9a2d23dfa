"""Modality Worklist C-FIND SCP (Modality Worklist Information Model - FIND).

The handler logs, delegates to :func:`find` (matching + response building, no
sockets) and maps every failure to a DIMSE status; nothing a peer sends may escape as
an exception into pynetdicom.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from pydicom import Dataset
from pynetdicom import evt
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from core.dicom import net, outcome, status, workers
from worklist.matching import MatchOptions, QueryError, match, offending
from worklist.responses import ResponseBuilder, return_keys

logger = logging.getLogger(__name__)

SOP_CLASSES: list[str] = [ModalityWorklistInformationFind]

# Answers between two chances for pynetdicom to read a C-CANCEL (see net.let_peer_speak).
CANCEL_CHECK_EVERY = 50


@dataclass
class FindResult:
    """The answers to one query (built lazily), and what to tell the peer."""

    builder: ResponseBuilder
    rows: list[tuple[Any, ...]]
    stations: dict[int, list[str]]
    truncated: bool
    unsupported: list[int]

    @property
    def count(self) -> int:
        return len(self.rows)

    @property
    def datasets(self) -> Iterator[Dataset]:
        return self.builder.datasets(self.rows, self.stations)


def find(
    identifier: Dataset,
    *,
    calling_ae: str = "",
    max_answers: int | None = None,
    implicit_vr: bool = True,
    little_endian: bool = True,
) -> FindResult:
    """Run a worklist query: match in the database, then build the answers lazily.

    Raises ``QueryError`` for identifiers and values the SCP cannot process.
    """
    limit = settings.MWL_MAX_ANSWERS if max_answers is None else max_answers
    options = MatchOptions(
        pn_case_insensitive=settings.MWL_PN_CASE_INSENSITIVE,
        calling_ae_as_station=settings.MWL_CALLING_AE_AS_STATION,
        calling_ae=calling_ae,
    )
    keys = return_keys(identifier)
    matching = match(identifier, options)
    builder = ResponseBuilder(keys, implicit_vr=implicit_vr, little_endian=little_endian)
    # One row more than allowed tells "truncated" without counting every match.
    rows, stations = builder.matched_rows(matching, limit + 1)
    truncated = len(rows) > limit
    return FindResult(
        builder=builder,
        rows=rows[:limit],
        stations=stations,
        truncated=truncated,
        unsupported=sorted(set(keys.unsupported) | set(matching.unsupported)),
    )


def failure(code: int, comment: str, tag: int | None = None) -> Dataset:
    """A failure status dataset with Error Comment (and Offending Element)."""
    ds = Dataset()
    ds.Status = code
    # Error Comment is LO: 64 characters at most.
    ds.ErrorComment = comment[:64]
    element = offending(tag)
    if element is not None:
        ds.OffendingElement = element
    return ds


def handle_find(event: evt.Event) -> Iterator[tuple[Any, Dataset | None]]:
    """EVT_C_FIND: answer a worklist query."""
    assoc = event.assoc
    calling_ae = str(assoc.requestor.ae_title).strip()
    started = time.monotonic()
    outcome.count(assoc, "C-FIND")
    try:
        identifier = event.identifier
        # Decoding is lazy in pydicom: touch every value now, so that a broken
        # identifier fails here and not halfway through matching.
        for _element in identifier.iterall():
            pass
    except Exception as exc:
        # The kind only: the text may quote the value that could not be read.
        logger.warning(
            "C-FIND from %s: identifier cannot be decoded (%s)", calling_ae, type(exc).__name__
        )
        yield (
            failure(status.UNABLE_TO_PROCESS_UNDECODABLE_IDENTIFIER, "Cannot decode identifier"),
            None,
        )
        return

    transfer_syntax = event.context.transfer_syntax
    try:
        result = workers.run(
            assoc,
            find,
            identifier,
            calling_ae=calling_ae,
            implicit_vr=transfer_syntax.is_implicit_VR,
            little_endian=transfer_syntax.is_little_endian,
        )
    except QueryError as exc:
        # The comment may quote a query value (a birth date): it goes to the peer only.
        where = "identifier" if exc.tag is None else f"({exc.tag >> 16:04X},{exc.tag & 0xFFFF:04X})"
        logger.info("C-FIND from %s refused with 0x%04X at %s", calling_ae, exc.status, where)
        yield failure(exc.status, exc.comment, exc.tag), None
        return
    except DatabaseError:
        logger.exception("C-FIND from %s: database error", calling_ae)
        yield (
            failure(status.UNABLE_TO_PROCESS_DATABASE_ERROR, "Worklist database unavailable"),
            None,
        )
        return
    except Exception:
        logger.exception("C-FIND from %s: cannot process the query", calling_ae)
        yield failure(status.UNABLE_TO_PROCESS_INTERNAL_ERROR, "Internal error"), None
        return

    pending = status.PENDING_WARNING_OPTIONAL_KEYS if result.unsupported else status.PENDING
    builder, stations = result.builder, result.stations
    # Little Endian answers skip pynetdicom's per-answer encoding (see PendingSender).
    sender = (
        net.PendingSender(
            assoc,
            event.context.context_id,
            event.request,
            pending,
            is_cancelled=lambda: event.is_cancelled,
            timeout=settings.DICOM_DIMSE_TIMEOUT,
        )
        if transfer_syntax.is_little_endian
        else None
    )

    watch, message_id = net.PeerWatch.of(assoc), int(event.request.MessageID or 0)
    heard = False

    def cancelled() -> bool:
        # The watch also hears a C-CANCEL sent right behind its request, which
        # pynetdicom's event.is_cancelled misses (see net.PeerWatch).
        nonlocal heard
        if not heard:
            heard = sender.cancelled if sender is not None else watch.cancelled(message_id)
        return heard

    sent = 0
    try:
        for row in result.rows:
            # Writing directly, the sender hears the peer after each batch; through the
            # DUL's queue, the DUL must be given its turn every few answers.
            if sent and sent % CANCEL_CHECK_EVERY == 0 and (sender is None or not sender.direct):
                net.let_peer_speak(assoc, settings.DICOM_DIMSE_TIMEOUT)
            if cancelled():
                break
            if sender is None or not sender.send(builder.encode(row, stations)):
                if sender is not None:
                    sender.flush()
                yield pending, builder.dataset(row, stations)
            sent += 1
        if sender is not None:
            sender.flush()
            # Answers not yet written when the cancel was heard are not sent.
            sent -= sender.discard()
        if cancelled() and sent < len(result.rows):
            logger.info("C-FIND from %s cancelled after %d answers", calling_ae, sent)
            outcome.count(assoc, "answers", sent)
            yield status.CANCEL, None
            return
    except OSError as exc:
        # A half-written PDU leaves the stream unusable: abort.
        logger.warning(
            "C-FIND from %s: connection lost after %d answers: %s", calling_ae, sent, exc
        )
        outcome.count(assoc, "answers", sent)
        assoc.abort()
        return
    except Exception:
        logger.exception("C-FIND from %s: cannot build an answer", calling_ae)
        outcome.count(assoc, "answers", sent)
        yield failure(status.UNABLE_TO_PROCESS_INTERNAL_ERROR, "Internal error"), None
        return
    outcome.count(assoc, "answers", sent)
    elapsed_ms = (time.monotonic() - started) * 1000
    if result.truncated:
        logger.warning(
            "C-FIND from %s matched more than MWL_MAX_ANSWERS=%d entries: sent %d, then 0x%04X",
            calling_ae,
            result.count,
            sent,
            status.TOO_MANY_MATCHES,
        )
        yield (
            failure(
                status.TOO_MANY_MATCHES,
                f"More than {result.count} matches; narrow the query",
            ),
            None,
        )
        return
    # Returning ends the generator; pynetdicom then sends the final Success.
    logger.debug("C-FIND from %s: %d answers in %.1f ms", calling_ae, sent, elapsed_ms)


def handlers() -> list[tuple[Any, Any]]:
    return [(evt.EVT_C_FIND, handle_find)]


# Every status the C-FIND handler can send, with what it means here. The conformance
# statement is generated from this table; tests/test_conformance_statuses.py checks it
# against the status codes the worklist code uses.
STATUSES: tuple[status.Returned, ...] = (
    status.Returned(
        "C-FIND",
        status.SUCCESS,
        "Matching is complete: every answer has been sent (also for zero matches)",
    ),
    status.Returned(
        "C-FIND", status.PENDING, "One answer (one scheduled procedure step); every key supported"
    ),
    status.Returned(
        "C-FIND",
        status.PENDING_WARNING_OPTIONAL_KEYS,
        "One answer; the query had a key the SCP does not know, or a value of a key it "
        "cannot match on (the value was ignored: see the matching column)",
    ),
    status.Returned(
        "C-FIND",
        status.CANCEL,
        f"C-CANCEL received; checked between answers (at least every {CANCEL_CHECK_EVERY})",
    ),
    status.Returned(
        "C-FIND",
        status.TOO_MANY_MATCHES,
        "More entries match than MWL_MAX_ANSWERS: that many answers were sent, then this "
        "status with an Error Comment; narrow the query",
    ),
    status.Returned(
        "C-FIND",
        status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
        "Query/Retrieve Level present; more than one item in a sequence; the Scheduled "
        "Procedure Step Sequence is not a sequence. With Offending Element and Error Comment",
    ),
    status.Returned(
        "C-FIND",
        status.UNABLE_TO_PROCESS_INVALID_QUERY_VALUE,
        "Invalid date, time or range (e.g. 20261345, 20261231-20260101), or several "
        "values where one is allowed. With Offending Element and Error Comment",
    ),
    status.Returned(
        "C-FIND",
        status.UNABLE_TO_PROCESS_UNDECODABLE_IDENTIFIER,
        "The identifier cannot be decoded",
    ),
    status.Returned(
        "C-FIND",
        status.UNABLE_TO_PROCESS_DATABASE_ERROR,
        "The worklist database is unavailable; query again later",
    ),
    status.Returned(
        "C-FIND", status.UNABLE_TO_PROCESS_INTERNAL_ERROR, "Any other error (logged by the broker)"
    ),
)
