"""The valuation section holdings adds to a client's admin page: each portfolio's summary, allocation and value
charts, from the same valuation and daily value table as the API, at a query cost that does not grow with history."""

import datetime
import re
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from clients.models import Client, Portfolio
from clients.services import portfolios_history_changed
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings.charts import money
from holdings.models import Asset
from holdings.services import daily_values_refresh
from holdings.tests.factories import AssetFactory, BuyFactory, FxRateFactory, PriceFactory
from holdings.valuation import portfolio_valuation
from ledger.tests.factories import TransactionFactory
from portfolio_site.testing import page_queries

pytestmark = pytest.mark.django_db

TODAY = timezone.localdate()
START = TODAY - datetime.timedelta(days=200)


def _url(client: Client) -> str:
    return reverse("admin:clients_client_change", args=[client.pk])


def _panel(html: str) -> str:
    (panel,) = re.findall(r'<fieldset class="module valuation-panel">.*?</fieldset>', html, re.S)
    return panel


@pytest.fixture
def market() -> dict[str, Asset]:
    """A dollar share and a euro fund priced from START on, and euro reference rates for the dollar."""
    share = AssetFactory(ticker="SHR", currency="USD", asset_type=Asset.AssetType.EQUITY)
    fund = AssetFactory(ticker="FND", currency="EUR", asset_type=Asset.AssetType.ETF)
    for day, share_close, fund_close in [(START, "100", "50"), (TODAY - datetime.timedelta(days=5), "120", "55")]:
        PriceFactory(asset=share, date=day, close=Decimal(share_close))
        PriceFactory(asset=fund, date=day, close=Decimal(fund_close))
        FxRateFactory(base="EUR", quote="USD", date=day, rate=Decimal("1.25"))
    return {"share": share, "fund": fund}


def _history(portfolio: Portfolio, market: dict[str, Asset], buys: int) -> None:
    """Deposits in both currencies and `buys` buys alternating between the two assets, marked as the services
    mark a write, so that the daily value table is rebuilt."""
    for currency in ("EUR", "USD"):
        TransactionFactory(portfolio=portfolio, currency=currency, amount=Decimal("100000"), date=START)
    for n in range(buys):
        asset = market["share"] if n % 2 else market["fund"]
        BuyFactory(
            portfolio=portfolio, asset=asset, quantity=Decimal(2), price=asset.prices.get(date=START).close, date=START
        )
    portfolios_history_changed(portfolios=[portfolio.pk], since=START)


def test_client_page_shows_each_portfolios_figures_as_its_valuation_gives_them(client, advisor, market) -> None:
    owner = ClientFactory(advisor=advisor)
    portfolio = main_portfolio(owner)
    _history(portfolio, market, 4)
    client.force_login(advisor)

    panel = _panel(client.get(_url(owner)).text)

    totals = portfolio_valuation(portfolio=portfolio, as_of=TODAY).totals
    assert totals.holdings > 0
    assert totals.unrealized_gain > 0
    for label, figure in [
        ("Total value", totals.total),
        ("Holdings", totals.holdings),
        ("Cash", totals.cash),
        ("Cost", totals.cost),
        ("Unrealized gain", totals.unrealized_gain),
        ("Realized gain", totals.realized_gain),
    ]:
        assert re.search(rf"<th scope=\"row\">{label}</th><td[^>]*>{re.escape(money(figure, 'EUR'))} EUR</td>", panel)


def test_client_page_draws_allocation_and_value_charts_without_loading_anything_from_elsewhere(
    client, advisor, market
) -> None:
    owner = ClientFactory(advisor=advisor)
    portfolio = main_portfolio(owner)
    _history(portfolio, market, 2)
    client.force_login(advisor)

    panel = _panel(client.get(_url(owner)).text)

    svgs = re.findall(r"<svg .*?</svg>", panel, re.S)
    assert len(svgs) == 2
    allocation, value = svgs
    report = portfolio_valuation(portfolio=portfolio, as_of=TODAY)
    (share,) = [position for position in report.positions if position.ticker == "SHR"]
    assert f"{money(share.market_value_value, 'EUR')} EUR" in allocation
    assert "Equity" in allocation
    assert "ETF" in allocation
    assert "Cash" in allocation
    assert f"to {money(report.totals.total, 'EUR')} EUR on {TODAY}" in value  # the table's last day: today
    assert "http" not in panel
    assert "href" not in panel
    assert "url(" not in panel


def test_client_page_warns_of_a_position_it_cannot_price(client, advisor, market) -> None:
    owner = ClientFactory(advisor=advisor)
    portfolio = main_portfolio(owner)
    _history(portfolio, market, 0)
    BuyFactory(portfolio=portfolio, asset=AssetFactory(ticker="NOPX", currency="EUR"), date=START)
    client.force_login(advisor)

    panel = _panel(client.get(_url(owner)).text)

    assert "NOPX: no price on or before" in panel
    assert 'class="warning"' in panel


def test_client_page_escapes_portfolio_names_in_the_valuation_section(client, advisor, market) -> None:
    owner = ClientFactory(advisor=advisor, main_portfolio=None)
    PortfolioFactory(client=owner, name='<img src="x" onerror="alert(1)">')
    client.force_login(advisor)

    panel = _panel(client.get(_url(owner)).text)

    assert "<img" not in panel
    assert "&lt;img" in panel


def test_a_closed_portfolio_shows_its_summary_without_charts(client, advisor) -> None:
    owner = ClientFactory(advisor=advisor, main_portfolio=None)
    PortfolioFactory(client=owner, name="Old", closed_on=TODAY - datetime.timedelta(days=30))
    client.force_login(advisor)

    panel = _panel(client.get(_url(owner)).text)

    assert "closed on" in panel
    assert "Total value" in panel
    assert "<svg" not in panel


def test_an_advisor_still_cannot_open_another_advisors_client_nor_see_its_valuation(
    client, advisor, other_advisor, market
) -> None:
    theirs = ClientFactory(advisor=other_advisor)
    _history(main_portfolio(theirs), market, 2)
    client.force_login(advisor)

    response = client.get(_url(theirs), follow=True)

    assert response.redirect_chain[-1][0] == reverse("admin:index")
    assert "valuation-panel" not in response.text


def test_client_page_query_count_is_the_same_for_5_and_50_movements(client, superuser, market, count_queries) -> None:
    owner = ClientFactory()
    portfolio = main_portfolio(owner)
    PortfolioFactory(client=owner, name="Second")
    client.force_login(superuser)
    url = _url(owner)
    page_queries(client, count_queries, url)  # warm up per-process caches (content types, ...)

    def measure(buys: int) -> int:
        _history(portfolio, market, buys)
        # The table brought up to date first: a refresh on read is the write's cost, paid once, not the page's.
        daily_values_refresh()
        return page_queries(client, count_queries, url)

    few = measure(3)  # + 2 deposits: 5 movements
    many = measure(45)  # + 2 more deposits: 50 more

    assert few == many
