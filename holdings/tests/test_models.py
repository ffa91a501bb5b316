import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from clients.tests.factories import main_portfolio
from holdings.models import Allocation, Asset
from holdings.selectors import client_positions, position
from holdings.tests.factories import AllocationFactory, AssetFactory, BuyFactory, PriceFactory
from ledger.tests.factories import TransactionFactory
from portfolio_site.testing import refused_by

pytestmark = pytest.mark.django_db


def test_database_refuses_two_assets_with_one_ticker_on_one_exchange() -> None:
    Asset.objects.create(ticker="ASML", exchange="XAMS", name="ASML", currency="EUR")
    with refused_by("holdings_asset_ticker_exchange_unique"):
        Asset.objects.create(ticker="ASML", exchange="XAMS", name="ASML again", currency="EUR")
    Asset.objects.create(ticker="ASML", exchange="XNAS", name="ASML ADR", currency="USD")


@pytest.mark.parametrize(("ticker", "exchange"), [("AAPL", "xnas"), ("", "XNAS")], ids=["lower-exchange", "no-ticker"])
def test_database_refuses_a_lower_case_exchange_or_a_blank_ticker_written_past_the_orm(
    ticker: str, exchange: str
) -> None:
    with refused_by("holdings_asset_ticker_upper"), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Asset._meta.db_table} (ticker, name, exchange, currency, asset_type, isin, created_at, "
            "updated_at) VALUES (%s, 'Apple', %s, 'USD', 'equity', '', %s, %s)",
            [ticker, exchange, datetime.datetime.now(datetime.UTC), datetime.datetime.now(datetime.UTC)],
        )


def test_database_refuses_a_lower_case_ticker_written_past_the_orm() -> None:
    # Lower-case letters break both rules on tickers; which one a database reports first is its own choice.
    with refused_by("holdings_asset_ticker_upper", "holdings_asset_ticker_ascii"), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Asset._meta.db_table} (ticker, name, exchange, currency, asset_type, isin, created_at, "
            "updated_at) VALUES ('aapl', 'Apple', 'XNAS', 'USD', 'equity', '', %s, %s)",
            [datetime.datetime.now(datetime.UTC), datetime.datetime.now(datetime.UTC)],
        )


def test_database_refuses_a_duplicate_isin_but_not_two_blank_ones() -> None:
    AssetFactory(isin="US0378331005")
    with refused_by("holdings_asset_isin_unique"):
        AssetFactory(isin="US0378331005")
    AssetFactory(isin="")
    AssetFactory(isin="")


def test_database_refuses_an_unknown_asset_type() -> None:
    with refused_by("holdings_asset_type_valid"):
        AssetFactory(asset_type="tulips")


def test_asset_clean_upper_cases_ticker_and_exchange_and_checks_the_isin() -> None:
    asset = Asset(ticker=" aapl ", exchange="xnas", name="Apple", currency="usd", isin="us0378331005")
    asset.full_clean()
    assert (asset.ticker, asset.exchange, asset.currency, asset.isin) == ("AAPL", "XNAS", "USD", "US0378331005")
    with pytest.raises(ValidationError, match="not a valid ISIN"):
        Asset(ticker="X", name="X", currency="USD", isin="US0378331006").full_clean()


def test_database_refuses_two_prices_for_one_asset_on_one_day() -> None:
    price = PriceFactory()
    with refused_by("holdings_price_asset_date_unique"):
        PriceFactory(asset=price.asset, date=price.date)


def test_database_refuses_a_negative_price() -> None:
    with refused_by("holdings_price_close_not_negative"):
        PriceFactory(close=Decimal("-0.01"))


@pytest.mark.parametrize(
    ("fields", "constraint"),
    [
        ({"quantity": Decimal("0")}, "holdings_allocation_quantity_positive"),
        ({"quantity": Decimal("-1")}, "holdings_allocation_quantity_positive"),
        ({"price": Decimal("-1")}, "holdings_allocation_price_not_negative"),
        ({"fees": Decimal("-1")}, "holdings_allocation_fees_not_negative"),
        ({"taxes": Decimal("-0.0001")}, "holdings_allocation_taxes_not_negative"),
        ({"kind": "gift"}, "holdings_allocation_kind_valid"),
    ],
    ids=["zero-quantity", "negative-quantity", "negative-price", "negative-fees", "negative-taxes", "unknown-kind"],
)
def test_database_refuses_an_invalid_allocation(fields: dict[str, object], constraint: str) -> None:
    with refused_by(constraint):
        AllocationFactory(**fields)


