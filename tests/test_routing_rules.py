"""Routing rules: pure matching, and the facts of a study gathered from its instances,
the worklist and MPPS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from routing import services
from routing.models import Destination
from routing.rules import StudyFacts, rule_matches
from tests.fixtures_mpps import make_step
from tests.fixtures_routing import rule_to, spool_files, write_study

FACTS = StudyFacts(
    modalities=frozenset({"CT"}),
    calling_ae_titles=frozenset({"CT1"}),
    station_ae_titles=frozenset({"CT_ROOM1"}),
    procedure_codes=frozenset({"CTHEAD"}),
    body_parts=frozenset({"HEAD"}),
    study_descriptions=frozenset({"CT Head without contrast"}),
)


def test_empty_conditions_match_everything() -> None:
    assert rule_matches({}, FACTS)
    assert rule_matches({"modality": "", "body_part": "  "}, StudyFacts())


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ({"modality": "CT"}, True),
        ({"modality": "ct"}, True),
        ({"modality": "MR"}, False),
        ({"calling_ae_title": "CT1"}, True),
        ({"calling_ae_title": "CT2"}, False),
        ({"station_ae_title": "CT_ROOM1"}, True),
        ({"procedure_code": "CTHEAD"}, True),
        ({"procedure_code": "CTCHEST"}, False),
        ({"body_part": "HEAD"}, True),
        ({"body_part": "CHEST"}, False),
        ({"study_description": "*head*"}, True),
        ({"study_description": "CT Head*"}, True),
        ({"study_description": "CT?Head*"}, True),
        ({"study_description": "*chest*"}, False),
        ({"study_description": "[CT]*"}, False),  # brackets are literal, not sets
        ({"modality": "CT", "body_part": "CHEST"}, False),  # every condition must hold
    ],
)
def test_each_condition(conditions: dict[str, str], expected: bool) -> None:
    assert rule_matches(conditions, FACTS) is expected


@pytest.mark.django_db
def test_a_study_goes_to_the_union_of_the_destinations_of_matching_rules(
    routing_settings: Any, tmp_path: Path
) -> None:
    pacs, ai, mr_only, off = (
        Destination.objects.create(name=n, ae_title=n.upper()[:16], host="127.0.0.1", port=104)
        for n in ("pacs", "ai", "mr", "off")
    )
    off.enabled = False
    off.save()
    step = make_step(modality="CT")  # code CTHEAD, station CT1 (the worklist's facts)
    study = step.procedure.study_instance_uid
    rule_to(pacs, ai, name="everything")
    rule_to(ai, name="heads by code", procedure_code="CTHEAD", station_ae_title="CT1")
    rule_to(mr_only, name="mr", modality="MR")
    rule_to(off, name="disabled destination")
    spool_files(write_study(tmp_path / "scan", 1, study_uid=study))
    assert [d.name for d in services.destinations_for(study)] == ["pacs", "ai"]
    assert len(services.route_study(study)) == 2
    # Its instances are routed now: routing it again adds nothing.
    assert services.route_study(study) == []
