import datetime
import io
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, main_portfolio
from holdings.models import Allocation, Asset, Dividend, FxRate, Price
from holdings.selectors import position
from holdings.tests.factories import AllocationFactory, AssetFactory, FxRateFactory, PriceFactory
from ledger.models import Transaction
from ledger.selectors import cash_available
from ledger.tests.factories import TransactionFactory
from portfolio_site.cache import namespace_version
from portfolio_site.imports import upsert
from portfolio_site.imports.formats import import_permission_check
from portfolio_site.imports.run import CommandLineActor, ImportResult, run_import

pytestmark = pytest.mark.django_db

ASSETS = "ticker,exchange,name,currency,asset_type,isin\n"
PRICES = "ticker,exchange,date,close\n"
ALLOCATIONS = "client,ticker,exchange,kind,quantity,price,fees,date,notes\n"


def run(kind: str, text: str, actor: Any = None, **options: Any) -> ImportResult:
    return run_import(
        kind=kind,
        stream=io.BytesIO(text.encode()),
        file_name=f"{kind}.csv",
        actor=actor or CommandLineActor(),
        **options,
    )


def issues(result: ImportResult) -> list[str]:
    return [str(issue) for issue in result.issues]


def counts(result: ImportResult) -> tuple[int, int, int, int]:
    batch = result.batch
    return batch.rows_created, batch.rows_updated, batch.rows_skipped, batch.rows_rejected


# --- Assets ---------------------------------------------------------------------------------


def test_assets_are_created_with_ticker_and_exchange_upper_cased() -> None:
    result = run(
        "assets",
        ASSETS + "sap,xetr,SAP SE,eur,Equity,de0007164600\nETH,,Ether,USD,crypto,\n",
    )
    assert result.ok, issues(result)
    assert counts(result) == (2, 0, 0, 0)
    assert list(
        Asset.objects.order_by("ticker").values_list("ticker", "exchange", "name", "currency", "asset_type", "isin")
    ) == [
        ("ETH", "", "Ether", "USD", "crypto", ""),
        ("SAP", "XETR", "SAP SE", "EUR", "equity", "DE0007164600"),
    ]


def test_importing_the_same_assets_again_creates_nothing_and_skips_every_row() -> None:
    text = ASSETS + "SAP,XETR,SAP SE,EUR,equity,DE0007164600\nSAP,XNYS,SAP SE (ADR),USD,equity,US8030542042\n"
    assert counts(run("assets", text)) == (2, 0, 0, 0)
    assert counts(run("assets", text)) == (0, 0, 2, 0)


def test_an_asset_whose_fields_changed_counts_as_updated() -> None:
    AssetFactory(ticker="SAP", exchange="XETR", name="SAP AG", currency="EUR", asset_type="equity")
    AssetFactory(ticker="VUSA", exchange="XLON", name="Vanguard S&P 500", currency="GBP", asset_type="etf")
    result = run(
        "assets",
        ASSETS + "SAP,XETR,SAP SE,EUR,equity,DE0007164600\nVUSA,XLON,Vanguard S&P 500,GBP,etf,\n",
    )
    assert result.ok, issues(result)
    assert counts(result) == (0, 1, 1, 0)
    sap = Asset.objects.get(ticker="SAP")
    assert (sap.name, sap.isin) == ("SAP SE", "DE0007164600")


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (",XETR,SAP SE,EUR,equity,", "line 3, ticker: required"),
        ("SAP,XETR,,EUR,equity,", "line 3, name: required"),
        ("SAP,XETR,SAP SE,EURO,equity,", "line 3, currency: 'EURO' is not an ISO 4217 currency code"),
        (
            "SAP,XETR,SAP SE,EUR,share,",
            "line 3, asset_type: 'share' is not one of equity, etf, fund, bond, crypto, commodity, cash, other",
        ),
        (
            "SAP,XETR,SAP SE,EUR,equity,DE0007164601",
            "line 3, isin: DE0007164601 is not a valid ISIN (The number's checksum or check digit is invalid.).",
        ),
        ("SAP,XETR,SAP SE,EUR,equity,DE00071646000", "line 3, isin: longer than 12 characters"),
        ("SAP,XETRAXETRAXETRAXE,SAP SE,EUR,equity,", "line 3, exchange: longer than 16 characters"),
    ],
)
def test_an_invalid_asset_row_is_refused_with_its_line_and_column(row: str, expected: str) -> None:
    result = run("assets", ASSETS + "ETH,,Ether,USD,crypto,\n" + row + "\n")
    assert issues(result) == [expected]
    assert not Asset.objects.exists()


def test_an_asset_repeated_in_the_file_is_refused_naming_the_earlier_line() -> None:
    result = run(
        "assets",
        ASSETS
        + "SAP,XETR,SAP SE,EUR,equity,\nETH,,Ether,USD,crypto,\nsap,xetr,SAP,EUR,equity,\nETH,,Eth,USD,crypto,\n",
    )
    assert issues(result) == [
        "line 4, ticker: SAP on XETR is already on line 2",
        "line 5, ticker: ETH (no exchange) is already on line 3",
    ]


def test_an_isin_is_unique_within_the_file_and_among_stored_assets() -> None:
    AssetFactory(ticker="AAPL", exchange="XNAS", name="Apple Inc.", currency="USD", isin="US0378331005")
    result = run(
        "assets",
        ASSETS + "SAP,XETR,SAP SE,EUR,equity,DE0007164600\nSAP,XFRA,SAP SE,EUR,equity,DE0007164600\n"
        "APC,XETR,Apple,EUR,equity,US0378331005\n",
    )
    assert issues(result) == [
        "line 3, isin: DE0007164600 is already on line 2",
        "line 4, isin: US0378331005 is the ISIN of the asset AAPL on XNAS",
    ]
    own = run("assets", ASSETS + "AAPL,XNAS,Apple Inc.,USD,equity,US0378331005\n")
    assert counts(own) == (0, 0, 1, 0)


