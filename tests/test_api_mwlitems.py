"""/api/v1/mwlitems/: dcm4chee's MWL-RS in DICOM JSON, matched like C-FIND."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom import Dataset

from audit.models import AuditEntry
from tests.fixtures_api import ADMINISTRATOR, ANONYMOUS, FRONT_DESK, INTEGRATOR, LEAD, ApiAs
from tests.fixtures_dicom import local, schedule
from worklist.models import ScheduledProcedureStep

pytestmark = pytest.mark.django_db

URL = "/api/v1/mwlitems/"


def item(**values: Any) -> dict[str, Any]:
    """A DICOM JSON worklist item (what an integrator's tool POSTs)."""
    ds = Dataset()
    ds.PatientID = values.get("patient_id", "MWLRS1")
    ds.PatientName = values.get("name", "REST^ROBERT")
    ds.PatientBirthDate = "19750607"
    ds.PatientSex = "M"
    if "accession" in values:
        ds.AccessionNumber = values["accession"]
    if "study_uid" in values:
        ds.StudyInstanceUID = values["study_uid"]
    ds.RequestedProcedureDescription = "MR knee"
    sps = Dataset()
    sps.Modality = values.get("modality", "MR")
    sps.ScheduledStationAETitle = values.get("station", "MR1")
    sps.ScheduledProcedureStepStartDate = values.get("date", "20261201")
    sps.ScheduledProcedureStepStartTime = values.get("time", "101500")
    sps.ScheduledProcedureStepDescription = "knee"
    if "sps_id" in values:
        sps.ScheduledProcedureStepID = values["sps_id"]
    ds.ScheduledProcedureStepSequence = [sps]
    return ds.to_json_dict()


def value(json_item: dict[str, Any], keyword_tag: str) -> Any:
    element = json_item.get(keyword_tag, {})
    found = element.get("Value")
    return found[0] if found else None


def sps_of(json_item: dict[str, Any]) -> dict[str, Any]:
    return json_item["00400100"]["Value"][0]


def test_post_creates_an_item_with_generated_identifiers(api_as: ApiAs) -> None:
    response = api_as(INTEGRATOR).post(URL, item(), format="json")
    assert response.status_code == 200, response.content
    created = response.json()
    assert value(created, "00100020") == "MWLRS1"
    assert value(created, "00100010") == {"Alphabetic": "REST^ROBERT"}
    assert value(created, "00080050")  # accession number generated
    assert value(created, "0020000D")  # study instance UID generated
    assert value(created, "00401001") == "RP1"
    sps = sps_of(created)
    assert value(sps, "00400009") == "SPS1"
    assert value(sps, "00400020") == "SCHEDULED"
    assert value(sps, "00400001") == "MR1"
    assert value(sps, "00400002") == "20261201"
    step = ScheduledProcedureStep.objects.get()
    assert step.start == local(2026, 12, 1, 10, 15)
    assert AuditEntry.objects.filter(actor__username="user-integrator").count() == 4


def test_post_accepts_the_dicom_json_media_type(api_as: ApiAs) -> None:
    import json

    response = api_as(INTEGRATOR).post(
        URL, json.dumps(item()), content_type="application/dicom+json"
    )
    assert response.status_code == 200, response.content


def test_post_again_updates_the_same_item(api_as: ApiAs) -> None:
    client = api_as(INTEGRATOR)
    first = client.post(
        URL, item(accession="ACCRS", study_uid="1.2.3.77", sps_id="SPSRS"), format="json"
    )
    assert first.status_code == 200
    again = client.post(
        URL,
        item(accession="ACCRS", study_uid="1.2.3.77", sps_id="SPSRS", time="113000"),
        format="json",
    )
    assert again.status_code == 200, again.content
    step = ScheduledProcedureStep.objects.get()
    assert step.start == local(2026, 12, 1, 11, 30)
    assert value(sps_of(again.json()), "00400003") == "113000"


def test_post_refuses_what_is_not_an_item(api_as: ApiAs) -> None:
    client = api_as(INTEGRATOR)
    assert client.post(URL, [item()], format="json").status_code == 400
    no_patient = item()
    del no_patient["00100020"]
    response = client.post(URL, no_patient, format="json")
    assert response.status_code == 400
    assert "Patient ID" in response.json()["detail"]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "body",
    [
        {"00100020": "not an element"},
        {"zz": {"vr": "LO"}},
        {"00100020": {"Value": ["no VR"]}},
        {"00400100": {"vr": "SQ", "Value": ["not an item"]}},
        {"00100020": {"vr": "LO", "Value": ["P1"]}, "00100030": {"vr": "DA", "Value": ["soon"]}},
        {
            "00100020": {"vr": "LO", "Value": ["P1"]},
            "00400100": {"vr": "SQ", "Value": [{"00400020": {"vr": "CS", "Value": ["LOST"]}}]},
        },
    ],
)
def test_post_answers_400_to_a_malformed_item(api_as: ApiAs, body: dict[str, Any]) -> None:
    response = api_as(INTEGRATOR).post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert not ScheduledProcedureStep.objects.exists()


