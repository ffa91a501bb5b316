"""The daily value table equals a recomputation from scratch after every kind of write, whichever engine built it.

The recomputation here is deliberately naive: one day at a time, through the selectors every other figure uses
(position, cash_available, holdings.fx.fx_rate, the latest close on or before the day).
"""

import datetime
import io
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from clients.models import Portfolio
from clients.services import portfolio_update, portfolios_history_changed
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings import daily_values as engine
from holdings import services
from holdings.dividends import dividend_create, dividend_update
from holdings.fx import MissingRate, fx_rate
from holdings.models import Allocation, Asset, FxRate, PortfolioDailyValue, Price
from holdings.selectors import daily_values, position
from holdings.tests.factories import AssetFactory
from ledger import services as ledger_services
from ledger.models import Transaction
from ledger.selectors import cash_available
from portfolio_site.testing import refused_by

pytestmark = pytest.mark.django_db
D = datetime.date
START, END = D(2026, 1, 1), D(2026, 1, 31)


@pytest.fixture(params=["native", "python"])
def engine_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of building the table: the database's own (SQL on PostgreSQL) and the Python pass (SQLite's)."""
    if request.param == "python":
        monkeypatch.setattr(engine, "_insert_sql", engine._insert_python)
    return str(request.param)


# --- The recomputation from scratch ---------------------------------------------------------------------------


def days(start: datetime.date, end: datetime.date) -> Iterator[datetime.date]:
    while start <= end:
        yield start
        start += datetime.timedelta(days=1)


def half_even(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)


def from_scratch(portfolio: Portfolio, start: datetime.date, end: datetime.date) -> list[tuple[Any, ...]]:
    portfolio.refresh_from_db()
    base = portfolio.base_currency
    assets = list(Asset.objects.filter(allocations__portfolio=portfolio).distinct())
    currencies = set(Transaction.objects.filter(portfolio=portfolio).values_list("currency", flat=True))
    transactions = list(Transaction.objects.filter(portfolio=portfolio).select_related("reverses"))
    movements = list(Allocation.objects.filter(portfolio=portfolio))
    first = min([t.date for t in transactions] + [a.date for a in movements])
    rows = []
    for day in days(max(start, first), end):
        missing_prices: set[int] = set()
        missing_rates: set[str] = set()

        def convert(amount: Decimal | None, currency: str, day: datetime.date = day) -> Decimal:
            try:
                rate = fx_rate(base=currency, quote=base, on=day).rate
            except MissingRate:
                missing_rates.add(currency)  # noqa: B023
                return Decimal(0)
            return amount * rate if amount is not None else Decimal(0)

        def units_value(asset: Asset, units: Decimal, day: datetime.date = day) -> Decimal:
            price = Price.objects.filter(asset=asset, date__lte=day).order_by("-date").first()
            if price is None:
                missing_prices.add(asset.pk)  # noqa: B023
            return convert(units * price.close if price else None, asset.currency)

        with localcontext() as context:
            context.prec = 120
            holdings = Decimal(0)
            for asset in assets:
                units = position(portfolio_id=portfolio.pk, asset_id=asset.pk, as_of=day)
                if units:
                    holdings += units_value(asset, units)
            cash = Decimal(0)
            for currency in currencies:
                balance = cash_available(portfolio_id=portfolio.pk, currency=currency, as_of=day)
                if balance:
                    cash += convert(balance, currency)
            # External: deposits, withdrawals and transfers (to or from the client's other portfolios too), on
            # their effective day (a reversal on its original's), units at their recorded price (the day's close
            # when it is 0); in and out kept apart, and of each the part moved between the client's portfolios
            # (every cash transfer; units transfers with both legs recorded).
            cash_in: dict[tuple[str, bool, bool], Decimal] = {}
            for t in transactions:
                external = t.kind in ("deposit", "withdrawal", "transfer_in", "transfer_out")
                if not external or (t.reverses.date if t.reverses else t.date) != day:
                    continue
                key = (t.currency, t.kind in ("deposit", "transfer_in"), t.kind.startswith("transfer"))
                cash_in[key] = cash_in.get(key, Decimal(0)) + (-t.amount if t.reverses else t.amount)
            units_in: dict[tuple[Asset, Decimal, bool, bool], Decimal] = {}
            for a in movements:
                if a.kind in ("transfer_in", "transfer_out") and a.date == day:
                    between = a.counterpart_id is not None or Allocation.objects.filter(counterpart=a).exists()
                    key = (a.asset, a.price, a.kind == "transfer_in", between)
                    units_in[key] = units_in.get(key, Decimal(0)) + a.quantity
            flows = {(incoming, between): Decimal(0) for incoming in (True, False) for between in (True, False)}
            for (currency, incoming, between), amount in cash_in.items():
                if amount:
                    flows[incoming, between] += convert(amount, currency)
            for (asset, unit_price, incoming, between), units in units_in.items():
                if units and unit_price:
                    flows[incoming, between] += convert(units * unit_price, asset.currency)
                elif units:
                    flows[incoming, between] += units_value(asset, units)
            h, c = half_even(holdings), half_even(cash)
        missing: dict[str, list[Any]] = {}
        if missing_prices:
            missing["prices"] = sorted(missing_prices)
        if missing_rates:
            missing["rates"] = sorted(missing_rates)
        inflow, outflow = flows[True, False] + flows[True, True], flows[False, False] + flows[False, True]
        in_out = (half_even(inflow), half_even(outflow), half_even(flows[True, True]), half_even(flows[False, True]))
        rows.append((day, h, c, h + c, *in_out, not missing, missing))
    return rows


def table(portfolio: Portfolio, start: datetime.date = START, end: datetime.date = END) -> list[tuple[Any, ...]]:
    return [
        (
            r.date,
            r.holdings_value,
            r.cash_value,
            r.value,
            r.inflow,
            r.outflow,
            r.transfers_in,
            r.transfers_out,
            r.complete,
            r.missing,
        )
        for r in daily_values(portfolio_id=portfolio.pk, start=start, end=end)
    ]


def assert_matches_from_scratch(*portfolios: Portfolio) -> None:
    for portfolio in portfolios:
        assert table(portfolio) == from_scratch(portfolio, START, END)


# --- A multi-currency client with two portfolios --------------------------------------------------------------


def publish(base: str, quote: str, day: datetime.date, rate: str) -> None:
    """A rate as the FX services publish one: every portfolio's history changes from its day."""
    FxRate.objects.create(base=base, quote=quote, date=day, rate=Decimal(rate))
    portfolios_history_changed(portfolios=Portfolio.objects.values("pk"), since=day)


