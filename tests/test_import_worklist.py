"""``manage.py import_worklist``: .wl files and folders into the worklist, idempotently."""

from __future__ import annotations

import shutil
from datetime import date, time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from worklist.importer import import_paths
from worklist.models import Order, Patient, RequestedProcedure, ScheduledProcedureStep

pytestmark = pytest.mark.django_db


def counts() -> tuple[int, int, int, int]:
    return (
        Patient.objects.count(),
        Order.objects.count(),
        RequestedProcedure.objects.count(),
        ScheduledProcedureStep.objects.count(),
    )


def write_wl(path: Path, **values: object) -> Path:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    sps = values.pop("sps", {})
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    item = Dataset()
    for keyword, value in dict(sps).items():  # type: ignore[call-overload]
        setattr(item, keyword, value)
    ds.ScheduledProcedureStepSequence = [item]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=False)
    return path


def test_it_imports_a_folder_of_worklist_files(sample_worklist: Path) -> None:
    call_command("import_worklist", str(sample_worklist), stdout=None)
    # 10 entries of 4 patients (DCMTK's sample wlistdb).
    assert counts() == (4, 10, 10, 10)
    step = ScheduledProcedureStep.objects.select_related("procedure__order__patient").get(
        sps_id="SPD3445"
    )
    assert step.procedure.order.patient.name == "VIVALDI^ANTONIO"
    assert step.procedure.order.patient.birth_date == date(1678, 3, 4)
    assert step.procedure.order.requesting_physician == "SMITH"
    assert step.procedure.order.accession_number == "00000"
    assert step.procedure.requested_procedure_id == "RP454G234"
    assert step.procedure.study_instance_uid == "1.2.276.0.7230010.3.2.101"
    assert step.procedure.priority == "LOW"
    assert step.modality == "MR"
    assert step.contrast_agent == "BARIUMSULFAT"
    assert (step.start_date, step.start_time) == (date(1995, 10, 15), time(8, 56, 7))
    assert sorted(step.station_ae_titles.values_list("ae_title", flat=True)) == ["AA32", "AA33"]
    assert step.status == "SCHEDULED"


def test_importing_the_same_files_again_changes_nothing(sample_worklist: Path) -> None:
    call_command("import_worklist", str(sample_worklist))
    before = list(ScheduledProcedureStep.objects.order_by("pk").values())
    stations_before = sorted(
        ScheduledProcedureStep.objects.values_list("pk", "station_ae_titles__ae_title")
    )
    call_command("import_worklist", str(sample_worklist))
    assert counts() == (4, 10, 10, 10)
    assert list(ScheduledProcedureStep.objects.order_by("pk").values()) == before
    assert (
        sorted(ScheduledProcedureStep.objects.values_list("pk", "station_ae_titles__ae_title"))
        == stations_before
    )


def test_a_broken_file_is_reported_by_name_and_the_others_are_imported(
    sample_worklist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(sample_worklist, folder)
    (folder / "broken.wl").write_bytes(b"\x00\x01 this is not DICOM")
    write_wl(folder / "no_patient_id.wl", AccessionNumber="X1", sps={"Modality": "CT"})
    with pytest.raises(CommandError):
        call_command("import_worklist", str(folder))
    err = capsys.readouterr().err
    assert "broken.wl" in err
    assert "no_patient_id.wl" in err
    assert "no Patient ID" in err
    assert ScheduledProcedureStep.objects.count() == 10


def test_it_imports_single_files_and_unicode_names(tmp_path: Path) -> None:
    path = write_wl(
        tmp_path / "one.wl",
        PatientID="U1",
        PatientName="山田^太郎",
        AccessionNumber="ACC1",
        sps={
            "Modality": "MR",
            "ScheduledStationAETitle": "MR1",
            "ScheduledProcedureStepStartDate": "20261125",
            "ScheduledProcedureStepStartTime": "1430",
            "ScheduledProcedureStepStatus": "ARRIVED",
        },
    )
    call_command("import_worklist", str(path))
    step = ScheduledProcedureStep.objects.select_related("procedure__order__patient").get()
    assert step.procedure.order.patient.name == "山田^太郎"
    # No Requested Procedure ID / SPS ID in the file: the accession number stands in.
    assert step.procedure.requested_procedure_id == "ACC1"
    assert step.sps_id == "ACC1"
    assert step.status == "ARRIVED"
    assert (step.start_date, step.start_time) == (date(2026, 11, 25), time(14, 30))
    uid = step.procedure.study_instance_uid
    call_command("import_worklist", str(path))
    assert RequestedProcedure.objects.get().study_instance_uid == uid


def test_a_missing_path_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CommandError):
        call_command("import_worklist", str(tmp_path / "nope.wl"))
    assert "nope.wl" in capsys.readouterr().err


def test_a_file_that_fails_half_way_is_rolled_back_alone_within_its_batch(tmp_path: Path) -> None:
    sps = {"ScheduledProcedureStepStartDate": "20261201", "Modality": "CT"}
    write_wl(tmp_path / "1.wl", PatientID="P1", AccessionNumber="A1", sps=sps)
    # Patient, order and procedure are written before the step fails (no SPS item).
    bad = write_wl(tmp_path / "2.wl", PatientID="P2", AccessionNumber="A2", sps=sps)
    ds = dcmread(bad, force=True)
    del ds.ScheduledProcedureStepSequence
    ds.save_as(bad, enforce_file_format=False)
    write_wl(tmp_path / "3.wl", PatientID="P3", AccessionNumber="A3", sps=sps)
    seen: list[tuple[int, int]] = []
    report = import_paths(
        [tmp_path], batch=3, progress=lambda done, total: seen.append((done, total))
    )
    assert [p.name for p in report.imported] == ["1.wl", "3.wl"]
    assert [(p.name, reason) for p, reason in report.failed] == [
        ("2.wl", "no Scheduled Procedure Step Sequence item")
    ]
    assert sorted(Patient.objects.values_list("patient_id", flat=True)) == ["P1", "P3"]
    assert counts() == (2, 2, 2, 2)
    assert seen == [(3, 3)]  # once per committed batch


def test_progress_is_reported_after_each_batch(tmp_path: Path) -> None:
    sps = {"ScheduledProcedureStepStartDate": "20261201", "Modality": "CT"}
    for n in range(5):
        write_wl(tmp_path / f"{n}.wl", PatientID=f"P{n}", AccessionNumber=f"A{n}", sps=sps)
    seen: list[tuple[int, int]] = []
    import_paths([tmp_path], batch=2, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 5), (4, 5), (5, 5)]