def test_search_by_keyword_and_dotted_sequence_path(api_as: ApiAs) -> None:
    schedule(patient_id="P1", accession="A1", sps_id="S1", modality="CT", stations=["CT1"])
    schedule(patient_id="P2", accession="A2", sps_id="S2", modality="MR", stations=["MR1"])
    client = api_as(INTEGRATOR)
    found = client.get(URL, {"ScheduledProcedureStepSequence.Modality": "MR"}).json()
    assert [value(i, "00100020") for i in found] == ["P2"]
    found = client.get(URL, {"PatientID": "P1"}).json()
    assert [value(i, "00080050") for i in found] == ["A1"]
    found = client.get(URL, {"AccessionNumber": "A*"}).json()
    assert sorted(value(i, "00080050") for i in found) == ["A1", "A2"]
    found = client.get(URL, {"00100020": "P2"}).json()  # a tag instead of a keyword
    assert [value(i, "00100020") for i in found] == ["P2"]


def test_search_by_date_range_and_default_statuses(api_as: ApiAs) -> None:
    schedule(accession="A1", sps_id="S1", start=local(2026, 11, 30, 9))
    schedule(accession="A2", sps_id="S2", start=local(2026, 12, 1, 9))
    schedule(accession="A3", sps_id="S3", start=local(2026, 12, 1, 10), status="COMPLETED")
    client = api_as(INTEGRATOR)
    key = "ScheduledProcedureStepSequence.ScheduledProcedureStepStartDate"
    found = client.get(URL, {key: "20261201"}).json()
    assert [value(i, "00080050") for i in found] == ["A2"]  # not the completed one
    found = client.get(URL, {key: "20261130-20261201"}).json()
    assert [value(i, "00080050") for i in found] == ["A1", "A2"]
    found = client.get(
        URL,
        {
            key: "20261201",
            "ScheduledProcedureStepSequence.ScheduledProcedureStepStatus": "COMPLETED",
        },
    ).json()
    assert [value(i, "00080050") for i in found] == ["A3"]


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_search_refuses_unknown_keywords_and_invalid_values(api_as: ApiAs) -> None:
    client = api_as(INTEGRATOR)
    assert client.get(URL, {"NoSuchKeyword": "x"}).status_code == 400
    key = "ScheduledProcedureStepSequence.ScheduledProcedureStepStartDate"
    response = client.get(URL, {key: "2026-13-45"})
    assert response.status_code == 400


def test_count(api_as: ApiAs) -> None:
    schedule(accession="A1", sps_id="S1", modality="CT")
    schedule(accession="A2", sps_id="S2", modality="CT")
    schedule(accession="A3", sps_id="S3", modality="MR")
    client = api_as(INTEGRATOR)
    assert client.get(f"{URL}count/").json() == {"count": 3}
    count = client.get(f"{URL}count/", {"ScheduledProcedureStepSequence.Modality": "CT"})
    assert count.json() == {"count": 2}


