"""Splits and reverse splits: worked examples, the rules the database holds, and that no recalculation applies a
split twice.

Example 1, a 2 for 1 split of 100 units on 2026-01-10 (client in USD, asset in USD):
    2026-01-05 buy 60 at 100 (cost 6,000); 2026-01-06 buy 40 at 125 (cost 5,000): 100 units, cost 11,000,
    average 110; FIFO lots 60 @ 100 and 40 @ 125. Close 130 on the 9th: value 100 x 130 = 13,000.
    From the 10th: 200 units, cost still 11,000, average 55; FIFO lots 120 @ 50 (6,000) and 80 @ 62.50 (5,000).
    The real price is unchanged: the close is 65 on the 10th, value 200 x 65 = 13,000, so the value series and the
    time-weighted return are flat across the split.
    Selling 150 of the 200 on the 12th is allowed (FIFO cost 120 x 50 + 30 x 62.50 = 7,875); selling 201 is
    refused with the services' words.

Example 2, a 1 for 10 reverse split on 2026-01-10 with cash in lieu at 95 per new unit:
    P1 holds 105 units bought at 10 (cost 1,050); P2 holds 37 bought at 10 (cost 370). Close 9.50 on the 9th:
    P1 is worth 105 x 9.50 = 997.50.
    After: P1 has 10.5 units, sells the 0.5 at 95 = 47.50 cash, keeps 10 units at cost 1,050 x 10/10.5 = 1,000
    (100 a unit; the 0.5 cost 50: realized -2.50). P2 has 3.7, sells 0.7 at 95 = 66.50, keeps 3 at cost 300
    (realized 66.50 - 70 = -3.50). Close 95 on the 10th: P1 is worth 10 x 95 + 47.50 cash = 997.50: continuous.
"""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, main_portfolio
from holdings import services
from holdings.models import Allocation, Asset, Split
from holdings.performance import portfolio_performance
from holdings.selectors import daily_values, position, units_shortfall
from holdings.tests.factories import AssetFactory
from holdings.valuation import portfolio_valuation
from holdings.valuation.load import events
from ledger import services as ledger_services
from ledger.selectors import cash_available
from portfolio_site.errors import ConflictError
from portfolio_site.testing import refused_by

pytestmark = pytest.mark.django_db
D = datetime.date
SPLIT_DAY = D(2026, 1, 10)


def deposit(actor: Any, portfolio: Portfolio, amount: str) -> None:
    ledger_services.transaction_post(
        actor=actor,
        portfolio_id=portfolio.pk,
        kind="deposit",
        amount=Decimal(amount),
        currency="USD",
        date=D(2026, 1, 2),
    )


def trade(actor: Any, portfolio: Portfolio, asset: Asset, kind: str, quantity: str, price: str, day: datetime.date):
    return services.allocation_create(
        actor=actor,
        portfolio=portfolio,
        asset=asset,
        kind=kind,
        quantity=Decimal(quantity),
        price=Decimal(price),
        date=day,
    )


@pytest.fixture
def two_for_one(operations: Any) -> dict[str, Any]:
    client = ClientFactory(base_currency="USD")
    portfolio = main_portfolio(client)
    portfolio.base_currency = "USD"
    portfolio.save()
    asset = AssetFactory(ticker="SPLT", currency="USD")
    deposit(operations, portfolio, "20000")
    trade(operations, portfolio, asset, "buy", "60", "100", D(2026, 1, 5))
    trade(operations, portfolio, asset, "buy", "40", "125", D(2026, 1, 6))
    for day, close in ((D(2026, 1, 5), "100"), (D(2026, 1, 9), "130"), (SPLIT_DAY, "65"), (D(2026, 1, 12), "65")):
        services.price_create(asset=asset, date=day, close=Decimal(close))
    split = services.split_create(
        actor=operations, asset=asset, date=SPLIT_DAY, new_units=Decimal(2), old_units=Decimal(1)
    )
    return {"portfolio": portfolio, "asset": asset, "split": split, "actor": operations}