def test_the_currency_of_an_asset_with_allocations_cannot_change() -> None:
    held = AssetFactory(ticker="SAP", exchange="XETR", name="SAP SE", currency="EUR")
    AllocationFactory(asset=held)
    AssetFactory(ticker="ETH", exchange="", name="Ether", currency="USD", asset_type="crypto")
    result = run("assets", ASSETS + "ETH,,Ether,EUR,crypto,\nSAP,XETR,SAP SE,USD,equity,\n")
    assert issues(result) == ["line 3, currency: The currency of an asset that has allocations cannot change."]
    ok = run("assets", ASSETS + "ETH,,Ether,EUR,crypto,\n")
    assert counts(ok) == (0, 1, 0, 0)


def test_assets_are_written_in_batches(monkeypatch) -> None:
    # The batches are the upsert engine's (holdings.importers only re-exported the constant for its export).
    monkeypatch.setattr(upsert, "BATCH_ROWS", 2)
    AssetFactory(ticker="T2", exchange="X", name="Two", currency="USD", asset_type="equity", isin="")
    result = run("assets", ASSETS + "".join(f"T{n},X,Asset {n},USD,equity,\n" for n in range(1, 6)))
    assert result.ok, issues(result)
    assert counts(result) == (4, 1, 0, 0)
    assert Asset.objects.count() == 5


def test_an_asset_import_invalidates_the_assets_and_prices_caches(django_capture_on_commit_callbacks) -> None:
    before = namespace_version("assets"), namespace_version("prices")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run("assets", ASSETS + "ETH,,Ether,USD,crypto,\nBTC,,Bitcoin,USD,crypto,\n")
    assert len(callbacks) == 2
    assert (namespace_version("assets"), namespace_version("prices")) != before
    assert all(version not in before for version in (namespace_version("assets"), namespace_version("prices")))


# --- Prices ---------------------------------------------------------------------------------


@pytest.fixture
def sap_listings() -> tuple[Asset, Asset]:
    return (
        AssetFactory(ticker="SAP", exchange="XETR", currency="EUR"),
        AssetFactory(ticker="SAP", exchange="XNYS", currency="USD"),
    )


def test_prices_are_created_for_an_asset_named_by_ticker_alone_or_with_its_exchange(sap_listings) -> None:
    eth = AssetFactory(ticker="ETH", exchange="", currency="USD")
    result = run(
        "prices",
        PRICES + "SAP,XETR,2026-03-02,219.80\nsap,xnys,2026-03-02,238.45\neth,,2026-03-02,2011.4012345678\n",
    )
    assert result.ok, issues(result)
    assert counts(result) == (3, 0, 0, 0)
    xetr, xnys = sap_listings
    day = datetime.date(2026, 3, 2)
    assert Price.objects.get(asset=xetr, date=day).close == Decimal("219.80")
    assert Price.objects.get(asset=xnys, date=day).close == Decimal("238.45")
    assert Price.objects.get(asset=eth, date=day).close == Decimal("2011.4012345678")


def test_importing_the_same_prices_again_creates_nothing_and_skips_every_row(sap_listings) -> None:
    text = PRICES + "SAP,XETR,2026-03-02,219.80\nSAP,XETR,2026-03-03,221.35\n"
    assert counts(run("prices", text)) == (2, 0, 0, 0)
    assert counts(run("prices", text)) == (0, 0, 2, 0)


def test_a_changed_close_counts_as_updated(sap_listings) -> None:
    xetr, _ = sap_listings
    PriceFactory(asset=xetr, date=datetime.date(2026, 3, 2), close=Decimal("219.80"))
    PriceFactory(asset=xetr, date=datetime.date(2026, 3, 3), close=Decimal("221.35"))
    result = run(
        "prices",
        PRICES + "SAP,XETR,2026-03-02,219.8000\nSAP,XETR,2026-03-03,221.40\nSAP,XETR,2026-03-04,223.10\n",
    )
    assert result.ok, issues(result)
    assert counts(result) == (1, 1, 1, 0)
    assert Price.objects.get(asset=xetr, date=datetime.date(2026, 3, 3)).close == Decimal("221.40")


def test_a_ticker_on_several_exchanges_needs_its_exchange(sap_listings) -> None:
    result = run("prices", PRICES + "SAP,,2026-03-02,219.80\n")
    assert issues(result) == [
        "line 2, exchange: the ticker SAP is on several exchanges (XETR, XNYS): name the exchange"
    ]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("MSFT,,2026-03-02,1", "line 3, ticker: no asset with the ticker MSFT"),
        ("SAP,XPAR,2026-03-02,1", "line 3, exchange: no asset SAP on XPAR (it is on XETR, XNYS)"),
        ("SAP,XETR,02/03/2026,1", "line 3, date: '02/03/2026' is not an ISO date (YYYY-MM-DD)"),
        ("SAP,XETR,2026-03-02,-1", "line 3, close: must be at least 0"),
        ("SAP,XETR,2026-03-02,1.5e", "line 3, close: '1.5e' is not a number"),
        ("SAP,XETR,2026-03-02,NaN", "line 3, close: 'NaN' is not a number"),
        ("SAP,XETR,2026-03-02,1.12345678901", "line 3, close: 1.12345678901 has more than 10 decimal places"),
        ("SAP,XETR,2026-03-02,", "line 3, close: required"),
    ],
)
def test_an_invalid_price_row_is_refused_with_its_line_and_column(sap_listings, row: str, expected: str) -> None:
    result = run("prices", PRICES + "SAP,XNYS,2026-03-02,238.45\n" + row + "\n")
    assert issues(result) == [expected]
    assert not Price.objects.exists()


