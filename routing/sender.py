"""Sending instances to a destination over DICOM C-STORE (pynetdicom as SCU).

No database here: ``routing.jobs`` hands over the items and records each result.

- One association per job (per slice of it when the destination allows several in
  parallel), never one per instance.
- Each SOP class is proposed in its stored transfer syntax first, then Explicit and
  Implicit VR Little Endian, each in a presentation context of its own so that the
  destination says which it takes. An instance whose stored syntax was accepted goes as
  the spooled bytes, without decoding (pynetdicom's ``STORE_SEND_CHUNKED_DATASET``);
  an uncompressed one is re-encoded into an accepted uncompressed syntax; otherwise
  pydicom is asked to decompress it, and if it cannot, the instance fails with a message
  naming the syntaxes.
- Storage commitment (where the destination requires it): N-ACTION after sending, and
  the N-EVENT-REPORT awaited on the same association or, through the database, on a new
  one the destination opens to the listener (``routing.commitment``).
- TCP_NODELAY on the socket (and TCP_QUICKACK before each read), as the listener does:
  without it each C-STORE waits for delayed ACKs (shared/dicom-latency.md).
"""

from __future__ import annotations

import logging
import queue
import ssl
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_context, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.dimse_messages import N_EVENT_REPORT_RSP

from core.dicom.net import send_c_store_encoded, tune_socket
from core.dicom.requestor import keep_responses, recover_rejection
from routing.status import STORE_SUCCESS, STORE_WARNINGS

logger = logging.getLogger(__name__)

# Send a file's dataset bytes as stored instead of decoding and encoding them again.
# Only paths are sent this way; datasets (conversions) are encoded as usual.
pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True

UNCOMPRESSED_FALLBACKS = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context ids 1..255, odd
REJECTED_PERMANENT = 0x01


@dataclass(frozen=True)
class Target:
    ae_title: str
    host: str
    port: int
    use_tls: bool = False
    transfer_syntaxes: tuple[str, ...] = ()
    associations: int = 1


@dataclass(frozen=True)
class Item:
    item_id: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    path: Path


@dataclass(frozen=True)
class Result:
    item_id: int
    delivered: bool
    status_code: int | None
    error: str = ""


@dataclass
class Outcome:
    """How the association(s) went; the items' own results were reported one by one."""

    error: str = ""
    # The destination rejected the association permanently: retrying will not help.
    permanent: bool = False
    # Items not attempted (connection lost, stopped): they stay pending.
    not_attempted: int = 0


def _name(uid: str) -> str:
    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else uid


def dataset_offset(part10: bytes) -> int | None:
    """Where the data set starts in a Part 10 file whose File Meta Information begins
    with its group length (as the spool's files do); None otherwise."""
    if part10[128:132] != b"DICM" or part10[132:138] != b"\x02\x00\x00\x00UL":
        return None
    (group_length,) = struct.unpack("<I", part10[140:144])
    return 144 + group_length


def _send_as_stored(assoc: Any, context_id: int, item: Item, message_id: int) -> Any:
    """The spooled bytes of ``item`` as they are, through the direct PDU writer; None
    when that cannot be used (TLS, a file without a group length)."""
    part10 = item.path.read_bytes()
    offset = dataset_offset(part10)
    if offset is None:
        return None
    return send_c_store_encoded(
        assoc,
        context_id,
        item.sop_class_uid,
        item.sop_instance_uid,
        memoryview(part10)[offset:],
        message_id=message_id,
    )


def proposed_contexts(items: list[Item], allowed: tuple[str, ...]) -> list[Any]:
    """One presentation context per (SOP class, transfer syntax): stored syntaxes first."""
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for item in items:
        for syntax in (item.transfer_syntax_uid, *UNCOMPRESSED_FALLBACKS):
            pair = (item.sop_class_uid, str(syntax))
            if pair in seen or (allowed and pair[1] not in allowed):
                continue
            seen.add(pair)
            pairs.append(pair)
    if len(pairs) > MAX_CONTEXTS:
        logger.warning("%d presentation contexts wanted, %d proposed", len(pairs), MAX_CONTEXTS)
    return [build_context(sop_class, [syntax]) for sop_class, syntax in pairs[:MAX_CONTEXTS]]