def price(asset: Asset, day: datetime.date, close: str) -> Price:
    return services.price_create(asset=asset, date=day, close=Decimal(close))


@pytest.fixture
def book(operations: Any) -> dict[str, Any]:
    """EUR and USD portfolios of one client; a USD, a EUR and a GBP asset. EUR/USD is published on weekdays, EUR/GBP
    from the 7th (so GBP has no rate before, and reaches USD only through the EUR pivot); the GBP asset's first
    close is on the 12th."""
    client = ClientFactory(base_currency="EUR")
    eur = main_portfolio(client)
    usd = PortfolioFactory(client=client, name="Dollar account", base_currency="USD")
    us = AssetFactory(ticker="USAA", currency="USD")
    eu = AssetFactory(ticker="EUBB", exchange="XPAR", currency="EUR")
    gb = AssetFactory(ticker="GBCC", exchange="XLON", currency="GBP")
    for n, day in enumerate(days(START, END)):
        if day.weekday() < 5:
            FxRate.objects.create(base="EUR", quote="USD", date=day, rate=Decimal("1.08") + Decimal(n) / 1000)
            price(us, day, str(Decimal("101.25") + Decimal(n % 5) / 8))
        if day.weekday() in (0, 3):
            price(eu, day, str(Decimal("50.5") + n))
    for day, rate in ((D(2026, 1, 7), "0.8412"), (D(2026, 1, 14), "0.8433"), (D(2026, 1, 21), "0.8397")):
        FxRate.objects.create(base="EUR", quote="GBP", date=day, rate=Decimal(rate))
    price(gb, D(2026, 1, 12), "12.3456")
    price(gb, D(2026, 1, 19), "12.9")

    def post(portfolio: Portfolio, kind: str, amount: str, currency: str, day: datetime.date) -> Transaction:
        posted, _ = ledger_services.transaction_post(
            actor=operations, portfolio_id=portfolio.pk, kind=kind, amount=Decimal(amount), currency=currency, date=day
        )
        return posted

    def trade(portfolio: Portfolio, asset: Asset, kind: str, quantity: str, unit: str, day: datetime.date) -> Any:
        return services.allocation_create(
            actor=operations,
            portfolio=portfolio,
            asset=asset,
            kind=kind,
            quantity=Decimal(quantity),
            price=Decimal(unit),
            date=day,
        )

    post(eur, "deposit", "10000", "EUR", D(2026, 1, 2))
    post(eur, "deposit", "5000", "USD", D(2026, 1, 3))
    trade(eur, us, "buy", "10", "101.3", D(2026, 1, 5))
    trade(eur, eu, "buy", "33.333", "51", D(2026, 1, 6))
    trade(eur, gb, "transfer_in", "100", "12", D(2026, 1, 8))  # from another custodian, no cash
    post(eur, "withdrawal", "250.5", "EUR", D(2026, 1, 9))
    post(usd, "deposit", "3000", "USD", D(2026, 1, 4))
    post(usd, "deposit", "200", "GBP", D(2026, 1, 12))
    trade(usd, gb, "buy", "7", "12.5", D(2026, 1, 13))
    return {"actor": operations, "eur": eur, "usd": usd, "us": us, "eu": eu, "gb": gb, "post": post, "trade": trade}


