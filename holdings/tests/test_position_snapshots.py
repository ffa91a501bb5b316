"""Position snapshots: the fold's stored state serves a valuation exactly as a fresh fold of every movement would,
after every kind of write, and never once a write has made it stale."""

import dataclasses
import datetime
import io
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings import services
from holdings.dividends import dividend_create
from holdings.fx import RateBook
from holdings.models import Allocation, Asset, PositionSnapshot, Price
from holdings.tests.factories import AssetFactory
from holdings.valuation import AVERAGE, COST_METHODS, FIFO, Valuation, client_valuation, load, portfolio_valuation
from holdings.valuation.fold import LOT_FIELDS, SPLIT, STATE_FIELDS, Event, Holding, Lot, fold
from holdings.valuation.report import valuate
from holdings.valuation.snapshot import holdings_as_of
from ledger import services as ledger_services
from ledger.models import Transaction
from ledger.selectors import client_balances, portfolio_balances
from ledger.tests.factories import TransactionFactory
from portfolio_site.imports.run import CommandLineActor, run_import

pytestmark = pytest.mark.django_db

D = Decimal
JAN_2, JAN_5, JAN_12, FEB_2, MAR_2 = (
    datetime.date(2026, 1, 2),
    datetime.date(2026, 1, 5),
    datetime.date(2026, 1, 12),
    datetime.date(2026, 2, 2),
    datetime.date(2026, 3, 2),
)
AS_OF = datetime.date(2026, 6, 30)
EMAIL = "snapshot@example.org"


class _Rates:
    def rate(self, base: str, quote: str, on: datetime.date) -> Any:
        from holdings.fx import MissingRate, Rate

        if base == "GBP":
            raise MissingRate(base, quote, on)
        return Rate(base, quote, D("1.1") if base != quote else D(1), on)


@pytest.mark.parametrize("method", COST_METHODS)
def test_a_holding_comes_back_from_its_stored_state_equal_in_every_field(method: str) -> None:
    events = [
        Event(1, 1, 1, "USD", "buy", JAN_5, D("10"), D("3.3333333333"), D("1")),
        Event(2, 1, 1, "USD", "buy", JAN_12, D("7"), D("4"), D("0")),
        Event(3, 1, 1, "USD", "sell", FEB_2, D("12"), D("5"), D("0.5")),
        Event(4, 1, 2, "GBP", "transfer_in", FEB_2, D("2"), D("0"), D("0")),  # no close, no rate: a warning
        Event(5, 1, 1, "USD", "buy", FEB_2, D("3"), D("5"), D("0.2"), taxes=D("0.15")),
        Event(6, 1, 1, "USD", SPLIT, MAR_2, D("0"), D("0"), D("0"), ratio=(D("3"), D("2"))),
    ]
    folded = fold(events, method=method, rates=_Rates(), currency="EUR")
    # The case covers what the stored state must keep: lots split and taxed, each with its day of acquisition.
    assert folded[(1, 1)].quantity == D("12")
    assert all(lot.acquired for lot in folded[(1, 1)].book.kept)
    for holding in folded.values():
        state = holding.state()
        back = Holding.from_state(holding.portfolio_id, holding.asset_id, method, state)

        # Every field of the fold's state is carried: a field added to Holding or Lot and not to the state fails.
        assert set(state) == STATE_FIELDS
        assert tuple(each.name for each in dataclasses.fields(Lot)) == LOT_FIELDS
        assert all(len(lot) == len(LOT_FIELDS) for lot in state["lots"])
        assert type(back.book) is type(holding.book)
        assert back.book.kept == holding.book.kept
        for each in dataclasses.fields(Holding):
            if each.name == "sales":
                assert back.sales is None  # a snapshot's fold keeps no sales (holdings.realized folds its own)
            elif each.name == "missing":
                assert [str(m) for m in back.missing] == [str(m) for m in holding.missing]
            elif each.name != "book":
                assert getattr(back, each.name) == getattr(holding, each.name), each.name


