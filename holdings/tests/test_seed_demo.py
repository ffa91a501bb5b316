import datetime
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from clients.models import Client, Portfolio
from holdings.income import income
from holdings.management.commands.seed_demo import ADMIN_EMAIL
from holdings.models import Allocation, Asset, Dividend, FxRate, PortfolioDailyValue, Price
from holdings.selectors import daily_values, portfolio_positions
from holdings.valuation import portfolio_valuation
from ledger.models import Transaction
from ledger.selectors import portfolio_balances

pytestmark = pytest.mark.django_db


def run() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


@pytest.fixture(scope="module")
def demo(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    """The demo loaded once for the module's tests (three years of history take many seconds to write), in a
    transaction rolled back after them; each test still runs in its own savepoint on top. Yields what the load
    printed."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield run()
        transaction.set_rollback(True)


def test_demo_data_loads_once_and_prints_a_working_admin_password_once(demo: str) -> None:
    # `demo` is this module's first and only load into an empty database: its output is the first run's.
    first = demo
    password = first.split("password: ")[1].split()[0]
    assert User.objects.get(email=ADMIN_EMAIL).check_password(password)
    counts = (Client.objects.count(), Portfolio.objects.count(), Allocation.objects.count(), Price.objects.count())
    second = run()
    assert "already loaded" in second
    assert password not in second
    assert (
        Client.objects.count(),
        Portfolio.objects.count(),
        Allocation.objects.count(),
        Price.objects.count(),
    ) == counts


def test_demo_data_respects_the_money_rules(demo: str) -> None:
    assert Client.objects.count() == 6
    assert all(allocation.settlement_id for allocation in Allocation.objects.filter(kind__in=["buy", "sell"]))
    for portfolio in Portfolio.objects.all():
        assert all(amount >= 0 for amount in portfolio_balances(portfolio_id=portfolio.pk).values())
        assert all(units >= 0 for units in portfolio_positions(portfolio_id=portfolio.pk).values())
    advisors = User.objects.filter(groups__name="Advisors")
    assert set(Client.objects.values_list("advisor", flat=True)) <= set(advisors.values_list("pk", flat=True))


def test_demo_clients_have_two_or_three_accounts_at_custodians_in_several_currencies(demo: str) -> None:
    for client in Client.objects.all():
        assert 2 <= client.portfolios.count() <= 3
    assert set(Portfolio.objects.values_list("base_currency", flat=True)) == {"EUR", "USD", "GBP"}
    assert {Portfolio.Kind.TAXABLE, Portfolio.Kind.RETIREMENT} <= set(Portfolio.objects.values_list("kind", flat=True))
    assert not Portfolio.objects.filter(account_number="").exists()
    assert Portfolio.objects.filter(closed_on__isnull=False).exists()


def test_demo_data_moves_cash_and_units_between_two_portfolios_of_each_client(demo: str) -> None:
    for client in Client.objects.all():
        cash_in = Transaction.objects.get(client=client, kind=Transaction.Kind.TRANSFER_IN)
        units_in = Allocation.objects.get(client=client, kind=Allocation.Kind.TRANSFER_IN)
        assert cash_in.counterpart.portfolio_id != cash_in.portfolio_id
        assert units_in.counterpart.portfolio_id != units_in.portfolio_id


def test_every_demo_portfolio_values_completely_out_of_the_box(demo: str) -> None:
    for portfolio in Portfolio.objects.filter(closed_on__isnull=True):
        report = portfolio_valuation(portfolio=portfolio, as_of=timezone.localdate())
        assert report.missing_fx == [], portfolio
        assert report.unpriced == [], portfolio
        assert report.totals.total > 0
        assert report.totals.holdings > 0


def test_demo_market_data_covers_three_years_of_business_days_for_every_asset_and_rate(demo: str) -> None:
    today = timezone.localdate()
    business_days = {
        today - datetime.timedelta(days=n)
        for n in range(3 * 365 + 1)
        if (today - datetime.timedelta(days=n)).weekday() < 5
    }
    for asset in Asset.objects.all():
        assert set(asset.prices.values_list("date", flat=True)) == business_days, asset
    for quote in ("USD", "GBP"):
        assert set(FxRate.objects.filter(base="EUR", quote=quote).values_list("date", flat=True)) == business_days


def test_demo_deposits_withdrawals_and_trades_in_several_currencies_span_three_years(demo: str) -> None:
    today = timezone.localdate()
    years = [
        (today - datetime.timedelta(days=365 * (n + 1)), today - datetime.timedelta(days=365 * n)) for n in range(3)
    ]
    for start, end in years:
        in_year = {"date__gt": start, "date__lte": end}
        assert Transaction.objects.filter(kind=Transaction.Kind.DEPOSIT, **in_year).exists()
        assert Transaction.objects.filter(kind=Transaction.Kind.WITHDRAWAL, **in_year).exists()
        assert Allocation.objects.filter(kind=Allocation.Kind.BUY, **in_year).exists()
        assert Allocation.objects.filter(kind=Allocation.Kind.SELL, **in_year).exists()
    assert set(Allocation.objects.values_list("asset__currency", flat=True)) == {"EUR", "USD", "GBP"}


def test_demo_daily_value_table_spans_three_years_and_is_complete(demo: str) -> None:
    today = timezone.localdate()
    for portfolio in Portfolio.objects.filter(closed_on__isnull=True):
        days = daily_values(portfolio_id=portfolio.pk, start=today - datetime.timedelta(days=3 * 366), end=today)
        assert days[0].date <= today - datetime.timedelta(days=3 * 365 - 40), portfolio  # funded in the first weeks
        assert days[-1].date == today
        assert len(days) == (days[-1].date - days[0].date).days + 1  # every calendar day
        assert all(day.complete for day in days), portfolio
    # Built by the command itself, so that the first look at a client's page does not wait for it.
    assert not Portfolio.objects.filter(history_changed_from__lte=today).exists()
    assert PortfolioDailyValue.objects.exists()


def test_demo_data_pays_dividends_interest_and_fees_so_that_income_shows(demo: str) -> None:
    assert Dividend.objects.count() > 20
    assert Transaction.objects.filter(kind=Transaction.Kind.INTEREST).exists()
    assert Transaction.objects.filter(kind=Transaction.Kind.FEE).exists()
    for client in Client.objects.all():
        report = income(
            portfolio_ids=list(client.portfolios.values_list("pk", flat=True)),
            currency=client.base_currency,
            start=None,
            end=timezone.localdate(),
        )
        assert report.totals.net > 0, client
        assert report.missing_fx == []
