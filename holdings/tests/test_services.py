import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, main_portfolio
from holdings import services
from holdings.models import Allocation, FxRate
from holdings.selectors import client_positions, position
from holdings.tests.factories import AllocationFactory, AssetFactory, FxRateFactory
from ledger.models import Transaction
from ledger.selectors import cash_available
from ledger.tests.factories import TransactionFactory
from portfolio_site.cache import namespace_version
from portfolio_site.errors import ConflictError

pytestmark = pytest.mark.django_db
DAY = datetime.date(2026, 5, 4)


@pytest.fixture
def client_with_cash() -> Any:
    client = ClientFactory()
    TransactionFactory(client=client, kind="deposit", amount=Decimal("10000"), currency="USD")
    return client


@pytest.fixture
def asset() -> Any:
    return AssetFactory(currency="USD")


def trade(
    actor: Any, client: Any, asset: Any, kind: str, quantity: str, price: str = "100", fees: str = "0"
) -> Allocation:
    return services.allocation_create(
        actor=actor,
        portfolio=main_portfolio(client),
        asset=asset,
        kind=kind,
        quantity=Decimal(quantity),
        price=Decimal(price),
        fees=Decimal(fees),
        date=DAY,
    )


def test_buy_posts_its_settlement_for_quantity_times_price_plus_fees(operations, client_with_cash, asset) -> None:
    buy = trade(operations, client_with_cash, asset, "buy", "12.5", "80.1234", "9.99")
    assert (buy.settlement.kind, buy.settlement.amount, buy.settlement.currency, buy.settlement.date) == (
        "buy",
        Decimal("1011.5325"),  # 12.5 x 80.1234 = 1001.5425, + 9.99
        "USD",
        DAY,
    )
    assert cash_available(portfolio_id=main_portfolio(client_with_cash).pk, currency="USD") == Decimal("8988.4675")


def test_settlement_amount_rounds_half_even_to_the_ledger_precision() -> None:
    amount = services.settlement_amount(kind="buy", quantity=Decimal("1"), price=Decimal("0.00005"), fees=Decimal("0"))
    assert amount == Decimal("0.0000")
    amount = services.settlement_amount(kind="buy", quantity=Decimal("3"), price=Decimal("0.00005"), fees=Decimal("0"))
    assert amount == Decimal("0.0002")


def test_sell_posts_proceeds_less_fees(operations, client_with_cash, asset) -> None:
    trade(operations, client_with_cash, asset, "buy", "10")
    sell = trade(operations, client_with_cash, asset, "sell", "4", "110", "5")
    assert (sell.settlement.kind, sell.settlement.amount) == ("sell", Decimal("435.0000"))
    assert position(portfolio_id=main_portfolio(client_with_cash).pk, asset_id=asset.pk) == Decimal("6")


def test_transfers_move_securities_without_cash(operations, asset) -> None:
    client = ClientFactory()
    transfer = trade(operations, client, asset, "transfer_in", "5", "0")
    assert transfer.settlement is None
    assert Transaction.objects.count() == 0
    trade(operations, client, asset, "transfer_out", "5", "0")
    assert position(portfolio_id=main_portfolio(client).pk, asset_id=asset.pk) == Decimal("0")


def test_buy_larger_than_cash_is_refused_and_writes_nothing(operations, client_with_cash, asset) -> None:
    with pytest.raises(ConflictError, match="Insufficient cash"):
        trade(operations, client_with_cash, asset, "buy", "101")
    assert Allocation.objects.count() == 0
    assert Transaction.objects.filter(kind="buy").count() == 0


def test_buy_is_paid_in_the_asset_currency_not_another(operations, asset) -> None:
    client = ClientFactory()
    TransactionFactory(client=client, amount=Decimal("10000"), currency="EUR")
    with pytest.raises(ConflictError):
        trade(operations, client, asset, "buy", "1")


def test_selling_more_than_held_is_refused(operations, client_with_cash, asset) -> None:
    trade(operations, client_with_cash, asset, "buy", "2")
    with pytest.raises(ConflictError, match="Not enough units"):
        trade(operations, client_with_cash, asset, "sell", "2.0000000001")
    with pytest.raises(ConflictError):
        trade(operations, client_with_cash, asset, "transfer_out", "3", "0")
    assert Allocation.objects.count() == 1
    assert Transaction.objects.filter(kind="sell").count() == 0


