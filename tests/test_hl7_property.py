"""Property: whatever bytes arrive, ``message_receive`` stores a row and answers an ACK.

Hypothesis generates raw bytes, MSH-shaped garbage and valid messages with fields
replaced, cut or repeated; each must come back as an AA, AE or AR acknowledgement whose
message is in the log, never as an exception (which would close the connection without
an ACK and make the sender resend it forever).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hl7v2 import mapping
from hl7v2.errors import MappingError
from hl7v2.intake import message_receive
from hl7v2.models import InboundMessage
from hl7v2.msh import MSHError, read_header
from hl7v2.parser import parse
from tests.hl7_messages import adt, omi, orm, segment

pytestmark = pytest.mark.django_db

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# MSA-1 right after MSA and whatever field separator the message chose.
_MSA = re.compile(rb"(?:^|\r)MSA(.)(AA|AE|AR)\1")


def assert_answered(raw: bytes) -> str:
    reply = message_receive(raw, peer="hypothesis")
    match = _MSA.search(reply.ack)
    assert match, reply.ack
    assert reply.ack.startswith(b"MSH")
    assert InboundMessage.objects.filter(pk=reply.message_id).exists()
    return match.group(2).decode()


# Text that HL7 senders and attackers put in fields: separators, escapes, NUL, non-ASCII.
field_text = st.text(
    alphabet=st.sampled_from([*list("AZaz09 |^~\\&\r\n\x00\x1c\x0b.-+eE"), "é", "ü", "中", "�"]),
    max_size=30,
)
numbers = st.sampled_from(
    ["NaN", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "1E+99", "1e-999999", "-0", "", '""']
) | st.from_regex(r"\A-?[0-9]{0,6}(\.[0-9]{0,4})?([eE][+-]?[0-9]{1,4})?\Z")


def _messages() -> list[str]:
    return [orm(), omi(), adt("A08"), adt("A40", mrg="OLD^^^HOSP")]


@st.composite
def mutated(draw: Any) -> bytes:
    """A valid message with some fields replaced, then perhaps cut short."""
    text = draw(st.sampled_from(_messages()))
    lines = text.split("\r")
    for _ in range(draw(st.integers(0, 4))):
        row = draw(st.integers(0, len(lines) - 1))
        fields = lines[row].split("|")
        col = draw(st.integers(0, len(fields)))
        value = draw(field_text)
        if col < len(fields):
            fields[col] = value
        else:
            fields.append(value)
        lines[row] = "|".join(fields)
    if draw(st.booleans()):
        weight = draw(numbers)
        unit = draw(st.sampled_from(["kg", "g", "lb", "KG", "", "stone"]))
        lines.insert(2, segment("OBX", {2: "NM", 3: "29463-7^Body weight^LN", 5: weight, 6: unit}))
    data = "\r".join(lines).encode(draw(st.sampled_from(["latin-1", "utf-8"])), errors="replace")
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


@PROPERTY
@given(st.binary(max_size=600))
@example(b"")
@example(b"MSH")
@example(b"MSH\r")
@example(b"MSH\rPID|1||X")
@example(b"MSH|\r")
@example(b"MSH|^~\\&\r")
@example(b"MSH\x00^~\\&|A|B|C|D|20260101||ORM^O01|1|P|2.3.1\r")
def test_any_bytes_get_an_ack_and_a_row(raw: bytes) -> None:
    assert_answered(raw)


@PROPERTY
@given(st.binary(max_size=400).map(lambda b: b"MSH" + b))
def test_anything_after_msh_gets_an_ack_and_a_row(raw: bytes) -> None:
    assert_answered(raw)


@PROPERTY
@given(mutated())
def test_mutated_messages_get_an_ack_and_a_row(raw: bytes) -> None:
    assert_answered(raw)


@PROPERTY
@given(numbers)
@example("NaN")
@example("Infinity")
@example("1E+99")
def test_any_weight_is_applied_or_answered_ae(weight: str) -> None:
    obx = segment("OBX", {2: "NM", 3: "29463-7^Body weight^LN", 5: weight, 6: "kg"})
    code = assert_answered(orm(control_id=f"W{abs(hash(weight))}", extra=[obx]).encode())
    assert code in ("AA", "AE")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_the_header_reader_raises_only_its_own_error(raw: bytes) -> None:
    with contextlib.suppress(MSHError):
        read_header(raw)


@settings(max_examples=300, deadline=None)
@given(mutated())
def test_the_parser_and_mapping_raise_only_mapping_errors(raw: bytes) -> None:
    text = raw.decode("latin-1")
    try:
        message = parse(text)
        header = read_header(raw)
        kind = header.message_type.split(header.component_sep)
        key = (kind[0].upper(), kind[1].upper() if len(kind) > 1 else "")
        entry = mapping.SUPPORTED.get(key)
        if entry is None:
            return
        if entry[0] == mapping.ADT:
            mapping.adt_message(message, key[1])
        else:
            mapping.order_message(message, entry[0], _config())
    except (MappingError, MSHError):
        pass


def _config() -> Any:
    from hl7v2 import apply

    return apply.mapping_config()