def _tls_args(target: Target) -> tuple[ssl.SSLContext, str] | None:
    if not target.use_tls:
        return None
    context = ssl.create_default_context(cafile=settings.DICOM_TLS_CA or None)
    if settings.DICOM_TLS_CERT:
        context.load_cert_chain(settings.DICOM_TLS_CERT, settings.DICOM_TLS_KEY)
    return context, target.host


def _new_ae() -> AE:
    ae = AE(ae_title=settings.BROKER_AE_TITLE)
    timeout = settings.ROUTING_TIMEOUT
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = timeout
    ae.maximum_pdu_size = settings.DICOM_MAX_PDU
    return ae


def _associate(
    ae: AE,
    target: Target,
    *,
    contexts: list[Any] | None = None,
    handlers: Sequence[tuple[Any, Callable[..., Any]]] = (),
) -> Any:
    """An association with ``target``: over TLS if the destination asks for it, the socket
    tuned (``tune_socket``), on ``contexts`` or else the AE's requested ones, with
    ``handlers`` added to the event handlers."""
    return recover_rejection(
        ae.associate(
            target.host,
            target.port,
            ae_title=target.ae_title,
            contexts=contexts,
            tls_args=_tls_args(target),
            evt_handlers=[(evt.EVT_CONN_OPEN, tune_socket), *handlers],
        )
    )


def _reject_reason(assoc: Any) -> tuple[str, bool]:
    primitive = assoc.acceptor.primitive
    result = getattr(primitive, "result", None)
    source = getattr(primitive, "result_source", None)
    diagnostic = getattr(primitive, "diagnostic", None)
    kind = "permanently" if result == REJECTED_PERMANENT else "transiently"
    text = f"association rejected {kind} (source {source}, reason {diagnostic})"
    return text, result == REJECTED_PERMANENT


def echo(target: Target) -> tuple[int | None, str]:
    """C-ECHO: (status, "") when it answers, else (None, why not)."""
    ae = _new_ae()
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = _associate(ae, target)
    if not assoc.is_established:
        if assoc.is_rejected:
            return None, _reject_reason(assoc)[0]
        return None, f"no association with {target.host}:{target.port}"
    keep_responses(assoc)
    try:
        rsp = assoc.send_c_echo()
        code = rsp.get("Status") if rsp is not None else None
        return (int(code), "") if code is not None else (None, "no response")
    finally:
        assoc.release()