@pytest.fixture
def book(superuser: Any) -> tuple[Portfolio, Portfolio, dict[str, Asset]]:
    """A EUR client with two portfolios, a EUR and a USD asset, closes and rates, and a few movements (through the
    services) in its main portfolio: buys, a sell, a transfer in recorded at price 0."""
    client = ClientFactory(email=EMAIL, base_currency="EUR", advisor=superuser)
    main, other = main_portfolio(client), PortfolioFactory(client=client, name="Other")
    for currency in ("EUR", "USD"):
        TransactionFactory(portfolio=main, amount=D("100000"), currency=currency, date=datetime.date(2026, 1, 2))
    TransactionFactory(portfolio=main, amount=D("300"), currency="EUR", date=FEB_2)  # one a test reverses
    assets = {
        "SAP": AssetFactory(ticker="SAP", exchange="XETR", currency="EUR"),
        "AAPL": AssetFactory(ticker="AAPL", exchange="XNAS", currency="USD"),
    }
    for day, rate in ((datetime.date(2026, 1, 2), "1.08"), (FEB_2, "1.12")):
        services.fx_rate_create(base="EUR", quote="USD", date=day, rate=D(rate))
    for day, sap, aapl in ((datetime.date(2026, 1, 2), "200", "150"), (MAR_2, "210", "160")):
        services.price_create(asset=assets["SAP"], date=day, close=D(sap))
        services.price_create(asset=assets["AAPL"], date=day, close=D(aapl))
    for asset, kind, quantity, price, day in (
        ("SAP", "buy", "10", "195", JAN_5),
        ("AAPL", "buy", "20", "148.5", JAN_5),
        ("SAP", "buy", "5", "205", JAN_12),
        ("SAP", "sell", "6", "215", FEB_2),
        ("AAPL", "transfer_in", "3", "0", JAN_12),
    ):
        services.allocation_create(
            actor=superuser,
            portfolio=main,
            asset=assets[asset],
            kind=kind,
            quantity=D(quantity),
            price=D(price),
            date=day,
            fees=D("1") if kind in ("buy", "sell") else D("0"),
        )
    return main, other, assets


def _fresh(portfolio: Portfolio, method: str, as_of: datetime.date = AS_OF) -> Valuation:
    """What a fold of every movement gives, the snapshots left aside (cash and closes read from the ledger and the
    prices)."""
    return valuate(
        portfolio_ids=[portfolio.pk],
        cash=portfolio_balances(portfolio_id=portfolio.pk, as_of=as_of),
        currency=portfolio.base_currency,
        as_of=as_of,
        cost_method=method,
        stale_days=settings.VALUATION_STALE_PRICE_DAYS,
        snapshots=False,
    )


def _served_from_snapshot(portfolio: Portfolio, method: str) -> bool:
    read = holdings_as_of(portfolio_ids=[portfolio.pk], cost_method=method, currency="EUR", as_of=AS_OF)
    return read.to_fold == []


def _snapshot_current(portfolio: Portfolio, method: str) -> bool:
    version = Portfolio.objects.values_list("data_version", flat=True).get(pk=portfolio.pk)
    snapshot = PositionSnapshot.objects.get(portfolio=portfolio, cost_method=method, currency="EUR")
    return snapshot.data_version == version


def _import(main: Portfolio, assets: dict[str, Asset]) -> None:
    rows = [
        "client,portfolio,ticker,exchange,kind,quantity,price,fees,date,notes",
        f"{EMAIL},{main.name},SAP,XETR,buy,4,199,1,2026-01-07,",
        f"{EMAIL},{main.name},AAPL,XNAS,sell,5,152,0,2026-02-03,",
    ]
    result = run_import(
        kind="allocations",
        stream=io.BytesIO("\n".join([*rows, ""]).encode()),
        file_name="trades.csv",
        actor=CommandLineActor(),
    )
    assert result.ok, [str(issue) for issue in result.issues]


