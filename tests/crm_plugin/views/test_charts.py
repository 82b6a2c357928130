"""Server-rendered SVG charts: robust to odd input, accessible, no script."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from crm_plugin.web import charts
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
    assert "from 10% on 2026-01-01 to 90% on 2026-01-03" in svg
    assert svg.count("<circle") == 3
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