def holding(portfolio: Portfolio, day: datetime.date, method: str) -> Any:
    valuation = portfolio_valuation(portfolio=portfolio, as_of=day, cost_method=method)
    (found,) = valuation.positions
    return found


# --- Example 1: 2 for 1 ---------------------------------------------------------------------------------------


def test_two_for_one_split_doubles_units_and_halves_average_cost_from_its_day(two_for_one: dict[str, Any]) -> None:
    portfolio = two_for_one["portfolio"]
    before = holding(portfolio, D(2026, 1, 9), "average")
    after = holding(portfolio, SPLIT_DAY, "average")
    assert (before.quantity, before.cost, before.average_cost) == (100, 11000, 110)
    assert (after.quantity, after.cost, after.average_cost) == (200, 11000, 55)
    assert before.market_value == after.market_value == 13000


def test_two_for_one_split_restates_each_fifo_lot_and_keeps_its_cost(two_for_one: dict[str, Any]) -> None:
    from holdings.fx import RateBook
    from holdings.valuation.fold import fold

    portfolio = two_for_one["portfolio"]
    folded = fold(
        events(portfolio_ids=[portfolio.pk], as_of=SPLIT_DAY),
        method="fifo",
        rates=RateBook({"USD"}, until=SPLIT_DAY),
        currency="USD",
    )
    (lots,) = [[(lot.quantity, lot.cost, lot.cost / lot.quantity) for lot in h.book.lots] for h in folded.values()]
    assert lots == [(120, 6000, 50), (80, 5000, Decimal("62.5"))]


def test_selling_150_of_200_units_after_a_two_for_one_split_is_allowed(two_for_one: dict[str, Any]) -> None:
    portfolio, asset = two_for_one["portfolio"], two_for_one["asset"]
    trade(two_for_one["actor"], portfolio, asset, "sell", "150", "70", D(2026, 1, 12))
    assert position(portfolio_id=portfolio.pk, asset_id=asset.pk) == 50
    fifo = holding(portfolio, D(2026, 1, 12), "fifo")
    assert fifo.realized_gain == 150 * 70 - (120 * 50 + 30 * Decimal("62.5"))


def test_selling_201_of_200_units_after_a_two_for_one_split_is_refused_with_the_services_words(
    two_for_one: dict[str, Any],
) -> None:
    portfolio, asset = two_for_one["portfolio"], two_for_one["asset"]
    with pytest.raises(ConflictError) as refusal:
        trade(two_for_one["actor"], portfolio, asset, "sell", "201", "70", D(2026, 1, 12))
    assert "would leave a position of -1.0000000000 at the end of 2026-01-12" in str(refusal.value)
    assert not Allocation.objects.filter(kind="sell").exists()


def test_units_shortfall_states_the_balance_in_the_units_of_its_day(two_for_one: dict[str, Any]) -> None:
    portfolio, asset = two_for_one["portfolio"], two_for_one["asset"]
    Allocation.objects.create(
        client=portfolio.client, portfolio=portfolio, asset=asset, kind="transfer_out", quantity=Decimal(250),
        price=0, date=D(2026, 1, 11),
    )  # fmt: skip
    shortfall = units_shortfall(portfolio_id=portfolio.pk, asset_id=asset.pk, since=D(2026, 1, 1))
    assert shortfall is not None
    assert (shortfall.day, shortfall.balance) == (D(2026, 1, 11), -50)


def test_value_series_and_time_weighted_return_are_flat_across_a_split_at_an_unchanged_real_price(
    two_for_one: dict[str, Any],
) -> None:
    portfolio = two_for_one["portfolio"]
    rows = {row.date: row for row in daily_values(portfolio_id=portfolio.pk, start=D(2026, 1, 9), end=D(2026, 1, 12))}
    assert rows[D(2026, 1, 9)].holdings_value == rows[SPLIT_DAY].holdings_value == 13000
    assert rows[D(2026, 1, 9)].value == rows[D(2026, 1, 11)].value
    performance = portfolio_performance(portfolio=portfolio, start=D(2026, 1, 10), end=D(2026, 1, 12))
    assert performance.figures.time_weighted == 0
    assert all(day.daily_return == 0 for day in performance.series if day.daily_return is not None)


