"""The worklist C-FIND SCP over real sockets: statuses, limits, associations (cancel:
test_mwl_cancel.py)."""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.db.backends.signals import connection_created
from pydicom import Dataset
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityWorklistInformationFind,
    Verification,
)

from broker.dicom import server
from core.dicom import status
from tests.fixtures_dicom import (
    Listener,
    find,
    schedule,
    worklist_query,
)
from tests.scu import keep_responses
from worklist.models import Device

pytestmark = pytest.mark.django_db(transaction=True)


def statuses(answers: list[tuple[int, Dataset | None]]) -> list[int]:
    return [code for code, _ in answers]


def test_it_answers_c_echo(dicom_listener: Listener) -> None:
    ae = AE(ae_title="ECHOSCU")
    ae.add_requested_context(Verification)
    assoc = keep_responses(
        ae.associate(dicom_listener.host, dicom_listener.port, ae_title=dicom_listener.ae_title)
    )
    assert assoc.is_established
    assert assoc.send_c_echo().Status == status.SUCCESS
    assoc.release()


def test_it_sends_one_pending_answer_per_step_then_success(dicom_listener: Listener) -> None:
    schedule(sps_id="S1")
    schedule(sps_id="S2")
    answers = find(
        dicom_listener, worklist_query(PatientName="", sps={"ScheduledProcedureStepID": ""})
    )
    assert statuses(answers) == [status.PENDING, status.PENDING, status.SUCCESS]
    ids = sorted(
        a.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID
        for _, a in answers[:2]
        if a is not None
    )
    assert ids == ["S1", "S2"]


def test_unknown_keys_give_pending_with_warning(dicom_listener: Listener) -> None:
    schedule()
    answers = find(dicom_listener, worklist_query(PatientName="", StudyDescription=""))
    assert statuses(answers) == [status.PENDING_WARNING_OPTIONAL_KEYS, status.SUCCESS]
    assert answers[0][1].StudyDescription == ""  # type: ignore[union-attr]


def test_no_match_is_just_success(dicom_listener: Listener) -> None:
    answers = find(dicom_listener, worklist_query(PatientID="NOBODY"))
    assert statuses(answers) == [status.SUCCESS]


def test_it_stops_at_the_maximum_number_of_answers_with_a_clear_status(
    dicom_listener: Listener, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.MWL_MAX_ANSWERS = 3
    for n in range(5):
        schedule(patient_id=f"P{n}", accession=f"A{n}")
    answers = find(dicom_listener, worklist_query(AccessionNumber=""))
    assert statuses(answers) == [status.PENDING] * 3 + [status.TOO_MANY_MATCHES]
    final = answers[-1][1]
    assert final is not None
    assert "narrow the query" in final.ErrorComment
    assert "MWL_MAX_ANSWERS=3" in caplog.text


@pytest.mark.parametrize(
    ("sps", "tag"),
    [
        ({"ScheduledProcedureStepStartDate": "2026-13-45"}, 0x00400002),
        ({"ScheduledProcedureStepStartDate": "20261231-20260101"}, 0x00400002),
        ({"ScheduledProcedureStepStartTime": "25"}, 0x00400003),
    ],
)
def test_an_invalid_value_fails_naming_the_element_and_the_association_goes_on(
    dicom_listener: Listener, sps: dict[str, str], tag: int
) -> None:
    schedule()
    ae = AE(ae_title="BADSCU")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = keep_responses(
        ae.associate(dicom_listener.host, dicom_listener.port, ae_title=dicom_listener.ae_title)
    )
    bad = list(
        assoc.send_c_find(worklist_query(PatientName="", sps=sps), ModalityWorklistInformationFind)
    )
    good = list(assoc.send_c_find(worklist_query(PatientName=""), ModalityWorklistInformationFind))
    assoc.release()
    ((failure, _),) = bad
    assert failure.Status == status.UNABLE_TO_PROCESS_INVALID_QUERY_VALUE
    assert failure.OffendingElement == Tag(tag)
    assert failure.ErrorComment
    assert [int(st.Status) for st, _ in good] == [status.PENDING, status.SUCCESS]


def test_a_query_retrieve_identifier_does_not_match_the_sop_class(dicom_listener: Listener) -> None:
    answers = find(dicom_listener, worklist_query(QueryRetrieveLevel="STUDY", PatientID=""))
    assert statuses(answers) == [status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS]
    assert answers[0][1].OffendingElement == Tag(0x00080052)  # type: ignore[union-attr]


def test_an_undecodable_identifier_is_unable_to_process(dicom_listener: Listener) -> None:
    query = worklist_query(PatientName="")
    # A step sequence whose only item claims more bytes than the identifier holds; sent
    # as raw bytes (with the original encoding set, pydicom does not re-encode them).
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0x100) + b"\x10\x00\x10\x00"
    query._dict[Tag(0x00400100)] = RawDataElement(
        Tag(0x00400100), "SQ", 0xFFFFFFFF, item, 0, True, True
    )
    query.set_original_encoding(True, True, query._character_set)
    ae = AE(ae_title="RAWSCU")
    ae.add_requested_context(ModalityWorklistInformationFind, [ImplicitVRLittleEndian])
    assoc = keep_responses(
        ae.associate(dicom_listener.host, dicom_listener.port, ae_title="WORKLIST")
    )
    responses = list(assoc.send_c_find(query, ModalityWorklistInformationFind))
    assoc.release()
    ((response, _),) = responses
    assert response.Status == status.UNABLE_TO_PROCESS_UNDECODABLE_IDENTIFIER
    assert response.ErrorComment
    assert statuses(find(dicom_listener, worklist_query(PatientID="X"))) == [status.SUCCESS]


