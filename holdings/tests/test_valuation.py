"""Positions and valuation, worked by hand: the fold's cost methods, currencies, gaps in prices and rates."""

import datetime
from decimal import Decimal

import pytest

from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings.fx import MissingRate, Rate
from holdings.models import Allocation, FxRate
from holdings.tests.factories import AllocationFactory, AssetFactory, BuyFactory, PriceFactory, SellFactory
from holdings.valuation import AVERAGE, FIFO, client_valuation, portfolio_valuation
from holdings.valuation.fold import Event, fold
from ledger.tests.factories import TransactionFactory

D = Decimal
JAN_5, JAN_10, FEB_1, FEB_10, MAR_1 = (
    datetime.date(2026, 1, 5),
    datetime.date(2026, 1, 10),
    datetime.date(2026, 2, 1),
    datetime.date(2026, 2, 10),
    datetime.date(2026, 3, 1),
)


class _OneToOne:
    """Rates for a fold in a single currency: nothing to convert."""

    def rate(self, base: str, quote: str, on: datetime.date) -> Rate:
        if base != quote:
            raise MissingRate(base, quote, on)
        return Rate(base, quote, D(1), on)


def _event(n: int, kind: str, day: datetime.date, quantity: str, price: str, fees: str = "0") -> Event:
    return Event(n, 1, 1, "USD", kind, day, D(quantity), D(price), D(fees))


# Two buys, then two partial sells at different prices (fees on the first buy and the first sell).
PARTIAL_SELLS = [
    _event(1, "buy", JAN_5, "10", "100", "10"),  # cost 1010
    _event(2, "buy", JAN_10, "10", "120"),  # cost 1200
    _event(3, "sell", FEB_1, "5", "130", "5"),  # proceeds 645
    _event(4, "sell", FEB_10, "10", "90"),  # proceeds 900
]


def test_moving_average_cost_and_realized_gain_after_partial_sells() -> None:
    holding = fold(PARTIAL_SELLS, method=AVERAGE, rates=_OneToOne(), currency="USD")[(1, 1)]
    # 20 units cost 2210: 110.5 each. Sell 5: 645 - 5 x 110.5 = 92.5. Sell 10: 900 - 10 x 110.5 = -205.
    assert holding.quantity == D("5")
    assert holding.cost == D("552.5")
    assert holding.realized == D("92.5") + D("-205")


def test_fifo_cost_and_realized_gain_after_partial_sells() -> None:
    holding = fold(PARTIAL_SELLS, method=FIFO, rates=_OneToOne(), currency="USD")[(1, 1)]
    # Sell 5 from the first lot (101 each): 645 - 505 = 140. Sell 10: the first lot's last 5 (505) and 5 of the
    # second (600): 900 - 1105 = -205. Left: 5 units of the second lot at 120.
    assert holding.quantity == D("5")
    assert holding.cost == D("600")
    assert holding.realized == D("140") + D("-205")


@pytest.mark.parametrize("method", [AVERAGE, FIFO])
def test_a_position_sold_out_and_bought_again_starts_from_the_new_cost(method: str) -> None:
    events = [
        _event(1, "buy", JAN_5, "10", "100"),
        _event(2, "sell", FEB_1, "10", "150"),
        _event(3, "buy", FEB_10, "5", "200"),
    ]
    holding = fold(events, method=method, rates=_OneToOne(), currency="USD")[(1, 1)]
    assert (holding.quantity, holding.cost, holding.realized) == (D("5"), D("1000"), D("500"))


@pytest.mark.parametrize("method", [AVERAGE, FIFO])
def test_a_buy_s_taxes_are_part_of_its_cost_and_a_sell_s_taxes_reduce_its_proceeds(method: str) -> None:
    events = [
        Event(1, 1, 1, "USD", "buy", JAN_5, D("10"), D("100"), D("5"), taxes=D("2.5")),  # cost 1007.5
        Event(2, 1, 1, "USD", "sell", FEB_1, D("4"), D("110"), D("3"), taxes=D("1.32")),  # proceeds 435.68
    ]
    holding = fold(events, method=method, rates=_OneToOne(), currency="USD")[(1, 1)]
    # 4 of 10 units leave at 4/10 of 1007.5 = 403: realized 435.68 - 403 = 32.68; 6 units keep 604.5.
    assert (holding.quantity, holding.cost, holding.realized) == (D("6"), D("604.5"), D("32.68"))


