"""The MLLP listener over real sockets: concurrency, limits, TLS, an independent client."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connection

from hl7v2.management.commands import hl7_server
from hl7v2.models import InboundMessage
from hl7v2.status import Outcome
from tests.fixtures_dicom import Listener as DicomListener
from tests.fixtures_dicom import find, worklist_query
from tests.fixtures_hl7 import MLLPClient, RunningListener, msa
from tests.hl7_messages import orm, pid
from worklist.models import Order, Patient

pytestmark = pytest.mark.django_db(transaction=True)

MLLP_SEND = str(Path(sys.executable).parent / "mllp_send")


def test_it_serves_fifty_connections_at_once(hl7_listener: Callable[..., RunningListener]) -> None:
    server = hl7_listener()
    count = 50
    barrier = threading.Barrier(count)
    results: dict[int, list[str]] = {}

    def client(n: int) -> None:
        with MLLPClient(server.port, timeout=30) as c:
            barrier.wait()
            acks = []
            for k in range(2):
                text = orm(control_id=f"M{n}-{k}", patient=pid(f"P{n}"), obr={18: f"A{n}-{k}"})
                acks.append(msa(c.exchange(text))[1])
            results[n] = acks

    threads = [threading.Thread(target=client, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == count
    assert all(acks == ["AA", "AA"] for acks in results.values())
    assert Order.objects.count() == 2 * count
    assert Patient.objects.count() == count


def test_it_closes_an_idle_connection(hl7_listener: Callable[..., RunningListener]) -> None:
    server = hl7_listener(idle_timeout=0.3)
    with MLLPClient(server.port) as client:
        assert msa(client.exchange(orm()))[1] == "AA"
        assert client.closed_by_peer(timeout=5)


def test_it_refuses_connections_beyond_the_limit(
    hl7_listener: Callable[..., RunningListener],
) -> None:
    server = hl7_listener(max_connections=2)
    first, second = MLLPClient(server.port), MLLPClient(server.port)
    try:
        assert msa(first.exchange(orm(control_id="L1")))[1] == "AA"
        assert msa(second.exchange(orm(control_id="L2")))[1] == "AA"
        with MLLPClient(server.port) as third:
            assert third.closed_by_peer(timeout=5)
        assert msa(first.exchange(orm(control_id="L3")))[1] == "AA"
    finally:
        first.close()
        second.close()
    deadline = time.monotonic() + 5
    while server.listener.connections and time.monotonic() < deadline:
        time.sleep(0.01)
    with MLLPClient(server.port) as again:  # a slot is free again
        assert msa(again.exchange(orm(control_id="L4")))[1] == "AA"


def test_it_speaks_mllp_over_tls(
    hl7_listener: Callable[..., RunningListener], tmp_path: Path
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    server = hl7_listener(ssl_context=server_context)
    client_context = ssl.create_default_context(cafile=str(cert))
    client_context.check_hostname = False
    client = MLLPClient(server.port)
    client.sock = client_context.wrap_socket(client.sock)
    with client:
        assert msa(client.exchange(orm(control_id="TLS1")))[1:3] == ["AA", "TLS1"]
    with socket.create_connection(("127.0.0.1", server.port)) as plain:
        plain.sendall(b"\x0bMSH|^~\\&|plain\x1c\r")
        plain.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert plain.recv(100) == b""
    assert InboundMessage.objects.count() == 1  # only TLS1


def test_an_order_sent_with_mllp_send_is_found_by_a_worklist_query(
    hl7_listener: Callable[..., RunningListener],
    dicom_listener: DicomListener,
    tmp_path: Path,
) -> None:
    server = hl7_listener()
    messages = tmp_path / "orders.hl7"
    first = orm(control_id="E2E1", patient=pid("E2EPAT^^^HOSP", "TEST^ENDTOEND"))
    first = first.replace("ACC1", "E2EACC").replace("|CT\r", "|MR\r")
    second = orm(
        control_id="E2E2", patient=pid("E2EPAT^^^HOSP", "TEST^ENDTOEND"), obr={18: "E2EACC2"}
    )
    messages.write_text((first + "\n" + second).replace("\r", "\n"))
    done = subprocess.run(
        [MLLP_SEND, "--loose", "-f", str(messages), "-p", str(server.port), "127.0.0.1"],
        capture_output=True,
        timeout=30,
        check=True,
    )
    acks = done.stdout.decode("latin-1")
    assert "MSA|AA|E2E1" in acks
    assert "MSA|AA|E2E2" in acks
    answers = find(
        dicom_listener,
        worklist_query(
            PatientID="E2EPAT",
            PatientName="",
            AccessionNumber="",
            StudyInstanceUID="",
            sps={"Modality": "MR", "ScheduledStationAETitle": "", "ScheduledProcedureStepID": ""},
        ),
    )
    pending = [ds for status, ds in answers if status in (0xFF00, 0xFF01)]
    assert answers[-1][0] == 0x0000
    assert len(pending) == 1
    found = pending[0]
    assert found is not None
    assert found.AccessionNumber == "E2EACC"
    assert str(found.PatientName) == "TEST^ENDTOEND"
    assert found.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID == "SPS1"
    assert InboundMessage.objects.filter(outcome=Outcome.ACCEPTED).count() == 2


def _test_database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    return (
        f"postgres://{user}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    )


def test_the_command_serves_with_several_processes_on_one_port(free_port: int) -> None:
    manage = Path(__file__).resolve().parent.parent / "manage.py"
    env = dict(os.environ, DATABASE_URL=_test_database_url(), LOG_LEVEL="WARNING")
    process = subprocess.Popen(
        [sys.executable, str(manage), "hl7_server", "--port", str(free_port), "--processes", "2"],
        env=env,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert b"2 processes" in process.stdout.readline()
        for n in range(6):
            with MLLPClient(free_port) as client:
                text = orm(control_id=f"PR{n}", obr={18: f"PR{n}"})
                assert msa(client.exchange(text))[1] == "AA"
        assert Order.objects.count() == 6
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0


def test_the_command_runs_one_process_per_cpu_on_postgresql_and_one_on_sqlite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    expected = 1 if connection.vendor == "sqlite" else 2
    assert hl7_server.default_processes() == expected
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    expected = 1 if connection.vendor == "sqlite" else hl7_server.MAX_DEFAULT_PROCESSES
    assert hl7_server.default_processes() == expected
