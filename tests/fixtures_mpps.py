"""Fixtures for mpps tests: scheduled steps, MPPS datasets, a DICOM listener, a test RIS
(an MLLP server that records what it receives) and an in-process Celery worker."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.db import connections
from django.utils import timezone
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from core.mllp import FrameDecoder, frame
from hl7v2.msh import read_header
from tests.conftest import get_free_port
from worklist.models import ScheduledProcedureStep
from worklist.services import order_upsert, patient_upsert, procedure_upsert, step_upsert

_counter = iter(range(1, 1_000_000))


def make_step(
    *,
    accession: str | None = None,
    requested_procedure_id: str = "RP1",
    sps_id: str = "SPS1",
    study_instance_uid: str | None = None,
    modality: str = "CT",
    patient_id: str = "PAT1",
) -> ScheduledProcedureStep:
    """A scheduled step (with patient, order, procedure) through the worklist services."""
    n = next(_counter)
    patient = patient_upsert(
        patient_id=patient_id,
        fields={"name": "DOE^JANE", "birth_date": dt.date(1970, 1, 2), "sex": "F"},
    )
    order, _ = order_upsert(
        patient=patient,
        accession_number=accession or f"ACC{n}",
        fields={
            "placer_order_number": f"PL{n}",
            "filler_order_number": f"FI{n}",
            "placer_application": "RIS^HOSP",
        },
    )
    procedure = procedure_upsert(
        order=order,
        requested_procedure_id=requested_procedure_id,
        study_instance_uid=study_instance_uid or generate_uid(),
        fields={"description": "CT HEAD", "code_value": "CTHEAD", "code_scheme": "L"},
    )
    return step_upsert(
        procedure=procedure,
        sps_id=sps_id,
        fields={"modality": modality, "start": timezone.now(), "description": "HEAD"},
        station_ae_titles=["CT1"],
    )


def step_item(step: ScheduledProcedureStep | None = None, **overrides: str) -> Dataset:
    """An item of the Scheduled Step Attributes Sequence pointing at ``step``."""
    item = Dataset()
    if step is not None:
        procedure = step.procedure
        item.StudyInstanceUID = procedure.study_instance_uid
        item.AccessionNumber = procedure.order.accession_number
        item.RequestedProcedureID = procedure.requested_procedure_id
        item.ScheduledProcedureStepID = step.sps_id
    else:
        item.StudyInstanceUID = generate_uid()
        item.AccessionNumber = ""
        item.RequestedProcedureID = ""
        item.ScheduledProcedureStepID = ""
    item.ReferencedStudySequence = []
    item.RequestedProcedureDescription = ""
    item.ScheduledProcedureStepDescription = ""
    item.ScheduledProtocolCodeSequence = []
    for keyword, value in overrides.items():
        setattr(item, keyword, value)
    return item


def n_create_dataset(
    *steps: ScheduledProcedureStep | None, items: list[Dataset] | None = None
) -> Dataset:
    """A complete N-CREATE Attribute List (PS3.4 F.7.2.1) for ``steps``."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.Modality = "CT"
    ds.ProcedureCodeSequence = []
    ds.ReferencedPatientSequence = []
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "PAT1"
    ds.PatientBirthDate = "19700102"
    ds.PatientSex = "F"
    ds.StudyID = "1"
    ds.PerformedStationAETitle = "CT1"
    ds.PerformedStationName = "CT ROOM 1"
    ds.PerformedLocation = "RAD"
    ds.PerformedProcedureStepStartDate = "20261125"
    ds.PerformedProcedureStepStartTime = "093000"
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepID = f"PPS{next(_counter)}"
    ds.PerformedProcedureStepDescription = "CT HEAD"
    ds.PerformedProcedureTypeDescription = ""
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    ds.ScheduledStepAttributesSequence = (
        items if items is not None else [step_item(s) for s in steps]
    )
    return ds


def series_item(n_images: int = 2) -> Dataset:
    series = Dataset()
    series.SeriesInstanceUID = generate_uid()
    series.SeriesDescription = "AXIAL"
    series.ProtocolName = "HEAD"
    series.RetrieveAETitle = "PACS"
    series.PerformingPhysicianName = ""
    series.OperatorsName = ""
    images = []
    for _ in range(n_images):
        ref = Dataset()
        ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ref.ReferencedSOPInstanceUID = generate_uid()
        images.append(ref)
    series.ReferencedImageSequence = images
    series.ReferencedNonImageCompositeSOPInstanceSequence = []
    return series


def n_set_dataset(status: str = "COMPLETED", *, series: int = 1) -> Dataset:
    """A final N-SET Modification List: status, end date / time, performed series."""
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20261125"
    ds.PerformedProcedureStepEndTime = "094500"
    ds.PerformedSeriesSequence = [series_item() for _ in range(series)]
    return ds


# --- a pynetdicom SCU ------------------------------------------------------------------


# --- the DICOM listener ------------------------------------------------------------------