def test_a_price_repeated_in_the_file_is_refused_naming_the_earlier_line(sap_listings) -> None:
    AssetFactory(ticker="ETH", exchange="", currency="USD")
    result = run(
        "prices",
        PRICES + "SAP,XETR,2026-03-02,219.80\nETH,,2026-03-02,2011\nsap,XETR,2026-03-02,219.90\nETH,,2026-03-02,2011\n",
    )
    assert issues(result) == [
        "line 4, date: the price of SAP on XETR on 2026-03-02 is already on line 2",
        "line 5, date: the price of ETH (no exchange) on 2026-03-02 is already on line 3",
    ]
    assert not Price.objects.exists()


def test_skip_invalid_keeps_the_first_price_of_a_repeated_date(sap_listings, tmp_path) -> None:
    rejects = io.StringIO()
    result = run(
        "prices",
        PRICES + "SAP,XETR,2026-03-02,219.80\nSAP,XETR,2026-03-02,219.90\nSAP,XETR,2026-03-03,-1\n",
        skip_invalid=True,
        rejects=rejects,
    )
    assert result.ok
    assert counts(result) == (1, 0, 0, 2)
    assert list(Price.objects.values_list("close", flat=True)) == [Decimal("219.80")]
    assert rejects.getvalue().splitlines() == [
        "line,ticker,exchange,date,close,error",
        "4,SAP,XETR,2026-03-03,-1,close: must be at least 0",  # refused as it is read
        "3,SAP,XETR,2026-03-02,219.9,date: the price of SAP on XETR on 2026-03-02 is already on line 2",
    ]


def test_a_price_import_invalidates_the_prices_cache(sap_listings, django_capture_on_commit_callbacks) -> None:
    before = namespace_version("prices")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run("prices", PRICES + "SAP,XETR,2026-03-02,219.80\nSAP,XETR,2026-03-03,221.35\n")
    assert len(callbacks) == 1
    assert namespace_version("prices") != before


def test_prices_export_as_they_import(sap_listings, tmp_path) -> None:
    xetr, xnys = sap_listings
    eth = AssetFactory(ticker="ETH", exchange="", currency="USD")
    PriceFactory(asset=xnys, date=datetime.date(2026, 3, 2), close=Decimal("238.45"))
    PriceFactory(asset=xetr, date=datetime.date(2026, 3, 3), close=Decimal("221.35"))
    PriceFactory(asset=xetr, date=datetime.date(2026, 3, 2), close=Decimal("219.8"))
    PriceFactory(asset=eth, date=datetime.date(2026, 3, 2), close=Decimal("0.0000000001"))
    path = tmp_path / "prices.csv"
    call_command("export", "prices", str(path), stdout=io.StringIO())
    assert path.read_text().splitlines() == [
        PRICES.strip(),
        "ETH,,2026-03-02,0.0000000001",
        "SAP,XETR,2026-03-02,219.8",
        "SAP,XETR,2026-03-03,221.35",
        "SAP,XNYS,2026-03-02,238.45",
    ]
    before = set(Price.objects.values_list("asset_id", "date", "close"))
    Price.objects.all().delete()
    call_command("import", "prices", str(path), stdout=io.StringIO())
    assert set(Price.objects.values_list("asset_id", "date", "close")) == before


# --- Allocations ----------------------------------------------------------------------------

DAY = "2026-03-03"


@pytest.fixture
def investor(advisor) -> Any:
    client = ClientFactory(email="investor@example.org", name="Ivy Investor", advisor=advisor, base_currency="EUR")
    TransactionFactory(client=client, kind="deposit", amount=Decimal("10000"), currency="EUR")
    return client


@pytest.fixture
def sap() -> Asset:
    return AssetFactory(ticker="SAP", exchange="XETR", currency="EUR")


def test_allocations_are_recorded_and_buys_and_sells_settle_in_cash(investor, sap) -> None:
    result = run(
        "allocations",
        ALLOCATIONS + f"investor@example.org,SAP,XETR,buy,40,221.35,9.90,{DAY},first buy\n"
        f"investor@example.org,sap,,sell,10,225,2.5,2026-03-04,\n"
        f"investor@example.org,SAP,,transfer_in,5,0,,2026-03-04,from old custodian\n",
    )
    assert result.ok, issues(result)
    assert counts(result) == (3, 0, 0, 0)
    buy, sell, transfer = Allocation.objects.order_by("id")
    assert (buy.kind, buy.quantity, buy.price, buy.fees, buy.notes) == (
        "buy",
        Decimal("40"),
        Decimal("221.35"),
        Decimal("9.90"),
        "first buy",
    )
    assert (buy.settlement.kind, buy.settlement.amount, buy.settlement.currency) == ("buy", Decimal("8863.90"), "EUR")
    assert (sell.settlement.kind, sell.settlement.amount) == ("sell", Decimal("2247.50"))
    assert (transfer.settlement, transfer.fees) == (None, Decimal("0"))
    assert position(portfolio_id=main_portfolio(investor).pk, asset_id=sap.pk) == Decimal("35")
    assert cash_available(portfolio_id=main_portfolio(investor).pk, currency="EUR") == Decimal("10000") - Decimal(
        "8863.90"
    ) + Decimal("2247.50")


