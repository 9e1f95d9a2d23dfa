"""The same worklist query over /api/v1/mwlitems/ and over C-FIND (DCMTK's findscu)
gives the same items, with the same values."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from pydicom import Dataset, dcmread

from tests.fixtures_api import INTEGRATOR, ApiAs
from tests.fixtures_dicom import SAMPLE_QUERIES, Listener, dump2dcm, require_dcmtk
from tests.test_mwl_dcmtk import flatten

pytestmark = [pytest.mark.dcmtk, pytest.mark.django_db(transaction=True)]

# (findscu -k overrides of DCMTK's query that asks for every key, REST query parameters)
SPS = "ScheduledProcedureStepSequence"
QUERIES: dict[str, tuple[list[str], dict[str, str]]] = {
    "everything offered": ([], {}),
    "name wildcard": (["PatientName=VIVALDI*"], {"PatientName": "VIVALDI*"}),
    "patient id": (["PatientID=HF"], {"PatientID": "HF"}),
    "accession with ?": (["AccessionNumber=0000?"], {"AccessionNumber": "0000?"}),
    "modality": ([f"{SPS}[0].Modality=CT"], {f"{SPS}.Modality": "CT"}),
    "date range": (
        [f"{SPS}[0].ScheduledProcedureStepStartDate=19960101-19961231"],
        {f"{SPS}.ScheduledProcedureStepStartDate": "19960101-19961231"},
    ),
    "date and time range": (
        [
            f"{SPS}[0].ScheduledProcedureStepStartDate=19960406",
            f"{SPS}[0].ScheduledProcedureStepStartTime=1500-1700",
        ],
        {
            f"{SPS}.ScheduledProcedureStepStartDate": "19960406",
            f"{SPS}.ScheduledProcedureStepStartTime": "1500-1700",
        },
    ),
    "station list": (
        [f"{SPS}[0].ScheduledStationAETitle=AB12\\NN77"],
        {f"{SPS}.ScheduledStationAETitle": "AB12\\NN77"},
    ),
    "no match": (["PatientID=NOBODY"], {"PatientID": "NOBODY"}),
}


def findscu(listener: Listener, query: Path, keys: list[str], out: Path) -> list[Dataset]:
    out.mkdir(parents=True)
    command = ["findscu", "-W", "-aet", "FINDSCU", "-aec", listener.ae_title, "-X"]
    command += ["-od", str(out)]
    for key in keys:
        command += ["-k", key]
    command += [listener.host, str(listener.port), str(query)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


def rest(client: Any, params: dict[str, str]) -> list[Dataset]:
    response = client.get("/api/v1/mwlitems/", params)
    assert response.status_code == 200, response.content
    return [Dataset.from_json(item) for item in response.json()]


def test_the_same_query_gives_the_same_items_over_rest_and_c_find(
    dicom_listener: Listener,
    sample_worklist: Path,
    api_as: ApiAs,
    tmp_path: Path,
) -> None:
    require_dcmtk()
    call_command("import_worklist", str(sample_worklist), stdout=None)
    every_key = dump2dcm(SAMPLE_QUERIES / "wlistqry11.dump", tmp_path / "all.dcm")
    client = api_as(INTEGRATOR)
    sizes = {}
    for name, (keys, params) in QUERIES.items():
        slug = name.replace(" ", "_").replace("?", "q")
        over_dicom = findscu(dicom_listener, every_key, keys, tmp_path / slug)
        over_rest = rest(client, params)
        sizes[name] = len(over_dicom)
        dicom_items = sorted(
            (flatten(ds, only_values=True) for ds in over_dicom), key=lambda d: sorted(d.items())
        )
        rest_items = [flatten(ds, only_values=True) for ds in over_rest]
        # Every value findscu received is in the REST item (which has every attribute).
        unmatched = [
            d
            for d in dicom_items
            if not any(all(r.get(k) == v for k, v in d.items()) for r in rest_items)
        ]
        assert len(over_rest) == len(over_dicom), name
        assert unmatched == [], name
    assert sizes["everything offered"] >= 10  # not vacuous
    assert sizes["no match"] == 0
    assert all(sizes[name] > 0 for name in QUERIES if name != "no match"), sizes


def test_an_item_deleted_over_rest_is_gone_from_c_find_too(
    dicom_listener: Listener, sample_worklist: Path, api_as: ApiAs, tmp_path: Path
) -> None:
    require_dcmtk()
    call_command("import_worklist", str(sample_worklist), stdout=None)
    every_key = dump2dcm(SAMPLE_QUERIES / "wlistqry11.dump", tmp_path / "all.dcm")
    client = api_as(INTEGRATOR)
    before = findscu(dicom_listener, every_key, [], tmp_path / "before")
    gone = rest(client, {})[0]
    url = f"/api/v1/mwlitems/{gone.StudyInstanceUID}/"
    url += f"{gone.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID}/"
    assert client.delete(url).status_code == 204
    after = findscu(dicom_listener, every_key, [], tmp_path / "after")
    assert keys(before) - keys(after) == {key(gone)}
    assert len(after) == len(before) - 1
    assert keys(rest(client, {})) == keys(after)


def key(ds: Dataset) -> tuple[str, str]:
    return (ds.StudyInstanceUID, ds.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID)


def keys(datasets: list[Dataset]) -> set[tuple[str, str]]:
    return {key(ds) for ds in datasets}
