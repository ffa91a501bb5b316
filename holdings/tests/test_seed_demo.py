from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import User
from clients.models import Client, Portfolio
from holdings.management.commands.seed_demo import ADMIN_EMAIL
from holdings.models import Allocation, Price
from holdings.selectors import portfolio_positions
from ledger.models import Transaction
from ledger.selectors import portfolio_balances

pytestmark = pytest.mark.django_db


def run() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_demo_data_loads_once_and_prints_a_working_admin_password_once() -> None:
    first = run()
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


def test_demo_data_respects_the_money_rules() -> None:
    run()
    assert Client.objects.count() == 6
    assert all(allocation.settlement_id for allocation in Allocation.objects.filter(kind__in=["buy", "sell"]))
    for portfolio in Portfolio.objects.all():
        assert all(amount >= 0 for amount in portfolio_balances(portfolio_id=portfolio.pk).values())
        assert all(units >= 0 for units in portfolio_positions(portfolio_id=portfolio.pk).values())
    advisors = User.objects.filter(groups__name="Advisors")
    assert set(Client.objects.values_list("advisor", flat=True)) <= set(advisors.values_list("pk", flat=True))


def test_demo_clients_have_two_or_three_accounts_at_custodians_in_several_currencies() -> None:
    run()
    for client in Client.objects.all():
        assert 2 <= client.portfolios.count() <= 3
    assert set(Portfolio.objects.values_list("base_currency", flat=True)) == {"EUR", "USD", "GBP"}
    assert {Portfolio.Kind.TAXABLE, Portfolio.Kind.RETIREMENT} <= set(Portfolio.objects.values_list("kind", flat=True))
    assert not Portfolio.objects.filter(account_number="").exists()
    assert Portfolio.objects.filter(closed_on__isnull=False).exists()


def test_demo_data_moves_cash_and_units_between_two_portfolios_of_each_client() -> None:
    run()
    for client in Client.objects.all():
        cash_in = Transaction.objects.get(client=client, kind=Transaction.Kind.TRANSFER_IN)
        units_in = Allocation.objects.get(client=client, kind=Allocation.Kind.TRANSFER_IN)
        assert cash_in.counterpart.portfolio_id != cash_in.portfolio_id
        assert units_in.counterpart.portfolio_id != units_in.portfolio_id


def test_every_demo_portfolio_values_completely_out_of_the_box() -> None:
    from django.utils import timezone

    from holdings.valuation import portfolio_valuation

    run()
    for portfolio in Portfolio.objects.filter(closed_on__isnull=True):
        report = portfolio_valuation(portfolio=portfolio, as_of=timezone.localdate())
        assert report.missing_fx == [], portfolio
        assert report.unpriced == [], portfolio
        assert report.totals.total > 0