def test_limit_and_offset_page_through_the_items(api_as: ApiAs, settings: Any) -> None:
    for n in range(5):
        schedule(accession=f"A{n}", sps_id=f"S{n}", start=local(2026, 12, 1, 8 + n))
    client = api_as(INTEGRATOR)
    page = client.get(URL, {"limit": 2, "offset": 1}).json()
    assert [value(i, "00080050") for i in page] == ["A1", "A2"]
    settings.API_MAX_PAGE_SIZE = 3
    assert len(client.get(URL, {"limit": 1000}).json()) == 3


def test_status_change(api_as: ApiAs) -> None:
    step = schedule(study_uid="1.2.3.4", sps_id="S1")
    client = api_as(INTEGRATOR)
    response = client.post(f"{URL}1.2.3.4/S1/status/ARRIVED/")
    assert response.status_code == 204
    step.refresh_from_db()
    assert step.status == "ARRIVED"
    assert client.post(f"{URL}1.2.3.4/S1/status/LOST/").status_code == 400
    assert client.post(f"{URL}1.2.3.4/NOPE/status/ARRIVED/").status_code == 404
    client.post(f"{URL}1.2.3.4/S1/status/COMPLETED/")
    refused = client.post(f"{URL}1.2.3.4/S1/status/SCHEDULED/")
    assert refused.status_code == 400
    assert "completed" in refused.json()["detail"]


def test_delete_removes_the_item_from_the_worklist(api_as: ApiAs) -> None:
    step = schedule(study_uid="1.2.3.5", sps_id="S1")
    client = api_as(INTEGRATOR)
    assert client.delete(f"{URL}1.2.3.5/S1/").status_code == 204
    assert client.get(URL).json() == []
    assert client.get(f"{URL}count/").json() == {"count": 0}
    step.refresh_from_db()
    assert step.status == "CANCELED"  # the row and its history are kept


@pytest.mark.parametrize(
    ("role", "read", "write"),
    [
        (ANONYMOUS, 401, 401),
        ("none", 403, 403),
        (INTEGRATOR, 200, 200),
        (FRONT_DESK, 200, 200),
        (LEAD, 200, 403),
        (ADMINISTRATOR, 200, 200),
    ],
)
def test_every_role(api_as: ApiAs, role: str, read: int, write: int) -> None:
    schedule(study_uid="1.2.3.6", sps_id="S1")
    client = api_as(role)
    assert client.get(URL).status_code == read
    assert client.get(f"{URL}count/").status_code == read
    assert client.post(URL, item(), format="json").status_code == write
    status_write = 204 if write == 200 else write
    assert client.post(f"{URL}1.2.3.6/S1/status/ARRIVED/").status_code == status_write
    assert client.delete(f"{URL}1.2.3.6/S1/").status_code == status_write


def test_a_method_mwl_rs_does_not_have_is_a_405(api_as: ApiAs) -> None:
    client = api_as(INTEGRATOR)
    assert client.put(URL, item(), format="json").status_code == 405
    assert client.patch(f"{URL}count/", {}, format="json").status_code == 405


def test_paths_without_a_trailing_slash_as_dcm4chee_clients_send_them(api_as: ApiAs) -> None:
    schedule(study_uid="1.2.3.8", sps_id="S1")
    client = api_as(INTEGRATOR)
    assert client.get("/api/v1/mwlitems", {"PatientID": "P1"}).status_code == 200
    assert client.get("/api/v1/mwlitems/count").json() == {"count": 1}
    assert client.post("/api/v1/mwlitems", item(), format="json").status_code == 200
    assert client.post("/api/v1/mwlitems/1.2.3.8/S1/status/ARRIVED").status_code == 204
    assert client.delete("/api/v1/mwlitems/1.2.3.8/S1").status_code == 204