def test_a_recalculation_never_applies_a_split_twice(two_for_one: dict[str, Any]) -> None:
    portfolio, asset = two_for_one["portfolio"], two_for_one["asset"]
    first = [row.holdings_value for row in daily_values(portfolio_id=portfolio.pk, start=SPLIT_DAY, end=D(2026, 1, 12))]
    for _ in range(2):
        services.price_create(asset=asset, date=D(2026, 1, 1) + datetime.timedelta(days=_), close=Decimal(100))
        services.daily_values_refresh(portfolio_ids=[portfolio.pk], until=D(2026, 1, 31))
    again = [row.holdings_value for row in daily_values(portfolio_id=portfolio.pk, start=SPLIT_DAY, end=D(2026, 1, 12))]
    assert first == again == [13000, 13000, 13000]
    assert holding(portfolio, SPLIT_DAY, "fifo").quantity == holding(portfolio, SPLIT_DAY, "fifo").quantity == 200
    assert sorted(Allocation.objects.values_list("quantity", flat=True)) == [40, 60]  # nothing written into them


def test_the_same_split_cannot_be_recorded_twice(two_for_one: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="already has a split on this date"):
        services.split_create(
            actor=two_for_one["actor"], asset=two_for_one["asset"], date=SPLIT_DAY, new_units=2, old_units=1
        )
    with refused_by("holdings_split_asset_date_unique"):
        Split.objects.create(asset=two_for_one["asset"], date=SPLIT_DAY, new_units=3, old_units=1)


def test_deleting_a_split_that_later_sales_need_is_refused(two_for_one: dict[str, Any]) -> None:
    trade(two_for_one["actor"], two_for_one["portfolio"], two_for_one["asset"], "sell", "150", "70", D(2026, 1, 12))
    with pytest.raises(ConflictError, match="Not enough units"):
        services.split_delete(actor=two_for_one["actor"], split=two_for_one["split"])
    assert Split.objects.filter(pk=two_for_one["split"].pk).exists()


def test_deleting_a_split_restates_the_history_without_it(two_for_one: dict[str, Any]) -> None:
    portfolio, asset = two_for_one["portfolio"], two_for_one["asset"]
    assert daily_values(portfolio_id=portfolio.pk, start=SPLIT_DAY, end=SPLIT_DAY)[0].holdings_value == 13000
    services.split_delete(actor=two_for_one["actor"], split=two_for_one["split"])
    assert position(portfolio_id=portfolio.pk, asset_id=asset.pk) == 100
    assert daily_values(portfolio_id=portfolio.pk, start=SPLIT_DAY, end=SPLIT_DAY)[0].holdings_value == 6500


def test_a_buy_on_the_split_day_is_in_new_units_and_is_not_scaled(two_for_one: dict[str, Any]) -> None:
    portfolio, asset = two_for_one["portfolio"], two_for_one["asset"]
    trade(two_for_one["actor"], portfolio, asset, "buy", "10", "65", SPLIT_DAY)
    assert position(portfolio_id=portfolio.pk, asset_id=asset.pk, as_of=SPLIT_DAY) == 210
    assert position(portfolio_id=portfolio.pk, asset_id=asset.pk, as_of=D(2026, 1, 9)) == 100


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"new_units": 0, "old_units": 1}, "holdings_split_ratio_positive"),
        ({"new_units": 2, "old_units": -1}, "holdings_split_ratio_positive"),
        ({"new_units": 3, "old_units": 3}, "holdings_split_ratio_not_one"),
        ({"new_units": 1, "old_units": 10, "cash_in_lieu_price": 0}, "holdings_split_cash_in_lieu_positive"),
    ],
)
def test_the_database_refuses_a_bad_split(fields: dict[str, Any], rule: str) -> None:
    with refused_by(rule):
        Split.objects.create(asset=AssetFactory(), date=SPLIT_DAY, **fields)


