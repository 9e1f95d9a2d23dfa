"""No patient data in the logs: a canary patient goes through every door of `serve`.

A unique patient name (and ID) is sent through HL7 (orders, an update, messages that
fail on it), worklist C-FIND (matching on it, and an invalid value made of it), MPPS,
the admin's searches and the API, against `manage.py serve` with LOG_LEVEL=INFO. Every
line the five processes print (gunicorn's access log, listeners, worker, beat) is
searched for it. The in-process filter that withholds exception texts is checked too.
"""

from __future__ import annotations

import http.cookiejar
import logging
import re
import signal
import socket
import threading
import time
import urllib.parse
import urllib.request
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
)

from broker.logfilters import WITHHELD, WithholdValues
from core.mllp import END, START, FrameDecoder
from tests.hl7_messages import adt, orm, pid
from tests.scu import keep_responses
from tests.test_serve import Running, hl7_exchange, manage, serve_env, start_serve

__all__ = ["serve_env"]  # the fixture, used by name

CANARY = f"ZZCANARY{uuid.uuid4().hex[:8].upper()}"
CANARY_ID = f"CAN{uuid.uuid4().hex[:8].upper()}"


class CanaryRIS(threading.Thread):
    """A RIS that refuses every status message with the canary in its error text."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.received = 0

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                decoder = FrameDecoder(max_size=1 << 20)
                try:
                    while True:
                        data = conn.recv(65536)
                        if not data:
                            break
                        for frame in decoder.feed(data):
                            if not isinstance(frame, bytes):
                                continue
                            self.received += 1
                            control = frame.split(b"\r")[0].split(b"|")[9]
                            ack = (
                                b"MSH|^~\\&|RIS|HOSP|WORKLIST|BROKER|20261125||ACK|R1|P|2.3.1\r"
                                b"MSA|AE|"
                                + control
                                + b"|patient "
                                + CANARY.encode()
                                + b" unknown\r"
                                b"ERR|^^^207&" + CANARY.encode() + b"\r"
                            )
                            conn.sendall(START + ack + END)
                except OSError:
                    continue


@pytest.fixture
def canary_ris() -> Iterator[CanaryRIS]:
    ris = CanaryRIS()
    ris.start()
    yield ris
    ris.server.close()


@pytest.fixture
def serve_with_admin(serve_env: dict[str, str], canary_ris: CanaryRIS) -> Iterator[Running]:
    env = {
        **serve_env,
        "RIS_HL7_HOST": "127.0.0.1",
        "RIS_HL7_PORT": str(canary_ris.port),
        "RIS_HL7_RETRY_DELAY": "0.2",
        "RIS_HL7_MAX_ATTEMPTS": "2",
        "LOG_LEVEL": "INFO",
        "DJANGO_SUPERUSER_USERNAME": "admin",
        "DJANGO_SUPERUSER_PASSWORD": "canary-test-pw-1",
        "DJANGO_SUPERUSER_EMAIL": "admin@example.org",
    }
    for args in (("migrate", "--no-input", "-v", "0"), ("createsuperuser", "--no-input")):
        done = manage(env, *args)
        assert done.returncode == 0, done.stderr
    running = start_serve(env)
    try:
        running.wait_for_line("Broker running")
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(10)


def send_hl7(running: Running) -> None:
    patient = pid(f"{CANARY_ID}^^^HOSP", f"{CANARY}^ALICE")
    assert "MSA|AA" in hl7_exchange(running.hl7, orm(control_id="CAN1", patient=patient))
    update = pid(f"{CANARY_ID}^^^HOSP", f"{CANARY}^ALICE^B")
    assert "MSA|AA" in hl7_exchange(running.hl7, adt("A08", control_id="CAN2", patient=update))
    # Fails on a field that holds the canary: the ACK may quote it, the log must not.
    bad = pid(f"{CANARY_ID}^^^HOSP", f"{CANARY}^ALICE", p7=CANARY)
    assert "MSA|AE" in hl7_exchange(running.hl7, orm(control_id="CAN3", patient=bad))
    # The same MSH-10 with other content.
    assert "MSA|AE" in hl7_exchange(
        running.hl7, orm(control_id="CAN1", patient=patient, obr={24: "MR"})
    )


def dicom(running: Running) -> None:
    ae = AE(ae_title="CANARYSCU")
    ae.add_requested_context(ModalityWorklistInformationFind)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = keep_responses(ae.associate("127.0.0.1", running.dicom, ae_title="WORKLIST"))
    assert assoc.is_established
    try:
        for name in (f"{CANARY}*", f"{CANARY}^ALICE"):
            query = Dataset()
            query.PatientName = name
            query.PatientID = ""
            query.ScheduledProcedureStepSequence = [Dataset()]
            codes = [
                int(s.Status) if s else None
                for s, _ in assoc.send_c_find(query, ModalityWorklistInformationFind)
            ]
            assert codes[-1] == 0x0000
        broken = Dataset()
        broken.PatientBirthDate = CANARY  # not a date: pydicom complains, quoting it
        broken.PatientName = ""
        list(assoc.send_c_find(broken, ModalityWorklistInformationFind))
        mpps = Dataset()
        mpps.SpecificCharacterSet = "ISO_IR 100"
        mpps.Modality = "CT"
        mpps.PatientName = f"{CANARY}^ALICE"
        mpps.PatientID = CANARY_ID
        mpps.PerformedStationAETitle = "CT1"
        mpps.PerformedProcedureStepStartDate = "20261125"
        mpps.PerformedProcedureStepStartTime = "093000"
        mpps.PerformedProcedureStepStatus = "IN PROGRESS"
        mpps.PerformedProcedureStepID = "CANPPS"
        mpps.PerformedSeriesSequence = []
        for keyword in (
            "ProcedureCodeSequence",
            "ReferencedPatientSequence",
            "PerformedProtocolCodeSequence",
        ):
            setattr(mpps, keyword, [])
        for keyword in (
            "PatientBirthDate",
            "PatientSex",
            "StudyID",
            "PerformedStationName",
            "PerformedLocation",
            "PerformedProcedureStepEndDate",
            "PerformedProcedureStepEndTime",
            "PerformedProcedureStepDescription",
            "PerformedProcedureTypeDescription",
        ):
            setattr(mpps, keyword, "")
        # The step the order CAN1 scheduled: the MPPS links to it, and the RIS is told.
        item = Dataset()
        item.StudyInstanceUID = f"1.2.826.0.1.99.{zlib.crc32(b'ACC1')}.1"
        item.AccessionNumber = "ACC1"
        item.RequestedProcedureID = "RP1"
        item.ScheduledProcedureStepID = "SPS1"
        item.ReferencedStudySequence = []
        item.RequestedProcedureDescription = ""
        item.ScheduledProcedureStepDescription = ""
        item.ScheduledProtocolCodeSequence = []
        mpps.ScheduledStepAttributesSequence = [item]
        status, _ = assoc.send_n_create(mpps, ModalityPerformedProcedureStep, generate_uid())
        assert status is not None and int(status.Status) in (0x0000, 0x0116, 0xB300), status
    finally:
        assoc.release()


def web(running: Running) -> None:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = f"http://127.0.0.1:{running.http}"
    page = opener.open(f"{base}/admin/login/", timeout=20).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token
    form = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token.group(1),
            "username": "admin",
            "password": "canary-test-pw-1",
            "next": "/admin/",
        }
    ).encode()
    opener.open(
        urllib.request.Request(
            f"{base}/admin/login/?next=/admin/", data=form, headers={"Referer": f"{base}/"}
        ),
        timeout=20,
    ).read()
    for path in (
        "/admin/worklist/patient/",
        "/admin/hl7v2/inboundmessage/",
        "/admin/worklist/scheduledprocedurestep/",
    ):
        html = opener.open(f"{base}{path}?q={CANARY}", timeout=20).read().decode()
        assert "Log in" not in html or "Log out" in html
    with pytest.raises(urllib.error.HTTPError):
        # Not found, with the canary in the path and the query: logged as a 404.
        opener.open(f"{base}/admin/nothing-{CANARY}/?q={CANARY}", timeout=20)
    opener.open(f"{base}/api/v1/steps/?patient_name={CANARY}", timeout=20).read()


# serve, migrations and five processes on a loaded machine: more than the default.
@pytest.mark.timeout(360)
def test_the_canary_never_appears_in_any_log_line(
    serve_with_admin: Running, canary_ris: CanaryRIS
) -> None:
    running = serve_with_admin
    send_hl7(running)
    dicom(running)
    web(running)
    # The worker sent the IP status, was refused (canary in the RIS's text) and retried.
    deadline = time.monotonic() + 60
    while canary_ris.received < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert canary_ris.received >= 2
    running.process.send_signal(signal.SIGTERM)
    lines = running.wait_for_line("Broker stopped.", timeout=60)
    text = "".join(lines)
    # The logs were written (so an empty output does not pass) ...
    assert "HL7 ORM^O01 CAN1" in text, text[-3000:]
    assert "DICOM association" in text
    assert '"GET /admin/worklist/patient/" 200' in text
    assert "not accepted (AE)" in text
    # ... and hold neither the name nor the ID, in any process's output.
    leaks = [line for line in lines if CANARY in line or CANARY_ID in line]
    assert leaks == []


def test_exception_texts_are_withheld_but_the_frames_kept(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    log = logging.getLogger("tests.canary")
    handler = logging.FileHandler(tmp_path / "log.txt")
    handler.addFilter(WithholdValues())
    log.addHandler(handler)
    try:
        try:
            try:
                raise KeyError(CANARY)
            except KeyError as inner:
                raise ValueError(f"patient {CANARY} refused") from inner
        except ValueError:
            log.exception("saving a patient failed")
        log.error("Task %(name)s raised: %(exc)s", {"name": "t", "exc": RuntimeError(CANARY)})
    finally:
        log.removeHandler(handler)
        handler.close()
    written = (tmp_path / "log.txt").read_text()
    assert CANARY not in written
    assert "ValueError " + WITHHELD in written
    assert "KeyError " + WITHHELD in written
    assert "test_canary.py" in written  # the frames are still there
    assert "RuntimeError " + WITHHELD in written