def test_a_trade_that_moves_no_cash_is_refused(operations, client_with_cash, asset) -> None:
    with pytest.raises(ValidationError, match="transfer_in"):
        trade(operations, client_with_cash, asset, "buy", "1", "0")
    trade(operations, client_with_cash, asset, "buy", "1")
    with pytest.raises(ValidationError):
        trade(operations, client_with_cash, asset, "sell", "1", "1", "1")


def test_changing_a_trade_reverses_its_settlement_and_posts_a_new_one(operations, client_with_cash, asset) -> None:
    buy = trade(operations, client_with_cash, asset, "buy", "10")
    old_settlement = buy.settlement
    services.allocation_update(actor=operations, allocation=buy, quantity=Decimal("20"))
    buy.refresh_from_db()
    assert buy.settlement != old_settlement
    assert buy.settlement.amount == Decimal("2000")
    assert Transaction.objects.filter(reverses=old_settlement).exists()
    old_settlement.refresh_from_db()
    assert old_settlement.amount == Decimal("1000")  # the ledger is never edited
    assert cash_available(portfolio_id=main_portfolio(client_with_cash).pk, currency="USD") == Decimal("8000")


def test_changing_only_the_notes_leaves_the_ledger_alone(operations, client_with_cash, asset) -> None:
    buy = trade(operations, client_with_cash, asset, "buy", "10")
    before = Transaction.objects.count()
    services.allocation_update(actor=operations, allocation=buy, notes="Booked by phone")
    assert Transaction.objects.count() == before


def test_raising_a_sell_price_when_its_proceeds_were_spent_is_allowed(operations, client_with_cash, asset) -> None:
    trade(operations, client_with_cash, asset, "buy", "10")
    sell = trade(operations, client_with_cash, asset, "sell", "10", "100")
    balance = cash_available(portfolio_id=main_portfolio(client_with_cash).pk, currency="USD")
    TransactionFactory(client=client_with_cash, kind="withdrawal", amount=balance, currency="USD")
    # Reversing the old sell alone would overdraw; posting the new, larger sell first keeps cash >= 0.
    services.allocation_update(actor=operations, allocation=sell, price=Decimal("110"))
    assert cash_available(portfolio_id=main_portfolio(client_with_cash).pk, currency="USD") == Decimal("100")


def test_lowering_a_buy_below_what_was_sold_since_is_refused(operations, client_with_cash, asset) -> None:
    buy = trade(operations, client_with_cash, asset, "buy", "10")
    trade(operations, client_with_cash, asset, "sell", "8")
    with pytest.raises(ConflictError, match="Not enough units"):
        services.allocation_update(actor=operations, allocation=buy, quantity=Decimal("5"))
    buy.refresh_from_db()
    assert buy.quantity == Decimal("10")


def test_turning_a_buy_into_a_transfer_reverses_its_settlement(operations, client_with_cash, asset) -> None:
    buy = trade(operations, client_with_cash, asset, "buy", "10")
    services.allocation_update(actor=operations, allocation=buy, kind="transfer_in")
    buy.refresh_from_db()
    assert buy.settlement is None
    assert cash_available(portfolio_id=main_portfolio(client_with_cash).pk, currency="USD") == Decimal("10000")


def test_deleting_a_trade_reverses_its_settlement(operations, client_with_cash, asset) -> None:
    buy = trade(operations, client_with_cash, asset, "buy", "10")
    settlement = buy.settlement
    services.allocation_delete(actor=operations, allocation=buy)
    assert not Allocation.objects.exists()
    assert Transaction.objects.filter(reverses=settlement).exists()
    assert cash_available(portfolio_id=main_portfolio(client_with_cash).pk, currency="USD") == Decimal("10000")


def test_deleting_a_buy_whose_units_were_sold_is_refused(operations, client_with_cash, asset) -> None:
    buy = trade(operations, client_with_cash, asset, "buy", "10")
    trade(operations, client_with_cash, asset, "sell", "10")
    with pytest.raises(ConflictError):
        services.allocation_delete(actor=operations, allocation=buy)
    assert Allocation.objects.filter(pk=buy.pk).exists()


