"""What performed steps mean for scheduled steps and orders: pure rules, every row."""

from __future__ import annotations

import pytest

from mpps.rules import order_status_of, statuses_to_queue, step_target

IP, CM, DC = "IN PROGRESS", "COMPLETED", "DISCONTINUED"


@pytest.mark.parametrize(
    ("mpps_statuses", "expected"),
    [
        ([], None),
        ([IP], "STARTED"),
        ([CM], "COMPLETED"),
        ([DC], "DISCONTINUED"),
        ([CM, IP], "STARTED"),
        ([CM, DC], "COMPLETED"),
        ([DC, DC], "DISCONTINUED"),
    ],
)
def test_a_step_follows_its_performed_steps(mpps_statuses: list[str], expected: str) -> None:
    assert step_target(mpps_statuses) == expected


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([("SCHEDULED", [])], None),
        ([("STARTED", [IP])], "IP"),
        ([("COMPLETED", [CM])], "CM"),
        ([("DISCONTINUED", [DC])], "DC"),
        ([("COMPLETED", [CM]), ("SCHEDULED", [])], "IP"),
        ([("COMPLETED", [CM]), ("CANCELED", [])], "CM"),
        ([("DISCONTINUED", [DC]), ("CANCELED", [])], "DC"),
        ([("CANCELED", [CM])], "CM"),
        ([("COMPLETED", [CM, IP])], "IP"),
    ],
)
def test_an_order_status_follows_its_steps(
    steps: list[tuple[str, list[str]]], expected: str | None
) -> None:
    assert order_status_of(steps) == expected


@pytest.mark.parametrize(
    ("queued", "wanted", "expected"),
    [
        ([], None, []),
        ([], "IP", ["IP"]),
        (["IP"], "IP", []),
        (["IP"], "CM", ["CM"]),
        ([], "CM", ["IP", "CM"]),
        ([], "DC", ["IP", "DC"]),
        (["IP", "CM"], "IP", []),
        (["IP", "DC"], "CM", ["CM"]),
        (["IP", "CM"], "CM", []),
    ],
)
def test_the_ris_hears_ip_first_and_only_changes(
    queued: list[str], wanted: str | None, expected: list[str]
) -> None:
    assert statuses_to_queue(queued, wanted) == expected