def test_importing_the_same_allocations_again_creates_nothing_and_skips_every_row(investor, sap) -> None:
    text = ALLOCATIONS + (
        f"investor@example.org,SAP,XETR,buy,1,100,0,{DAY},\n"
        f"investor@example.org,SAP,XETR,buy,1,100,0,{DAY},\n"  # the same trade twice: both are recorded
        f"investor@example.org,SAP,XETR,sell,1,101,0,{DAY},\n"
    )
    assert counts(run("allocations", text)) == (3, 0, 0, 0)
    again = run("allocations", text)
    assert again.ok
    assert counts(again) == (0, 0, 3, 0)
    assert Allocation.objects.count() == 3
    assert Transaction.objects.filter(kind__in=["buy", "sell"]).count() == 3
    grown = run("allocations", text + f"investor@example.org,SAP,XETR,buy,1,100,0,{DAY},\n")
    assert counts(grown) == (1, 0, 3, 0)


def test_a_sell_of_more_than_is_held_is_refused_naming_its_line(investor, sap) -> None:
    result = run(
        "allocations",
        ALLOCATIONS + f"investor@example.org,SAP,XETR,buy,10,100,0,{DAY},\n"
        f"investor@example.org,SAP,XETR,sell,11,100,0,{DAY},\n",
    )
    assert issues(result) == [
        f"line 3, quantity: Not enough units of SAP.XETR in {investor}: Main: the change would leave a position of "
        "-1.0000000000 at the end of 2026-03-03; a sell or transfer out cannot exceed the quantity held that day."
    ]
    assert not Allocation.objects.exists()
    assert not Transaction.objects.filter(kind__in=["buy", "sell"]).exists()


def test_a_trade_the_services_find_invalid_is_refused_naming_its_line_and_column(investor, sap) -> None:
    result = run("allocations", ALLOCATIONS + f"investor@example.org,SAP,XETR,buy,10,0,0,{DAY},\n")
    assert len(issues(result)) == 1
    assert issues(result)[0].startswith("line 2, price: A buy or sell must move cash")
    assert not Allocation.objects.exists()


def test_a_buy_that_would_overdraw_cash_is_refused_naming_its_line(investor, sap) -> None:
    result = run(
        "allocations",
        ALLOCATIONS + f"investor@example.org,SAP,XETR,buy,50,100,0,{DAY},\n"
        f"investor@example.org,SAP,XETR,buy,50,100,0.01,{DAY},\n",
    )
    assert issues(result) == [
        "line 3, quantity: Insufficient cash in Main: the buy settlement of 5000.0100 EUR would leave -0.0100 EUR "
        "at the end of 2026-03-03."
    ]
    assert not Allocation.objects.exists()


def test_the_rows_are_applied_in_date_order_whatever_their_order_in_the_file(investor, sap) -> None:
    result = run(
        "allocations",
        ALLOCATIONS + "investor@example.org,SAP,XETR,sell,10,120,0,2026-03-05,\n"
        "investor@example.org,SAP,XETR,buy,10,100,0,2026-03-04,\n"
        "investor@example.org,SAP,XETR,transfer_out,5,0,0,2026-03-05,\n"
        "investor@example.org,SAP,XETR,transfer_in,5,0,0,2026-03-04,\n",
    )
    assert result.ok, issues(result)
    assert list(Allocation.objects.order_by("id").values_list("kind", flat=True)) == [
        "buy",
        "transfer_in",
        "sell",
        "transfer_out",
    ]
    assert position(portfolio_id=main_portfolio(investor).pk, asset_id=sap.pk) == 0


def test_allocations_written_a_chunk_at_a_time_number_repeats_over_the_whole_file(investor, sap, monkeypatch) -> None:
    from holdings.importers import AllocationFormat

    # Two rows a chunk: the repeats of the first row fall in later chunks, and the second chunk is dated
    # before the first (which on PostgreSQL sends it to the checked path).
    monkeypatch.setattr(AllocationFormat, "chunk_rows", 2)
    text = ALLOCATIONS + (
        "investor@example.org,SAP,XETR,buy,1,100,0,2026-03-05,\n"
        "investor@example.org,SAP,XETR,transfer_in,2,0,0,2026-03-05,\n"
        "investor@example.org,SAP,XETR,buy,1,100,0,2026-03-04,\n"
        "investor@example.org,SAP,XETR,buy,1,100,0,2026-03-05,\n"
        "investor@example.org,SAP,XETR,sell,1,100,0,2026-03-06,\n"
        "investor@example.org,SAP,XETR,buy,1,100,0,2026-03-05,\n"
    )
    result = run("allocations", text)
    assert result.ok, issues(result)
    assert counts(result) == (6, 0, 0, 0)
    keys = sorted(Allocation.objects.filter(date="2026-03-05", kind="buy").values_list("import_key", flat=True))
    assert [key.rsplit(":", 1)[1] for key in keys] == ["1", "2", "3"]
    assert len({key.rsplit(":", 1)[0] for key in keys}) == 1
    assert Transaction.objects.filter(kind__in=["buy", "sell"]).count() == 4 + 1
    assert position(portfolio_id=main_portfolio(investor).pk, asset_id=sap.pk) == 2 + 4 - 1
    assert counts(run("allocations", text)) == (0, 0, 6, 0)


