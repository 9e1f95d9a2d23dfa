"""The DICOM Conformance Statement against the running listener, over real associations.

The statement's presentation contexts are proposed, each SOP class with each transfer
syntax as a context of its own, together with common SOP classes and transfer syntaxes it
does not list: the listener must accept exactly the documented pairs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import override_settings
from pydicom import Dataset
from pynetdicom import AE, build_context

from broker.dicom import server
from broker.management.commands.conformance import section_text
from tests.fixtures_dicom import Listener, find, schedule
from tests.scu import keep_responses

STATEMENT = "dicom-conformance-statement.md"
UID = r"`([0-9.]+)`"
# At most 128 presentation contexts per association (odd context IDs 1..255).
CONTEXTS_PER_ASSOCIATION = 128

# Common SOP classes and transfer syntaxes a modality or a PACS may propose.
COMMON_SOP_CLASSES = (
    "1.2.840.10008.1.1",  # Verification
    "1.2.840.10008.1.20.1",  # Storage Commitment Push Model
    "1.2.840.10008.3.1.2.3.3",  # Modality Performed Procedure Step
    "1.2.840.10008.3.1.2.3.4",  # MPPS Retrieve
    "1.2.840.10008.3.1.2.3.5",  # MPPS Notification
    "1.2.840.10008.5.1.4.31",  # Modality Worklist FIND
    "1.2.840.10008.5.1.4.32.1",  # General Purpose Worklist FIND (retired)
    "1.2.840.10008.5.1.4.34.6.1",  # UPS Push
    "1.2.840.10008.5.1.4.34.6.3",  # UPS Pull
    "1.2.840.10008.5.1.4.1.2.1.1",  # Patient Root Q/R FIND
    "1.2.840.10008.5.1.4.1.2.2.1",  # Study Root Q/R FIND
    "1.2.840.10008.5.1.4.1.2.2.2",  # Study Root Q/R MOVE
    "1.2.840.10008.5.1.4.1.2.2.3",  # Study Root Q/R GET
    "1.2.840.10008.5.1.4.1.1.1",  # CR Image Storage
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.33",  # Instance Availability Notification
)
COMMON_TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.5",  # RLE Lossless
)


def rows(section: str) -> list[list[str]]:
    """The cells of each table row of a generated section, header rows left out."""
    out: list[list[str]] = []
    for line in section_text(STATEMENT, section).splitlines():
        if line.startswith("|---"):
            out.pop()  # the header above the separator
        elif line.startswith("| "):
            out.append([c.strip() for c in line.strip("|").split(" | ")])
    return out


def documented_contexts() -> set[tuple[str, str]]:
    """(SOP class, transfer syntax) pairs of the presentation context tables."""
    lists: dict[str, list[str]] = {}
    contexts: list[tuple[str, str]] = []
    for cells in rows("presentation-contexts"):
        if len(cells) == 2:  # a transfer syntax list
            lists[cells[0]] = re.findall(UID, cells[1])
        else:
            sop = re.fullmatch(UID, cells[1])
            assert sop is not None, cells
            contexts.append((sop.group(1), cells[2]))
    return {(sop, syntax) for sop, name in contexts for syntax in lists[name]}


def policy(name: str) -> str:
    for cells in rows("association-policies"):
        if cells[0] == name:
            return cells[1]
    raise AssertionError(f"no association policy {name!r} in the statement")


@pytest.fixture
def default_listener(free_port: int) -> Iterator[Listener]:
    """The listener with every DICOM setting at the default the statement documents."""
    names = [n for n in settings.CONFIG_DEFAULTS if n.startswith(("BROKER_AE_TITLE", "DICOM_"))]
    with override_settings(**{name: settings.CONFIG_DEFAULTS[name] for name in names}):
        running = server.start("127.0.0.1", free_port, block=False)
        assert running is not None
        try:
            yield Listener("127.0.0.1", free_port, settings.BROKER_AE_TITLE)
        finally:
            running.shutdown()


def accepted_pairs(listener: Listener, proposals: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Propose each (SOP class, transfer syntax) as its own presentation context."""
    accepted: set[tuple[str, str]] = set()
    for start in range(0, len(proposals), CONTEXTS_PER_ASSOCIATION):
        chunk = proposals[start : start + CONTEXTS_PER_ASSOCIATION]
        ae = AE(ae_title="CONFORMANCE")
        contexts = [build_context(sop, [syntax]) for sop, syntax in chunk]
        assoc = keep_responses(
            ae.associate(
                listener.host, listener.port, contexts=contexts, ae_title=listener.ae_title
            )
        )
        if not assoc.is_established:
            # Rejected outright when no context at all is acceptable: nothing accepted.
            assert assoc.is_rejected or assoc.is_aborted
            continue
        try:
            for cx in assoc.accepted_contexts:
                accepted.add((str(cx.abstract_syntax), str(cx.transfer_syntax[0])))
        finally:
            assoc.release()
    return accepted


def test_the_statement_lists_presentation_contexts() -> None:
    documented = documented_contexts()
    assert ("1.2.840.10008.5.1.4.31", "1.2.840.10008.1.2") in documented
    assert ("1.2.840.10008.1.1", "1.2.840.10008.1.2") in documented


def test_the_listener_accepts_exactly_the_documented_contexts(
    default_listener: Listener,
) -> None:
    documented = documented_contexts()
    sop_classes = sorted({sop for sop, _ in documented} | set(COMMON_SOP_CLASSES))
    syntaxes = sorted({ts for _, ts in documented} | set(COMMON_TRANSFER_SYNTAXES))
    proposals = [(sop, ts) for sop in sop_classes for ts in syntaxes]
    # Some of the proposals must be refused, or the test would prove nothing.
    assert len(proposals) > len(documented)
    assert accepted_pairs(default_listener, proposals) == documented