class _Association:
    """One association carrying a list of items."""

    def __init__(self, target: Target, items: list[Item]) -> None:
        self.target = target
        self.items = items

    def _choose(self, item: Item, accepted: dict[str, set[str]]) -> str | None:
        syntaxes = accepted.get(item.sop_class_uid, set())
        if item.transfer_syntax_uid in syntaxes:
            return "as-stored"
        compressed = UID(item.transfer_syntax_uid).is_compressed
        if not compressed and syntaxes & {str(s) for s in UNCOMPRESSED_FALLBACKS}:
            return "convert"
        return None

    def _decompressed(self, ds: Any, item: Item, accepted: dict[str, set[str]]) -> bool:
        """Decompress ``ds`` in place if an uncompressed syntax was accepted and pydicom
        has a decoder for it (numpy and a plugin for the syntax)."""
        fallbacks = {str(s) for s in UNCOMPRESSED_FALLBACKS}
        if not ds.file_meta.TransferSyntaxUID.is_compressed:
            return False
        if not accepted.get(item.sop_class_uid, set()) & fallbacks:
            return False
        try:
            ds.decompress()
        except Exception:  # no decoder here, or data it cannot decode
            return False
        return True

    def _refused(self, item: Item, accepted: dict[str, set[str]]) -> str:
        names = ", ".join(_name(s) for s in sorted(accepted.get(item.sop_class_uid, ()))) or "none"
        return (
            f"{self.target.ae_title} accepts none of the transfer syntaxes this instance "
            f"can be sent in: stored as {_name(item.transfer_syntax_uid)}; accepted: {names}"
        )[:255]

    def run(self, report: Callable[[Result], None], stop: threading.Event) -> Outcome:
        target = self.target
        ae = _new_ae()
        assoc = _associate(
            ae, target, contexts=proposed_contexts(self.items, target.transfer_syntaxes)
        )
        if not assoc.is_established:
            if assoc.is_rejected:
                text, permanent = _reject_reason(assoc)
                return Outcome(text, permanent=permanent, not_attempted=len(self.items))
            return Outcome(
                f"no association with {target.ae_title}@{target.host}:{target.port} "
                "(refused, unreachable or no answer)",
                not_attempted=len(self.items),
            )
        keep_responses(assoc)
        accepted: dict[str, set[str]] = {}
        context_ids: dict[tuple[str, str], int] = {}
        for context in assoc.accepted_contexts:
            pair = (str(context.abstract_syntax), str(context.transfer_syntax[0]))
            accepted.setdefault(pair[0], set()).add(pair[1])
            context_ids.setdefault(pair, int(context.context_id or 0))
        message_id = 0
        done = 0
        error = ""
        try:
            for item in self.items:
                if stop.is_set():
                    error = "stopped"
                    break
                if not assoc.is_established:
                    error = "association ended by the destination"
                    break
                how = self._choose(item, accepted)
                message_id = message_id % 65535 + 1
                try:
                    rsp = None
                    if how == "as-stored":
                        rsp = _send_as_stored(
                            assoc,
                            context_ids[(item.sop_class_uid, item.transfer_syntax_uid)],
                            item,
                            message_id,
                        )
                    if how == "as-stored":
                        if rsp is None:  # TLS: through pynetdicom, still as stored
                            rsp = assoc.send_c_store(item.path, msg_id=message_id)
                    else:
                        ds = dcmread(item.path)
                        if how is None and not self._decompressed(ds, item, accepted):
                            report(Result(item.item_id, False, None, self._refused(item, accepted)))
                            done += 1
                            continue
                        rsp = assoc.send_c_store(ds, msg_id=message_id)
                except (OSError, ValueError, AttributeError) as exc:
                    report(Result(item.item_id, False, None, f"not sent: {exc}"[:255]))
                    done += 1
                    continue
                code = rsp.get("Status") if rsp is not None else None
                if code is None:
                    error = "no C-STORE response (timeout or abort)"
                    if assoc.is_established:
                        assoc.abort()
                    break
                code = int(code)
                done += 1
                if code == STORE_SUCCESS or code in STORE_WARNINGS:
                    report(Result(item.item_id, True, code))
                else:
                    comment = str(rsp.get("ErrorComment", "") or "")
                    text = f"C-STORE status 0x{code:04X}" + (f": {comment}" if comment else "")
                    report(Result(item.item_id, False, code, text[:255]))
        finally:
            if assoc.is_established:
                assoc.release()
        return Outcome(error, not_attempted=len(self.items) - done)


STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
COMMIT_REQUEST = 1  # N-ACTION Action Type ID: request storage commitment (PS3.4 J.3.2)
# How often a commitment that waits looks whether its report came on another association.
REPORT_POLL = 0.1
# Most seconds to wait for our answer to the report to be sent before releasing.
REPORT_ANSWER_WAIT = 5.0
# Answer to a report on the requesting association for another request (PS3.7 C.4).
REPORT_PROCESSING_FAILURE = 0x0110


@dataclass
class Commitment:
    """What the destination said of a commitment request on the requesting association:
    per SOP Instance UID, True (committed) or the failure text. ``elsewhere`` when the
    report came on another association (the listener recorded it); ``error`` when it
    could not be asked or no report came in time."""

    results: dict[str, bool | str]
    error: str = ""
    elsewhere: bool = False


