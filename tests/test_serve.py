"""`manage.py serve` as a user runs it: a subprocess on free ports, every part answering."""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.conftest import get_free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Running:
    process: subprocess.Popen[str]
    lines: queue.Queue[str]
    env: dict[str, str]
    http: int
    dicom: int
    hl7: int

    def wait_for_line(self, text: str, timeout: float = 60.0) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            seen.append(line)
            if text in line:
                return seen
        raise AssertionError(f"{text!r} not printed; output so far:\n" + "".join(seen))


@pytest.fixture
def serve_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = dict(os.environ)
    env.update(
        {
            "BROKER_VAR_DIR": str(tmp_path),
            "SECRET_KEY": secrets.token_urlsafe(50),
            "BROKER_HTTP_PORT": str(get_free_port()),
            "BROKER_DICOM_PORT": str(get_free_port()),
            "BROKER_HL7_PORT": str(get_free_port()),
            "PYTHONUNBUFFERED": "1",
        }
    )
    url = env.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        # A fresh SQLite file and the filesystem queue under tmp_path.
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'serve.sqlite3'}"
        yield env
        return
    # CI's second run names PostgreSQL (and Redis): serve from a scratch database on
    # that server, so the test never touches the database the URL names.
    import psycopg

    server_url, _, _ = url.rpartition("/")
    scratch = f"serve_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{scratch}"')
    env["DATABASE_URL"] = f"{server_url}/{scratch}"
    try:
        yield env
    finally:
        with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_serve(env: dict[str, str]) -> Running:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return Running(
        process,
        lines,
        env,
        int(env["BROKER_HTTP_PORT"]),
        int(env["BROKER_DICOM_PORT"]),
        int(env["BROKER_HL7_PORT"]),
    )


@pytest.fixture
def broker(serve_env: dict[str, str]) -> Iterator[Running]:
    env = serve_env
    migrated = manage(env, "migrate", "--no-input", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    running = start_serve(env)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(10)


def http_get(port: int, path: str) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.status, json.loads(response.read())


def hl7_exchange(port: int, message: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\x0b" + message.encode() + b"\x1c\r")
        data = b""
        while not data.endswith(b"\x1c\r"):
            chunk = sock.recv(4096)
            assert chunk, "connection closed before the ACK"
            data += chunk
    return data[1:-2].decode()


def test_serve_runs_every_part_and_stops_cleanly(broker: Running) -> None:
    output = broker.wait_for_line("Broker running")
    text = "".join(output)
    for prefix, port in (("HTTP", broker.http), ("DICOM", broker.dicom), ("HL7", broker.hl7)):
        assert any(line.startswith(prefix) and str(port) in line for line in output), text
    assert any(line.startswith("WORKER") for line in output), text
    assert any(line.startswith("BEAT") for line in output), text

    status, body = http_get(broker.http, "/health/")
    assert status == 200
    assert body["status"] == "ok"

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", broker.dicom, ae_title="WORKLIST")
    assert assoc.is_established
    echo = assoc.send_c_echo()
    assoc.release()
    assert echo.Status == 0x0000

    ack = hl7_exchange(
        broker.hl7,
        "MSH|^~\\&|RIS|HOSP|WORKLIST|BROKER|20261125120000||ADT^A08|SERVE1|P|2.5.1\r"
        "EVN|A08|20261125120000\rPID|1||PAT-SERVE^^^HOSP||DOE^JANE||19700101|F\r",
    )
    assert "MSA|AA|SERVE1" in ack

    # The worker is a real separate process taking tasks from the queue.
    queued = manage(broker.env, "heartbeat")
    assert queued.returncode == 0, queued.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, body = http_get(broker.http, "/health/")
        if body["worker_last_seen"]:
            break
        time.sleep(0.3)
    assert body["worker_last_seen"], "the worker did not run the heartbeat task"

    broker.process.send_signal(signal.SIGTERM)
    assert broker.process.wait(30) == 0
    broker.wait_for_line("Broker stopped.", timeout=5)
    for port in (broker.http, broker.dicom, broker.hl7):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_serve_exits_with_a_clear_message_when_a_port_is_taken(
    serve_env: dict[str, str],
) -> None:
    env = serve_env
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env["BROKER_HL7_PORT"])))
        taken.listen()
        result = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "serve"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"BROKER_HL7_PORT: port {env['BROKER_HL7_PORT']} on 127.0.0.1 is already in use" in (
        result.stderr
    )
