"""The admin dashboard (holdings.dashboard, shown on the admin index by holdings.dashboard_panel): scoped to what the
user sees, read from the daily value table, each figure linking to its filtered changelist, in a fixed number of
queries."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, main_portfolio
from holdings.dashboard import dashboard
from holdings.models import PortfolioDailyValue
from holdings.services import daily_values_refresh
from holdings.tests.factories import AllocationFactory, AssetFactory, BuyFactory, FxRateFactory, PriceFactory
from ledger.models import Transaction
from ledger.tests.factories import TransactionFactory
from portfolio_site.testing import page_queries

pytestmark = pytest.mark.django_db

TODAY = datetime.date(2026, 2, 10)


def _book(advisor: Any, other_advisor: Any, today: datetime.date = TODAY) -> dict[str, Any]:
    """Two advisors' clients in EUR holding a USD asset, plus an unpriced and a stale-priced asset."""
    FxRateFactory(base="EUR", quote="USD", date=today - datetime.timedelta(days=9), rate=Decimal("1.25"))
    priced = AssetFactory(ticker="PRICED", currency="USD")
    unpriced = AssetFactory(ticker="NOPRICE", currency="USD")
    stale = AssetFactory(ticker="OLDPRICE", currency="USD")
    PriceFactory(asset=priced, date=today - datetime.timedelta(days=1), close=Decimal("100"))
    PriceFactory(asset=stale, date=today - datetime.timedelta(days=40), close=Decimal("10"))
    own = ClientFactory(advisor=advisor, name="Own Client")
    other = ClientFactory(advisor=other_advisor, name="Other Client")
    ClientFactory(advisor=other_advisor, name="Gone Client", is_active=False)
    month_start = today.replace(day=1)
    TransactionFactory(client=own, amount=Decimal("10000"), date=today)
    BuyFactory(client=own, asset=priced, quantity=Decimal("10"), price=Decimal("100"), date=month_start)
    AllocationFactory(client=own, asset=unpriced, quantity=Decimal("5"), date=month_start)
    AllocationFactory(client=own, asset=stale, quantity=Decimal("3"), date=month_start)
    TransactionFactory(client=other, amount=Decimal("500"), date=month_start)
    TransactionFactory(client=other, kind=Transaction.Kind.WITHDRAWAL, amount=Decimal("100"), date=today)
    BuyFactory(client=other, asset=priced, quantity=Decimal("100"), price=Decimal("100"), date=month_start)
    daily_values_refresh(until=today)
    return {"own": own, "other": other, "priced": priced, "unpriced": unpriced, "stale": stale}


def test_a_superuser_sees_the_whole_firm(advisor, other_advisor, superuser, settings) -> None:
    settings.REPORTING_CURRENCY = "EUR"
    book = _book(advisor, other_advisor)

    figures = dashboard(user=superuser, today=TODAY)

    rows = PortfolioDailyValue.objects.filter(date=TODAY)
    assert figures.aum.total == sum(row.value for row in rows)  # every portfolio in EUR, valued today
    assert figures.aum.portfolios == 3
    assert figures.aum.valued == 2  # the inactive client's portfolio never moved: no row
    assert (figures.active_clients, figures.inactive_clients) == (2, 1)
    largest = [(p.client_name, p.ticker, p.units, p.reported) for p in figures.largest]
    # 100 units at 100 USD = 10,000 USD at 1.25 USD per EUR.
    assert largest[0] == ("Other Client", "PRICED", Decimal("100"), Decimal("8000"))
    assert largest[1][:3] == ("Own Client", "PRICED", Decimal("10"))
    assert [a.ticker for a in figures.unpriced] == ["NOPRICE"]
    assert [a.ticker for a in figures.stale] == ["OLDPRICE"]
    assert figures.unpriced_ids == [book["unpriced"].pk]
    deposits_today, withdrawals_today, deposits_month, withdrawals_month = figures.flows
    assert [(c.currency, c.amount) for c in deposits_today.by_currency] == [("EUR", Decimal("10000"))]
    assert [(c.currency, c.amount) for c in withdrawals_today.by_currency] == [("EUR", Decimal("100"))]
    assert deposits_month.total == Decimal("10500")
    assert withdrawals_month.count == 1


def test_an_advisors_dashboard_covers_only_their_clients(advisor, other_advisor, settings) -> None:
    settings.REPORTING_CURRENCY = "EUR"
    book = _book(advisor, other_advisor)

    figures = dashboard(user=advisor, today=TODAY)

    own_value = PortfolioDailyValue.objects.get(portfolio=main_portfolio(book["own"]), date=TODAY).value
    assert figures.aum.total == own_value
    assert figures.aum.portfolios == 1
    assert (figures.active_clients, figures.inactive_clients) == (1, 0)
    assert {p.client_name for p in figures.largest} == {"Own Client"}
    assert figures.flows[2].total == Decimal("10000")  # the other client's 500 deposit is not theirs
    assert figures.flows[3].count == 0


def test_on_the_first_of_a_month_the_index_still_says_today_and_this_month(client, superuser) -> None:
    first = datetime.date(2026, 3, 1)
    TransactionFactory(amount=Decimal("250"), date=first)
    client.force_login(superuser)

    with time_machine.travel(datetime.datetime(2026, 3, 1, 12, tzinfo=datetime.UTC)):
        page = client.get(reverse("admin:index")).content.decode()

    # Both periods start today: the labels still tell them apart.
    assert page.count("Deposits today") == 1
    assert page.count("Deposits this month") == 1
    assert [(f.kind, f.period) for f in dashboard(user=superuser, today=first).flows] == [
        ("deposit", "today"),
        ("withdrawal", "today"),
        ("deposit", "this month"),
        ("withdrawal", "this month"),
    ]