def test_advisor_cannot_trade_for_or_move_a_trade_to_a_client_they_do_not_advise(advisor, asset) -> None:
    own = ClientFactory(advisor=advisor)
    stranger = ClientFactory()
    with pytest.raises(PermissionDenied):
        trade(advisor, stranger, asset, "transfer_in", "1", "0")
    transfer = trade(advisor, own, asset, "transfer_in", "1", "0")
    with pytest.raises(PermissionDenied):
        services.allocation_update(actor=advisor, allocation=transfer, portfolio=main_portfolio(stranger))


def test_asset_currency_cannot_change_once_allocations_use_it(operations, asset) -> None:
    AllocationFactory(asset=asset)
    with pytest.raises(ConflictError):
        services.asset_update(asset=asset, currency="EUR")
    services.asset_update(asset=asset, name="Renamed")


def test_asset_create_normalises_and_validates(operations) -> None:
    asset = services.asset_create(ticker="vwrl", exchange="xams", name="Vanguard", currency="eur", asset_type="etf")
    assert (asset.ticker, asset.exchange, asset.currency) == ("VWRL", "XAMS", "EUR")
    with pytest.raises(ValidationError):
        services.asset_create(ticker="VWRL", exchange="XAMS", name="Duplicate", currency="EUR")
    with pytest.raises(ValidationError):
        services.asset_create(ticker="NEW", name="Bad currency", currency="ABC")


def test_a_trade_too_large_for_the_ledger_is_refused_not_a_crash(operations, client_with_cash, asset) -> None:
    with pytest.raises(ValidationError, match="larger than the ledger can hold"):
        trade(operations, client_with_cash, asset, "buy", "1000000000000000", "1000000000000000")
    amount = services.settlement_amount(
        kind="buy", quantity=Decimal("12345678901.1234567891"), price=Decimal("1.0000000001"), fees=Decimal("0")
    )
    assert amount == Decimal("12345678902.3580")  # exact to the last place, then half-even


# --- Exact quantities on SQLite -------------------------------------------------------------------------


def test_positions_add_up_exactly_where_floats_would_not() -> None:
    # 0.1 + 0.2 is 0.30000000000000004 in floating point; the big lots make a total of 16 significant digits.
    client, coin, bond = ClientFactory(), AssetFactory(), AssetFactory()
    for quantity in ("0.1", "0.2"):
        AllocationFactory(client=client, asset=coin, quantity=Decimal(quantity))
    AllocationFactory.create_batch(10, client=client, asset=bond, quantity=Decimal("99999.9999999999"))
    AllocationFactory(client=client, asset=bond, kind="transfer_out", quantity=Decimal("0.0000000001"))
    assert position(portfolio_id=main_portfolio(client).pk, asset_id=coin.pk) == Decimal("0.3")
    assert client_positions(client_id=client.pk) == {coin.pk: Decimal("0.3"), bond.pk: Decimal("999999.9999999989")}


@pytest.mark.skipif(connection.vendor != "sqlite", reason="only SQLite rounds past 15 significant digits")
def test_a_trade_whose_cash_amount_sqlite_would_round_is_refused(operations, client_with_cash, asset) -> None:
    # 1234.5678901 x 1.23456789 = 1524.1578875019052269; rounded to the ledger's 0.0001 it keeps 8 digits, fine.
    # 12345678.9 x 123456.789 costs 1524157875019.0521 (17 significant digits): SQLite would round it.
    with pytest.raises(ValidationError) as error:
        trade(operations, client_with_cash, asset, "buy", "12345678.9", "123456.789")
    assert "15" in str(error.value.message_dict["quantity"])
    assert not Allocation.objects.exists()


# --- FX rates ---------------------------------------------------------------------------------


@pytest.fixture
def fresh_portfolios() -> None:
    ClientFactory.create_batch(2)
    Portfolio.objects.update(history_changed_from=None, data_version=1)


def stale_from() -> set[tuple[datetime.date | None, int]]:
    return set(Portfolio.objects.values_list("history_changed_from", "data_version"))