# --- Example 2: 1 for 10 with cash in lieu ------------------------------------------------------------------------


@pytest.fixture
def reverse(operations: Any) -> dict[str, Any]:
    asset = AssetFactory(ticker="RVRS", currency="USD")
    portfolios = []
    for units in ("105", "37"):
        client = ClientFactory(base_currency="USD")
        portfolio = main_portfolio(client)
        portfolio.base_currency = "USD"
        portfolio.save()
        deposit(operations, portfolio, "1050")
        trade(operations, portfolio, asset, "buy", units, "10", D(2026, 1, 5))
        portfolios.append(portfolio)
    services.price_create(asset=asset, date=D(2026, 1, 9), close=Decimal("9.5"))
    services.price_create(asset=asset, date=SPLIT_DAY, close=Decimal("95"))
    split = services.split_create(
        actor=operations,
        asset=asset,
        date=SPLIT_DAY,
        new_units=Decimal(1),
        old_units=Decimal(10),
        cash_in_lieu_price=Decimal(95),
    )
    return {"p1": portfolios[0], "p2": portfolios[1], "asset": asset, "split": split, "actor": operations}


def test_a_reverse_split_pays_each_holder_cash_in_lieu_of_the_fraction(reverse: dict[str, Any]) -> None:
    sales = Allocation.objects.filter(cash_in_lieu_of=reverse["split"]).order_by("portfolio_id")
    assert [(s.portfolio_id, s.kind, s.quantity, s.price, s.date) for s in sales] == [
        (reverse["p1"].pk, "sell", Decimal("0.5"), 95, SPLIT_DAY),
        (reverse["p2"].pk, "sell", Decimal("0.7"), 95, SPLIT_DAY),
    ]
    assert [s.settlement.amount for s in sales] == [Decimal("47.5"), Decimal("66.5")]
    for key, units, cash in (("p1", 10, "47.5"), ("p2", 3, "66.5")):
        assert position(portfolio_id=reverse[key].pk, asset_id=reverse["asset"].pk) == units
        assert cash_available(portfolio_id=reverse[key].pk, currency="USD") == 1050 - 10 * int(
            {"p1": 105, "p2": 37}[key]
        ) + Decimal(cash)


@pytest.mark.parametrize("method", ["average", "fifo"])
def test_a_reverse_split_keeps_the_cost_of_the_whole_units_and_realizes_the_fraction(
    reverse: dict[str, Any], method: str
) -> None:
    p1 = holding(reverse["p1"], SPLIT_DAY, method)
    p2 = holding(reverse["p2"], SPLIT_DAY, method)
    assert (p1.quantity, p1.cost, p1.average_cost, p1.realized_gain) == (10, 1000, 100, Decimal("-2.5"))
    assert (p2.quantity, p2.cost, p2.average_cost, p2.realized_gain) == (3, 300, 100, Decimal("-3.5"))


def test_a_reverse_split_with_cash_in_lieu_keeps_the_value_continuous(reverse: dict[str, Any]) -> None:
    rows = daily_values(portfolio_id=reverse["p1"].pk, start=D(2026, 1, 9), end=SPLIT_DAY)
    assert [(row.holdings_value, row.value) for row in rows] == [
        (Decimal("997.5"), Decimal("997.5")),
        (Decimal("950"), Decimal("997.5")),
    ]


