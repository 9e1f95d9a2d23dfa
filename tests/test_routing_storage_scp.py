"""The Storage SCP on the broker's listener: DCMTK's storescu as the scanner."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import JPEGBaseline8Bit, generate_uid
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_STORE

from core.dicom.requestor import keep_responses
from routing.models import StoredInstance
from tests.fixtures_dicom import Listener
from tests.fixtures_routing import CT_IMAGE, ct_dataset, sop_uid_of, storescu, write_study

pytestmark = pytest.mark.django_db(transaction=True)


def _spool_files(spool: Path) -> list[Path]:
    return sorted(p for p in spool.rglob("*") if p.is_file())


def test_it_spools_each_instance_and_records_one_row(
    routing_settings: Any, dicom_listener: Listener, tmp_path: Path
) -> None:
    study = generate_uid()
    files = write_study(tmp_path / "scan", 5, study_uid=study)
    result = storescu(dicom_listener.port, files)
    assert result.returncode == 0, result.stderr

    rows = list(StoredInstance.objects.filter(study_instance_uid=study))
    assert {r.sop_instance_uid for r in rows} == {sop_uid_of(f) for f in files}
    for row in rows:
        stored = Path(routing_settings.ROUTING_SPOOL_DIR) / row.path
        assert stored.is_file()
        assert row.size == stored.stat().st_size
        assert row.calling_ae_title == "CT1"
        assert row.modality == "CT"
        assert row.body_part == "HEAD"
        assert row.sop_class_uid == CT_IMAGE
        assert row.routed is False
        # A valid DICOM file: our file meta (written by hand), the dataset as sent.
        copy = dcmread(stored)
        assert copy.file_meta.MediaStorageSOPInstanceUID == row.sop_instance_uid
        assert copy.file_meta.MediaStorageSOPClassUID == CT_IMAGE
        assert copy.file_meta.TransferSyntaxUID == row.transfer_syntax_uid
        assert copy.file_meta.SourceApplicationEntityTitle == "CT1"
        original = dcmread(tmp_path / "scan" / f"{row.sop_instance_uid}.dcm")
        assert copy.PixelData == original.PixelData
        assert copy.StudyInstanceUID == study
    # Nothing but the instances: no temporary file left behind.
    assert len(_spool_files(Path(routing_settings.ROUTING_SPOOL_DIR))) == 5


def test_it_keeps_compressed_data_as_received(
    routing_settings: Any, dicom_listener: Listener, tmp_path: Path
) -> None:
    ds = ct_dataset(study_uid=generate_uid(), transfer_syntax=JPEGBaseline8Bit)
    path = tmp_path / "jpeg.dcm"
    ds.save_as(path, enforce_file_format=True)
    result = storescu(dicom_listener.port, [path], options=("-xy",))  # propose JPEG
    assert result.returncode == 0, result.stderr
    row = StoredInstance.objects.get(sop_instance_uid=ds.SOPInstanceUID)
    assert row.transfer_syntax_uid == JPEGBaseline8Bit
    stored = (Path(routing_settings.ROUTING_SPOOL_DIR) / row.path).read_bytes()
    # The dataset bytes after the file meta are the ones sent, unchanged.
    assert stored.endswith(path.read_bytes()[-200:])


def test_an_identical_copy_changes_nothing_and_a_changed_one_replaces_it(
    routing_settings: Any, dicom_listener: Listener, tmp_path: Path
) -> None:
    study = generate_uid()
    (path,) = write_study(tmp_path / "scan", 1, study_uid=study)
    assert storescu(dicom_listener.port, [path]).returncode == 0
    first = StoredInstance.objects.get()
    StoredInstance.objects.filter(pk=first.pk).update(routed=True)

    assert storescu(dicom_listener.port, [path]).returncode == 0
    again = StoredInstance.objects.get()
    assert (again.digest, again.path, again.received_at, again.routed) == (
        first.digest,
        first.path,
        first.received_at,
        True,
    )

    changed = ct_dataset(study_uid=study, sop_uid=first.sop_instance_uid, description="CHANGED")
    changed.save_as(path, enforce_file_format=True)
    assert storescu(dicom_listener.port, [path]).returncode == 0
    replaced = StoredInstance.objects.get()
    assert replaced.digest != first.digest
    assert replaced.study_description == "CHANGED"
    assert replaced.routed is False  # to be forwarded again
    spool = Path(routing_settings.ROUTING_SPOOL_DIR)
    assert _spool_files(spool) == [spool / replaced.path]


def _send_raw(listener: Listener, payloads: list[tuple[str, bytes]]) -> list[int]:
    """C-STOREs of raw dataset bytes (Explicit VR Little Endian) on one association."""
    ae = AE(ae_title="CT1")
    ae.add_requested_context(CT_IMAGE, "1.2.840.10008.1.2.1")
    assoc = keep_responses(ae.associate(listener.host, listener.port, ae_title=listener.ae_title))
    assert assoc.is_established
    statuses: list[int] = []
    try:
        for sop_uid, data in payloads:
            request = C_STORE()
            request.MessageID = len(statuses) + 1
            request.AffectedSOPClassUID = CT_IMAGE
            request.AffectedSOPInstanceUID = sop_uid
            request.Priority = 2
            request.DataSet = io.BytesIO(data)
            context = assoc.accepted_contexts[0]
            assoc.dimse.send_msg(request, context.context_id)
            _, response = assoc.dimse.get_msg(block=True)
            statuses.append(int(response.Status))
        return statuses
    finally:
        assoc.release()


def _dataset_bytes(ds: Any) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the deliberately bad bytes
def test_a_corrupt_instance_is_refused_and_the_association_goes_on(
    routing_settings: Any, dicom_listener: Listener
) -> None:
    study = generate_uid()
    good = ct_dataset(study_uid=study, pixels=64)
    truncated = ct_dataset(study_uid=study, pixels=64)
    wrong_class = ct_dataset(study_uid=study)
    wrong_class.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR in a CT context
    statuses = _send_raw(
        dicom_listener,
        [
            ("1.2.3.4.5", b"this is not DICOM at all" * 10),
            (truncated.SOPInstanceUID, _dataset_bytes(truncated)[:-500]),
            (wrong_class.SOPInstanceUID, _dataset_bytes(wrong_class)),
            (good.SOPInstanceUID, _dataset_bytes(good)),
        ],
    )
    assert statuses[0] == 0xC000
    assert statuses[1] == 0xC000
    assert statuses[2] == 0xA900
    assert statuses[3] == 0x0000
    assert list(StoredInstance.objects.values_list("sop_instance_uid", flat=True)) == [
        good.SOPInstanceUID
    ]
    assert len(_spool_files(Path(routing_settings.ROUTING_SPOOL_DIR))) == 1


@pytest.fixture
def small_spool(routing_settings: Any, tmp_path: Path) -> Any:
    """A spool on a 256 KB tmpfs (as root); else a spool path that is a file, where every
    write fails for real."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        mount.rmdir()
        mount.write_text("not a folder")
    routing_settings.ROUTING_SPOOL_DIR = mount / "spool" if mounted else mount
    yield mount, mounted
    if mounted:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_answers_out_of_resources_and_leaves_nothing_half_written(
    small_spool: Any, dicom_listener: Listener, tmp_path: Path
) -> None:
    mount, mounted = small_spool
    study = generate_uid()
    # 100 KB each: the third does not fit in 256 KB.
    files = write_study(tmp_path / "scan", 4, study_uid=study, pixels=224)
    statuses = []
    ae = AE(ae_title="CT1")
    ae.add_requested_context(CT_IMAGE, "1.2.840.10008.1.2.1")
    assoc = keep_responses(
        ae.associate(dicom_listener.host, dicom_listener.port, ae_title="WORKLIST")
    )
    assert assoc.is_established
    try:
        for path in files:
            statuses.append(int(assoc.send_c_store(path).Status))
    finally:
        assoc.release()
    assert 0xA700 in statuses
    stored = set(StoredInstance.objects.values_list("sop_instance_uid", flat=True))
    ok = {sop_uid_of(f) for f, s in zip(files, statuses, strict=True) if s == 0}
    assert stored == ok
    if mounted:
        on_disk = [p for p in (mount / "spool").rglob("*") if p.is_file()]
        assert len(on_disk) == len(ok)  # no partial or temporary file
        assert all(p.name.endswith(".dcm") for p in on_disk)