@pytest.mark.postgres
def test_an_allocations_import_leaves_the_foreign_keys_deferred_for_what_follows(investor, sap) -> None:
    from django.db import connection

    result = run("allocations", ALLOCATIONS + f"investor@example.org,SAP,XETR,buy,1,100,0,{DAY},\n")
    assert result.ok, issues(result)
    # The import checks the keys statement by statement; the rest of the transaction gets Django's deferral back:
    # a row may name a settlement written later in the same transaction.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO holdings_allocation (client_id, portfolio_id, asset_id, kind, quantity, price, fees, taxes, "
            "date, notes, settlement_id, created_at, updated_at) SELECT client_id, portfolio_id, asset_id, kind, "
            "quantity, price, fees, taxes, date, notes, (SELECT MAX(id) + 1000 FROM ledger_transaction), created_at, "
            "updated_at "
            "FROM holdings_allocation"
        )
        assert cursor.rowcount == 1
        cursor.execute("DELETE FROM holdings_allocation WHERE settlement_id NOT IN (SELECT id FROM ledger_transaction)")


def test_only_the_first_refusal_is_reported_without_skip_invalid(investor, sap) -> None:
    result = run(
        "allocations",
        ALLOCATIONS + f"investor@example.org,SAP,XETR,sell,1,100,0,{DAY},\n"
        f"investor@example.org,SAP,XETR,sell,2,100,0,{DAY},\n",
    )
    assert [issue.line for issue in result.issues] == [2]
    assert counts(result) == (0, 0, 0, 1)


def test_skip_invalid_records_the_good_rows_and_lists_the_refused_ones(investor, sap) -> None:
    rejects = io.StringIO()
    result = run(
        "allocations",
        ALLOCATIONS + f"investor@example.org,SAP,XETR,buy,60,100,0,{DAY},\n"  # 6000 of 10000
        f"investor@example.org,SAP,XETR,buy,50,100,0,{DAY},\n"  # 5000: more than the 4000 left
        f"investor@example.org,SAP,XETR,sell,70,100,0,2026-03-04,\n"  # more than the 60 held
        f"investor@example.org,SAP,XETR,sell,20,110,0,2026-03-04,\n"
        f"investor@example.org,MSFT,,buy,1,1,0,{DAY},\n",
        skip_invalid=True,
        rejects=rejects,
    )
    assert result.ok
    assert counts(result) == (2, 0, 0, 3)
    assert position(portfolio_id=main_portfolio(investor).pk, asset_id=sap.pk) == Decimal("40")
    assert cash_available(portfolio_id=main_portfolio(investor).pk, currency="EUR") == Decimal("6200")
    assert rejects.getvalue().splitlines() == [
        "line,client,ticker,exchange,kind,quantity,price,fees,taxes,date,notes,portfolio,custodian,account_number,error",
        "6,investor@example.org,MSFT,,buy,1,1,0,,2026-03-03,,,,,ticker: no asset with the ticker MSFT",
        "3,investor@example.org,SAP,XETR,buy,50,100,0,0,2026-03-03,,Main,,,quantity: Insufficient cash in Main: the "
        "buy settlement of 5000.0000 EUR would leave -1000.0000 EUR at the end of 2026-03-03.",
        f"4,investor@example.org,SAP,XETR,sell,70,100,0,0,2026-03-04,,Main,,,quantity: Not enough units of SAP.XETR "
        f"in {investor}: Main: the change would leave a position of -10.0000000000 at the end of 2026-03-04; a sell "
        "or transfer out cannot exceed the quantity held that day.",
    ]
    again = run("allocations", ALLOCATIONS + f"investor@example.org,SAP,XETR,buy,60,100,0,{DAY},\n")
    assert counts(again) == (0, 0, 1, 0)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            f"stranger@example.org,SAP,XETR,buy,1,1,0,{DAY},",
            "line 3, client: no client with the email stranger@example.org (or not one you may see)",
        ),
        (f"investor@example.org,MSFT,,buy,1,1,0,{DAY},", "line 3, ticker: no asset with the ticker MSFT"),
        (
            f"investor@example.org,SAP,XNYS,buy,1,1,0,{DAY},",
            "line 3, exchange: no asset SAP on XNYS (it is on XETR)",
        ),
        (
            f"investor@example.org,SAP,XETR,swap,1,1,0,{DAY},",
            "line 3, kind: 'swap' is not one of buy, sell, transfer_in, transfer_out",
        ),
        (f"investor@example.org,SAP,XETR,buy,0,1,0,{DAY},", "line 3, quantity: must be greater than 0"),
        (f"investor@example.org,SAP,XETR,buy,-1,1,0,{DAY},", "line 3, quantity: must be greater than 0"),
        (f"investor@example.org,SAP,XETR,buy,1,-1,0,{DAY},", "line 3, price: must be at least 0"),
        (f"investor@example.org,SAP,XETR,buy,1,1,-1,{DAY},", "line 3, fees: must be at least 0"),
        (
            f"investor@example.org,SAP,XETR,buy,1,1,0.00001,{DAY},",
            "line 3, fees: 0.00001 has more than 4 decimal places",
        ),
        (
            "investor@example.org,SAP,XETR,buy,1,1,0,2026-02-30,",
            "line 3, date: '2026-02-30' is not an ISO date (YYYY-MM-DD)",
        ),
        (
            f"investor@example.org,SAP,XETR,sell,1,0,0,{DAY},",
            "line 3, price: A buy or sell must move cash (quantity x price, fees and taxes included, must be "
            "positive); use transfer_in or transfer_out to move securities without cash.",
        ),
    ],
)
def test_an_invalid_allocation_row_is_refused_with_its_line_and_column(investor, sap, row: str, expected: str) -> None:
    result = run("allocations", ALLOCATIONS + f"investor@example.org,SAP,XETR,buy,1,1,0,{DAY},\n" + row + "\n")
    assert issues(result) == [expected]
    assert not Allocation.objects.exists()