def test_the_table_equals_a_recomputation_after_each_kind_of_write(book: dict[str, Any], engine_kind: str) -> None:
    eur, usd, actor = book["eur"], book["usd"], book["actor"]
    assert_matches_from_scratch(eur, usd)

    # A back-dated trade.
    book["trade"](eur, book["us"], "sell", "4", "103", D(2026, 1, 8))
    assert_matches_from_scratch(eur, usd)

    # A price correction, and a price on a day that had none (carried forward until then).
    services.price_update(price=Price.objects.get(asset=book["us"], date=D(2026, 1, 12)), close=Decimal("99.125"))
    price(book["eu"], D(2026, 1, 13), "49.875")
    assert_matches_from_scratch(eur, usd)

    # A new rate on a weekend day, between two published ones.
    publish("EUR", "USD", D(2026, 1, 17), "1.1111")
    publish("USD", "GBP", D(2026, 1, 24), "0.7770")  # direct: now preferred to the cross through EUR
    assert_matches_from_scratch(eur, usd)

    # A reversal: counts from its original's day, and leaves the external flows with it.
    deposit = book["post"](eur, "deposit", "2000", "EUR", D(2026, 1, 10))
    ledger_services.transaction_reverse(actor=actor, transaction=deposit)
    assert_matches_from_scratch(eur, usd)

    # Transfers between the client's two portfolios: external to each.
    ledger_services.cash_transfer(
        actor=actor, from_portfolio_id=eur.pk, to_portfolio_id=usd.pk, amount=Decimal("1500"), currency="EUR",
        date=D(2026, 1, 15),
    )  # fmt: skip
    services.units_transfer(
        actor=actor, from_portfolio=eur, to_portfolio=usd, asset=book["eu"], quantity=Decimal("10"),
        date=D(2026, 1, 16),
    )  # fmt: skip
    assert_matches_from_scratch(eur, usd)

    # Interest, fees, taxes, tax refunds and dividends (in a foreign currency too) are cash but not external flows.
    dividend = dividend_create(
        actor=actor, portfolio=eur, asset=book["us"], ex_date=D(2026, 1, 19), pay_date=D(2026, 1, 20),
        amount_per_unit=Decimal("0.2475"), withholding_tax=Decimal("0.37"),
    )  # fmt: skip
    dividend_update(actor=actor, dividend=dividend, withholding_tax=Decimal("0.38"))  # reversed and reposted
    book["post"](eur, "interest", "12.34", "EUR", D(2026, 1, 20))
    book["post"](eur, "fee", "7.5", "USD", D(2026, 1, 21))
    book["post"](eur, "tax", "1.11", "EUR", D(2026, 1, 21))
    refund = book["post"](usd, "tax_refund", "3.3", "USD", D(2026, 1, 22))
    ledger_services.transaction_reverse(actor=actor, transaction=refund)
    assert_matches_from_scratch(eur, usd)
    flows = {
        day: (inflow, outflow)
        for day, inflow, outflow in PortfolioDailyValue.objects.filter(portfolio=eur).values_list(
            "date", "inflow", "outflow"
        )
    }
    assert flows[D(2026, 1, 20)] == flows[D(2026, 1, 21)] == (Decimal(0), Decimal(0))

    # Deleting the first movement of a portfolio moves the start of its table.
    services.allocation_delete(actor=actor, allocation=Allocation.objects.get(portfolio=usd, kind="buy"))
    assert_matches_from_scratch(eur, usd)


