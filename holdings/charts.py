"""Small charts for the admin, drawn on the server as inline SVG: no charting library, nothing loaded from another
host. This module does the geometry; templates write the markup with autoescaping on, so every label (an asset
type, a portfolio's name) is escaped like any other text and nothing here is marked safe by hand."""

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from django.template.loader import render_to_string

from portfolio_site.display import amount

WIDTH = 640
# Colour-blind-safe palette (Okabe-Ito); a bar's value is also written beside it, so colour carries nothing alone.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]


@dataclass(frozen=True)
class Slice:
    label: str
    value: Decimal


def money(value: Decimal, currency: str) -> str:
    """1,234,567.89: rounded once, half-even, to the currency's minor unit, with thousands separators (the code is
    written once beside the figures, not in every one)."""
    return amount(value, currency)


def percent(part: Decimal, whole: Decimal) -> str:
    return f"{(part * 100 / whole).quantize(Decimal('0.1'), rounding=ROUND_HALF_EVEN)} %"


# --- Allocation: one horizontal bar per slice, its length its share of the total ------------------------------

BAR_HEIGHT = 22
BAR_GAP = 10
LABEL_WIDTH = 120  # the labels' column, right-aligned against the bars
BAR_SPACE = 300  # the length of a bar holding 100 %


def allocation_chart(*, chart_id: str, title: str, slices: Sequence[Slice], currency: str) -> str:
    """Bars for the positive slices, largest first, each labelled with its value and share. Slices of zero or less
    (a closed position, an empty account) have no share to draw and are left out."""
    shown = sorted((s for s in slices if s.value > 0), key=lambda s: (-s.value, s.label))
    total = sum((s.value for s in shown), Decimal(0))
    bars = []
    for index, each in enumerate(shown):
        top = BAR_GAP + index * (BAR_HEIGHT + BAR_GAP)
        length = float(each.value / total) * BAR_SPACE
        bars.append(
            {
                "label": each.label,
                "y": top,
                "text_y": top + BAR_HEIGHT * 0.7,
                "width": f"{max(length, 1.0):.1f}",  # a sliver stays visible
                "value_x": f"{LABEL_WIDTH + 8 + length + 6:.1f}",
                "value": money(each.value, currency),
                "percent": percent(each.value, total),
                "colour": PALETTE[index % len(PALETTE)],
            }
        )
    described = "; ".join(f"{bar['label']}: {bar['value']} {currency} ({bar['percent']})" for bar in bars)
    return render_to_string(
        "holdings/charts/allocation.html",
        {
            "chart_id": chart_id,
            "title": title,
            "desc": f"{described}." if bars else "Nothing held.",
            "currency": currency,
            "bars": bars,
            "width": WIDTH,
            "height": max(len(bars), 1) * (BAR_HEIGHT + BAR_GAP) + BAR_GAP,
            "label_x": LABEL_WIDTH,
            "bar_x": LABEL_WIDTH + 8,
            "bar_height": BAR_HEIGHT,
        },
    )


# --- Value over time: a line with the area under it, value axis from zero ---------------------------------------

HEIGHT = 240
LEFT, RIGHT, TOP, BOTTOM = 96, 16, 12, 40  # room for the value labels on the left and the dates below
TICKS = 4  # intervals on each axis


