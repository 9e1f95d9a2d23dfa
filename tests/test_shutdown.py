"""`serve` stops within STOP_TIMEOUT, without SIGKILL, with idle and busy connections open,
and every message it acknowledged is in the database."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest
from pydicom import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityWorklistInformationFind,
    Verification,
)

from broker.management.commands.serve import STOP_TIMEOUT
from core.mllp import END, START, FrameDecoder
from tests.hl7_messages import orm
from tests.scu import keep_responses
from tests.test_serve import Running, broker, manage, serve_env

__all__ = ["broker", "serve_env"]  # fixtures, used by name


# serve, migrations and five processes on a loaded machine: more than the default.
@pytest.mark.timeout(360)
def test_serve_stops_in_time_with_open_connections_and_loses_no_acked_message(
    broker: Running,
) -> None:
    started_lines = broker.wait_for_line("Broker running")

    def connect(port: int) -> socket.socket:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError as exc:
            time.sleep(1)
            more = []
            while not broker.lines.empty():
                more.append(broker.lines.get())
            raise AssertionError(
                f"port {port}: {exc}; serve said:\n" + "".join(started_lines + more)
            ) from exc

    # Idle: an MLLP connection that sent nothing, one that sent half a message, a raw
    # DICOM connection, and an established association that asks nothing.
    idle_hl7 = connect(broker.hl7)
    half_hl7 = connect(broker.hl7)
    half_hl7.sendall(START + b"MSH|^~\\&|RIS|HOSP|WORKLIST|BROKER|2026")
    idle_dicom = connect(broker.dicom)
    ae = AE(ae_title="IDLESCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context(ModalityWorklistInformationFind)
    idle_assoc = keep_responses(ae.associate("127.0.0.1", broker.dicom, ae_title="WORKLIST"))
    assert idle_assoc.is_established

    # Busy: orders one after another, and worklist queries, until the broker goes.
    acked: list[str] = []
    stop = threading.Event()

    def send_orders() -> None:
        sock = socket.create_connection(("127.0.0.1", broker.hl7), timeout=20)
        decoder = FrameDecoder(max_size=1 << 20)
        n = 0
        try:
            while not stop.is_set():
                n += 1
                control_id = f"SD{n}"
                sock.sendall(START + orm(control_id=control_id).encode() + END)
                frames: list[bytes] = []
                while not frames:
                    data = sock.recv(65536)
                    if not data:
                        return
                    frames = [f for f in decoder.feed(data) if isinstance(f, bytes)]
                if b"MSA|AA|" + control_id.encode() in frames[0]:
                    acked.append(control_id)
        except OSError:
            return
        finally:
            sock.close()

    def query() -> None:
        scu = AE(ae_title="BUSYSCU")
        scu.add_requested_context(ModalityWorklistInformationFind)
        while not stop.is_set():
            assoc = keep_responses(scu.associate("127.0.0.1", broker.dicom, ae_title="WORKLIST"))
            if not assoc.is_established:
                return
            identifier = Dataset()
            identifier.PatientName = ""
            list(assoc.send_c_find(identifier, ModalityWorklistInformationFind))
            assoc.release()

    workers = [threading.Thread(target=send_orders), threading.Thread(target=query)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 60
    while len(acked) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(acked) >= 20

    started = time.monotonic()
    broker.process.send_signal(signal.SIGTERM)
    code = broker.process.wait(STOP_TIMEOUT + 30)
    elapsed = time.monotonic() - started
    stop.set()
    for worker in workers:
        worker.join(30)
    for sock in (idle_hl7, half_hl7, idle_dicom):
        sock.close()
    output = "".join(broker.wait_for_line("Broker stopped.", timeout=10))
    assert code == 0, output[-3000:]
    assert "killed" not in output, output[-3000:]
    assert elapsed < STOP_TIMEOUT, f"took {elapsed:.1f} s"

    shown = manage(
        broker.env,
        "shell",
        "-c",
        "from hl7v2.models import InboundMessage as M; "
        "print(' '.join(M.objects.filter(outcome='AA').values_list('control_id', flat=True)))",
    )
    assert shown.returncode == 0, shown.stderr
    stored = set(shown.stdout.split())
    assert set(acked) <= stored, sorted(set(acked) - stored)