def test_a_deposit_reversed_this_month_is_taken_back(advisor, other_advisor, superuser) -> None:
    book = _book(advisor, other_advisor)
    deposit = Transaction.objects.get(client=book["other"], kind="deposit")
    TransactionFactory(client=book["other"], reverses=deposit, amount=deposit.amount, date=TODAY)

    figures = dashboard(user=superuser, today=TODAY)

    assert figures.flows[2].total == Decimal("10000")


def test_amounts_without_a_rate_to_the_reporting_currency_are_left_out_and_named(
    advisor, other_advisor, superuser, settings
) -> None:
    settings.REPORTING_CURRENCY = "JPY"  # no rate to JPY at all
    _book(advisor, other_advisor)

    figures = dashboard(user=superuser, today=TODAY)

    assert figures.aum.total == 0
    assert figures.aum.unconverted == ["EUR"]
    assert figures.largest == []
    assert figures.missing_rates == ["USD"]


def test_the_index_page_shows_the_dashboard_with_links_to_the_filtered_changelists(
    client, advisor, other_advisor, settings
) -> None:
    settings.REPORTING_CURRENCY = "EUR"
    today = timezone.localdate()
    book = _book(advisor, other_advisor, today)
    client.force_login(advisor)

    page = client.get(reverse("admin:index")).content.decode()

    month = today.replace(day=1).isoformat()
    assert "Own Client" in page
    assert "Other Client" not in page
    assert f"kind__exact=deposit&amp;date__gte={month}&amp;date__lte={today.isoformat()}" in page
    assert "is_active__exact=1" in page
    assert f"id__in={book['unpriced'].pk}" in page
    assert f"portfolio={main_portfolio(book['own']).pk}&amp;asset={book['priced'].pk}" in page
    assert "10,000.00 EUR" in page  # today's deposit, as people read it


def test_the_linked_changelists_accept_the_dashboards_filters(client, advisor, other_advisor) -> None:
    today = timezone.localdate()
    book = _book(advisor, other_advisor, today)
    client.force_login(advisor)
    month = today.replace(day=1).isoformat()
    urls = [
        reverse("admin:ledger_transaction_changelist") + f"?kind__exact=deposit&date__gte={month}&date__lte={today}",
        reverse("admin:clients_client_changelist") + "?is_active__exact=1",
        reverse("admin:holdings_asset_changelist") + f"?id__in={book['unpriced'].pk},{book['stale'].pk}",
        reverse("admin:holdings_allocation_changelist")
        + f"?portfolio={main_portfolio(book['own']).pk}&asset={book['priced'].pk}",
    ]
    counts = []
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        counts.append(response.context["cl"].result_count)
    assert counts == [1, 1, 2, 1]


def test_the_dashboard_costs_the_same_queries_whatever_the_number_of_rows(
    client, advisor, other_advisor, superuser, count_queries
) -> None:
    today = timezone.localdate()
    _book(advisor, other_advisor, today)
    client.force_login(superuser)
    url = reverse("admin:index")
    page_queries(client, count_queries, url)  # warm up per-process caches
    few = page_queries(client, count_queries, url)

    for n in range(5):
        more = ClientFactory(advisor=advisor)
        asset = AssetFactory(currency="USD")
        PriceFactory(asset=asset, date=today, close=Decimal("3"))
        TransactionFactory(client=more, amount=Decimal("50"), date=today)
        BuyFactory(client=more, asset=asset, quantity=Decimal(n + 1), price=Decimal("3"), date=today)
    daily_values_refresh(until=today)
    many = page_queries(client, count_queries, url)

    assert few == many


def test_staff_who_see_no_client_get_the_index_without_a_dashboard(client, nobody) -> None:
    client.force_login(nobody)

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert 'id="dashboard"' not in response.content.decode()


def test_an_auditor_sees_the_firms_figures_read_only(client, advisor, other_advisor, auditor) -> None:
    _book(advisor, other_advisor, timezone.localdate())
    client.force_login(auditor)

    page = client.get(reverse("admin:index")).content.decode()

    assert 'id="dashboard"' in page
    assert "Own Client" in page
    assert "Other Client" in page


def _late_deposit(owner: Any) -> None:
    """A deposit today, its portfolio marked stale from today as the ledger's service marks it."""
    TransactionFactory(client=owner, amount=Decimal("70"), date=TODAY)
    Portfolio.objects.filter(pk=main_portfolio(owner).pk).update(history_changed_from=TODAY)


def test_without_a_job_queue_the_dashboard_brings_its_portfolios_up_to_date_first(
    advisor, other_advisor, superuser, settings
) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True  # development: no periodic refresh job
    book = _book(advisor, other_advisor)
    before = dashboard(user=superuser, today=TODAY).aum.total
    _late_deposit(book["own"])

    figures = dashboard(user=superuser, today=TODAY)

    assert figures.aum.refreshing == 0
    assert figures.aum.total == before + 70
    assert figures.aum.total == sum(row.value for row in PortfolioDailyValue.objects.filter(date=TODAY))


def test_with_a_job_queue_the_dashboard_reads_the_table_and_counts_what_the_job_has_yet_to_refresh(
    advisor, other_advisor, superuser, settings
) -> None:
    book = _book(advisor, other_advisor)
    settings.CELERY_TASK_ALWAYS_EAGER = False
    before = PortfolioDailyValue.objects.get(portfolio=main_portfolio(book["own"]), date=TODAY).value
    _late_deposit(book["own"])

    figures = dashboard(user=superuser, today=TODAY)

    assert figures.aum.refreshing == 1
    assert PortfolioDailyValue.objects.get(portfolio=main_portfolio(book["own"]), date=TODAY).value == before