def _buy(day: datetime.date, ticker: str = "SAP") -> Callable[[Any, Portfolio, Portfolio, dict[str, Asset]], None]:
    def write(actor: Any, main: Portfolio, other: Portfolio, assets: dict[str, Asset]) -> None:
        services.allocation_create(
            actor=actor, portfolio=main, asset=assets[ticker], kind="buy", quantity=D("2"), price=D("190"), date=day
        )

    return write


def _first(main: Portfolio, kind: str, ticker: str = "SAP") -> Allocation:
    movements = Allocation.objects.filter(portfolio=main, kind=kind, asset__ticker=ticker)
    return movements.order_by("date", "pk").first()  # type: ignore[return-value]


WRITES: dict[str, Callable[[Any, Portfolio, Portfolio, dict[str, Asset]], None]] = {
    "buy": _buy(MAR_2),
    "sell": lambda actor, main, other, assets: services.allocation_create(
        actor=actor, portfolio=main, asset=assets["AAPL"], kind="sell", quantity=D("4"), price=D("161"), date=MAR_2
    ),
    "transfer": lambda actor, main, other, assets: services.units_transfer(
        actor=actor, from_portfolio=main, to_portfolio=other, asset=assets["SAP"], quantity=D("3"), date=MAR_2
    ),
    "delete (its settlement reversed)": lambda actor, main, other, assets: services.allocation_delete(
        actor=actor, allocation=_first(main, "buy", "AAPL")
    ),
    "update": lambda actor, main, other, assets: services.allocation_update(
        actor=actor, allocation=_first(main, "buy"), quantity=D("12")
    ),
    "back-dated trade": _buy(datetime.date(2026, 1, 3), "AAPL"),
    "bulk import": lambda actor, main, other, assets: _import(main, assets),
    "price (of a transfer in at 0)": lambda actor, main, other, assets: services.price_create(
        asset=assets["AAPL"], date=JAN_12, close=D("170")
    ),
    "rate (of a trade's day)": lambda actor, main, other, assets: services.fx_rate_create(
        base="EUR", quote="USD", date=JAN_5, rate=D("1.2")
    ),
    # The snapshot stores each held asset's latest close and the cash balances: every write to them is here.
    "a newer close": lambda actor, main, other, assets: services.price_create(
        asset=assets["SAP"], date=datetime.date(2026, 4, 1), close=D("230")
    ),
    "the latest close changed": lambda actor, main, other, assets: services.price_update(
        price=Price.objects.get(asset=assets["SAP"], date=MAR_2), close=D("220")
    ),
    "the latest close deleted": lambda actor, main, other, assets: services.price_delete(
        price=Price.objects.get(asset=assets["SAP"], date=MAR_2)
    ),
    "bulk closes": lambda actor, main, other, assets: services.prices_bulk_create(
        prices=[Price(asset=assets["AAPL"], date=datetime.date(2026, 4, 1), close=D("171"))]
    ),
    "cash deposit": lambda actor, main, other, assets: ledger_services.transaction_post(
        actor=actor, portfolio_id=main.pk, kind="deposit", amount=D("500"), currency="USD", date=MAR_2
    ),
    "cash reversal": lambda actor, main, other, assets: ledger_services.transaction_reverse(
        actor=actor, transaction=Transaction.objects.get(portfolio=main, amount=D("300"))
    ),
    "dividend": lambda actor, main, other, assets: dividend_create(
        actor=actor, portfolio=main, asset=assets["SAP"], ex_date=MAR_2, pay_date=MAR_2, gross=D("12")
    ),
}


