"""ORC-1 + ORC-5 -> SPS status: the default table against the reference mapping's rows.

The rows are written out from ``/work/shared/hl7-to-mwl-mapping.md``, section "Order
control (ORC-1) and order status (ORC-5) -> SPS status (default table)", not read from
the code's table, so a changed entry fails here.
"""

from __future__ import annotations

import pytest

from hl7v2 import mapping
from hl7v2.errors import MappingError
from hl7v2.parser import parse
from tests.hl7_messages import orm

# | ORC-1_ORC-5 | SPS status |  (the reference's rows, as written there)
REFERENCE_ROWS = """
| NW_SC, NW_IP, XO_SC | SCHEDULED |
| CA_CA | CANCELED |
| DC_CA | DISCONTINUED |
| XO_CM, SC_CM | COMPLETED |
"""


def reference_pairs() -> list[tuple[str, str, str]]:
    pairs = []
    for line in REFERENCE_ROWS.strip().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        for pair in cells[0].split(","):
            control, order_status = pair.strip().split("_")
            pairs.append((control, order_status, cells[1]))
    return pairs


PAIRS = reference_pairs()


def map_orm(text: str) -> mapping.OrderMessage:
    return mapping.order_message(parse(text), mapping.ORM, mapping.MappingConfig())


def test_the_reference_rows_are_read_as_seven_pairs() -> None:
    assert len(PAIRS) == 7
    assert ("XO", "CM", "COMPLETED") in PAIRS


@pytest.mark.parametrize(("control", "order_status", "sps_status"), PAIRS)
def test_each_pair_of_the_reference_gives_its_status(
    control: str, order_status: str, sps_status: str
) -> None:
    result = map_orm(orm(orc={1: control, 5: order_status}))
    assert result.steps[0].sps_status == sps_status
    assert result.steps[0].order_control == control


def test_the_default_table_has_no_pair_the_reference_lacks() -> None:
    # "Any other pair is rejected with an application error naming ORC-1/ORC-5."
    assert set(mapping.DEFAULT_STATUS_TABLE) == {(c, s) for c, s, _ in PAIRS}


@pytest.mark.parametrize(
    ("control", "order_status"),
    [("NW", "CM"), ("XO", "IP"), ("CA", "SC"), ("SC", "SC"), ("DC", "DC"), ("XX", "SC")],
)
def test_a_pair_outside_the_reference_is_an_error_naming_orc(
    control: str, order_status: str
) -> None:
    with pytest.raises(MappingError) as info:
        map_orm(orm(orc={1: control, 5: order_status}))
    assert info.value.segment == "ORC"
    assert "ORC-1/ORC-5" in info.value.text


# --- the site's table (HL7_ORDER_STATUS_TABLE): ORC1_ORC5=STATUS,... --------------------


@pytest.mark.parametrize("text", ["", "  "])
def test_an_empty_site_table_is_the_reference_table(text: str) -> None:
    assert mapping.status_table_parse(text) == {(c, s): status for c, s, status in PAIRS}


def test_a_site_table_is_read_in_any_case_with_spaces_and_empty_items() -> None:
    text = " nw_sc = scheduled ,, ca_ = Canceled ,"
    assert mapping.status_table_parse(text) == {("NW", "SC"): "SCHEDULED", ("CA", ""): "CANCELED"}


def test_orc_1_ends_at_the_first_underscore() -> None:
    assert mapping.status_table_parse("NW_SC_X=SCHEDULED") == {("NW", "SC_X"): "SCHEDULED"}


@pytest.mark.parametrize(
    "item", ["NW_SC", "NWSC=SCHEDULED", "_SC=SCHEDULED", "NW_SC==SCHEDULED", " NW_SC=PLANNED "]
)
def test_an_item_that_is_not_orc1_orc5_status_is_refused(item: str) -> None:
    # The statuses of PS3.3 C.4.10 (Scheduled Procedure Step Status).
    statuses = "SCHEDULED, ARRIVED, READY, STARTED, COMPLETED, DISCONTINUED, CANCELED"
    with pytest.raises(ValueError) as info:
        mapping.status_table_parse(f"CA_CA=CANCELED,{item}")
    assert str(info.value) == (
        f"{item.strip()!r} is not ORC1_ORC5=STATUS with a status out of {statuses}"
    )
