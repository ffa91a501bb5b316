"""The admin's SVG charts: drawn from the figures given, labelled for screen readers, escaped, self-contained."""

import datetime
import re
from decimal import Decimal

from holdings.charts import Slice, allocation_chart, value_chart


def _allocation(*slices: Slice) -> str:
    return allocation_chart(chart_id="c1", title="Allocation", slices=slices, currency="EUR")


def test_allocation_chart_labels_each_bar_with_its_value_and_share_of_the_total() -> None:
    svg = _allocation(Slice("Equity", Decimal("7500")), Slice("Cash", Decimal("2500")))

    assert "Equity" in svg
    assert "7,500.00 EUR (75.0 %)" in svg
    assert "Cash" in svg
    assert "2,500.00 EUR (25.0 %)" in svg
    assert len(re.findall(r"<rect ", svg)) == 2


def test_allocation_chart_bars_are_as_long_as_their_shares() -> None:
    svg = _allocation(Slice("Equity", Decimal("300")), Slice("Bond", Decimal("100")))

    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([0-9.]+)"', svg)]
    assert widths[0] == 3 * widths[1]


def test_allocation_chart_leaves_out_empty_slices_and_says_when_nothing_is_held() -> None:
    assert "Bond" not in _allocation(Slice("Equity", Decimal("1")), Slice("Bond", Decimal("0")))
    empty = _allocation(Slice("Cash", Decimal("0")))
    assert "<rect" not in empty
    assert "Nothing held." in empty


def test_charts_carry_a_title_and_description_for_screen_readers() -> None:
    svg = _allocation(Slice("Equity", Decimal("1")))

    assert 'role="img"' in svg
    assert 'aria-labelledby="c1-title c1-desc"' in svg
    assert '<title id="c1-title">Allocation</title>' in svg
    assert '<desc id="c1-desc">Equity: 1.00 EUR (100.0 %).</desc>' in svg


def test_chart_text_is_escaped_never_markup() -> None:
    svg = allocation_chart(
        chart_id="c1", title='<script>alert("t")</script>', slices=[Slice("<b>x</b>", Decimal("1"))], currency="EUR"
    )

    assert "<script>" not in svg
    assert "<b>" not in svg
    assert "&lt;script&gt;" in svg
    assert "&lt;b&gt;x&lt;/b&gt;" in svg


def _days(*values: str) -> list[tuple[datetime.date, Decimal]]:
    start = datetime.date(2026, 1, 1)
    return [(start + datetime.timedelta(days=n), Decimal(value)) for n, value in enumerate(values)]


def test_value_chart_draws_one_point_per_day_on_an_axis_from_zero_to_a_round_figure() -> None:
    svg = value_chart(chart_id="v", title="Value", points=_days("100", "150", "130"), currency="USD")

    (line,) = re.findall(r'<polyline points="([^"]+)"', svg)
    assert len(line.split()) == 3
    labels = re.findall(r'dominant-baseline="middle"[^>]*>([^<]+)<', svg)
    assert labels == ["0", "50", "100", "150", "200"]
    assert "2026-01-01" in svg
    assert "2026-01-03" in svg
    assert "Value in USD at the end of each day" in svg


def test_value_chart_describes_the_series_in_words() -> None:
    svg = value_chart(chart_id="v", title="Value", points=_days("100", "90", "130"), currency="USD")

    assert (
        "From 100.00 USD on 2026-01-01 to 130.00 USD on 2026-01-03; lowest 90.00 on 2026-01-02, "
        "highest 130.00 on 2026-01-03." in svg
    )


def test_value_chart_with_fewer_than_two_days_says_so_instead_of_drawing() -> None:
    svg = value_chart(chart_id="v", title="Value", points=_days("100"), currency="USD")

    assert "<polyline" not in svg
    assert "Not enough daily values to draw." in svg


def test_charts_load_nothing_from_another_host() -> None:
    svgs = [
        _allocation(Slice("Equity", Decimal("1"))),
        value_chart(chart_id="v", title="Value", points=_days("1", "2"), currency="USD"),
    ]
    for svg in svgs:
        assert "http" not in svg
        assert "href" not in svg
        assert "url(" not in svg
