"""The MPPS SCP over a real socket: a pynetdicom SCU against the broker's DICOM listener."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import UID, generate_uid
from pynetdicom import AE, evt
from pynetdicom.association import Association

from core.dicom import status
from mpps.dimse import MPPS_SOP_CLASS
from mpps.models import PerformedProcedureStep
from tests.fixtures_mpps import make_step, n_create_dataset, n_set_dataset
from tests.scu import keep_responses
from worklist.status import SPSStatus


def _associate(port: int) -> Association:
    ae = AE(ae_title="CT1")
    ae.add_requested_context(MPPS_SOP_CLASS)
    assoc = ae.associate("127.0.0.1", port, ae_title=settings.BROKER_AE_TITLE)
    assert assoc.is_established
    return keep_responses(assoc)


@pytest.fixture
def scu(dicom_server: int) -> Iterator[Association]:
    assoc = _associate(dicom_server)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _create(assoc: Association, ds: Dataset, uid: str | None) -> tuple[Dataset, Any]:
    rsp, attrs = assoc.send_n_create(ds, MPPS_SOP_CLASS, uid)
    assert rsp is not None, "no N-CREATE response"
    return rsp, attrs


def _set(assoc: Association, modification: Dataset, uid: str) -> Dataset:
    rsp, _ = assoc.send_n_set(modification, MPPS_SOP_CLASS, uid)
    assert rsp is not None, "no N-SET response"
    return rsp


@pytest.mark.django_db(transaction=True)
def test_it_accepts_n_create_and_n_set_and_moves_the_step(scu: Association) -> None:
    step = make_step()
    uid = generate_uid()
    rsp, _ = _create(scu, n_create_dataset(step), uid)
    assert rsp.Status == status.SUCCESS
    step.refresh_from_db()
    assert step.status == SPSStatus.STARTED

    rsp = _set(scu, n_set_dataset(), uid)
    assert rsp.Status == status.SUCCESS
    step.refresh_from_db()
    assert step.status == SPSStatus.COMPLETED
    mpps = PerformedProcedureStep.objects.get(sop_instance_uid=uid)
    assert mpps.calling_ae_title == "CT1"
    assert mpps.series.get().instances.count() == 2


@pytest.mark.django_db(transaction=True)
def test_it_assigns_an_instance_uid_when_the_modality_sends_none(scu: Association) -> None:
    # pynetdicom's SCU API does not hand back the response's Affected SOP Instance UID:
    # read it from the response's command set as it arrives.
    commands: list[Dataset] = []
    scu.bind(evt.EVT_DIMSE_RECV, lambda event: commands.append(event.message.command_set))
    rsp, _ = _create(scu, n_create_dataset(make_step()), None)
    assert rsp.Status == 0x0000  # PS3.7 C.1.1: Success
    assigned = PerformedProcedureStep.objects.get().sop_instance_uid
    # PS3.7 10.1.5.1.4: the SCP assigns the UID and returns it in the response.
    assert [str(c.AffectedSOPInstanceUID) for c in commands] == [assigned]
    assert assigned.startswith(settings.BROKER_UID_ROOT)
    assert len(assigned) > len(settings.BROKER_UID_ROOT)
    assert UID(assigned).is_valid


@pytest.mark.django_db(transaction=True)
def test_it_answers_0x0120_naming_a_missing_attribute(scu: Association) -> None:
    ds = n_create_dataset(make_step())
    del ds.PerformedStationAETitle
    rsp, _ = _create(scu, ds, generate_uid())
    assert rsp.Status == status.MISSING_ATTRIBUTE
    assert "00400241" in rsp.ErrorComment
    assert PerformedProcedureStep.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_it_answers_0x0121_for_an_empty_type_1_attribute(scu: Association) -> None:
    ds = n_create_dataset(make_step())
    ds.PerformedProcedureStepID = ""
    rsp, _ = _create(scu, ds, generate_uid())
    assert rsp.Status == status.MISSING_ATTRIBUTE_VALUE
    assert "00400253" in rsp.ErrorComment


@pytest.mark.django_db(transaction=True)
def test_it_answers_0x0106_for_an_n_create_not_in_progress(scu: Association) -> None:
    ds = n_create_dataset(make_step())
    ds.PerformedProcedureStepStatus = "COMPLETED"
    rsp, _ = _create(scu, ds, generate_uid())
    assert rsp.Status == status.INVALID_ATTRIBUTE_VALUE
    assert "00400252" in rsp.ErrorComment


@pytest.mark.django_db(transaction=True)
def test_it_answers_0x0111_for_a_duplicate_instance(scu: Association) -> None:
    step = make_step()
    uid = generate_uid()
    assert _create(scu, n_create_dataset(step), uid)[0].Status == status.SUCCESS
    assert _create(scu, n_create_dataset(step), uid)[0].Status == status.DUPLICATE_SOP_INSTANCE


@pytest.mark.django_db(transaction=True)
def test_it_answers_0x0112_for_an_n_set_on_an_unknown_instance(scu: Association) -> None:
    assert _set(scu, n_set_dataset(), generate_uid()).Status == status.NO_SUCH_SOP_INSTANCE


@pytest.mark.django_db(transaction=True)
def test_it_answers_0x0106_listing_attributes_n_set_may_not_change(scu: Association) -> None:
    uid = generate_uid()
    _create(scu, n_create_dataset(make_step()), uid)
    modification = n_set_dataset()
    modification.PatientName = "OTHER^NAME"
    rsp = _set(scu, modification, uid)
    assert rsp.Status == status.INVALID_ATTRIBUTE_VALUE
    tags = rsp.AttributeIdentifierList  # one value reads as a tag, several as a list
    assert (tags if isinstance(tags, list) else [tags]) == [Tag("PatientName")]
    assert PerformedProcedureStep.objects.get(sop_instance_uid=uid).status == "IN PROGRESS"


@pytest.mark.django_db(transaction=True)
def test_it_answers_0x0110_with_error_id_a710_once_completed(scu: Association) -> None:
    uid = generate_uid()
    _create(scu, n_create_dataset(make_step()), uid)
    assert _set(scu, n_set_dataset(), uid).Status == status.SUCCESS
    rsp = _set(scu, n_set_dataset("DISCONTINUED"), uid)
    assert rsp.Status == status.PROCESSING_FAILURE
    assert rsp.ErrorID == status.MPPS_NO_LONGER_UPDATABLE


@pytest.mark.django_db(transaction=True)
def test_two_modalities_setting_one_instance_at_once_get_one_success_and_one_a710(
    dicom_server: int,
) -> None:
    step = make_step()
    uid = generate_uid()
    first, second = _associate(dicom_server), _associate(dicom_server)
    try:
        assert _create(first, n_create_dataset(step), uid)[0].Status == status.SUCCESS
        barrier = threading.Barrier(2)
        answers: list[Dataset] = []

        def send(assoc: Association, final: str) -> None:
            barrier.wait()
            answers.append(_set(assoc, n_set_dataset(final), uid))

        threads = [
            threading.Thread(target=send, args=(first, "COMPLETED")),
            threading.Thread(target=send, args=(second, "DISCONTINUED")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        first.release()
        second.release()
    assert sorted(a.Status for a in answers) == [status.SUCCESS, status.PROCESSING_FAILURE]
    loser = next(a for a in answers if a.Status != status.SUCCESS)
    assert loser.ErrorID == status.MPPS_NO_LONGER_UPDATABLE


@pytest.mark.django_db(transaction=True)
def test_it_keeps_a_latin_1_patient_name_as_sent(scu: Association) -> None:
    uid = generate_uid()
    ds = n_create_dataset(make_step())
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "MÜLLER^JÖRG"
    assert _create(scu, ds, uid)[0].Status == status.SUCCESS
    mpps = PerformedProcedureStep.objects.get(sop_instance_uid=uid)
    assert mpps.patient_name == "MÜLLER^JÖRG"
    assert mpps.dataset["00100010"]["Value"] == [{"Alphabetic": "MÜLLER^JÖRG"}]