def test_an_allocation_needs_the_exchange_of_a_ticker_listed_twice(investor, sap) -> None:
    AssetFactory(ticker="SAP", exchange="XNYS", currency="USD")
    result = run("allocations", ALLOCATIONS + f"investor@example.org,SAP,,buy,1,1,0,{DAY},\n")
    assert issues(result) == [
        "line 2, exchange: the ticker SAP is on several exchanges (XETR, XNYS): name the exchange"
    ]


def test_an_advisor_imports_allocations_for_their_own_clients_only(advisor, other_advisor, investor, sap) -> None:
    theirs = ClientFactory(email="theirs@example.org", advisor=other_advisor)
    TransactionFactory(client=theirs, kind="deposit", amount=Decimal("1000"), currency="EUR")
    text = ALLOCATIONS + f"investor@example.org,SAP,XETR,buy,1,100,0,{DAY},\n"
    refused = run("allocations", text + f"theirs@example.org,SAP,XETR,buy,1,100,0,{DAY},\n", actor=advisor)
    assert issues(refused) == ["line 3, client: no client with the email theirs@example.org (or not one you may see)"]
    result = run("allocations", text, actor=advisor)
    assert result.ok, issues(result)
    allocation = Allocation.objects.get()
    assert (allocation.client, allocation.settlement.created_by) == (investor, advisor)


def test_a_dry_run_of_allocations_checks_cash_and_writes_nothing(investor, sap) -> None:
    result = run(
        "allocations",
        ALLOCATIONS + f"investor@example.org,SAP,XETR,buy,1,100,0,{DAY},\n",
        dry_run=True,
    )
    assert result.ok
    assert counts(result) == (1, 0, 0, 0)
    assert not Allocation.objects.exists()
    refused = run(
        "allocations",
        ALLOCATIONS + f"investor@example.org,SAP,XETR,buy,1000,100,0,{DAY},\n",
        dry_run=True,
    )
    assert [issue.line for issue in refused.issues] == [2]


def test_many_allocations_are_replayed_a_page_at_a_time(investor, sap, monkeypatch) -> None:
    from holdings import importers

    monkeypatch.setattr(importers, "PAGE_ROWS", 3)
    rows = "".join(
        f"investor@example.org,SAP,XETR,{'sell' if n % 2 else 'buy'},1,100,0,2026-03-{10 - n // 2:02d},\n"
        for n in range(8)
    )
    result = run("allocations", ALLOCATIONS + rows)
    assert result.ok, issues(result)
    assert counts(result) == (8, 0, 0, 0)
    assert position(portfolio_id=main_portfolio(investor).pk, asset_id=sap.pk) == 0


def test_allocations_export_as_they_import(investor, sap, tmp_path) -> None:
    run(
        "allocations",
        ALLOCATIONS + f'investor@example.org,SAP,XETR,buy,40,221.35,9.9,{DAY},"note, with comma"\n'
        f"investor@example.org,SAP,XETR,transfer_out,0.0000000001,0,0,2026-03-04,\n",
    )
    path = tmp_path / "allocations.csv"
    call_command("export", "allocations", str(path), stdout=io.StringIO())
    assert path.read_text().splitlines() == [
        ALLOCATIONS.strip().replace(",fees,", ",fees,taxes,") + ",portfolio,custodian,account_number",
        'investor@example.org,SAP,XETR,buy,40,221.35,9.9,0,2026-03-03,"note, with comma",Main,,',
        "investor@example.org,SAP,XETR,transfer_out,0.0000000001,0,0,0,2026-03-04,,Main,,",
    ]


def test_an_asset_row_with_a_non_ascii_ticker_is_refused_with_its_line_and_column() -> None:
    result = run("assets", ASSETS + "SAP,XETR,SAP SE,EUR,equity,\n\u0410APL,XNAS,Lookalike,USD,equity,\n")

    assert issues(result) == ["line 3, ticker: A ticker holds only ASCII letters, digits, '.', '-' and '/'."]
    assert not Asset.objects.exists()


# --- FX rates -------------------------------------------------------------------------------


FX = "base,quote,date,rate\n"


def test_fx_rates_are_created_with_their_currencies_upper_cased() -> None:
    result = run("fx", FX + "eur,usd,2026-03-02,1.0812\nEUR,GBP,2026-03-02,0.8553\n")
    assert result.ok, issues(result)
    assert counts(result) == (2, 0, 0, 0)
    assert set(FxRate.objects.values_list("base", "quote", "rate")) == {
        ("EUR", "USD", Decimal("1.0812")),
        ("EUR", "GBP", Decimal("0.8553")),
    }
    assert set(FxRate.objects.values_list("import_batch", flat=True)) == {result.batch.pk}


def test_importing_the_same_rates_again_skips_them_and_a_changed_rate_counts_as_updated() -> None:
    run("fx", FX + "EUR,USD,2026-03-02,1.0812\nEUR,USD,2026-03-03,1.0795\n")
    result = run("fx", FX + "EUR,USD,2026-03-02,1.0812\nEUR,USD,2026-03-03,1.08\n")
    assert counts(result) == (0, 1, 1, 0)
    assert FxRate.objects.get(date=datetime.date(2026, 3, 3)).rate == Decimal("1.08")


