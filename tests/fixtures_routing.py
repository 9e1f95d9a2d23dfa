"""Fixtures for routing tests: DICOM files made with pydicom, DCMTK's ``storescu`` as the
scanner and ``storescp`` as the destination, fast routing settings, a spool per test."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid
from pynetdicom.dsutils import split_dataset

from routing import services, spool
from routing.dataset import read_header
from routing.models import Destination, JobItem, RoutingJob, RoutingRule
from tests.conftest import get_free_port

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def require_storage_tools() -> None:
    missing = [t for t in ("storescu", "storescp") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"DCMTK tools missing: {', '.join(missing)} (apt-get install dcmtk)")


def ct_dataset(
    *,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    modality: str = "CT",
    body_part: str = "HEAD",
    description: str = "CT HEAD",
    pixels: int = 16,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> Dataset:
    """A small but valid CT image (``pixels`` x ``pixels``, 16 bit)."""
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or generate_uid(entropy_srcs=[study_uid, "series"])
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "PAT1"
    ds.StudyDate = "20261125"
    ds.StudyTime = "100000"
    ds.AccessionNumber = "ACC1"
    ds.Modality = modality
    ds.BodyPartExamined = body_part
    ds.StudyDescription = description
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = pixels
    ds.Columns = pixels
    ds.PixelRepresentation = 0
    if transfer_syntax == JPEGBaseline8Bit:
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        # Not a decodable JPEG: enough to be carried as received, not to be decompressed.
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0" + bytes(64) + b"\xff\xd9"])
    else:
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelData = bytes(pixels * pixels * 2)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def write_study(
    folder: Path, count: int, *, study_uid: str | None = None, **kwargs: Any
) -> list[Path]:
    """``count`` CT instances of one study and series, as files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = kwargs.pop("series_uid", None) or generate_uid()
    paths = []
    for n in range(count):
        ds = ct_dataset(study_uid=study_uid, series_uid=series_uid, **kwargs)
        ds.InstanceNumber = n + 1
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def spool_files(paths: list[Path], *, calling: str = "CT1") -> list[str]:
    """Store files as the Storage SCP does (spool write, then the row), without the
    network; returns their SOP Instance UIDs."""
    uids = []
    for path in paths:
        part10 = path.read_bytes()
        meta, offset = split_dataset(path)
        syntax = str(meta.TransferSyntaxUID)
        header = read_header(part10[offset:], syntax)
        digest = hashlib.sha256(part10[offset:]).hexdigest()
        relative = spool.relative_path(header.study_instance_uid, header.sop_instance_uid, digest)
        spool.write(relative, [part10])
        services.instance_record(
            services.Spooled(
                header=header,
                transfer_syntax_uid=str(
                    dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
                ),
                calling_ae_title=calling,
                size=len(part10),
                digest=digest,
                path=relative,
            )
        )
        uids.append(header.sop_instance_uid)
    return uids


def sop_uid_of(path: Path) -> str:
    return str(
        dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID
    )


def storescu(
    port: int,
    files: list[Path],
    *,
    calling: str = "CT1",
    called: str = "WORKLIST",
    options: tuple[str, ...] = (),
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """DCMTK's storescu as a scanner sends ``files`` on one association."""
    return subprocess.run(
        ["storescu", "-aet", calling, "-aec", called, *options, "127.0.0.1", str(port)]
        + [str(f) for f in files],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class StoreSCP:
    """DCMTK's storescp as a destination; every received instance is its own file."""

    folder: Path
    port: int = field(default_factory=get_free_port)
    ae_title: str = "DEST"
    options: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> StoreSCP:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "storescp",
                "-aet",
                self.ae_title,
                "+uf",  # unique file names: a duplicate shows up as a second file
                "-od",
                str(self.folder),
                *self.options,
                str(self.port),
            ],
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.02)
        raise AssertionError("storescp did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def received(self, *, partial_ok: bool = False) -> Counter[str]:
        """SOP Instance UID -> how many times it was received. ``partial_ok``: skip a file
        storescp is still writing (while waiting; once the job is finished, every file
        must be whole)."""
        found: Counter[str] = Counter()
        for path in self.folder.iterdir():
            if not path.is_file():
                continue
            try:
                found[sop_uid_of(path)] += 1
            except Exception:
                if not partial_ok:
                    raise
        return found


@pytest.fixture
def storage_destination(tmp_path: Path) -> Iterator[Any]:
    """A factory of DCMTK storescp destinations (started unless ``start=False``)."""
    require_storage_tools()
    started: list[StoreSCP] = []

    def make(name: str = "dest", *, start: bool = True, **kwargs: Any) -> StoreSCP:
        scp = StoreSCP(folder=tmp_path / f"received-{name}", **kwargs)
        started.append(scp)
        return scp.start() if start else scp

    yield make
    for scp in started:
        scp.stop()


@pytest.fixture
def routing_settings(settings: Any, tmp_path: Path, memory_broker: Any) -> Any:
    """A spool per test, routing times short enough for tests, and the Celery app on the
    tests' in-memory broker (tasks queued here reach no shared queue)."""
    settings.ROUTING_SPOOL_DIR = tmp_path / "spool"
    settings.ROUTING_STABLE_SECONDS = 0.5
    settings.ROUTING_COMPLETENESS_TIMEOUT = 30.0
    settings.ROUTING_RETRY_DELAY = 0.2
    settings.ROUTING_RETRY_MAX_DELAY = 0.5
    settings.ROUTING_MAX_ATTEMPTS = 5
    settings.ROUTING_LEASE_SECONDS = 30.0
    settings.ROUTING_TIMEOUT = 5.0
    return settings


def destination_for(scp: StoreSCP, name: str | None = None, **fields: Any) -> Destination:
    return Destination.objects.create(
        name=name or scp.ae_title,
        ae_title=scp.ae_title,
        host="127.0.0.1",
        port=scp.port,
        **fields,
    )


def rule_to(*destinations: Destination, name: str = "all", **conditions: str) -> RoutingRule:
    rule = RoutingRule.objects.create(name=name, **conditions)
    rule.destinations.set(destinations)
    return rule


def committing_archive(port: int) -> Destination:
    """The destination "ARCHIVE" on ``port``, asked for storage commitment, and a rule that
    routes every study to it."""
    archive = Destination.objects.create(
        name="archive", ae_title="ARCHIVE", host="127.0.0.1", port=port, storage_commitment=True
    )
    rule_to(archive)
    return archive


def routed_study(tmp_path: Path, count: int) -> tuple[RoutingJob, list[str]]:
    """A study of ``count`` CT instances in the spool, routed: its one job and the
    instances' SOP Instance UIDs."""
    study = generate_uid()
    uids = spool_files(write_study(tmp_path / "scan", count, study_uid=study))
    (job_id,) = services.route_study(study)
    return RoutingJob.objects.get(pk=job_id), uids


def item_states(job: RoutingJob) -> set[str]:
    """The states of the job's instances."""
    return set(JobItem.objects.filter(job=job).values_list("state", flat=True))


def wait_for(predicate: Any, timeout: float = 30.0, *, every: Any = None) -> None:
    """Wait until ``predicate()``; ``every()`` runs on each look (e.g. the periodic tick)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if every is not None:
            every()
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")