def test_a_unit_transfer_flows_at_its_recorded_price_or_the_close_when_that_is_0(
    book: dict[str, Any], engine_kind: str
) -> None:
    eur, us = book["eur"], book["us"]
    day = D(2026, 1, 20)
    close = Price.objects.get(asset=us, date=day).close
    rate = fx_rate(base="USD", quote="EUR", on=day).rate
    before = {row[0]: row for row in table(eur)}[day]
    book["trade"](eur, us, "transfer_in", "5", "90", day)  # recorded at 90 USD, below the close
    book["trade"](eur, us, "transfer_in", "2", "0", day)  # no price recorded: the day's close
    after = {row[0]: row for row in table(eur)}[day]
    assert after[4] - before[4] == half_even((5 * Decimal("90") + 2 * close) * rate)
    # The units held are worth the close whatever they were transferred at.
    assert after[1] - before[1] == half_even(7 * close * rate)
    assert_matches_from_scratch(eur)


def test_a_held_asset_without_a_close_marks_its_days_incomplete_and_says_which(
    book: dict[str, Any], engine_kind: str
) -> None:
    rows = {row[0]: row for row in table(book["eur"])}
    gb = book["gb"].pk
    # Transferred in on the 8th, first close on the 12th: its value is left out, never taken as zero silently.
    assert [rows[D(2026, 1, day)][8:] for day in (7, 8, 11, 12)] == [
        (True, {}),
        (False, {"prices": [gb]}),
        (False, {"prices": [gb]}),
        (True, {}),
    ]
    # The transfer in is a flow at its recorded price (12 GBP), which needs no close: 1,200 GBP at the 7th's rate.
    assert rows[D(2026, 1, 8)][4] == half_even(100 * 12 * fx_rate(base="GBP", quote="EUR", on=D(2026, 1, 8)).rate)


def test_a_currency_without_a_rate_marks_its_days_incomplete(book: dict[str, Any], engine_kind: str) -> None:
    # Until the first EUR/GBP rate nothing converts GBP to USD: the buy of the 13th came after, so USD only.
    book["post"](book["usd"], "deposit", "100", "GBP", D(2026, 1, 5))
    rows = {row[0]: row for row in table(book["usd"])}
    assert rows[D(2026, 1, 6)][8:] == (False, {"rates": ["GBP"]})
    assert rows[D(2026, 1, 7)][8:] == (True, {})


def test_a_refresh_reads_only_the_stale_portfolios(book: dict[str, Any], engine_kind: str) -> None:
    def refresh_queries(untouched: int) -> int:
        for _ in range(untouched):
            portfolio = main_portfolio(ClientFactory())
            book["post"](portfolio, "deposit", "10", "EUR", D(2026, 1, 20))
        services.daily_values_refresh(until=END)
        book["trade"](book["eur"], book["us"], "buy", "1", "100", D(2026, 1, 25))
        with CaptureQueriesContext(connection) as queries:
            assert services.daily_values_refresh(until=END) == 1
        return len(queries)

    assert refresh_queries(1) == refresh_queries(6)


