"""Served associations are let go: the listener's memory stays flat over a long run.

The 10-minute soak (bench/soak.py) once showed the DICOM listener growing from 169 to
1,647 MB: every association was kept alive by a module-level WeakKeyDictionary whose
values (each association's cancel watch) referred to their keys.
"""

from __future__ import annotations

import gc
import time

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.fixtures_dicom import Listener
from tests.scu import keep_responses


def _alive() -> int:
    gc.collect()
    # type(), not isinstance(): gc also lists dead weak proxies, which isinstance()
    # would dereference (ReferenceError).
    return sum(type(o) is Association for o in gc.get_objects())


def _associations(listener: Listener, count: int) -> None:
    for _ in range(count):
        ae = AE(ae_title="LEAKCHECK")
        ae.add_requested_context(Verification)
        assoc = keep_responses(ae.associate(listener.host, listener.port, ae_title="WORKLIST"))
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000  # Success
        assoc.release()


def test_served_associations_are_not_kept_alive(dicom_listener: Listener) -> None:
    _associations(dicom_listener, 5)
    time.sleep(0.5)  # the association threads end after the release
    before = _alive()
    _associations(dicom_listener, 40)
    deadline = time.monotonic() + 20
    while _alive() > before + 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive() <= before + 5
