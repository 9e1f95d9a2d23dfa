"""Acknowledgements: every kind of ACK, their MSH, MSA and ERR."""

from __future__ import annotations

import pytest

from hl7v2.ack import ErrorDetail, build_ack
from hl7v2.intake import message_receive
from hl7v2.models import InboundMessage
from hl7v2.msh import read_header
from hl7v2.status import Outcome
from tests.hl7_messages import adt, msh, omi, orm

pytestmark = pytest.mark.django_db


def segments(ack: bytes, encoding: str = "latin-1") -> dict[str, list[str]]:
    lines = ack.decode(encoding).rstrip("\r").split("\r")
    return {line[:3]: line.split("|") for line in lines}


def test_it_accepts_with_aa_and_echoes_the_control_id() -> None:
    reply = message_receive(orm(control_id="C123").encode(), peer="test")
    ack = segments(reply.ack)
    assert ack["MSA"][1:3] == ["AA", "C123"]
    assert "ERR" not in ack
    assert reply.outcome == Outcome.ACCEPTED


def test_it_swaps_sender_and_receiver_in_the_ack() -> None:
    ack = segments(message_receive(orm().encode(), peer="test").ack)
    # MSH-3..6 are fields[2..5] (fields[1] is MSH-2).
    assert ack["MSH"][2:6] == ["WORKLIST", "BROKER", "RIS", "HOSP"]
    assert ack["MSH"][8] == "ACK^O01^ACK"
    assert ack["MSH"][11] == "2.3.1"


def test_it_answers_ae_with_err_for_a_missing_accession_number_in_v231() -> None:
    reply = message_receive(orm(obr={18: ""}).encode(), peer="test")
    ack = segments(reply.ack)
    assert ack["MSA"][1:3] == ["AE", "MSG0001"]
    # v2.3.1: ERR-1 = segment^sequence^field^code&text
    assert ack["ERR"][1].startswith("OBR^1^18^101&Accession Number is missing")
    assert reply.outcome == Outcome.ERROR


def test_it_answers_ae_with_err_2_3_8_in_v25() -> None:
    reply = message_receive(omi(ipcs=[{2: "RP1", 4: "SPS1"}]).encode(), peer="test")
    ack = segments(reply.ack)
    assert ack["MSA"][1] == "AE"
    assert ack["ERR"][2] == "IPC^1^1"
    assert ack["ERR"][3] == "101^Accession Number is missing^HL70357"
    assert ack["ERR"][4] == "E"
    assert ack["ERR"][8] == "Accession Number is missing"


def test_it_answers_ae_for_an_unsupported_status_pair() -> None:
    ack = segments(message_receive(orm(orc={1: "NW", 5: "CM"}).encode(), peer="test").ack)
    assert ack["MSA"][1] == "AE"
    assert ack["ERR"][1].startswith("ORC^1^5^103&")
    assert "ORC-1/ORC-5 = NW/CM" in ack["ERR"][1]


def test_it_answers_ae_for_an_unknown_order_on_xo() -> None:
    ack = segments(message_receive(orm(orc={1: "XO", 5: "SC"}).encode(), peer="test").ack)
    assert ack["MSA"][1] == "AE"
    assert ack["ERR"][1].startswith("OBR^1^18^204&unknown order")


def test_it_answers_ae_for_an_unknown_order_on_ca() -> None:
    ack = segments(message_receive(orm(orc={1: "CA", 5: "CA"}).encode(), peer="test").ack)
    assert ack["MSA"][1] == "AE"
    assert "204&unknown order" in ack["ERR"][1]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (orm().replace("ORM^O01", "ORU^R01"), "9"),
        (orm().replace("ORM^O01", "ORM^O02"), "9"),
        (adt("A03"), "9"),
        (orm(version="2.6"), "12"),
        (omi(version="2.3"), "12"),
    ],
    ids=["unsupported type", "unsupported event", "unsupported ADT event", "ORM 2.6", "OMI 2.3"],
)
def test_it_rejects_unsupported_types_and_versions_with_ar(text: str, field: str) -> None:
    reply = message_receive(text.encode(), peer="test")
    ack = segments(reply.ack)
    assert ack["MSA"][1] == "AR"
    assert ack["ERR"][1].split("^")[:3] == ["MSH", "1", field] or ack["ERR"][2] == f"MSH^1^{field}"
    stored = InboundMessage.objects.get(pk=reply.message_id)
    assert stored.outcome == Outcome.REJECTED
    assert stored.error


def test_it_rejects_a_message_without_msh_with_ar() -> None:
    reply = message_receive(b"PID|||123\r", peer="test")
    assert segments(reply.ack)["MSA"][1] == "AR"
    assert InboundMessage.objects.get(pk=reply.message_id).raw == b"PID|||123\r"


def test_it_answers_a_repeated_message_with_aa() -> None:
    message_receive(orm(control_id="DUP1").encode(), peer="test")
    reply = message_receive(orm(control_id="DUP1").encode(), peer="test")
    assert segments(reply.ack)["MSA"][1:3] == ["AA", "DUP1"]
    assert reply.outcome == Outcome.DUPLICATE


def test_it_answers_undecodable_bytes_with_ae_naming_msh_18() -> None:
    raw = orm(charset="UNICODE UTF-8", patient="PID|||P1||M\xfcller").encode("latin-1")
    reply = message_receive(raw, peer="test")
    ack = segments(reply.ack)
    assert ack["MSA"][1] == "AE"
    assert ack["ERR"][1].startswith("MSH^1^18^102&")


def test_it_answers_in_the_message_encoding() -> None:
    raw = orm(charset="8859/1", patient="PID|||P1||M\xfcller", obr={18: ""}).encode("latin-1")
    reply = message_receive(raw, peer="test")
    ack = segments(reply.ack)
    assert ack["MSH"][17] == "8859/1"
    reply = message_receive(
        orm(charset="UNICODE UTF-8", control_id="U1").encode("utf-8"), peer="test"
    )
    assert segments(reply.ack, "utf-8")["MSH"][17] == "UNICODE UTF-8"


def test_build_ack_escapes_delimiters_in_the_error_text() -> None:
    header = read_header(msh().encode())
    text = build_ack(header, "AE", ErrorDetail("a|b^c", segment="PID", field=3, code="101"))
    assert "a\\F\\b\\S\\c" in text
    assert text.count("\r") == 3
