"""core.dicom.net.send_c_store_encoded writes a C-STORE's PDUs itself: DCMTK's storescp
must receive exactly the bytes that pynetdicom's own send_c_store would send."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE

from core.dicom.net import send_c_store_encoded
from core.dicom.requestor import keep_responses
from routing.sender import dataset_offset
from tests.fixtures_routing import CT_IMAGE, ct_dataset, require_storage_tools

ELE = "1.2.840.10008.1.2.1"


@pytest.mark.parametrize("max_pdu", ["4096", "131072"])
def test_the_destination_stores_the_same_bytes_either_way(
    storage_destination: Any, tmp_path: Path, max_pdu: str
) -> None:
    require_storage_tools()
    # Bit-preserving: storescp writes the data set exactly as it arrived.
    scp = storage_destination(options=("+B", "-pdu", max_pdu))
    study = generate_uid()
    direct = ct_dataset(study_uid=study, pixels=100)
    through_pynetdicom = ct_dataset(study_uid=study, pixels=100)
    paths = {}
    for name, ds in (("direct", direct), ("pynetdicom", through_pynetdicom)):
        paths[name] = tmp_path / f"{name}.dcm"
        ds.save_as(paths[name], enforce_file_format=True)

    ae = AE(ae_title="ROUTER")
    ae.add_requested_context(CT_IMAGE, ELE)
    assoc = keep_responses(ae.associate("127.0.0.1", scp.port, ae_title=scp.ae_title))
    assert assoc.is_established
    try:
        data = paths["direct"].read_bytes()
        offset = dataset_offset(data)
        assert offset is not None
        status = send_c_store_encoded(
            assoc,
            assoc.accepted_contexts[0].context_id,
            CT_IMAGE,
            direct.SOPInstanceUID,
            memoryview(data)[offset:],
            message_id=7,
        )
        assert status is not None and status.Status == 0
        assert assoc.send_c_store(paths["pynetdicom"], msg_id=8).Status == 0
    finally:
        assoc.release()

    received = {}
    for path in scp.folder.iterdir():
        content = path.read_bytes()
        start = dataset_offset(content)
        assert start is not None
        received[path.name] = content[start:]
    sent = sorted(p.read_bytes()[dataset_offset(p.read_bytes()) or 0 :] for p in paths.values())
    assert sorted(received.values()) == sent
