"""The listener serves every storage SOP class in every transfer syntax without paying
for pynetdicom's per-association deepcopy of them (core.dicom.net.CheapCopyContexts)."""

from __future__ import annotations

import copy
import time

from pydicom.uid import AllTransferSyntaxes
from pynetdicom import build_context
from pynetdicom.presentation import AllStoragePresentationContexts

from core.dicom.net import CheapCopyContexts


def _contexts() -> list:
    return [
        build_context(str(c.abstract_syntax), list(AllTransferSyntaxes))
        for c in AllStoragePresentationContexts
    ]


def test_the_copy_is_equal_and_its_own() -> None:
    original = _contexts()
    copies = copy.deepcopy(CheapCopyContexts(original))
    assert [(c.abstract_syntax, c.transfer_syntax, c.scu_role, c.scp_role) for c in copies] == [
        (c.abstract_syntax, c.transfer_syntax, c.scu_role, c.scp_role) for c in original
    ]
    assert all(a is not b for a, b in zip(copies, original, strict=True))
    copies[0].transfer_syntax = [AllTransferSyntaxes[0]]
    assert len(original[0].transfer_syntax) == len(AllTransferSyntaxes)


def test_it_costs_a_small_part_of_a_deepcopy() -> None:
    contexts = _contexts()
    started = time.process_time()
    copy.deepcopy(contexts)
    deep = time.process_time() - started
    started = time.process_time()
    copy.deepcopy(CheapCopyContexts(contexts))
    cheap = time.process_time() - started
    assert cheap < deep / 5
