"""Which destinations a study goes to: pure matching of rules against what is known of
the study (no database here; ``routing.selectors.study_facts`` gathers the facts)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(frozen=True)
class StudyFacts:
    """Every value seen for the study: from its instances, the worklist and MPPS."""

    modalities: frozenset[str] = field(default_factory=frozenset)
    calling_ae_titles: frozenset[str] = field(default_factory=frozenset)
    station_ae_titles: frozenset[str] = field(default_factory=frozenset)
    procedure_codes: frozenset[str] = field(default_factory=frozenset)
    body_parts: frozenset[str] = field(default_factory=frozenset)
    study_descriptions: frozenset[str] = field(default_factory=frozenset)


# Rule field -> StudyFacts attribute; one table, read by matching, the API and the admin.
CONDITIONS: dict[str, str] = {
    "modality": "modalities",
    "calling_ae_title": "calling_ae_titles",
    "station_ae_title": "station_ae_titles",
    "procedure_code": "procedure_codes",
    "body_part": "body_parts",
    "study_description": "study_descriptions",
}
PATTERN_CONDITIONS = frozenset({"study_description"})


@lru_cache(maxsize=256)
def _wildcard(pattern: str) -> re.Pattern[str]:
    # DICOM wildcards (* and ?), case-insensitive; fnmatch's [...] sets are escaped.
    escaped = pattern.replace("[", "[[]")
    return re.compile(fnmatch.translate(escaped), re.IGNORECASE | re.DOTALL)


def _fold(values: Iterable[str]) -> set[str]:
    return {v.strip().upper() for v in values if v and v.strip()}


def condition_matches(name: str, wanted: str, facts: StudyFacts) -> bool:
    wanted = wanted.strip()
    if not wanted:
        return True
    seen: frozenset[str] = getattr(facts, CONDITIONS[name])
    if name in PATTERN_CONDITIONS:
        pattern = _wildcard(wanted)
        return any(pattern.match(value.strip()) for value in seen)
    return wanted.upper() in _fold(seen)


def rule_matches(conditions: dict[str, str], facts: StudyFacts) -> bool:
    """True when every non-empty condition holds for some value seen for the study."""
    return all(condition_matches(name, conditions.get(name, ""), facts) for name in CONDITIONS)
