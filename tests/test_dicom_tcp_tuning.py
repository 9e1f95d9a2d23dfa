"""DICOM_TCP_TUNING, a benchmark aid: the listener's socket options on and off."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from broker.dicom import server
from tests.conftest import get_free_port
from tests.db_faults import wait_for
from tests.scu import keep_responses


def nodelay_of_accepted_socket(settings: Any, tuning: str) -> int:
    settings.DICOM_TCP_TUNING = tuning
    port = get_free_port()
    running = server.start("127.0.0.1", port, block=False)
    assert running is not None
    try:
        ae = AE(ae_title="TUNESCU")
        ae.add_requested_context(Verification)
        assoc = keep_responses(ae.associate("127.0.0.1", port, ae_title=settings.BROKER_AE_TITLE))
        assert assoc.is_established
        try:
            (accepted,) = wait_for(lambda: running.active_associations)
            return int(
                accepted.dul.socket.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            )
        finally:
            assoc.release()
    finally:
        running.shutdown()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("tuning", "nodelay"), [("nodelay+quickack", True), ("nodelay", True), ("off", False)]
)
def test_tcp_nodelay_is_set_unless_the_tuning_is_off(
    settings: Any, tuning: str, nodelay: bool
) -> None:
    assert bool(nodelay_of_accepted_socket(settings, tuning)) is nodelay