def test_the_association_policies_are_those_negotiated(default_listener: Listener) -> None:
    ae = AE(ae_title="CONFORMANCE")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = keep_responses(
        ae.associate(
            default_listener.host, default_listener.port, ae_title=default_listener.ae_title
        )
    )
    assert assoc.is_established
    try:
        acceptor = assoc.acceptor
        assert policy("Maximum PDU size received (P-DATA-TF)").startswith(
            f"{acceptor.maximum_length} bytes;"
        )
        assert policy("Implementation class UID") == f"`{acceptor.implementation_class_uid}`"
        assert policy("Implementation version name") == f"`{acceptor.implementation_version_name}`"
        assert (
            policy("Application context name")
            == f"`{assoc.acceptor.primitive.application_context_name}`"
        )
    finally:
        assoc.release()


def test_another_called_ae_title_is_rejected_as_documented(default_listener: Listener) -> None:
    assert policy("Called AE title").startswith(f"`{default_listener.ae_title}`")
    ae = AE(ae_title="CONFORMANCE")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate(default_listener.host, default_listener.port, ae_title="NOT_US")
    assert assoc.is_rejected


def test_the_association_limit_rejects_as_documented(free_port: int) -> None:
    """The documented maximum comes from DICOM_MAX_ASSOCIATIONS; one more is rejected
    rejected-transient (2), by the service provider (3), local limit exceeded (2)."""
    assert policy("Maximum number of simultaneous associations") == str(
        settings.CONFIG_DEFAULTS["DICOM_MAX_ASSOCIATIONS"]
    )
    limit = 2
    # Per-address limits (if the listener has them) must not refuse these first.
    with override_settings(DICOM_MAX_ASSOCIATIONS=limit, DICOM_MAX_ASSOCIATIONS_PER_HOST=limit + 1):
        running = server.start("127.0.0.1", free_port, block=False)
        assert running is not None
        held = []
        try:
            ae = AE(ae_title="CONFORMANCE")
            ae.add_requested_context("1.2.840.10008.1.1")
            for _ in range(limit):
                assoc = ae.associate("127.0.0.1", free_port, ae_title=settings.BROKER_AE_TITLE)
                assert assoc.is_established
                held.append(assoc)
            refused = ae.associate("127.0.0.1", free_port, ae_title=settings.BROKER_AE_TITLE)
            assert refused.is_rejected
            primitive = refused.acceptor.primitive
            assert primitive is not None
            assert (primitive.result, primitive.result_source, primitive.diagnostic) == (2, 3, 2)
        finally:
            for assoc in held:
                assoc.release()
            running.shutdown()


def documented_keys() -> list[tuple[int, str, int]]:
    """(tag, VR, depth) of each row of the statement's worklist key table."""
    keys = []
    for cells in rows("mwl-keys"):
        match = re.fullmatch(r"`\(([0-9A-F]{4}),([0-9A-F]{4})\)`", cells[1])
        assert match is not None, cells
        depth = len(cells[0]) - len(cells[0].lstrip(">"))
        keys.append((int(match.group(1) + match.group(2), 16), cells[2], depth))
    return keys


def query_of_every_documented_key() -> tuple[Dataset, set[int], set[int]]:
    """An identifier asking for every documented key (universal matching), with the
    top-level tags and the SPS item's tags it asks for."""
    identifier = Dataset()
    top: set[int] = set()
    sps: set[int] = set()
    parent: Dataset | None = None
    for tag, vr, depth in documented_keys():
        if tag == 0x00080005:  # Specific Character Set: not a key
            continue
        if depth == 0:
            if vr == "SQ":
                item = Dataset()
                identifier.add_new(tag, vr, [item])
                parent = item if tag == 0x00400100 else None
            else:
                identifier.add_new(tag, vr, None)
            top.add(tag)
        elif depth == 1 and parent is not None:
            parent.add_new(tag, vr, [] if vr == "SQ" else None)
            sps.add(tag)
    return identifier, top, sps


@pytest.mark.django_db(transaction=True)
def test_the_scp_knows_and_returns_every_documented_key(dicom_listener: Listener) -> None:
    schedule(accession="ACONF", sps_id="SCONF")
    identifier, top, sps = query_of_every_documented_key()
    assert 0x00400100 in top and 0x00400001 in sps
    answers = find(dicom_listener, identifier)
    # Every key documented is known to the SCP: no 0xFF01 (unsupported key) for any.
    assert [code for code, _ in answers] == [0xFF00, 0x0000]
    answer = answers[0][1]
    assert answer is not None
    assert top <= {int(element.tag) for element in answer}
    item = answer[0x00400100].value[0]
    assert sps <= {int(element.tag) for element in item}
    assert answer.SpecificCharacterSet in ("ISO_IR 100", "ISO_IR 192")


@pytest.mark.django_db(transaction=True)
def test_a_key_the_statement_does_not_list_is_answered_as_unsupported(
    dicom_listener: Listener,
) -> None:
    assert 0x00101010 not in {tag for tag, _, _ in documented_keys()}  # Patient's Age
    schedule(accession="ACONF", sps_id="SCONF")
    identifier = Dataset()
    identifier.PatientID = ""
    identifier.PatientAge = ""
    answers = find(dicom_listener, identifier)
    assert [code for code, _ in answers] == [0xFF01, 0x0000]