def test_an_fx_import_marks_every_portfolio_changed_from_the_earliest_new_or_changed_day() -> None:
    FxRateFactory(base="EUR", quote="USD", date=datetime.date(2026, 3, 1), rate=Decimal("1.07"))
    ClientFactory.create_batch(2)
    Portfolio.objects.update(history_changed_from=None)
    # The 1 March row is unchanged: it does not move anyone's history.
    run("fx", FX + "EUR,USD,2026-03-01,1.07\nEUR,USD,2026-03-04,1.0841\nEUR,USD,2026-03-03,1.0795\n")
    assert set(Portfolio.objects.values_list("history_changed_from", flat=True)) == {datetime.date(2026, 3, 3)}


def test_an_fx_import_that_changes_nothing_marks_no_portfolio() -> None:
    FxRateFactory(base="EUR", quote="USD", date=datetime.date(2026, 3, 1), rate=Decimal("1.07"))
    ClientFactory()
    Portfolio.objects.update(history_changed_from=None)
    run("fx", FX + "EUR,USD,2026-03-01,1.0700\n")
    assert set(Portfolio.objects.values_list("history_changed_from", flat=True)) == {None}


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("EUR,EUR,2026-03-02,1", "line 2, quote: "),
        ("EUR,USD,2026-03-02,0", "line 2, rate: "),
        ("EUR,USD,2026-03-02,-1.2", "line 2, rate: "),
        ("EURO,USD,2026-03-02,1.1", "line 2, base: "),
        ("EUR,USD,02/03/2026,1.1", "line 2, date: "),
    ],
)
def test_an_invalid_fx_row_is_refused_with_its_line_and_column(row: str, expected: str) -> None:
    result = run("fx", FX + row + "\n")
    assert not result.ok
    assert issues(result)[0].startswith(expected)
    assert not FxRate.objects.exists()


def test_a_rate_repeated_in_the_file_is_refused_naming_the_earlier_line() -> None:
    result = run("fx", FX + "EUR,USD,2026-03-02,1.08\nEUR,GBP,2026-03-02,0.85\neur,usd,2026-03-02,1.09\n")
    assert issues(result) == ["line 4, date: the EUR/USD rate of 2026-03-02 is already on line 2"]
    assert not FxRate.objects.exists()


def test_importing_fx_rates_needs_the_permissions_to_add_and_change_them(advisor, operations) -> None:
    import_permission_check(actor=operations, kind="fx")
    with pytest.raises(PermissionDenied) as refused:
        import_permission_check(actor=advisor, kind="fx")
    assert "holdings.add_fxrate, holdings.change_fxrate" in str(refused.value)


def test_fx_rates_export_as_they_import(tmp_path) -> None:
    FxRateFactory(base="EUR", quote="USD", date=datetime.date(2026, 3, 2), rate=Decimal("1.0812"))
    FxRateFactory(base="EUR", quote="GBP", date=datetime.date(2026, 3, 2), rate=Decimal("0.0000000001"))
    out = io.StringIO()
    call_command("export", "fx", stdout=out)
    assert out.getvalue().splitlines() == [
        "base,quote,date,rate",
        "EUR,GBP,2026-03-02,0.0000000001",
        "EUR,USD,2026-03-02,1.0812",
    ]


def test_a_trade_s_taxes_column_is_settled_with_it_and_a_file_without_it_still_imports(investor, sap) -> None:
    with_taxes = "client,ticker,exchange,kind,quantity,price,fees,taxes,date,notes\n"
    result = run(
        "allocations",
        with_taxes + f"investor@example.org,SAP,XETR,buy,10,100,5,2.5,{DAY},\n"
        f"investor@example.org,SAP,XETR,sell,4,110,3,1.32,2026-03-04,\n",
    )
    assert result.ok, issues(result)
    buy, sell = Allocation.objects.order_by("id")
    assert (buy.taxes, buy.settlement.amount) == (Decimal("2.5"), Decimal("1007.5"))
    assert (sell.taxes, sell.settlement.amount) == (Decimal("1.32"), Decimal("435.68"))
    # Without the column (a file from before taxes), the rows settle without taxes.
    again = run("allocations", ALLOCATIONS + f"investor@example.org,SAP,XETR,buy,1,100,0,{DAY},\n")
    assert again.ok, issues(again)
    assert Allocation.objects.order_by("id").last().taxes == Decimal("0")


@pytest.mark.parametrize("imported_before", [False, True], ids=["direct path", "checked path"])
def test_an_imported_trade_s_taxes_are_recorded_and_settled_with_it_whichever_way_it_is_written(
    investor, sap, monkeypatch, imported_before
) -> None:
    from django.db import connection

    from holdings.allocations_bulk import BulkAllocations

    # On PostgreSQL a fresh portfolio's rows are copied straight in; one with imported rows takes the checked path.
    paths: list[str] = []
    direct, checked = BulkAllocations._write_directly, BulkAllocations._write_checked
    monkeypatch.setattr(BulkAllocations, "_write_directly", lambda self, *a: paths.append("direct") or direct(self, *a))
    monkeypatch.setattr(
        BulkAllocations, "_write_checked", lambda self, *a: paths.append("checked") or checked(self, *a)
    )
    if imported_before:
        assert run("allocations", ALLOCATIONS + "investor@example.org,SAP,XETR,transfer_in,1,0,0,2026-03-02,\n").ok
        paths.clear()
    portfolio = main_portfolio(investor)
    cash_before = cash_available(portfolio_id=portfolio.pk, currency="EUR")
    result = run(
        "allocations",
        "client,ticker,exchange,kind,quantity,price,fees,taxes,date,notes\n"
        f"investor@example.org,SAP,XETR,buy,10,100,5,2.5,{DAY},\n"
        "investor@example.org,SAP,XETR,sell,4,110,3,1.32,2026-03-04,\n",
    )
    assert result.ok, issues(result)
    if connection.vendor == "postgresql":
        assert paths == ["checked" if imported_before else "direct"]
    buy, sell = Allocation.objects.filter(kind__in=["buy", "sell"]).order_by("id")
    # buy: q·p + fees + taxes out; sell: q·p - fees - taxes in, as allocation_create settles them.
    assert (buy.taxes, buy.settlement.kind, buy.settlement.amount) == (Decimal("2.5"), "buy", Decimal("1007.5"))
    assert (sell.taxes, sell.settlement.kind, sell.settlement.amount) == (Decimal("1.32"), "sell", Decimal("435.68"))
    assert cash_available(portfolio_id=portfolio.pk, currency="EUR") == cash_before - Decimal("1007.5") + Decimal(
        "435.68"
    )