@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize("method", COST_METHODS)
def test_after_each_kind_of_write_the_snapshot_serves_what_a_fresh_fold_gives(
    book: tuple[Portfolio, Portfolio, dict[str, Asset]], superuser: Any, write: str, method: str
) -> None:
    main, other, assets = book
    before = portfolio_valuation(portfolio=main, as_of=AS_OF, cost_method=method)
    assert before == _fresh(main, method)
    assert _served_from_snapshot(main, method)

    WRITES[write](superuser, main, other, assets)
    main.refresh_from_db()

    # The write made the snapshot stale, and the answer changed: a stale snapshot served would be seen.
    assert not _snapshot_current(main, method)
    after = portfolio_valuation(portfolio=main, as_of=AS_OF, cost_method=method)
    assert after == _fresh(main, method)
    assert after != before
    assert _snapshot_current(main, method)
    assert _served_from_snapshot(main, method)


def test_a_valuation_as_of_a_day_before_the_last_movement_is_folded_and_stores_no_snapshot(
    book: tuple[Portfolio, Portfolio, dict[str, Asset]],
) -> None:
    main, _, _ = book
    day = JAN_12

    report = portfolio_valuation(portfolio=main, as_of=day)

    expected = valuate(
        portfolio_ids=[main.pk],
        cash=portfolio_balances(portfolio_id=main.pk, as_of=day),
        currency="EUR",
        as_of=day,
        cost_method=AVERAGE,
        stale_days=settings.VALUATION_STALE_PRICE_DAYS,
        snapshots=False,
    )
    assert report == expected
    assert {p.quantity for p in report.positions} == {D("15"), D("23")}  # the sell of Feb 2 not yet
    assert not PositionSnapshot.objects.filter(portfolio=main).exists()


def test_a_client_valuation_sums_the_portfolios_snapshots_as_it_sums_their_folds(
    book: tuple[Portfolio, Portfolio, dict[str, Asset]], superuser: Any
) -> None:
    main, other, assets = book
    services.units_transfer(
        actor=superuser, from_portfolio=main, to_portfolio=other, asset=assets["SAP"], quantity=D("2"), date=MAR_2
    )
    client = main.client
    ids = [main.pk, other.pk]
    for method in (AVERAGE, FIFO):
        report = client_valuation(client=client, portfolio_ids=ids, as_of=AS_OF, cost_method=method, currency="USD")
        expected = valuate(
            portfolio_ids=ids,
            cash=client_balances(client_id=client.pk, as_of=AS_OF),
            currency="USD",
            as_of=AS_OF,
            cost_method=method,
            stale_days=settings.VALUATION_STALE_PRICE_DAYS,
            snapshots=False,
        )
        assert report == expected
    assert PositionSnapshot.objects.filter(portfolio__in=ids, currency="USD").count() == 4


def test_a_second_reader_finds_the_snapshot_current_and_folds_nothing(
    book: tuple[Portfolio, Portfolio, dict[str, Asset]],
) -> None:
    main, _, _ = book
    assert services.position_snapshots_refresh(portfolio_ids=[main.pk], cost_method=AVERAGE, currency="EUR") == 1
    assert services.position_snapshots_refresh(portfolio_ids=[main.pk], cost_method=AVERAGE, currency="EUR") == 0


@pytest.mark.parametrize("method", COST_METHODS)
def test_recording_changing_or_deleting_a_split_makes_its_holders_snapshots_stale(
    book: tuple[Portfolio, Portfolio, dict[str, Asset]], superuser: Any, method: str
) -> None:
    main, _, assets = book
    answers = [portfolio_valuation(portfolio=main, as_of=AS_OF, cost_method=method)]
    split = services.split_create(
        actor=superuser, asset=assets["SAP"], date=datetime.date(2026, 2, 16), new_units=D("2"), old_units=D("1")
    )
    steps: list[Callable[[], Any]] = [
        lambda: services.split_update(actor=superuser, split=split, new_units=D("3")),
        lambda: services.split_delete(actor=superuser, split=split),
    ]
    for step in [lambda: None, *steps]:
        step()
        # A split writes no movement of the holder, yet its units change: the snapshot must not be served.
        assert not _snapshot_current(main, method)
        answer = portfolio_valuation(portfolio=main, as_of=AS_OF, cost_method=method)
        assert answer == _fresh(main, method)
        assert answer != answers[-1]
        assert _snapshot_current(main, method)
        assert _served_from_snapshot(main, method)
        answers.append(answer)
    assert answers[-1] == answers[0]  # deleted: as if it had never been