def test_a_cash_in_lieu_sale_changes_only_with_its_split(reverse: dict[str, Any]) -> None:
    sale = Allocation.objects.filter(cash_in_lieu_of=reverse["split"]).first()
    with pytest.raises(ConflictError, match="cash in lieu"):
        services.allocation_delete(actor=reverse["actor"], allocation=sale)
    services.split_update(actor=reverse["actor"], split=reverse["split"], cash_in_lieu_price=Decimal(100))
    assert sorted(Allocation.objects.filter(cash_in_lieu_of=reverse["split"]).values_list("price", flat=True)) == [
        100,
        100,
    ]
    services.split_delete(actor=reverse["actor"], split=reverse["split"])
    assert not Allocation.objects.filter(kind="sell").exists()
    assert position(portfolio_id=reverse["p1"].pk, asset_id=reverse["asset"].pk) == 105
    assert cash_available(portfolio_id=reverse["p1"].pk, currency="USD") == 0


def test_a_split_without_a_cash_in_lieu_price_keeps_fractions(operations: Any) -> None:
    asset = AssetFactory(currency="USD")
    client = ClientFactory(base_currency="USD")
    portfolio = main_portfolio(client)
    deposit(operations, portfolio, "1050")
    trade(operations, portfolio, asset, "buy", "105", "10", D(2026, 1, 5))
    services.split_create(actor=operations, asset=asset, date=SPLIT_DAY, new_units=1, old_units=10)
    assert position(portfolio_id=portfolio.pk, asset_id=asset.pk) == Decimal("10.5")
    assert not Allocation.objects.filter(kind="sell").exists()


def test_an_assets_own_return_is_unmoved_by_a_split(two_for_one: dict[str, Any]) -> None:
    from holdings.performance import position_performance

    found = position_performance(
        portfolio_ids=[two_for_one["portfolio"].pk],
        asset=two_for_one["asset"],
        currency="USD",
        start=D(2026, 1, 10),
        end=D(2026, 1, 12),
    )
    assert (found.start_quantity, found.end_quantity) == (100, 200)
    assert found.start_value == found.end_value == 13000
    assert found.gain == 0


