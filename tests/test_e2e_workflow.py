"""The whole scheduled workflow over real sockets: an order arrives over HL7 MLLP, a
modality finds it with a worklist query, performs it (MPPS N-CREATE, N-SET built from
the worklist answer), and the RIS hears IP then CM."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from core.dicom import status
from mpps.dimse import MPPS_SOP_CLASS
from tests.fixtures_hl7 import MLLPClient, RunningListener, msa
from tests.fixtures_mpps import (
    FakeRIS,
    hl7_field,
    n_set_dataset,
    order_status_of_message,
)
from tests.scu import keep_responses

STUDY_UID = "1.2.826.0.1.3680043.8.498.424242"
ORDER = (
    "\r".join(
        [
            "MSH|^~\\&|RIS|HOSP|WORKLIST|BROKER|20261125090000||ORM^O01|E2E0001|P|2.3.1",
            "PID|||E2EPAT^^^HOSP||ROE^RICHARD||19600504|M",
            "PV1||O",
            "ORC|NW|PLE2E|FIE2E||SC||^^^20261125100000^^R|||||||||||CT1",
            "OBR|1|PLE2E|FIE2E|^^^CTH^CT head^LOC||||||||||||||E2EACC|E2ERP|E2ESPS||||CT",
            f"ZDS|{STUDY_UID}^100^Application^DICOM",
        ]
    )
    + "\r"
)


def _query() -> Dataset:
    """What a scanner asks: its station's steps, with the keys it copies into MPPS."""
    ds = Dataset()
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "RequestedProcedureID",
        "RequestedProcedureDescription",
        "StudyInstanceUID",
    ):
        setattr(ds, keyword, "")
    ds.ReferencedStudySequence = []
    ds.RequestedProcedureCodeSequence = []
    sps = Dataset()
    sps.ScheduledStationAETitle = "CT1"
    sps.Modality = ""
    sps.ScheduledProcedureStepID = ""
    sps.ScheduledProcedureStepDescription = ""
    sps.ScheduledProcedureStepStartDate = ""
    sps.ScheduledProtocolCodeSequence = []
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def _find(assoc: Association) -> list[Dataset]:
    answers = []
    for rsp, identifier in assoc.send_c_find(_query(), ModalityWorklistInformationFind):
        assert rsp is not None
        if rsp.Status in (status.PENDING, status.PENDING_WARNING_OPTIONAL_KEYS):
            assert identifier is not None
            answers.append(identifier)
        else:
            assert rsp.Status == status.SUCCESS
    return answers


def _n_create_from(answer: Dataset) -> Dataset:
    """The N-CREATE a modality builds from a worklist answer (IHE RAD-6 copy rules)."""
    sps = answer.ScheduledProcedureStepSequence[0]
    ds = Dataset()
    ds.PatientName = answer.PatientName
    ds.PatientID = answer.PatientID
    ds.PatientBirthDate = answer.PatientBirthDate
    ds.PatientSex = answer.PatientSex
    ds.ReferencedPatientSequence = []
    item = Dataset()
    item.StudyInstanceUID = answer.StudyInstanceUID
    item.ReferencedStudySequence = []
    item.AccessionNumber = answer.AccessionNumber
    item.RequestedProcedureID = answer.RequestedProcedureID
    item.RequestedProcedureDescription = answer.get("RequestedProcedureDescription", "")
    item.ScheduledProcedureStepID = sps.ScheduledProcedureStepID
    item.ScheduledProcedureStepDescription = sps.get("ScheduledProcedureStepDescription", "")
    item.ScheduledProtocolCodeSequence = []
    ds.ScheduledStepAttributesSequence = [item]
    ds.PerformedProcedureStepID = "E2EPPS"
    ds.PerformedStationAETitle = "CT1"
    ds.PerformedStationName = "CT ROOM 1"
    ds.PerformedLocation = "RAD"
    ds.PerformedProcedureStepStartDate = "20261125"
    ds.PerformedProcedureStepStartTime = "100500"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = sps.get("ScheduledProcedureStepDescription", "")
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = sps.Modality
    ds.StudyID = ""
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return ds


@pytest.mark.django_db(transaction=True)
def test_an_order_from_hl7_is_found_performed_and_reported_to_the_ris_as_ip_then_cm(
    hl7_listener: Callable[..., RunningListener],
    dicom_server: int,
    ris_server: FakeRIS,
    task_worker: Any,
) -> None:
    hl7 = hl7_listener()
    with MLLPClient(hl7.port) as client:
        assert msa(client.exchange(ORDER))[1] == "AA"

    ae = AE(ae_title="CT1")
    ae.add_requested_context(ModalityWorklistInformationFind)
    ae.add_requested_context(MPPS_SOP_CLASS)
    assoc = ae.associate("127.0.0.1", dicom_server, ae_title=settings.BROKER_AE_TITLE)
    assert assoc.is_established
    keep_responses(assoc)
    try:
        (answer,) = _find(assoc)
        assert answer.AccessionNumber == "E2EACC"
        assert answer.StudyInstanceUID == STUDY_UID

        uid = generate_uid()
        rsp, _ = assoc.send_n_create(_n_create_from(answer), MPPS_SOP_CLASS, uid)
        assert rsp is not None and rsp.Status == status.SUCCESS
        assert _find(assoc) == []  # the started step left the default worklist answer

        rsp, _ = assoc.send_n_set(n_set_dataset(), MPPS_SOP_CLASS, uid)
        assert rsp is not None and rsp.Status == status.SUCCESS
    finally:
        assoc.release()

    received = ris_server.wait_for(2)
    assert [order_status_of_message(m) for m in received] == ["IP", "CM"]
    for message in received:
        assert hl7_field(message, "MSH", 5) == "RIS"
        assert hl7_field(message, "MSH", 6) == "HOSP"
        assert hl7_field(message, "ORC", 1) == "SC"
        assert hl7_field(message, "ORC", 2) == "PLE2E"
        assert hl7_field(message, "ORC", 3) == "FIE2E"
        assert hl7_field(message, "OBR", 18) == "E2EACC"
        assert hl7_field(message, "OBR", 19) == "E2ERP"
        assert hl7_field(message, "OBR", 20) == "E2ESPS"
        assert hl7_field(message, "PID", 3) == "E2EPAT^^^HOSP"