def test_a_negative_tax_is_refused_naming_its_line_and_column(investor, sap) -> None:
    with_taxes = "client,ticker,exchange,kind,quantity,price,fees,taxes,date,notes\n"
    result = run("allocations", with_taxes + f"investor@example.org,SAP,XETR,buy,10,100,5,-1,{DAY},\n")
    assert issues(result) == ["line 2, taxes: must be at least 0"]
    assert not Allocation.objects.exists()


# --- Dividends ----------------------------------------------------------------------------------------------------

DIVIDENDS = "client,ticker,exchange,ex_date,pay_date,gross,amount_per_unit,withholding_tax,currency,notes\n"


@pytest.fixture
def sap_holder(investor, sap) -> Any:
    AllocationFactory(client=investor, asset=sap, quantity=Decimal("40"), date=datetime.date(2026, 3, 1))
    return investor


def test_dividends_are_recorded_with_their_cash_and_importing_again_skips_them(sap_holder, sap) -> None:
    text = DIVIDENDS + (
        "investor@example.org,SAP,XETR,2026-05-04,2026-05-08,88,,23.21,,AGM 2026\n"
        "investor@example.org,SAP,,2026-06-01,2026-06-03,,0.05,,usd,\n"
    )
    result = run("dividends", text)
    assert result.ok, issues(result)
    assert counts(result) == (2, 0, 0, 0)
    first, second = Dividend.objects.order_by("ex_date")
    assert (first.gross, first.withholding_tax, first.cash.amount, first.cash.currency) == (
        Decimal("88"),
        Decimal("23.21"),
        Decimal("64.79"),
        "EUR",
    )
    assert (second.gross, second.currency, second.cash.amount) == (Decimal("2.0000"), "USD", Decimal("2.0000"))
    assert counts(run("dividends", text)) == (0, 0, 2, 0)
    assert Transaction.objects.filter(kind="dividend").count() == 2


def test_a_dividend_row_with_other_details_changes_the_dividend_and_reposts_its_cash(sap_holder, sap) -> None:
    run("dividends", DIVIDENDS + "investor@example.org,SAP,XETR,2026-05-04,2026-05-08,88,,0,,\n")
    result = run("dividends", DIVIDENDS + "investor@example.org,SAP,XETR,2026-05-04,2026-05-08,88,,13.2,,\n")
    assert result.ok, issues(result)
    assert counts(result) == (0, 1, 0, 0)
    dividend = Dividend.objects.get()
    assert dividend.cash.amount == Decimal("74.8")
    assert cash_available(portfolio_id=main_portfolio(sap_holder).pk, currency="EUR") == Decimal("10074.8")


def test_a_dividend_on_units_not_held_before_the_ex_date_is_refused_naming_its_line(sap_holder, sap) -> None:
    result = run(
        "dividends",
        DIVIDENDS + "investor@example.org,SAP,XETR,2026-05-04,2026-05-08,88,,,,\n"
        "investor@example.org,SAP,XETR,2026-03-01,2026-03-08,10,,,,\n",
    )
    assert issues(result) == [
        f"line 3, ex_date: Main held no units of {sap} at the close before the ex-date (2026-02-28): it is not "
        "entitled to this dividend."
    ]
    assert not Dividend.objects.exists()
    assert not Transaction.objects.filter(kind="dividend").exists()


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("investor@example.org,SAP,XETR,2026-05-04,2026-05-08,,,,,", "line 2, gross: give either gross or"),
        ("investor@example.org,SAP,XETR,2026-05-04,2026-05-08,5,1,,,", "line 2, gross: give either gross or"),
        ("investor@example.org,SAP,XETR,2026-05-04,2026-05-01,5,,,,", "line 2, row: The pay date cannot be before"),
        ("investor@example.org,SAP,XETR,2026-05-04,2026-05-08,5,,5,,", "line 2, row: The withholding tax must be"),
        ("investor@example.org,SAP,XETR,2026-05-04,2026-05-08,5,,-1,,", "line 2, withholding_tax: must be at least"),
    ],
)
def test_an_invalid_dividend_row_is_refused_with_its_line_and_column(sap_holder, sap, row: str, expected: str) -> None:
    result = run("dividends", DIVIDENDS + row + "\n")
    assert len(issues(result)) == 1
    assert issues(result)[0].startswith(expected), issues(result)
    assert not Dividend.objects.exists()


def test_the_same_dividend_twice_in_a_file_is_refused_naming_the_first_line(sap_holder, sap) -> None:
    row = "investor@example.org,SAP,XETR,2026-05-04,2026-05-08,5,,,,\n"
    result = run("dividends", DIVIDENDS + row + row)
    assert issues(result) == ["line 3, ex_date: line 2 names the same dividend (portfolio, asset, ex-date)"]
