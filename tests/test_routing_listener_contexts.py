"""The listener serves every storage SOP class in every transfer syntax without paying
for pynetdicom's per-association deepcopy of them (core.dicom.net.CheapCopyContexts):
each association gets a new list of the listener's own contexts, which negotiation
only reads."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from pydicom.uid import AllTransferSyntaxes, ExplicitVRLittleEndian, JPEG2000Lossless
from pynetdicom import AE, build_context, build_role
from pynetdicom.presentation import AllStoragePresentationContexts

from core.dicom.net import CheapCopyContexts
from routing.dimse import STORAGE_COMMITMENT
from tests.test_dicom_hostile import HOST, port_of, start_listener

__all__ = ["start_listener"]  # the fixture, imported for this module's tests

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MWL_FIND = "1.2.840.10008.5.1.4.31"
VERIFICATION = "1.2.840.10008.1.1"
UNKNOWN_SOP_CLASS = "1.2.826.0.1.3680043.8.498.999.1"


def _contexts() -> list:
    return [
        build_context(str(c.abstract_syntax), list(AllTransferSyntaxes))
        for c in AllStoragePresentationContexts
    ]


def _state(contexts: list[Any]) -> list[dict[str, Any]]:
    return [copy.deepcopy(dict(cx.__dict__)) for cx in contexts]


def test_each_association_gets_a_new_list_of_the_same_contexts() -> None:
    original = CheapCopyContexts(_contexts())
    copied = copy.deepcopy(original)
    assert copied is not original
    assert all(a is b for a, b in zip(copied, original, strict=True))
    copied.pop()
    assert len(original) == len(AllStoragePresentationContexts)


def test_it_costs_a_small_part_of_a_deepcopy() -> None:
    contexts = _contexts()
    started = time.process_time()
    copy.deepcopy(contexts)
    deep = time.process_time() - started
    started = time.process_time()
    copy.deepcopy(CheapCopyContexts(contexts))
    cheap = time.process_time() - started
    assert cheap < deep / 5


@pytest.mark.django_db(transaction=True)
def test_negotiations_leave_the_listener_s_contexts_as_they_were(start_listener: Any) -> None:
    server = start_listener()
    before = _state(server.contexts)
    proposals: list[tuple[list[Any], list[Any]]] = [
        # Storage in two syntaxes, the worklist, verification.
        (
            [
                build_context(CT_IMAGE_STORAGE, [JPEG2000Lossless, ExplicitVRLittleEndian]),
                build_context(MWL_FIND),
                build_context(VERIFICATION),
            ],
            [],
        ),
        # Storage commitment with SCP/SCU role selection (the broker takes the SCU role),
        # a SOP class the listener does not serve, and a refused transfer syntax.
        (
            [
                build_context(STORAGE_COMMITMENT),
                build_context(UNKNOWN_SOP_CLASS),
                build_context(MWL_FIND, ["1.2.840.10008.1.2.4.50"]),
            ],
            [build_role(STORAGE_COMMITMENT, scp_role=True)],
        ),
    ]
    for contexts, roles in proposals:
        ae = AE(ae_title="CONTEXTS")
        ae.requested_contexts = contexts
        assoc = ae.associate(HOST, port_of(server), ae_title="WORKLIST", ext_neg=roles)
        assert assoc.is_established
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        assert MWL_FIND in accepted or STORAGE_COMMITMENT in accepted
        assoc.release()
    assert _state(server.contexts) == before