def test_a_days_increases_come_before_its_decreases_whatever_their_ids() -> None:
    # The sell was typed first (lower id) but uses the same day's buy: the services check units at the day's end.
    events = [
        _event(1, "buy", JAN_5, "10", "100"),
        _event(2, "sell", FEB_1, "15", "110"),
        _event(3, "buy", FEB_1, "5", "130"),
    ]
    holding = fold(events, method=FIFO, rates=_OneToOne(), currency="USD")[(1, 1)]
    # 15 sold from 10 at 100 and 5 at 130: 1650 - 1650 = 0.
    assert (holding.quantity, holding.cost, holding.realized) == (D("0"), D("0"), D("0"))


@pytest.mark.parametrize("method", [AVERAGE, FIFO])
def test_a_transfer_out_moves_cost_out_and_realizes_nothing(method: str) -> None:
    events = [_event(1, "buy", JAN_5, "10", "100"), _event(2, "transfer_out", FEB_1, "4", "0")]
    holding = fold(events, method=method, rates=_OneToOne(), currency="USD")[(1, 1)]
    assert (holding.quantity, holding.cost, holding.realized) == (D("6"), D("600"), D("0"))


# --- Reading the database --------------------------------------------------------------------------------


def _publish(base: str, quote: str, day: datetime.date, rate: str) -> None:
    FxRate.objects.create(base=base, quote=quote, date=day, rate=D(rate))


@pytest.mark.django_db
def test_a_transfer_recorded_at_price_zero_comes_in_at_that_days_close() -> None:
    client = ClientFactory(base_currency="USD")
    asset = AssetFactory(currency="USD")
    PriceFactory(asset=asset, date=FEB_1, close=D("50"))
    PriceFactory(asset=asset, date=MAR_1, close=D("60"))
    AllocationFactory(client=client, asset=asset, quantity=D("10"), price=D("0"), date=FEB_1)

    report = portfolio_valuation(portfolio=main_portfolio(client), as_of=MAR_1)

    (position,) = report.positions
    assert (position.cost, position.average_cost) == (D("500"), D("50"))
    assert (position.market_value, position.unrealized_gain) == (D("600"), D("100"))


@pytest.mark.django_db
def test_a_multi_currency_portfolio_splits_its_unrealized_gain_into_price_and_currency_effects() -> None:
    client = ClientFactory(base_currency="EUR")
    portfolio = main_portfolio(client)
    asset = AssetFactory(currency="USD")
    # EUR/USD: 1.25 on the buy (a dollar is 0.8 euro), 1.6 on the sell (0.625), 1.0 on the valuation day.
    _publish("EUR", "USD", JAN_5, "1.25")
    _publish("EUR", "USD", FEB_1, "1.6")
    _publish("EUR", "USD", MAR_1, "1.0")
    TransactionFactory(portfolio=portfolio, currency="USD", amount=D("2000"), date=JAN_5)
    TransactionFactory(portfolio=portfolio, currency="EUR", amount=D("500"), date=JAN_5)
    BuyFactory(portfolio=portfolio, asset=asset, quantity=D("10"), price=D("100"), date=JAN_5)
    SellFactory(portfolio=portfolio, asset=asset, quantity=D("4"), price=D("120"), date=FEB_1)
    PriceFactory(asset=asset, date=MAR_1, close=D("110"))

    report = portfolio_valuation(portfolio=portfolio, as_of=MAR_1)

    (position,) = report.positions
    # Bought 10 for 1000 USD = 800 EUR. Sold 4 for 480 USD = 300 EUR, their cost 320 EUR: -20 EUR realized (80 USD).
    assert (position.realized_gain, position.realized_gain_value) == (D("80"), D("-20"))
    # Left: 6 units, cost 600 USD = 480 EUR; worth 660 USD = 660 EUR. Unrealized 180 EUR:
    # price effect (110 - 100) x 6 x 1.0 = 60, currency effect 100 x 6 x (1.0 - 0.8) = 120.
    assert (position.cost, position.cost_value, position.market_value_value) == (D("600"), D("480"), D("660"))
    assert (position.unrealized_gain_value, position.price_effect, position.currency_effect) == (
        D("180"),
        D("60"),
        D("120"),
    )
    # Cash: 2000 - 1000 + 480 = 1480 USD at 1.0, and 500 EUR. Total 660 + 1980 = 2640; the position weighs 1/4.
    assert {(c.currency, c.amount, c.value) for c in report.cash} == {
        ("EUR", D("500"), D("500")),
        ("USD", D("1480"), D("1480")),
    }
    totals = report.totals
    assert (totals.holdings, totals.cash, totals.total, totals.cost) == (D("660"), D("1980"), D("2640"), D("480"))
    assert (totals.unrealized_gain, totals.price_effect, totals.currency_effect, totals.realized_gain) == (
        D("180"),
        D("60"),
        D("120"),
        D("-20"),
    )
    assert position.weight == D("0.25")
    assert report.missing_fx == []
    assert report.warnings == []


