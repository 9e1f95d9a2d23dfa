"""The turnaround page's server-side SVG chart (frontdesk.charts)."""

from __future__ import annotations

from datetime import date

from frontdesk.charts import Series, line_chart


def test_it_draws_a_solid_median_and_a_dashed_p90_line_per_series() -> None:
    days = [date(2026, 11, 30), date(2026, 12, 1)]
    svg = line_chart(
        title="Order → start",
        days=days,
        series=[
            Series("CT", {days[0]: 30.0, days[1]: 20.0}, {days[0]: 52.0, days[1]: 40.0}),
            Series("MR", {days[1]: 10.0}, {days[1]: 15.0}),
        ],
    )
    assert svg.count("<polyline") == 2  # MR has one day: points, no line
    assert svg.count('stroke-dasharray="6 4"') == 1
    assert svg.count("<circle") == 6
    assert ">60</text>" in svg  # the axis ends on a round number above 52
    assert "<title>Order → start</title>" in svg
    assert "No figures" not in svg


def test_it_escapes_what_it_writes() -> None:
    svg = line_chart(title="<b>", days=[], series=[Series("<i>", {}, {})])
    assert "<b>" not in svg and "&lt;b&gt;" in svg


def test_an_empty_chart_still_has_an_axis() -> None:
    svg = line_chart(title="Empty", days=[date(2026, 12, 1)], series=[])
    assert "<polyline" not in svg and ">0</text>" in svg
    assert "No figures in this period" in svg