def test_database_refuses_a_buy_without_settlement_and_a_transfer_with_one() -> None:
    with refused_by("holdings_allocation_settled_iff_trade"):
        AllocationFactory(kind=Allocation.Kind.BUY, settlement=None)
    with refused_by("holdings_allocation_settled_iff_trade"):
        AllocationFactory(kind=Allocation.Kind.TRANSFER_IN, settlement=TransactionFactory(kind="buy"))


def test_database_refuses_one_settlement_for_two_allocations() -> None:
    buy = BuyFactory()
    with refused_by("holdings_allocation.settlement_id"):  # the one-to-one field's own UNIQUE
        AllocationFactory(client=buy.client, kind=Allocation.Kind.BUY, settlement=buy.settlement)


def test_position_is_the_signed_sum_of_allocations() -> None:
    buy = BuyFactory(quantity=Decimal("10.5"))
    client, asset = buy.client, buy.asset
    AllocationFactory(client=client, asset=asset, kind="transfer_in", quantity=Decimal("2"))
    AllocationFactory(client=client, asset=asset, kind="transfer_out", quantity=Decimal("0.25"))
    other = AllocationFactory(client=client, kind="transfer_in", quantity=Decimal("1"))
    assert position(portfolio_id=main_portfolio(client).pk, asset_id=asset.pk) == Decimal("12.25")
    assert client_positions(client_id=client.pk) == {asset.pk: Decimal("12.25"), other.asset_id: Decimal("1")}
    assert position(portfolio_id=main_portfolio(client).pk, asset_id=AssetFactory().pk) == Decimal("0")


def test_buy_factory_settlement_agrees_with_the_trade() -> None:
    buy = BuyFactory(quantity=Decimal("3"), price=Decimal("10"), fees=Decimal("1"))
    assert (buy.settlement.client, buy.settlement.amount, buy.settlement.currency) == (
        buy.client,
        Decimal("31"),
        buy.asset.currency,
    )


# A Cyrillic A, a full-width digit, a space, an accented letter, a trailing newline, a comma.
NOT_ASCII_TICKERS = ["\u0410APL", "AAPL\uff11", "AA PL", "\u00c4PL", "AAPL\n", "AA,PL"]


@pytest.mark.parametrize("ticker", NOT_ASCII_TICKERS)
def test_database_refuses_a_ticker_outside_ascii_letters_digits_and_dot_dash_slash(ticker: str) -> None:
    with refused_by("holdings_asset_ticker_ascii"):
        Asset.objects.create(ticker=ticker.upper(), exchange="XNAS", name="Lookalike", currency="USD")


@pytest.mark.parametrize("ticker", [t for t in NOT_ASCII_TICKERS if t == t.strip()])  # clean() strips blanks
def test_validation_refuses_a_ticker_outside_ascii_with_an_error_on_ticker(ticker: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Asset(ticker=ticker, exchange="XNAS", name="Lookalike", currency="USD").full_clean()
    assert list(refused.value.message_dict) == ["ticker"]


@pytest.mark.parametrize("ticker", ["BRK.B", "BTC-USD", "EUR/USD", "7203", "aapl"])
def test_tickers_of_ascii_letters_digits_and_dot_dash_slash_are_accepted(ticker: str) -> None:
    asset = Asset(ticker=ticker, exchange="XNAS", name="Fine", currency="USD")
    asset.full_clean()
    asset.save()
    assert Asset.objects.get().ticker == ticker.upper()


def test_database_refuses_an_asset_currency_that_is_not_three_upper_case_letters() -> None:
    with refused_by("holdings_asset_currency_iso"):
        AssetFactory(currency="US")
    asset = AssetFactory(currency="USD")
    with refused_by("holdings_asset_currency_iso"), connection.cursor() as cursor:  # the ORM would upper-case it
        cursor.execute(f"UPDATE {Asset._meta.db_table} SET currency = %s WHERE id = %s", ["usd", asset.pk])


def test_database_refuses_one_import_key_twice_in_a_portfolio_but_not_in_another() -> None:
    first = AllocationFactory(import_key="row-hash-1")
    with refused_by("holdings_allocation_import_key_unique_per_portfolio"):
        AllocationFactory(portfolio=first.portfolio, import_key="row-hash-1")
    assert AllocationFactory(import_key="row-hash-1").portfolio != first.portfolio


def test_database_refuses_a_counterpart_on_anything_but_an_incoming_transfer() -> None:
    outgoing = AllocationFactory(kind=Allocation.Kind.TRANSFER_OUT)
    with refused_by("holdings_allocation_counterpart_on_transfer_in"):
        AllocationFactory(portfolio=outgoing.portfolio, kind=Allocation.Kind.TRANSFER_OUT, counterpart=outgoing)
    incoming = AllocationFactory(portfolio=outgoing.portfolio, kind=Allocation.Kind.TRANSFER_IN, counterpart=outgoing)
    assert incoming.counterpart == outgoing
