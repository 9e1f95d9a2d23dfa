"""Routing end to end over real sockets: an HL7 order, the scanner's worklist query,
the study sent by DCMTK's storescu, the MPPS listing its instances, a real Celery
worker, and DCMTK's storescp as the destination receiving each instance exactly once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from core.dicom import status
from core.dicom.requestor import keep_responses
from mpps.dimse import MPPS_SOP_CLASS
from routing import services
from routing.models import RoutingJob
from tests.fixtures_hl7 import MLLPClient, RunningListener, msa
from tests.fixtures_routing import (
    CT_IMAGE,
    destination_for,
    rule_to,
    storescu,
    wait_for,
    write_study,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _order(study_uid: str, accession: str) -> str:
    return (
        "\r".join(
            [
                f"MSH|^~\\&|RIS|HOSP|WORKLIST|BROKER|20261125090000||ORM^O01|{accession}|P|2.3.1",
                "PID|||RTPAT^^^HOSP||ROE^RICHARD||19600504|M",
                "PV1||O",
                "ORC|NW|PL1|FI1||SC||^^^20261125100000^^R|||||||||||CT1",
                f"OBR|1|PL1|FI1|^^^CTH^CT head^LOC||||||||||||||{accession}|RP1|SPS1||||CT",
                f"ZDS|{study_uid}^100^Application^DICOM",
            ]
        )
        + "\r"
    )


def _worklist_answer(assoc: Any) -> Dataset:
    query = Dataset()
    for keyword in (
        "PatientName",
        "PatientID",
        "AccessionNumber",
        "RequestedProcedureID",
        "StudyInstanceUID",
    ):
        setattr(query, keyword, "")
    sps = Dataset()
    sps.ScheduledStationAETitle = "CT1"
    sps.ScheduledProcedureStepID = ""
    sps.Modality = ""
    query.ScheduledProcedureStepSequence = [sps]
    answers = [
        identifier
        for rsp, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind)
        if rsp is not None and rsp.Status in (status.PENDING, status.PENDING_WARNING_OPTIONAL_KEYS)
    ]
    assert len(answers) == 1
    return answers[0]


def _n_create(answer: Dataset) -> Dataset:
    ds = Dataset()
    for keyword in ("PatientName", "PatientID"):
        setattr(ds, keyword, answer.get(keyword, ""))
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.ReferencedPatientSequence = []
    item = Dataset()
    item.StudyInstanceUID = answer.StudyInstanceUID
    item.ReferencedStudySequence = []
    item.AccessionNumber = answer.AccessionNumber
    item.RequestedProcedureID = answer.RequestedProcedureID
    item.RequestedProcedureDescription = ""
    item.ScheduledProcedureStepID = answer.ScheduledProcedureStepSequence[
        0
    ].ScheduledProcedureStepID
    item.ScheduledProcedureStepDescription = ""
    item.ScheduledProtocolCodeSequence = []
    ds.ScheduledStepAttributesSequence = [item]
    ds.PerformedProcedureStepID = "RTPPS"
    ds.PerformedStationAETitle = "CT1"
    ds.PerformedStationName = ""
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate = "20261125"
    ds.PerformedProcedureStepStartTime = "100500"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = ""
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = "CT"
    ds.StudyID = ""
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return ds


def _n_set_completed(files: list[Path]) -> Dataset:
    series = Dataset()
    series.SeriesInstanceUID = generate_uid()
    series.SeriesDescription = ""
    series.ProtocolName = ""
    series.RetrieveAETitle = ""
    series.PerformingPhysicianName = ""
    series.OperatorsName = ""
    refs = []
    for path in files:
        ref = Dataset()
        ref.ReferencedSOPClassUID = CT_IMAGE
        ref.ReferencedSOPInstanceUID = path.stem
        refs.append(ref)
    series.ReferencedImageSequence = refs
    series.ReferencedNonImageCompositeSOPInstanceSequence = []
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    ds.PerformedProcedureStepEndDate = "20261125"
    ds.PerformedProcedureStepEndTime = "101500"
    ds.PerformedSeriesSequence = [series]
    return ds


def _scan(hl7_port: int, dicom_port: int, folder: Path, count: int) -> list[Path]:
    """The RIS orders; the scanner finds the step, starts it, sends the study, ends it."""
    study_uid = generate_uid()
    with MLLPClient(hl7_port) as client:
        assert msa(client.exchange(_order(study_uid, "RTACC1")))[1] == "AA"
    ae = AE(ae_title="CT1")
    ae.add_requested_context(ModalityWorklistInformationFind)
    ae.add_requested_context(MPPS_SOP_CLASS)
    assoc = keep_responses(ae.associate("127.0.0.1", dicom_port, ae_title=settings.BROKER_AE_TITLE))
    assert assoc.is_established
    try:
        answer = _worklist_answer(assoc)
        assert answer.StudyInstanceUID == study_uid
        mpps_uid = generate_uid()
        rsp, _ = assoc.send_n_create(_n_create(answer), MPPS_SOP_CLASS, mpps_uid)
        assert rsp is not None and rsp.Status == status.SUCCESS
        files = write_study(folder, count, study_uid=study_uid)
        sent = storescu(dicom_port, files)
        assert sent.returncode == 0, sent.stderr
        rsp, _ = assoc.send_n_set(_n_set_completed(files), MPPS_SOP_CLASS, mpps_uid)
        assert rsp is not None and rsp.Status == status.SUCCESS
    finally:
        assoc.release()
    return files


def test_a_study_ordered_over_hl7_reaches_the_destination_once_when_its_mpps_completes(
    routing_settings: Any,
    hl7_listener: Callable[..., RunningListener],
    dicom_server: int,
    storage_destination: Any,
    task_worker: Any,
    tmp_path: Path,
) -> None:
    routing_settings.ROUTING_STABLE_SECONDS = 3600  # only the MPPS may trigger it
    scp = storage_destination()
    rule_to(destination_for(scp), modality="CT", station_ae_title="CT1")
    files = _scan(hl7_listener().port, dicom_server, tmp_path / "scan", 12)

    # No periodic check here: the MPPS event alone routes the study.
    wait_for(lambda: len(scp.received(partial_ok=True)) == 12, timeout=30)
    (job,) = RoutingJob.objects.all()
    wait_for(lambda: RoutingJob.objects.get(pk=job.pk).status == "COMPLETED", timeout=10)
    assert job.trigger == "MPPS"
    assert scp.received() == {path.stem: 1 for path in files}


def test_a_destination_down_at_first_gets_the_study_once_when_it_is_back(
    routing_settings: Any,
    hl7_listener: Callable[..., RunningListener],
    dicom_server: int,
    storage_destination: Any,
    task_worker: Any,
    tmp_path: Path,
) -> None:
    scp = storage_destination(start=False)
    rule_to(destination_for(scp))
    files = _scan(hl7_listener().port, dicom_server, tmp_path / "scan", 5)

    wait_for(
        lambda: RoutingJob.objects.filter(attempts__gte=2, status="SCHEDULED").exists(),
        timeout=30,
        every=services.tick,  # stands in for Celery beat
    )
    scp.start()
    wait_for(
        lambda: RoutingJob.objects.filter(status="COMPLETED").exists(),
        timeout=30,
        every=services.tick,
    )
    assert scp.received() == {path.stem: 1 for path in files}