def value_chart(*, chart_id: str, title: str, points: Sequence[tuple[datetime.date, Decimal]], currency: str) -> str:
    """The value on each day of `points` (date order), the axis from zero (or the lowest value, if below) to a round
    figure above the highest, so that a small move does not look like a crash."""
    context: dict[str, object] = {"chart_id": chart_id, "title": title, "width": WIDTH, "height": HEIGHT}
    if len(points) < 2:
        context["desc"] = "Not enough daily values to draw."
        return render_to_string("holdings/charts/value.html", context)
    values = [value for _, value in points]
    high = _round_up(max(values))
    low = -_round_up(-min(values)) if min(values) < 0 else Decimal(0)
    first_day, last_day = points[0][0], points[-1][0]
    span = max((last_day - first_day).days, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(day: datetime.date) -> float:
        return LEFT + (day - first_day).days / span * plot_w

    def y(value: Decimal) -> float:
        return TOP + float((high - value) / (high - low)) * plot_h

    line = " ".join(f"{x(day):.1f},{y(value):.1f}" for day, value in points)
    base = y(max(low, Decimal(0)))
    area = f"M{x(first_day):.1f},{base:.1f} L{line.replace(' ', ' L')} L{x(last_day):.1f},{base:.1f} Z"
    step = (high - low) / TICKS
    value_ticks = [
        {"y": f"{y(low + step * n):.1f}", "label": _axis_amount(low + step * n, high - low)} for n in range(TICKS + 1)
    ]
    date_ticks = []
    for n in range(TICKS + 1):
        day, _ = points[round(n * (len(points) - 1) / TICKS)]
        date_ticks.append({"x": f"{x(day):.1f}", "label": day.isoformat()})
    lowest, highest = min(points, key=lambda p: p[1]), max(points, key=lambda p: p[1])
    context |= {
        "desc": (
            f"From {money(points[0][1], currency)} {currency} on {first_day} to {money(points[-1][1], currency)} "
            f"{currency} on {last_day}; lowest {money(lowest[1], currency)} on {lowest[0]}, highest "
            f"{money(highest[1], currency)} on {highest[0]}."
        ),
        "line": line,
        "area": area,
        "value_ticks": value_ticks,
        "date_ticks": date_ticks,
        "currency": currency,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "bottom": HEIGHT - BOTTOM,
        "date_label_y": HEIGHT - BOTTOM + 16,
        "axis_title_y": HEIGHT - 6,
    }
    return render_to_string("holdings/charts/value.html", context)


def _round_up(value: Decimal) -> Decimal:
    """The first of 1, 2, 5 times a power of ten at or above `value` (1 for nothing): round axis figures."""
    if value <= 0:
        return Decimal(1)
    unit = Decimal(1).scaleb(value.adjusted())
    for step in (1, 2, 5, 10):
        if unit * step >= value:
            return unit * step
    return unit * 10  # unreachable: 10 units exceed any value of this exponent


def _axis_amount(value: Decimal, spread: Decimal) -> str:
    # Whole amounts unless the axis spans little (a near-empty account), where cents tell the ticks apart.
    return f"{value:,.0f}" if spread >= 100 else f"{value:,.2f}"


# --- Income by month: one column per month, the net with the tax withheld stacked above it ------------------------

INCOME_HEIGHT = 220
INCOME_LEFT, INCOME_TOP, INCOME_BOTTOM = 96, 12, 40
NET_COLOUR, TAX_COLOUR = PALETTE[0], PALETTE[1]


@dataclass(frozen=True)
class MonthBar:
    month: str  # YYYY-MM
    net: Decimal
    tax: Decimal


def income_chart(*, chart_id: str, title: str, months: Sequence[MonthBar], currency: str) -> str:
    """A column per month (every month given, empty ones too, so that a gap reads as a month without income): the
    net received, and above it the tax withheld, together the gross; the axis from zero to a round figure."""
    context: dict[str, object] = {"chart_id": chart_id, "title": title, "width": WIDTH, "height": INCOME_HEIGHT}
    if not any(month.net or month.tax for month in months):
        context["desc"] = "No income over these months."
        return render_to_string("holdings/charts/income.html", context)
    high = _round_up(max(month.net + month.tax for month in months))
    plot_w, plot_h = WIDTH - INCOME_LEFT - RIGHT, INCOME_HEIGHT - INCOME_TOP - INCOME_BOTTOM
    slot = plot_w / len(months)
    bar_w = max(slot * 0.7, 2.0)
    bottom = INCOME_TOP + plot_h

    def height(value: Decimal) -> float:
        return float(value / high) * plot_h

    columns = []
    for index, month in enumerate(months):
        net_h, tax_h = height(max(month.net, Decimal(0))), height(max(month.tax, Decimal(0)))
        x = INCOME_LEFT + index * slot + (slot - bar_w) / 2
        columns.append(
            {
                "month": month.month,
                "label": month.month[2:].replace("-", "/") if len(months) > 12 else month.month,
                "x": f"{x:.1f}",
                "label_x": f"{x + bar_w / 2:.1f}",
                "width": f"{bar_w:.1f}",
                "net_y": f"{bottom - net_h:.1f}",
                "net_height": f"{net_h:.1f}",
                "tax_y": f"{bottom - net_h - tax_h:.1f}",
                "tax_height": f"{tax_h:.1f}",
                "net": money(month.net, currency),
                "tax": money(month.tax, currency),
            }
        )
    step = high / TICKS
    value_ticks = [
        {"y": f"{bottom - height(step * n):.1f}", "label": _axis_amount(step * n, high)} for n in range(TICKS + 1)
    ]
    described = "; ".join(f"{c['month']}: {c['net']} net, {c['tax']} withheld" for c in columns)
    context |= {
        "desc": f"Income in {currency} by month. {described}.",
        "columns": columns,
        "value_ticks": value_ticks,
        "currency": currency,
        "left": INCOME_LEFT,
        "right": WIDTH - RIGHT,
        "bottom": bottom,
        "month_label_y": bottom + 16,
        "axis_title_y": INCOME_HEIGHT - 6,
        "net_colour": NET_COLOUR,
        "tax_colour": TAX_COLOUR,
    }
    return render_to_string("holdings/charts/income.html", context)