def commit(
    target: Target,
    items: list[Item],
    *,
    wait: float,
    transaction_uid: str | None = None,
    reported_elsewhere: Callable[[], bool] | None = None,
) -> Commitment:
    """Storage Commitment Push Model (PS3.4 J) as SCU: N-ACTION for ``items``, then wait
    up to ``wait`` seconds for the N-EVENT-REPORT, on this association or (as
    ``reported_elsewhere`` tells, looked at every ``REPORT_POLL`` seconds) on a new one
    the destination opened to the listener."""
    transaction_uid = transaction_uid or generate_uid()
    results: dict[str, bool | str] = {}
    reported = threading.Event()
    answered = threading.Event()

    def on_report(event: Any) -> tuple[int, None]:
        info = event.event_information
        if str(info.get("TransactionUID", "")) != transaction_uid:
            # Not this request's: the destination may send it again, to the listener,
            # which knows every request.
            return REPORT_PROCESSING_FAILURE, None
        for ref in info.get("ReferencedSOPSequence", []):
            results[str(ref.ReferencedSOPInstanceUID)] = True
        for ref in info.get("FailedSOPSequence", []):
            results[str(ref.ReferencedSOPInstanceUID)] = failure_text(ref.get("FailureReason"))
        reported.set()
        return STORE_SUCCESS, None

    def on_sent(event: Any) -> None:
        # The report's response is sent by the association's thread after on_report
        # returns: release only after it, or the A-RELEASE-RQ goes first and the
        # response is refused by pynetdicom's state machine (Evt9 in Sta7), unanswered.
        if reported.is_set() and isinstance(event.message, N_EVENT_REPORT_RSP):
            answered.set()

    ae = _new_ae()
    # The association stays idle while the report is awaited: its idle timeout must not
    # end it first.
    ae.network_timeout = wait + settings.ROUTING_TIMEOUT
    ae.add_requested_context(STORAGE_COMMITMENT)
    assoc = _associate(
        ae, target, handlers=[(evt.EVT_N_EVENT_REPORT, on_report), (evt.EVT_DIMSE_SENT, on_sent)]
    )
    if not assoc.is_established:
        return Commitment({}, "no association for storage commitment")
    keep_responses(assoc)
    try:
        request = Dataset()
        request.TransactionUID = transaction_uid
        refs = []
        for item in items:
            ref = Dataset()
            ref.ReferencedSOPClassUID = item.sop_class_uid
            ref.ReferencedSOPInstanceUID = item.sop_instance_uid
            refs.append(ref)
        request.ReferencedSOPSequence = refs
        status, _ = assoc.send_n_action(
            request, COMMIT_REQUEST, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
        )
        code = status.get("Status") if status is not None else None
        if code != STORE_SUCCESS:
            return Commitment({}, f"storage commitment request refused (status {code})")
        deadline = time.monotonic() + wait
        while not reported.wait(min(REPORT_POLL, max(deadline - time.monotonic(), 0))):
            if reported_elsewhere is not None and reported_elsewhere():
                return Commitment({}, elsewhere=True)
            if time.monotonic() >= deadline:
                return Commitment({}, "no storage commitment report in time")
        answered.wait(REPORT_ANSWER_WAIT)
        return Commitment(dict(results))
    finally:
        if assoc.is_established:
            assoc.release()


def failure_text(reason: Any) -> str:
    """An instance of a report's Failed SOP Sequence (PS3.4 J.3.3.1: its Failure Reason)."""
    return (
        f"not committed (failure reason 0x{int(reason):04X})"
        if reason is not None
        else ("not committed")
    )


def send(
    target: Target,
    items: list[Item],
    report: Callable[[list[Result]], bool],
    *,
    min_per_association: int = 20,
) -> Outcome:
    """Send ``items``; ``report`` is called in the caller's thread with the results that
    came in since its last call (so recording them never holds up the sending), and
    returns False to stop (the job was canceled or its lease lost).

    The items go over one association, or are dealt out to up to
    ``target.associations`` threads, each with its own association.
    """
    count = max(1, min(target.associations, len(items) // max(min_per_association, 1)))
    stop = threading.Event()
    results: queue.Queue[Result | Outcome] = queue.Queue()
    slices = [items[n::count] for n in range(count)]

    def work(part: list[Item]) -> None:
        try:
            outcome = _Association(target, part).run(results.put, stop)
        except Exception as exc:  # a bug must not leave the caller waiting
            logger.exception("routing association to %s failed", target.ae_title)
            outcome = Outcome(f"sender error: {exc}", not_attempted=len(part))
        results.put(outcome)

    threads = [threading.Thread(target=work, args=(part,), daemon=True) for part in slices]
    for thread in threads:
        thread.start()
    outcomes: list[Outcome] = []
    while len(outcomes) < count:
        batch = [results.get()]
        while True:
            try:
                batch.append(results.get_nowait())
            except queue.Empty:
                break
        outcomes.extend(got for got in batch if isinstance(got, Outcome))
        answers = [got for got in batch if isinstance(got, Result)]
        if answers and not report(answers):
            stop.set()
    for thread in threads:
        thread.join()
    errors = [o.error for o in outcomes if o.error]
    return Outcome(
        errors[0] if errors else "",
        permanent=all(o.permanent for o in outcomes),
        not_attempted=sum(o.not_attempted for o in outcomes),
    )