@pytest.mark.parametrize("engine_kind", ["native", "python"])
def test_both_daily_value_engines_scale_units_by_the_split(
    two_for_one: dict[str, Any], engine_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database's own engine (SQL on PostgreSQL) and the Python pass give the same split-aware table."""
    from holdings import daily_values as engine

    if engine_kind == "python":
        monkeypatch.setattr(engine, "_insert_sql", engine._insert_python)
    portfolio, asset = two_for_one["portfolio"], two_for_one["asset"]
    trade(two_for_one["actor"], portfolio, asset, "sell", "150", "70", D(2026, 1, 12))
    services.split_create(actor=two_for_one["actor"], asset=asset, date=D(2026, 1, 14), new_units=1, old_units=5)
    rows = daily_values(portfolio_id=portfolio.pk, start=D(2026, 1, 9), end=D(2026, 1, 14))
    # Units: 100, 200 (split), 200, 50 (sold 150), 50, 10 (1 for 5); the close stays 65 from the 10th.
    assert [row.holdings_value for row in rows] == [13000, 13000, 13000, 3250, 3250, 650]


def test_an_allocations_import_counts_the_split_on_every_database(two_for_one: dict[str, Any]) -> None:
    """The row-by-row replay (SQLite) and the set-based write (PostgreSQL) check units through the same rule."""
    import io

    from portfolio_site.imports.run import CommandLineActor, run_import

    portfolio = two_for_one["portfolio"]
    email = portfolio.client.email

    def run(quantity: str) -> Any:
        text = (
            "client,ticker,exchange,kind,quantity,price,fees,date,notes\n"
            f"{email},SPLT,XNAS,sell,{quantity},70,0,2026-01-12,\n"
        )
        return run_import(
            kind="allocations", stream=io.BytesIO(text.encode()), file_name="a.csv", actor=CommandLineActor()
        )

    refused = run("201")
    assert [str(issue) for issue in refused.issues] == [
        f"line 2, quantity: Not enough units of SPLT.XNAS in {portfolio}: the change would leave a position of "
        "-1.0000000000 at the end of 2026-01-12; a sell or transfer out cannot exceed the quantity held that day."
    ]
    assert run("150").ok
    assert position(portfolio_id=portfolio.pk, asset_id=two_for_one["asset"].pk) == 50


# --- The import ---------------------------------------------------------------------------------------------------

SPLITS = "ticker,exchange,date,new_units,old_units,cash_in_lieu_price,notes\n"


def import_splits(text: str, **options: Any) -> Any:
    import io

    from portfolio_site.imports.run import CommandLineActor, run_import

    return run_import(
        kind="splits", stream=io.BytesIO(text.encode()), file_name="splits.csv", actor=CommandLineActor(), **options
    )


def test_a_splits_import_records_each_split_through_its_service_once(operations: Any) -> None:
    asset = AssetFactory(ticker="RVRS", exchange="XNAS", currency="USD")
    portfolio = main_portfolio(ClientFactory(base_currency="USD"))
    deposit(operations, portfolio, "1050")
    trade(operations, portfolio, asset, "buy", "105", "10", D(2026, 1, 5))
    text = SPLITS + "rvrs,xnas,2026-01-10,1,10,95,reverse\n"

    first = import_splits(text)
    assert first.ok, [str(issue) for issue in first.issues]
    assert (first.batch.rows_created, first.batch.rows_skipped) == (1, 0)
    split = Split.objects.get()
    assert (split.asset, split.date, split.import_batch) == (asset, SPLIT_DAY, first.batch)
    assert position(portfolio_id=portfolio.pk, asset_id=asset.pk) == 10  # 10.5, the 0.5 paid in cash
    again = import_splits(text)
    assert (again.batch.rows_created, again.batch.rows_updated, again.batch.rows_skipped) == (0, 0, 1)
    assert Allocation.objects.filter(cash_in_lieu_of=split).count() == 1
    changed = import_splits(SPLITS + "RVRS,XNAS,2026-01-10,1,10,100,reverse\n")
    assert changed.batch.rows_updated == 1
    assert Allocation.objects.get(cash_in_lieu_of=split).price == 100


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ("SPLT,XNAS,2026-01-10,2,1,,\nSPLT,XNAS,2026-01-10,3,1,,\n", "line 3, date: the split of SPLT on 2026-01-10 is "
         "already on line 2"),
        ("SPLT,XNAS,2026-01-10,2,2,,\n", "line 2, new_units: a split changes the number of units"),
        ("SPLT,XNAS,2026-01-10,0,1,,\n", "line 2, new_units:"),
        ("SPLT,XNAS,2026-01-10,1,10,0,\n", "line 2, cash_in_lieu_price:"),
        ("NOPE,XNAS,2026-01-10,2,1,,\n", "line 2, ticker: no asset with the ticker NOPE"),
    ],
)  # fmt: skip
def test_a_bad_split_row_is_refused_naming_its_line_and_nothing_is_written(rows: str, expected: str) -> None:
    AssetFactory(ticker="SPLT", exchange="XNAS")
    result = import_splits(SPLITS + rows)
    assert not result.ok
    assert str(result.issues[0]).startswith(expected)
    assert not Split.objects.exists()


def test_a_split_row_the_services_refuse_is_reported_at_its_line(two_for_one: dict[str, Any]) -> None:
    trade(two_for_one["actor"], two_for_one["portfolio"], two_for_one["asset"], "sell", "150", "70", D(2026, 1, 12))
    result = import_splits(SPLITS + "SPLT,XNAS,2026-01-10,3,2,,\n")  # 100 -> 150: the sale of 150 leaves 0, fine
    assert result.ok
    refused = import_splits(SPLITS + "SPLT,XNAS,2026-01-10,1,1.5,,\n")  # 100 -> 66.67: the sale of 150 is short
    (issue,) = refused.issues
    assert str(issue).startswith("line 2, new_units: Not enough units of SPLT.XNAS")
    assert Split.objects.get().old_units == 2
