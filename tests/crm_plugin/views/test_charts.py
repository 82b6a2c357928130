"""Server-rendered SVG charts: robust to odd input, accessible, no script."""
from __future__ import annotations

import re

from datetime import datetime, timedelta, timezone

from decimal import Decimal

import pytest

from crm_plugin.web import charts

pytestmark = pytest.mark.django_db  # dates read in the shop's time zone (settings)

START = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


def _history(days: int = 30) -> list[tuple[datetime, float]]:
    return [(START + timedelta(days=i), 0.2 + 0.6 * i / days) for i in range(days + 1)]


def test_sparkline_needs_two_points_and_labels_the_trend():
    assert charts.sparkline([0.4]) == ""
    svg = charts.sparkline([0.2, None, 0.5, 0.8])
    assert 'aria-label="trend over 3 scores: 20% to 80%"' in svg
    assert "spark-up" in svg
    assert "spark-down" in charts.sparkline([0.8, 0.2])


def test_line_chart_skips_non_numbers_and_escapes_names():
    svg = charts.line_chart([charts.Series("<b>x</b>", [0, "nan", 0.5, float("inf"), 1], [0, 1, 0.5, 1, 1]),
                             charts.Series("y", [0, 1], [1, 0])], title="T & U")
    assert 'aria-label="T &amp; U"' in svg
    assert "&lt;b&gt;x&lt;/b&gt;" in svg and "<b>" not in svg
    assert "<script" not in svg
    assert svg.count("<polyline") == 2


def test_line_chart_with_nothing_to_draw_says_no_data():
    assert "No data" in charts.line_chart([charts.Series("a", [], [])], title="Empty")


def test_histogram_normalises_each_family_to_shares():
    svg = charts.histogram([0, 0.5, 1], [("a", [1, 3]), ("b", [10, 10]), ("wrong length", [1])], title="H")
    assert svg.count("<polyline") == 2
    assert ">a<" not in svg or "legend" in svg
    assert "wrong length" not in svg


def test_score_history_chart_summarises_first_and_last():
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    svg = charts.score_history_chart([(start + timedelta(days=i), p) for i, p in enumerate([0.1, 0.4, 0.9])], high=0.6, medium=0.3)
    assert "from 10% on 1 Jan 2026 to 90% on 3 Jan 2026" in svg  # the pages' one date format
    assert "<title>2 Jan 2026: 40%</title>" in svg
    assert svg.count("<circle") == 3
    assert "legend" not in svg  # nothing marked: no key
    assert "No scores yet" in charts.score_history_chart([], high=0.6, medium=0.3)


def test_profit_curve_marks_the_best_and_the_threshold_in_use_and_handles_losses():
    xs = [k / 100 for k in range(101)]
    ys = [1000 * x * (0.8 - x) for x in xs]  # loses money above 0.80
    svg = str(charts.profit_curve_chart(xs, ys, chosen=0.4, in_use=0.6))
    assert 'aria-label="Expected profit by alert threshold: most profitable at 40%, in use 60%"' in svg
    assert svg.count('class="marker"') == 2 and 'stroke-dasharray="5 4" x1=' in svg  # in use is dashed
    assert ">-100<" in svg and ">-200<" in svg and ">100<" in svg  # the money axis reaches below zero
    assert "most profitable (40%)" in svg and "in use (60%)" in svg
    assert "No data" in str(charts.profit_curve_chart([], [], chosen=0.5, in_use=None))
    flat = str(charts.profit_curve_chart(xs, [0.0] * 101, chosen=1.0, in_use=None))
    assert "in use" not in flat and 'class="marker"' in flat


def test_score_history_marks_orders_alerts_and_actions_with_shapes_tooltips_and_a_key():
    markers = [
        charts.Marker(when=START + timedelta(days=2), kind="order", amount=Decimal("54.00")),
        charts.Marker(when=START + timedelta(days=20), kind="alert", label="Alert sent: crossed into high risk"),
        charts.Marker(when=START + timedelta(days=22), kind="action", label="Call — retained"),
        charts.Marker(when=START + timedelta(days=12), kind="order", count=2, amount=Decimal("71.80")),
        charts.Marker(when=START - timedelta(days=40), kind="order", amount=Decimal("99")),  # before the first score
    ]
    svg = str(charts.score_history_chart(_history(), high=0.6, medium=0.3, markers=markers))
    assert "<title>Order €54 on 3 Nov 2026</title>" in svg
    assert "<title>2 orders, €71.80 on 13 Nov 2026</title>" in svg
    assert "<title>Alert sent: crossed into high risk on 21 Nov 2026</title>" in svg
    assert "<title>Call — retained on 23 Nov 2026</title>" in svg
    assert "€99" not in svg  # outside the chart's dates
    # One shape per kind, each in its own lane under the axis; alerts and actions get a guide line.
    assert svg.count('class="mark mark-order"><title>Order') == 1
    assert 'class="mark mark-order many"><title>2 orders' in svg  # one day, two orders: drawn as several
    assert '<g class="mark mark-alert"><title>Alert sent: crossed into high risk on 21 Nov 2026</title><path' in svg
    assert '<g class="mark mark-action"><title>Call — retained on 23 Nov 2026</title><path' in svg
    assert svg.count('class="mark-guide"') == 2
    assert "Orders (3)</li>" in svg and "Alert (1)</li>" in svg and "Action logged (1)</li>" in svg
    assert "Churn probability</li>" in svg
    assert "; marked: 3 orders, 1 alert, 1 action logged" in svg
    # The time axis labels move below the three lanes.
    assert 'viewBox="0 0 640 256"' in svg


def test_hundreds_of_orders_are_thinned_to_marks_that_do_not_overlap():
    history = _history(300)
    orders = [charts.Marker(when=START + timedelta(days=i, hours=1), kind="order", amount=Decimal("10")) for i in range(300)]
    for width in (640, 360):
        svg = str(charts.score_history_chart(history, high=0.6, medium=0.3, markers=orders, width=width))
        xs = [float(x) for x in re.findall(r'class="mark mark-order[^"]*"><title>[^<]*</title><circle cx="([0-9.]+)"', svg)]
        plot_width = width - 46 - 20
        assert 10 < len(xs) <= plot_width / charts.MARKER_MIN_GAP + 1, (width, len(xs))
        assert min(b - a for a, b in zip(xs, xs[1:])) >= 2 * charts.MARKER_RADIUS  # no two marks overlap
        assert "Orders (300)</li>" in svg  # every order still counted
    # A merged mark says how many, how much and when (the narrow chart merges more).
    assert '<g class="mark mark-order many"><title>15 orders, €150 from 1 Nov 2026 to 15 Nov 2026</title>' in svg