def test_the_listener_survives_garbage_and_silent_peers(dicom_listener: Listener) -> None:
    schedule()
    silent = socket.create_connection((dicom_listener.host, dicom_listener.port))
    garbage = socket.create_connection((dicom_listener.host, dicom_listener.port))
    garbage.sendall(b"\x01\x00\x00\x00\x00\x10" + b"\xff" * 64)
    truncated = socket.create_connection((dicom_listener.host, dicom_listener.port))
    truncated.sendall(b"\x01\x00\x00\x00\x01\x00")  # announces 256 bytes, sends none
    try:
        answers = find(dicom_listener, worklist_query(PatientName=""))
        assert statuses(answers) == [status.PENDING, status.SUCCESS]
    finally:
        for s in (silent, garbage, truncated):
            s.close()


def test_it_serves_many_associations_at_once(dicom_listener: Listener) -> None:
    for n in range(5):
        schedule(patient_id=f"P{n}", accession=f"A{n}", stations=(f"ST{n % 2}",))
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(24)

    def one(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            station = f"ST{n % 2}"
            answers = find(
                dicom_listener,
                worklist_query(PatientName="", sps={"ScheduledStationAETitle": station}),
                calling=f"SCU{n}",
            )
            results[n] = statuses(answers)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(results) == 24
    for n, codes in results.items():
        expected = 3 if n % 2 == 0 else 2
        assert codes == [status.PENDING] * expected + [status.SUCCESS]


def test_it_rejects_an_unknown_called_ae_title(dicom_listener: Listener) -> None:
    ae = AE(ae_title="SCU")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = keep_responses(
        ae.associate(dicom_listener.host, dicom_listener.port, ae_title="NOT_US")
    )
    assert assoc.is_rejected
    assert assoc.acceptor.primitive is not None
    assert assoc.acceptor.primitive.diagnostic == 0x07


def test_calling_ae_titles_are_accepted_by_default(dicom_listener: Listener) -> None:
    query = worklist_query(PatientID="NOBODY")
    assert statuses(find(dicom_listener, query, calling="ANYONE")) == [status.SUCCESS]


def test_it_restricts_calling_ae_titles_to_the_device_registry_when_configured(
    dicom_listener: Listener, settings: Any
) -> None:
    settings.DICOM_RESTRICT_CALLING_AE = True
    Device.objects.create(ae_title="CT1")
    Device.objects.create(ae_title="OLDCT", is_active=False)
    query = worklist_query(PatientID="NOBODY")
    assert statuses(find(dicom_listener, query, calling="CT1")) == [status.SUCCESS]
    for calling in ("STRANGER", "OLDCT"):
        ae = AE(ae_title=calling)
        ae.add_requested_context(ModalityWorklistInformationFind)
        assoc = keep_responses(
            ae.associate(dicom_listener.host, dicom_listener.port, ae_title="WORKLIST")
        )
        assert assoc.is_rejected
        assert assoc.acceptor.primitive is not None
        assert assoc.acceptor.primitive.diagnostic == 0x03


def test_it_logs_one_line_per_association_without_patient_data(
    dicom_listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    schedule(patient_id="SECRET-ID", patient_name="SECRET^NAME")
    caplog.set_level("INFO")
    find(dicom_listener, worklist_query(PatientName="SECRET*", PatientID=""), calling="LOGSCU")
    deadline = time.monotonic() + 5
    while "released" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    lines = [r.getMessage() for r in caplog.records if "LOGSCU" in r.getMessage()]
    assert len(lines) == 1
    assert "calling=LOGSCU called=WORKLIST" in lines[0]
    assert "released" in lines[0]
    assert "answers=1" in lines[0]
    assert "SECRET" not in caplog.text


@pytest.fixture
def thread_connections() -> Iterator[list[tuple[str, Any]]]:
    """Every database connection opened outside the test's own thread: (thread, wrapper)."""
    opened: list[tuple[str, Any]] = []
    main = threading.get_ident()

    def on_created(sender: Any, connection: Any, **kwargs: Any) -> None:
        if threading.get_ident() != main:
            opened.append((threading.current_thread().name, weakref.ref(connection)))

    connection_created.connect(on_created)
    try:
        yield opened
    finally:
        connection_created.disconnect(on_created)


def _backend_connections() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def _wait_for(condition: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_thousand_associations_use_a_few_database_connections_and_close_them(
    free_port: int, settings: Any, thread_connections: list[tuple[str, Any]]
) -> None:
    settings.DICOM_DB_WORKERS = 3
    schedule()
    vendor = connections["default"].vendor
    before = _backend_connections() if vendor == "postgresql" else 0
    threads_before = threading.active_count()
    running = server.start("127.0.0.1", free_port, block=False)
    assert running is not None
    listener = Listener("127.0.0.1", free_port, "WORKLIST")
    query = worklist_query(PatientName="")
    # 1000 associations, 10 at a time: each one a new thread on the listener's side.
    rounds, parallel = 1000, 10
    failures: list[str] = []

    def client() -> None:
        ae = AE(ae_title="LEAKSCU")
        ae.add_requested_context(ModalityWorklistInformationFind)
        for _ in range(rounds // parallel):
            assoc = keep_responses(ae.associate(listener.host, listener.port, ae_title="WORKLIST"))
            if not assoc.is_established:
                failures.append("association not established")
                continue
            codes = [
                int(st.Status) if st else -1
                for st, _ in assoc.send_c_find(query, ModalityWorklistInformationFind)
            ]
            assoc.release()
            if codes != [status.PENDING, status.SUCCESS]:
                failures.append(repr(codes))

    try:
        clients = [threading.Thread(target=client) for _ in range(parallel)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(timeout=120)
        assert failures == [], failures[:5]
        # The association threads opened no connection; the workers at most one each.
        wrappers = {id(ref()): name for name, ref in thread_connections if ref() is not None}
        assert not [name for name, _ in thread_connections if name.startswith("Acceptor")]
        assert 1 <= len(wrappers) <= 3
        assert {name for name, _ in thread_connections} <= {f"dicom-db_{n}" for n in range(3)}
        if vendor == "postgresql":
            assert _backend_connections() <= before + 3
    finally:
        running.shutdown()

    def still_open() -> list[Any]:
        return [ref for _, ref in thread_connections if (c := ref()) is not None and c.connection]

    # Stopping the listener closed the workers' connections, and every thread ended.
    assert still_open() == []
    _wait_for(lambda: threading.active_count() <= threads_before, 30)
    assert threading.active_count() <= threads_before, [t.name for t in threading.enumerate()]
    if vendor == "postgresql":
        # A backend leaves pg_stat_activity a moment after its client has closed.
        _wait_for(lambda: _backend_connections() <= before, 10)
        assert _backend_connections() <= before


def test_it_serves_dicom_over_tls(free_port: int, settings: Any, tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    settings.DICOM_TLS_CERT, settings.DICOM_TLS_KEY = str(cert), str(key)
    schedule()
    running = server.start("127.0.0.1", free_port, block=False)
    assert running is not None
    silent = socket.create_connection(("127.0.0.1", free_port))
    try:
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        client.check_hostname = False
        ae = AE(ae_title="TLSSCU")
        ae.add_requested_context(ModalityWorklistInformationFind)
        assoc = keep_responses(
            ae.associate(
                "127.0.0.1", free_port, ae_title="WORKLIST", tls_args=(client, "localhost")
            )
        )
        assert assoc.is_established, "a silent peer must not hold up the TLS handshake of others"
        codes = [
            int(st.Status)
            for st, _ in assoc.send_c_find(
                worklist_query(PatientName=""), ModalityWorklistInformationFind
            )
        ]
        assert codes == [status.PENDING, status.SUCCESS]
        # A C-CANCEL over TLS: tests/test_mwl_cancel.py.
        assoc.release()
    finally:
        silent.close()
        running.shutdown()


@pytest.mark.parametrize(
    "transfer_syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian]
)
def test_it_answers_in_each_transfer_syntax(dicom_listener: Listener, transfer_syntax: str) -> None:
    schedule(patient_name="Müller^Jürgen", patient={"pregnancy_status": 4})
    ae = AE(ae_title="TSSCU")
    ae.add_requested_context(ModalityWorklistInformationFind, [transfer_syntax])
    assoc = keep_responses(
        ae.associate(dicom_listener.host, dicom_listener.port, ae_title="WORKLIST")
    )
    assert assoc.accepted_contexts[0].transfer_syntax[0] == transfer_syntax
    query = worklist_query(PatientName="", PregnancyStatus=None, sps={})
    answers = list(assoc.send_c_find(query, ModalityWorklistInformationFind))
    assoc.release()
    assert [int(st.Status) for st, _ in answers] == [status.PENDING, status.SUCCESS]
    answer = answers[0][1]
    assert answer is not None
    assert answer.PatientName == "Müller^Jürgen"
    assert answer.PregnancyStatus == 4
    assert answer.ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "CT1"


def test_answers_larger_than_the_peers_pdu_are_fragmented(dicom_listener: Listener) -> None:
    schedule(step={"comments": "x" * 3000})
    ae = AE(ae_title="SMALLPDU")
    ae.maximum_pdu_size = 1024
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = keep_responses(
        ae.associate(dicom_listener.host, dicom_listener.port, ae_title="WORKLIST")
    )
    query = worklist_query(PatientName="", sps={"CommentsOnTheScheduledProcedureStep": ""})
    answers = list(assoc.send_c_find(query, ModalityWorklistInformationFind))
    assoc.release()
    assert [int(st.Status) for st, _ in answers] == [status.PENDING, status.SUCCESS]
    answer = answers[0][1]
    assert answer is not None
    item = answer.ScheduledProcedureStepSequence[0]
    assert item.CommentsOnTheScheduledProcedureStep == "x" * 3000


def test_the_worklist_settings_apply_to_queries(dicom_listener: Listener, settings: Any) -> None:
    schedule(patient_id="P1", accession="A1", patient_name="Doe^Jane", stations=("CT1",))
    schedule(patient_id="P2", accession="A2", patient_name="Roe^Rick", stations=("MR1",))
    query = worklist_query(PatientName="", sps={"ScheduledStationAETitle": ""})
    assert len(find(dicom_listener, query, calling="CT1")) == 3
    settings.MWL_CALLING_AE_AS_STATION = True
    answers = find(dicom_listener, query, calling="CT1")
    assert [a.PatientName for _, a in answers[:-1] if a is not None] == ["Doe^Jane"]
    settings.MWL_CALLING_AE_AS_STATION = False
    by_name = worklist_query(PatientName="DOE^*")
    assert statuses(find(dicom_listener, by_name)) == [status.SUCCESS]
    settings.MWL_PN_CASE_INSENSITIVE = True
    assert statuses(find(dicom_listener, by_name)) == [status.PENDING, status.SUCCESS]