@pytest.mark.parametrize("method", COST_METHODS)
def test_a_valuation_before_the_stored_close_and_cash_reads_those_of_its_own_day(
    book: tuple[Portfolio, Portfolio, dict[str, Asset]], superuser: Any, method: str
) -> None:
    main, _, _ = book
    ledger_services.transaction_post(
        actor=superuser, portfolio_id=main.pk, kind="deposit", amount=D("700"), currency="EUR", date=MAR_2
    )
    portfolio_valuation(portfolio=main, as_of=AS_OF, cost_method=method)  # stores the snapshot
    # After every movement (so the snapshot serves its holdings), before the latest close and the last deposit.
    day = datetime.date(2026, 2, 20)
    read = holdings_as_of(portfolio_ids=[main.pk], cost_method=method, currency="EUR", as_of=day)
    assert read.to_fold == []
    assert read.quotes is None
    assert read.cash == {}

    answer = portfolio_valuation(portfolio=main, as_of=day, cost_method=method)
    assert answer == _fresh(main, method, day)
    assert {p.ticker: p.last_price_date for p in answer.positions} == {"AAPL": JAN_2, "SAP": JAN_2}


@pytest.mark.parametrize("method", COST_METHODS)
def test_the_stored_figures_and_notes_are_the_folds_exactly(
    book: tuple[Portfolio, Portfolio, dict[str, Asset]], superuser: Any, method: str
) -> None:
    """What a read takes from a snapshot row (its figures as text, and the missing rates and warnings of the rows
    that have some) is the fold's holding, figure for figure: a FIFO book of several lots after a sell, a split's
    thirds, a holding whose trade day has no rate, and a transfer in at price 0 with no close (a warning)."""
    main, _, assets = book
    pound, unpriced = AssetFactory(currency="GBP"), AssetFactory(currency="USD")
    services.allocation_create(
        actor=superuser, portfolio=main, asset=pound, kind="transfer_in", quantity=D("7"), price=D("3"), date=FEB_2
    )
    services.allocation_create(
        actor=superuser, portfolio=main, asset=unpriced, kind="transfer_in", quantity=D("2"), price=D("0"), date=FEB_2
    )
    services.split_create(actor=superuser, asset=assets["SAP"], date=MAR_2, new_units=D("3"), old_units=D("2"))
    main.refresh_from_db()

    report = portfolio_valuation(portfolio=main, as_of=AS_OF, cost_method=method)
    assert _served_from_snapshot(main, method)
    assert report == _fresh(main, method)
    assert report.missing_fx
    assert report.warnings

    events = load.events(portfolio_ids=[main.pk], as_of=datetime.date.max)
    rates = RateBook({"EUR", *(event.currency for event in events)}, until=datetime.date.max)
    folded = fold(events, method=method, rates=rates, currency="EUR")
    stored = holdings_as_of(portfolio_ids=[main.pk], cost_method=method, currency="EUR", as_of=AS_OF).holdings
    assert len(stored) == len(folded) == 4
    for each in stored:
        holding = folded[(main.pk, each.asset_id)]
        for name in ("currency", "quantity", "cost", "cost_value", "realized", "realized_value", "warnings"):
            assert getattr(each, name) == getattr(holding, name), name
        assert [str(m) for m in each.missing] == [str(m) for m in holding.missing]
    assert any(each.missing for each in stored)
    assert any(each.warnings for each in stored)
