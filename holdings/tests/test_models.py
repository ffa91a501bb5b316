import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from clients.tests.factories import main_portfolio
from holdings.models import Allocation, Asset
from holdings.selectors import client_positions, position
from holdings.tests.factories import AllocationFactory, AssetFactory, BuyFactory, PriceFactory
from ledger.tests.factories import TransactionFactory

pytestmark = pytest.mark.django_db


def refused(factory: type, **fields: object) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        factory(**fields)


def test_database_refuses_two_assets_with_one_ticker_on_one_exchange() -> None:
    Asset.objects.create(ticker="ASML", exchange="XAMS", name="ASML", currency="EUR")
    with pytest.raises(IntegrityError), transaction.atomic():
        Asset.objects.create(ticker="ASML", exchange="XAMS", name="ASML again", currency="EUR")
    Asset.objects.create(ticker="ASML", exchange="XNAS", name="ASML ADR", currency="USD")


def test_database_refuses_a_lower_case_ticker() -> None:
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Asset._meta.db_table} (ticker, name, exchange, currency, asset_type, isin, created_at, "
            "updated_at) VALUES ('aapl', 'Apple', 'XNAS', 'USD', 'equity', '', %s, %s)",
            [datetime.datetime.now(datetime.UTC), datetime.datetime.now(datetime.UTC)],
        )


def test_database_refuses_a_duplicate_isin_but_not_two_blank_ones() -> None:
    AssetFactory(isin="US0378331005")
    refused(AssetFactory, isin="US0378331005")
    AssetFactory(isin="")
    AssetFactory(isin="")


def test_database_refuses_an_unknown_asset_type() -> None:
    refused(AssetFactory, asset_type="tulips")


def test_asset_clean_upper_cases_ticker_and_exchange_and_checks_the_isin() -> None:
    asset = Asset(ticker=" aapl ", exchange="xnas", name="Apple", currency="usd", isin="us0378331005")
    asset.full_clean()
    assert (asset.ticker, asset.exchange, asset.currency, asset.isin) == ("AAPL", "XNAS", "USD", "US0378331005")
    with pytest.raises(ValidationError, match="not a valid ISIN"):
        Asset(ticker="X", name="X", currency="USD", isin="US0378331006").full_clean()


def test_database_refuses_two_prices_for_one_asset_on_one_day() -> None:
    price = PriceFactory()
    refused(PriceFactory, asset=price.asset, date=price.date)


def test_database_refuses_a_negative_price() -> None:
    refused(PriceFactory, close=Decimal("-0.01"))


@pytest.mark.parametrize(
    "fields",
    [
        {"quantity": Decimal("0")},
        {"quantity": Decimal("-1")},
        {"price": Decimal("-1")},
        {"fees": Decimal("-1")},
        {"kind": "gift"},
    ],
    ids=["zero-quantity", "negative-quantity", "negative-price", "negative-fees", "unknown-kind"],
)
def test_database_refuses_an_invalid_allocation(fields: dict[str, object]) -> None:
    refused(AllocationFactory, **fields)


def test_database_refuses_a_buy_without_settlement_and_a_transfer_with_one() -> None:
    refused(AllocationFactory, kind=Allocation.Kind.BUY, settlement=None)
    refused(AllocationFactory, kind=Allocation.Kind.TRANSFER_IN, settlement=TransactionFactory(kind="buy"))


def test_database_refuses_one_settlement_for_two_allocations() -> None:
    buy = BuyFactory()
    refused(AllocationFactory, client=buy.client, kind=Allocation.Kind.BUY, settlement=buy.settlement)


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
    with pytest.raises(IntegrityError), transaction.atomic():
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
