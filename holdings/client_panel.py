"""The valuation section of a client's admin page, contributed by this app (clients never imports holdings): per
portfolio, its valuation summary in its base currency, its allocation by asset type and its value over the last
year, both drawn as inline SVG (holdings.charts); and the income section: the client's dividends and interest over
the last twelve months, by month."""

import datetime
from decimal import Decimal
from typing import Any

from django.db.models import F
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from clients.models import Client, Portfolio

from .charts import MonthBar, Slice, allocation_chart, income_chart, money, value_chart
from .income import ZERO, income
from .models import Asset, AssetType
from .selectors import daily_values
from .valuation import Valuation, portfolio_valuation

VALUE_CHART_DAYS = 365
# Queries grow with portfolios (about six each), not with movements; a client with more than this many is
# better served by each portfolio's own reports than by one very long page.
MAX_PORTFOLIOS = 20
CASH_LABEL = AssetType.CASH.label


def client_valuation_panel(request: HttpRequest, client: Client) -> str:
    # Holdings are shown to those who may view allocations (every role does today; a future one may not).
    if not request.user.has_perm("holdings.view_allocation"):
        return ""
    today = timezone.localdate()
    rows = list(client.portfolios.order_by(F("closed_on").asc(nulls_first=True), "pk")[: MAX_PORTFOLIOS + 1])
    portfolios = rows[:MAX_PORTFOLIOS]
    valuations = [portfolio_valuation(portfolio=portfolio, as_of=today) for portfolio in portfolios]
    held = {position.asset_id for valuation in valuations for position in valuation.positions}
    # One query for every portfolio's asset types: a position knows its asset's id, not its type.
    asset_types = dict(Asset.objects.filter(pk__in=held).values_list("pk", "asset_type")) if held else {}
    sections = [
        _section(portfolio, valuation, asset_types, today)
        for portfolio, valuation in zip(portfolios, valuations, strict=True)
    ]
    return render_to_string(
        "holdings/admin/client_valuation.html",
        {"sections": sections, "as_of": today, "more": len(rows) > MAX_PORTFOLIOS, "limit": MAX_PORTFOLIOS},
    )


def allocation_slices(valuation: Valuation, asset_types: dict[int, str]) -> list[Slice]:
    """The valuation's total by asset type, cash its own slice: the positions in the totals only, so that the
    slices add up to the total shown beside them."""
    by_type: dict[str, Decimal] = {}
    for position in valuation.positions:
        if position.counted and position.market_value_value is not None:
            label = AssetType(asset_types[position.asset_id]).label
            by_type[label] = by_type.get(label, Decimal(0)) + position.market_value_value
    by_type[CASH_LABEL] = by_type.get(CASH_LABEL, Decimal(0)) + valuation.totals.cash
    return [Slice(label, value) for label, value in by_type.items()]


def _section(
    portfolio: Portfolio, valuation: Valuation, asset_types: dict[int, str], today: datetime.date
) -> dict[str, Any]:
    currency = valuation.currency
    totals = valuation.totals
    section: dict[str, Any] = {
        "portfolio": portfolio,
        "currency": currency,
        "figures": [
            ("Total value", money(totals.total, currency)),
            ("Holdings", money(totals.holdings, currency)),
            ("Cash", money(totals.cash, currency)),
            ("Cost", money(totals.cost, currency)),
            ("Unrealized gain", money(totals.unrealized_gain, currency)),
            ("Realized gain", money(totals.realized_gain, currency)),
        ],
        "warnings": valuation.warnings,
    }
    if portfolio.closed_on is not None:
        return section  # nothing to draw for an account that holds nothing any more
    chart_id = f"portfolio-{portfolio.pk}"
    section["allocation_chart"] = allocation_chart(
        chart_id=f"{chart_id}-allocation",
        title=f"{portfolio.name}: allocation by asset type on {today}",
        slices=allocation_slices(valuation, asset_types),
        currency=currency,
    )
    start = today - datetime.timedelta(days=VALUE_CHART_DAYS)
    days = daily_values(portfolio_id=portfolio.pk, start=start, end=today)
    # A day with a missing price or rate undercounts the value: drawn, it would look like a loss that never was.
    points = [(day.date, day.value) for day in days if day.complete]
    section["left_out_days"] = len(days) - len(points)
    section["value_chart"] = value_chart(
        chart_id=f"{chart_id}-value",
        title=f"{portfolio.name}: value over the last year",
        points=points,
        currency=currency,
    )
    return section


INCOME_MONTHS = 12


def client_income_panel(request: HttpRequest, client: Client) -> str:
    """The client's income (dividends and interest, all portfolios, in its base currency) over the last twelve
    months including this one, as figures and a bar chart by month: three queries (holdings.income)."""
    if not request.user.has_perm("holdings.view_allocation"):
        return ""
    today = timezone.localdate()
    first = _months_back(today.replace(day=1), INCOME_MONTHS - 1)
    ids = list(client.portfolios.values_list("pk", flat=True))
    report = income(portfolio_ids=ids, currency=client.base_currency, start=first, end=today)
    found = {month.month: month for month in report.by_month}
    keys = [f"{_months_back(today.replace(day=1), back):%Y-%m}" for back in reversed(range(INCOME_MONTHS))]
    bars = [
        MonthBar(key, found[key].net, found[key].tax) if key in found else MonthBar(key, ZERO, ZERO) for key in keys
    ]
    currency = client.base_currency
    figures = [
        ("Dividends, gross", money(report.dividends.gross, currency)),
        ("Tax withheld", money(report.dividends.tax, currency)),
        ("Interest", money(report.interest.net, currency)),
        ("Net income", money(report.totals.net, currency)),
    ]
    chart = income_chart(
        chart_id=f"client-{client.pk}-income",
        title=f"{client.name}: income by month",
        months=bars,
        currency=currency,
    )
    return render_to_string(
        "holdings/admin/client_income.html",
        {
            "months": INCOME_MONTHS,
            "currency": currency,
            "start": first,
            "end": today,
            "figures": figures,
            "missing": len(report.missing_fx),
            "chart": chart,
        },
    )


def _months_back(first_of_month: datetime.date, count: int) -> datetime.date:
    year, month = divmod(first_of_month.year * 12 + first_of_month.month - 1 - count, 12)
    return datetime.date(year, month + 1, 1)


def client_record_panel(request: HttpRequest, client: Client) -> str:
    """Links to record a movement for the client (its add pages with the client chosen), just above the inlines that
    list them, and to all of the client's allocations (the inline shows the latest only; those who may change
    allocations add, change and delete them there too, through the services)."""
    links = [
        (label, f"{reverse(f'admin:holdings_{model}_add')}?{urlencode({'client': client.pk})}", "addlink")
        for model, label in (("allocation", "Record an allocation"), ("dividend", "Record a dividend"))
        if request.user.has_perm(f"holdings.add_{model}")
    ]
    if request.user.has_perm("holdings.view_allocation"):
        query = urlencode({"client__id__exact": client.pk})
        links.append(
            ("All of the client's allocations", f"{reverse('admin:holdings_allocation_changelist')}?{query}", "")
        )
    if not links:
        return ""
    return render_to_string("holdings/admin/client_record.html", {"links": links})
