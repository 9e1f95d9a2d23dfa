"""Fixtures for dicom tests: the in-process DICOM listener, worklist test data, a SCU."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from pydicom import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from broker.dicom import server
from tests.scu import keep_responses
from worklist import services
from worklist.models import ScheduledProcedureStep

DCMTK_TOOLS = ("findscu", "wlmscpfs", "dump2dcm", "echoscu")


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An aware datetime in TIME_ZONE (SPS start date/time match in local time)."""
    return timezone.make_aware(datetime(year, month, day, hour, minute))


def schedule(
    *,
    patient_id: str = "P1",
    patient_name: str = "DOE^JOHN",
    accession: str = "A1",
    rp_id: str = "RP1",
    study_uid: str | None = None,
    sps_id: str = "S1",
    modality: str = "CT",
    start: datetime | None = None,
    stations: Iterable[str] = ("CT1",),
    status: str = "SCHEDULED",
    patient: Mapping[str, Any] | None = None,
    order: Mapping[str, Any] | None = None,
    procedure: Mapping[str, Any] | None = None,
    step: Mapping[str, Any] | None = None,
) -> ScheduledProcedureStep:
    """One scheduled step, written through the domain services as HL7 intake does."""
    p = services.patient_upsert(
        patient_id=patient_id, fields={"name": patient_name, **(patient or {})}
    )
    o, _ = services.order_upsert(patient=p, accession_number=accession, fields=dict(order or {}))
    rp = services.procedure_upsert(
        order=o,
        requested_procedure_id=rp_id,
        study_instance_uid=study_uid or generate_uid(entropy_srcs=[accession, rp_id]),
        fields=dict(procedure or {}),
    )
    return services.step_upsert(
        procedure=rp,
        sps_id=sps_id,
        fields={
            "modality": modality,
            "start": start or local(2026, 11, 25, 9, 0),
            "status": status,
            **(step or {}),
        },
        station_ae_titles=list(stations),
    )


@dataclass
class Listener:
    host: str
    port: int
    ae_title: str


@pytest.fixture
def dicom_listener(free_port: int) -> Iterator[Listener]:
    """The broker's DICOM listener, in-process, on a free port."""
    from django.conf import settings

    running = server.start("127.0.0.1", free_port, block=False)
    assert running is not None
    try:
        yield Listener("127.0.0.1", free_port, settings.BROKER_AE_TITLE)
    finally:
        running.shutdown()


def worklist_query(**keys: Any) -> Dataset:
    """A worklist identifier: top-level keys as given, ``sps`` for the SPS item."""
    ds = Dataset()
    sps = keys.pop("sps", None)
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    if sps is not None:
        item = Dataset()
        for keyword, value in sps.items():
            setattr(item, keyword, value)
        ds.ScheduledProcedureStepSequence = [item]
    return ds


def find(
    listener: Listener,
    identifier: Dataset,
    *,
    calling: str = "TESTSCU",
    called: str | None = None,
) -> list[tuple[int, Dataset | None]]:
    """Send one C-FIND on a new association; return every (status, identifier)."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = keep_responses(
        ae.associate(listener.host, listener.port, ae_title=called or listener.ae_title)
    )
    assert assoc.is_established, "association was not accepted"
    try:
        answers = []
        for status, answer in assoc.send_c_find(identifier, ModalityWorklistInformationFind):
            assert status is not None, "no response (timeout or abort)"
            answers.append((int(status.Status), answer))
            if int(status.Status) not in (0xFF00, 0xFF01):
                answers[-1] = (int(status.Status), status)
        return answers
    finally:
        assoc.release()


def require_dcmtk() -> None:
    """DCMTK is an independent peer of the conformance tests: fail, never skip, without it."""
    missing = [tool for tool in DCMTK_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"DCMTK tools missing: {', '.join(missing)} (apt-get install dcmtk)")


def bulk_schedule(count: int, *, start: datetime | None = None, station: str = "CT1") -> None:
    """``count`` steps in one go (bulk inserts, not the services): for volume tests."""
    from worklist.models import Order, Patient, RequestedProcedure, StationAETitle

    start = start or local(2026, 11, 25, 9, 0)
    local_start = timezone.localtime(start)
    patients = Patient.objects.bulk_create(
        [
            Patient(patient_id=f"BULK{n}", name=f"BULK^{n}", name_key=f"BULK^{n}")
            for n in range(count)
        ]
    )
    orders = Order.objects.bulk_create(
        [Order(patient=p, accession_number=f"BA{n}") for n, p in enumerate(patients)]
    )
    procedures = RequestedProcedure.objects.bulk_create(
        [
            RequestedProcedure(
                order=o, requested_procedure_id="RP1", study_instance_uid=f"1.2.3.999.{n}"
            )
            for n, o in enumerate(orders)
        ]
    )
    steps = ScheduledProcedureStep.objects.bulk_create(
        [
            ScheduledProcedureStep(
                procedure=rp,
                sps_id="S1",
                modality="CT",
                start=start,
                start_date=local_start.date(),
                start_time=local_start.time().replace(tzinfo=None),
            )
            for rp in procedures
        ]
    )
    StationAETitle.objects.bulk_create([StationAETitle(step=s, ae_title=station) for s in steps])


SAMPLE_WLISTDB = Path("/usr/share/doc/dcmtk/examples/wlistdb/OFFIS")
SAMPLE_QUERIES = Path("/usr/share/doc/dcmtk/examples/wlistqry")


def dump2dcm(dump: Path, target: Path) -> Path:
    subprocess.run(["dump2dcm", "-q", "-g", str(dump), str(target)], check=True)
    return target


@pytest.fixture(scope="session")
def sample_worklist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DCMTK's sample worklist database as wlmscpfs serves it: ``<dir>/OFFIS/*.wl``."""
    require_dcmtk()
    if not SAMPLE_WLISTDB.is_dir():
        pytest.fail(f"DCMTK's sample worklist database is missing: {SAMPLE_WLISTDB}")
    root = tmp_path_factory.mktemp("wlistdb")
    folder = root / "OFFIS"
    folder.mkdir()
    (folder / "lockfile").touch()
    for dump in sorted(SAMPLE_WLISTDB.glob("*.dump")):
        dump2dcm(dump, folder / f"{dump.stem}.wl")
    return folder