@pytest.mark.django_db
def test_an_unpriced_asset_is_listed_and_left_out_of_the_totals_never_zero() -> None:
    client = ClientFactory(base_currency="USD")
    priced, unpriced = AssetFactory(currency="USD", ticker="AAA"), AssetFactory(currency="USD", ticker="BBB")
    AllocationFactory(client=client, asset=priced, quantity=D("2"), price=D("10"), date=JAN_5)
    AllocationFactory(client=client, asset=unpriced, quantity=D("3"), price=D("10"), date=JAN_5)
    PriceFactory(asset=priced, date=MAR_1, close=D("20"))
    PriceFactory(asset=unpriced, date=datetime.date(2026, 3, 2), close=D("99"))  # after as_of: not used

    report = portfolio_valuation(portfolio=main_portfolio(client), as_of=MAR_1)

    assert [position.ticker for position in report.unpriced] == ["BBB"]
    listed = {position.ticker: position for position in report.positions}
    assert (listed["BBB"].market_value, listed["BBB"].market_value_value, listed["BBB"].weight) == (None, None, None)
    assert (report.totals.holdings, report.totals.cost) == (D("40"), D("20"))
    assert listed["AAA"].weight == D("1")
    assert any("BBB" in warning for warning in report.warnings)


@pytest.mark.django_db
def test_a_missing_rate_is_listed_and_left_out_of_the_totals_never_one() -> None:
    client = ClientFactory(base_currency="EUR")
    asset = AssetFactory(currency="GBP")
    AllocationFactory(client=client, asset=asset, quantity=D("1"), price=D("10"), date=JAN_5)
    PriceFactory(asset=asset, date=MAR_1, close=D("12"))
    TransactionFactory(client=client, currency="CHF", amount=D("100"), date=JAN_5)

    report = portfolio_valuation(portfolio=main_portfolio(client), as_of=MAR_1)

    assert {(m.base, m.quote, m.asset_id) for m in report.missing_fx} == {
        ("GBP", "EUR", asset.pk),
        ("CHF", "EUR", None),
    }
    (position,) = report.positions
    assert position.missing_fx
    assert position.market_value_value is None
    assert position.market_value == D("12")  # still known in its own currency
    assert (report.totals.total, report.totals.cost) == (D("0"), D("0"))
    assert report.cash[0].value is None


@pytest.mark.django_db
def test_a_price_older_than_the_limit_is_flagged_stale(settings) -> None:  # type: ignore[no-untyped-def]
    settings.VALUATION_STALE_PRICE_DAYS = 5
    client = ClientFactory(base_currency="USD")
    asset = AssetFactory(currency="USD")
    AllocationFactory(client=client, asset=asset, quantity=D("1"), price=D("10"), date=JAN_5)
    PriceFactory(asset=asset, date=FEB_10, close=D("12"))

    fresh = portfolio_valuation(portfolio=main_portfolio(client), as_of=FEB_10 + datetime.timedelta(days=5))
    stale = portfolio_valuation(portfolio=main_portfolio(client), as_of=FEB_10 + datetime.timedelta(days=6))

    assert (fresh.positions[0].stale, stale.positions[0].stale) == (False, True)
    assert stale.totals.holdings == D("12")  # flagged, still counted


@pytest.mark.django_db
def test_a_client_combines_an_asset_across_portfolios_each_by_its_own_lots() -> None:
    client = ClientFactory(base_currency="USD")
    first, second = main_portfolio(client), PortfolioFactory(client=client)
    asset = AssetFactory(currency="USD")
    AllocationFactory(portfolio=first, asset=asset, quantity=D("10"), price=D("100"), date=JAN_5)
    AllocationFactory(portfolio=second, asset=asset, quantity=D("10"), price=D("200"), date=JAN_5)
    AllocationFactory(portfolio=second, asset=asset, quantity=D("10"), price=D("300"), date=JAN_10)
    AllocationFactory(
        portfolio=second, asset=asset, kind=Allocation.Kind.TRANSFER_OUT, quantity=D("10"), price=D("0"), date=FEB_1
    )
    PriceFactory(asset=asset, date=MAR_1, close=D("250"))

    report = client_valuation(client=client, portfolio_ids=[first.pk, second.pk], as_of=MAR_1, cost_method=FIFO)

    (position,) = report.positions
    # FIFO in the second portfolio: the 200 lot leaves; left 10 x 100 (first) and 10 x 300 (second).
    assert (position.quantity, position.cost, position.average_cost) == (D("20"), D("4000"), D("200"))
    assert position.market_value == D("5000")