@pytest.fixture
def dicom_server(free_port: int) -> Iterator[int]:
    """The broker's DICOM listener in this process; yields its port."""
    from broker.dicom.server import start

    server = start("127.0.0.1", free_port, block=False)
    assert server is not None
    try:
        yield free_port
    finally:
        server.shutdown()


# --- a test RIS ----------------------------------------------------------------------------


@dataclass
class FakeRIS:
    """An MLLP server that records each message and answers with an ACK.

    ``answers`` are MSA-1 codes used one per message (AA once they run out).
    """

    port: int
    answers: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(8)
        sock.settimeout(0.1)
        self._sock = sock
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()
        self._sock = None

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        decoder = FrameDecoder(max_size=1 << 20)
        with conn:
            conn.settimeout(5)
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for raw in decoder.feed(data):
                    if not isinstance(raw, bytes):
                        continue
                    header = read_header(raw)
                    text = raw.decode("utf-8" if "UTF" in header.charset else "latin-1")
                    self.received.append(text)
                    code = self.answers.pop(0) if self.answers else "AA"
                    ack = (
                        f"MSH|^~\\&|RIS|HOSP|WORKLIST|BROKER|20261125000000||ACK^O01|"
                        f"A{header.control_id}|P|{header.version}\rMSA|{code}|{header.control_id}\r"
                    )
                    conn.sendall(frame(ack.encode()))

    def wait_for(self, count: int, timeout: float = 15.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.received) >= count, f"RIS received {len(self.received)} of {count}"
        return self.received


def hl7_field(message: str, segment: str, number: int, occurrence: int = 0) -> str:
    """Field ``number`` of the ``occurrence``-th ``segment`` (MSH counted as HL7 does)."""
    found = [s.split("|") for s in message.split("\r") if s.startswith(segment + "|")]
    fields = found[occurrence]
    index = number - 1 if segment == "MSH" else number
    return fields[index] if index < len(fields) else ""


def order_status_of_message(message: str) -> str:
    return hl7_field(message, "ORC", 5)


@pytest.fixture
def ris_port(settings: Any) -> int:
    """Point the broker at a RIS on a free port (nothing listening yet); fast retries."""
    # Its own port: ``free_port`` is one value per test, taken by the DICOM listener.
    port = get_free_port()
    settings.RIS_HL7_HOST = "127.0.0.1"
    settings.RIS_HL7_PORT = port
    settings.RIS_HL7_TIMEOUT = 3.0
    settings.RIS_HL7_RETRY_DELAY = 0.2
    settings.RIS_HL7_RETRY_MAX_DELAY = 0.5
    return port


@pytest.fixture
def ris_server(ris_port: int) -> Iterator[FakeRIS]:
    ris = FakeRIS(port=ris_port)
    ris.start()
    try:
        yield ris
    finally:
        ris.stop()


# --- Celery ------------------------------------------------------------------------------


def _close_db(**_: object) -> None:
    # The worker thread opens its own database connection: close it after each task so
    # the test database can be flushed and dropped.
    connections.close_all()


@pytest.fixture(scope="module")
def memory_broker() -> Iterator[Any]:
    """The Celery app on an in-memory broker for these tests: no task they queue reaches a
    shared queue that another test run or a running broker might consume."""
    import os

    from broker.celery import app

    saved = {key: app.conf[key] for key in ("broker_url", "broker_transport_options")}
    # Celery prefers this variable to its configuration (CI's PostgreSQL + Redis run sets
    # it): without dropping it, the tests' tasks would go to that shared Redis queue, where
    # another test process's worker could take them.
    saved_url = os.environ.pop("CELERY_BROKER_URL", None)
    app.conf.update(broker_url="memory://", broker_transport_options={"polling_interval": 0.05})
    _reset_pools(app)
    try:
        yield app
    finally:
        with contextlib.suppress(Exception):
            app.control.purge()
        if saved_url is not None:
            os.environ["CELERY_BROKER_URL"] = saved_url
        app.conf.update(saved)
        _reset_pools(app)


@pytest.fixture(scope="module")
def task_worker(memory_broker: Any) -> Iterator[Any]:
    """A real Celery worker in a thread, running the real tasks (one per test module:
    stopping it takes seconds)."""
    task_postrun.connect(_close_db, weak=False)
    # start_worker sets up Celery's logging, which leaves the root logger at ERROR: every
    # later test that reads its log (caplog) would then see nothing. Put it back.
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    try:
        with start_worker(
            memory_broker, pool="solo", perform_ping_check=False, shutdown_timeout=10
        ) as worker:
            yield worker
    finally:
        task_postrun.disconnect(_close_db)
        root.setLevel(level)
        root.handlers[:] = handlers


def _reset_pools(app: Any) -> None:
    # Forget the app's pools (kombu keeps them, per broker URL, for the next user).
    app._pool = None
    app.amqp._producer_pool = None


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")