def test_a_refresh_leaves_the_marker_when_the_history_moved_meanwhile(
    book: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    eur = book["eur"]
    rebuild = engine.rebuild

    def rebuild_while_a_write_lands(targets: Any, *, until: datetime.date) -> set[int]:
        found = rebuild(targets, until=until)
        Portfolio.objects.filter(pk=eur.pk).update(data_version=F("data_version") + 1)
        return found

    monkeypatch.setattr(engine, "rebuild", rebuild_while_a_write_lands)
    services.daily_values_refresh(portfolio_ids=[eur.pk], until=END)
    eur.refresh_from_db()
    assert eur.history_changed_from == D(2026, 1, 2)  # still stale: the next read rebuilds

    monkeypatch.setattr(engine, "rebuild", rebuild)
    services.daily_values_refresh(portfolio_ids=[eur.pk], until=END)
    eur.refresh_from_db()
    assert eur.history_changed_from == END + datetime.timedelta(days=1)  # current through END


def test_a_reader_never_sees_stale_rows(book: dict[str, Any]) -> None:
    eur = book["eur"]
    before = {row[0]: row for row in table(eur)}
    services.price_update(price=Price.objects.get(asset=book["us"], date=D(2026, 1, 20)), close=Decimal("500"))
    after = {row[0]: row for row in table(eur)}
    assert before.keys() == after.keys()
    # The 20th, read after the write, is revalued without anyone asking for a refresh.
    assert after[D(2026, 1, 20)][1] > before[D(2026, 1, 20)][1]
    assert after[D(2026, 1, 19)] == before[D(2026, 1, 19)]


def test_a_portfolio_without_movements_has_no_rows_and_no_marker(engine_kind: str) -> None:
    portfolio = PortfolioFactory()
    Portfolio.objects.filter(pk=portfolio.pk).update(history_changed_from=START)
    assert table(portfolio) == []
    portfolio.refresh_from_db()
    assert portfolio.history_changed_from is None


def test_the_command_refreshes_every_stale_portfolio(book: dict[str, Any]) -> None:
    out = io.StringIO()
    call_command("refresh_daily_values", "--until", "2026-01-31", stdout=out)
    assert "of 2 portfolio(s)" in out.getvalue()
    assert PortfolioDailyValue.objects.filter(portfolio=book["eur"]).count() == 30  # from the 2nd
    call_command("refresh_daily_values", "--until", "2026-01-31", stdout=out)
    assert "of 0 portfolio(s)" in out.getvalue()


def test_the_job_rebuilds_from_the_earliest_back_dated_change_and_a_second_run_changes_nothing(
    book: dict[str, Any],
) -> None:
    from holdings.tasks import daily_values_refresh
    from portfolio_site.jobs.models import JobRun

    eur = book["eur"]
    assert daily_values_refresh.apply(kwargs={"until": "2026-01-31"}).get() == 2
    before = {row[0]: row for row in table(eur)}
    book["trade"](eur, book["us"], "sell", "2", "103", D(2026, 1, 20))  # back-dated
    book["trade"](eur, book["us"], "sell", "1", "103", D(2026, 1, 14))  # further back
    eur.refresh_from_db()
    assert eur.history_changed_from == D(2026, 1, 14)

    assert daily_values_refresh.apply(kwargs={"until": "2026-01-31"}).get() == 1
    after = dict(PortfolioDailyValue.objects.filter(portfolio=eur).values_list("date", "value"))
    assert after[D(2026, 1, 13)] == before[D(2026, 1, 13)][3]  # before the change: kept
    assert after[D(2026, 1, 14)] != before[D(2026, 1, 14)][3]  # from it on: rebuilt
    eur.refresh_from_db()
    assert eur.history_changed_from == D(2026, 2, 1)
    rows = list(PortfolioDailyValue.objects.order_by("pk").values_list("pk", "date", "value"))

    assert daily_values_refresh.apply(kwargs={"until": "2026-01-31"}).get() == 0
    assert list(PortfolioDailyValue.objects.order_by("pk").values_list("pk", "date", "value")) == rows
    assert JobRun.objects.filter(task="holdings.daily_values_refresh", outcome="succeeded").count() == 3


def test_the_database_refuses_two_values_for_one_portfolio_and_day() -> None:
    portfolio = PortfolioFactory()
    fields = {"holdings_value": 0, "cash_value": 0, "value": 0, "inflow": 0, "outflow": 0, "complete": True}
    fields |= {"transfers_in": 0, "transfers_out": 0}
    PortfolioDailyValue.objects.create(portfolio=portfolio, date=START, **fields)
    with refused_by("holdings_dailyvalue_portfolio_date_unique"):
        PortfolioDailyValue.objects.create(portfolio=portfolio, date=START, **fields)


@pytest.mark.parametrize(
    ("flows", "constraint"),
    [
        ({"inflow": 10, "transfers_in": 11}, "holdings_dailyvalue_inflow_holds_its_transfers"),
        ({"inflow": 10, "transfers_in": -1}, "holdings_dailyvalue_inflow_holds_its_transfers"),
        ({"outflow": 10, "transfers_out": 11}, "holdings_dailyvalue_outflow_holds_its_transfers"),
        ({"outflow": -5, "transfers_out": 0}, "holdings_dailyvalue_outflow_holds_its_transfers"),
    ],
)
def test_the_database_refuses_transfers_outside_their_flow(flows: dict[str, int], constraint: str) -> None:
    fields = {"holdings_value": 0, "cash_value": 0, "value": 0, "complete": True}
    fields |= {"inflow": 0, "outflow": 0, "transfers_in": 0, "transfers_out": 0} | flows
    with refused_by(constraint):
        PortfolioDailyValue.objects.create(portfolio=PortfolioFactory(), date=START, **fields)


@pytest.mark.postgres
def test_postgresql_builds_the_rows_in_one_statement_whatever_the_days_and_assets(book: dict[str, Any]) -> None:
    with CaptureQueriesContext(connection) as queries:
        services.daily_values_refresh(until=END)
    inserts = [q["sql"] for q in queries if f"INSERT INTO {PortfolioDailyValue._meta.db_table}" in q["sql"]]
    assert len(inserts) == 1
    assert inserts[0].lstrip().startswith("WITH targets")


def test_a_new_base_currency_converts_the_whole_table_again(book: dict[str, Any], engine_kind: str) -> None:
    assert_matches_from_scratch(book["eur"])
    portfolio_update(actor=book["actor"], portfolio=book["eur"], base_currency="GBP")
    assert_matches_from_scratch(book["eur"])