def test_a_new_rate_marks_every_portfolio_changed_from_its_date_and_invalidates_the_rates_cache(
    fresh_portfolios, django_capture_on_commit_callbacks
) -> None:
    before = namespace_version(services.FX_RATES_CACHE)
    with django_capture_on_commit_callbacks(execute=True):
        services.fx_rate_create(base="EUR", quote="USD", date=datetime.date(2026, 3, 2), rate=Decimal("1.08"))
    assert stale_from() == {(datetime.date(2026, 3, 2), 2)}
    assert namespace_version(services.FX_RATES_CACHE) != before


def test_moving_a_rate_to_a_later_date_marks_portfolios_from_the_earlier_one(fresh_portfolios) -> None:
    fx = FxRateFactory(date=datetime.date(2026, 3, 2))
    services.fx_rate_update(fx_rate=fx, date=datetime.date(2026, 3, 9), rate=Decimal("1.1"))
    assert stale_from() == {(datetime.date(2026, 3, 2), 2)}


def test_deleting_a_rate_marks_every_portfolio_changed_from_its_date(fresh_portfolios) -> None:
    services.fx_rate_delete(fx_rate=FxRateFactory(date=datetime.date(2026, 3, 5)))
    assert stale_from() == {(datetime.date(2026, 3, 5), 2)}


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"rate": Decimal("0")}, "__all__"), ({"quote": "EUR"}, "__all__"), ({"base": "EURO"}, "base")],
)
def test_an_invalid_rate_is_refused_by_the_service_and_marks_nothing(fields, field, fresh_portfolios) -> None:
    valid = {"base": "EUR", "quote": "USD", "date": datetime.date(2026, 3, 2), "rate": Decimal("1")}
    with pytest.raises(ValidationError) as refused:
        services.fx_rate_create(**{**valid, **fields})
    assert field in refused.value.message_dict
    assert not FxRate.objects.exists()
    assert stale_from() == {(None, 1)}


# --- Taxes on trades ----------------------------------------------------------------------------------------------


def test_a_buy_pays_its_taxes_with_its_fees_and_a_sell_gives_them_up(operations, client_with_cash, asset) -> None:
    portfolio = main_portfolio(client_with_cash)
    buy = services.allocation_create(
        actor=operations, portfolio=portfolio, asset=asset, kind="buy", quantity=Decimal("10"), price=Decimal("100"),
        fees=Decimal("5"), taxes=Decimal("2.5"), date=DAY,
    )  # fmt: skip
    sell = services.allocation_create(
        actor=operations, portfolio=portfolio, asset=asset, kind="sell", quantity=Decimal("4"), price=Decimal("110"),
        fees=Decimal("3"), taxes=Decimal("1.32"), date=DAY,
    )  # fmt: skip
    assert (buy.taxes, buy.settlement.amount) == (Decimal("2.5"), Decimal("1007.5000"))  # 1000 + 5 + 2.5
    assert sell.settlement.amount == Decimal("435.6800")  # 440 - 3 - 1.32
    assert cash_available(portfolio_id=portfolio.pk, currency="USD") == Decimal("9428.1800")


def test_changing_a_trade_s_taxes_reverses_and_reposts_its_settlement(operations, client_with_cash, asset) -> None:
    buy = trade(operations, client_with_cash, asset, "buy", "10", "100", "5")
    old = buy.settlement
    changed = services.allocation_update(actor=operations, allocation=buy, taxes=Decimal("7"))
    assert Transaction.objects.filter(reverses=old).exists()
    assert changed.settlement.amount == Decimal("1012.0000")
    assert cash_available(portfolio_id=main_portfolio(client_with_cash).pk, currency="USD") == Decimal("8988.0000")


def test_a_sell_whose_fees_and_taxes_eat_its_proceeds_is_refused(operations, client_with_cash, asset) -> None:
    trade(operations, client_with_cash, asset, "buy", "1", "100")
    with pytest.raises(ValidationError, match="fees and taxes included"):
        services.allocation_create(
            actor=operations, portfolio=main_portfolio(client_with_cash), asset=asset, kind="sell",
            quantity=Decimal("1"), price=Decimal("10"), fees=Decimal("6"), taxes=Decimal("4"), date=DAY,
        )  # fmt: skip
