"""Changelists of tables that grow with the firm (portfolio_site.admin_large): counts, date hierarchy, value filters
and search answered by indexes, scoped like the rest of the list. Shown on the transactions and allocations."""

import datetime
from decimal import Decimal

import pytest
from django.contrib import admin
from django.db import connection
from django.urls import reverse

from accounts.models import SecurityEvent
from clients import admin as clients_admin
from clients.tests.factories import ClientFactory, PortfolioFactory
from holdings.models import Allocation
from holdings.tests.factories import AssetFactory, BuyFactory, DividendFactory, PriceFactory
from ledger.models import Transaction
from ledger.tests.factories import TransactionFactory
from portfolio_site.counting import CountedPaginator
from portfolio_site.testing import changelist_ids, forget_row_estimates

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_row_estimates_left_by_other_tests() -> None:
    forget_row_estimates(Transaction, Allocation)


TRANSACTIONS = "admin:ledger_transaction_changelist"
ALLOCATIONS = "admin:holdings_allocation_changelist"


def _deposits(*dates: str, **kwargs) -> list:
    return [TransactionFactory(date=datetime.date.fromisoformat(day), **kwargs) for day in dates]


def _hierarchy(response) -> list[str]:
    """The date hierarchy's links, as their titles."""
    return [choice["title"] for choice in response.context["choices"] if "link" in choice]


# --- Counting ---------------------------------------------------------------------------------------------------


def test_a_filtered_list_past_the_bound_says_more_than_the_bound(client, operations, monkeypatch):
    monkeypatch.setattr(CountedPaginator, "bound", 2)
    _deposits("2026-01-02", "2026-01-03", "2026-01-04")
    client.force_login(operations)

    response = client.get(reverse(TRANSACTIONS), {"kind__exact": "deposit"})

    assert response.status_code == 200
    assert "more than 2 transactions" in response.text
    assert response.context["cl"].result_count == 2


def test_a_list_within_the_bound_shows_its_exact_count(client, operations):
    _deposits("2026-01-02", "2026-01-03")
    client.force_login(operations)

    response = client.get(reverse(TRANSACTIONS))

    assert "2 transactions" in response.text
    assert "more than" not in response.text
    assert "about" not in response.text


@pytest.mark.postgres
def test_an_unfiltered_large_list_shows_the_planners_estimate(client, operations, monkeypatch):
    monkeypatch.setattr(CountedPaginator, "bound", 2)
    _deposits("2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ledger_transaction")
    client.force_login(operations)

    response = client.get(reverse(TRANSACTIONS))

    assert "about 4 transactions" in response.text


def test_a_page_past_a_bounded_count_is_served_with_the_rows_there(client, operations, monkeypatch):
    monkeypatch.setattr(CountedPaginator, "bound", 2)
    monkeypatch.setattr(admin.site._registry[Transaction], "list_per_page", 1)
    rows = _deposits("2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05")
    client.force_login(operations)

    response = client.get(reverse(TRANSACTIONS), {"kind__exact": "deposit", "p": 4})

    assert response.status_code == 200
    assert changelist_ids(response) == {rows[0].pk}  # the oldest: the list is newest first


def test_facets_are_never_counted_on_a_large_list(client, operations):
    _deposits("2026-01-02")
    client.force_login(operations)

    response = client.get(reverse(TRANSACTIONS), {"_facets": "1"})

    assert response.status_code == 200
    assert response.context["cl"].add_facets is False


# --- Date hierarchy ---------------------------------------------------------------------------------------------


def test_the_date_hierarchy_offers_the_years_from_the_first_row_to_the_last(client, operations):
    _deposits("2023-05-02", "2026-01-03")
    client.force_login(operations)

    response = client.get(reverse(TRANSACTIONS))

    assert _hierarchy(response) == ["2023", "2024", "2025", "2026"]


def test_the_date_hierarchy_offers_the_months_of_a_year_between_its_first_and_last_rows(client, operations):
    _deposits("2024-11-30", "2025-03-02", "2025-05-31", "2026-01-03")
    client.force_login(operations)

    response = client.get(reverse(TRANSACTIONS), {"date__year": "2025"})

    assert _hierarchy(response) == ["March 2025", "April 2025", "May 2025"]


def test_the_date_hierarchy_offers_the_days_of_a_month_between_its_first_and_last_rows(client, operations):
    _deposits("2025-03-02", "2025-03-04")
    client.force_login(operations)

    response = client.get(reverse(TRANSACTIONS), {"date__year": "2025", "date__month": "3"})

    assert _hierarchy(response) == ["March 2", "March 3", "March 4"]


def test_the_date_hierarchy_spans_only_the_rows_an_advisor_sees(client, advisor):
    _deposits("2025-06-01", "2025-08-01", client=ClientFactory(advisor=advisor))
    _deposits("2020-01-01")  # another advisor's client
    client.force_login(advisor)

    response = client.get(reverse(TRANSACTIONS))

    assert _hierarchy(response) == ["June 2025", "July 2025", "August 2025"]


def test_the_date_hierarchy_reads_two_rows_whatever_the_size_of_the_table(client, operations, count_queries):
    client.force_login(operations)
    _deposits("2025-06-01")
    client.get(reverse(TRANSACTIONS))
    few = count_queries(lambda: client.get(reverse(TRANSACTIONS), {"date__year": "2025"}))

    _deposits(*(f"2025-{month:02}-15" for month in range(1, 13)))
    many = count_queries(lambda: client.get(reverse(TRANSACTIONS), {"date__year": "2025"}))

    assert few == many


# --- Value filters ----------------------------------------------------------------------------------------------


def test_the_currency_filter_offers_the_currencies_in_use_and_only_the_advisors(client, advisor):
    own = ClientFactory(advisor=advisor)
    for currency in ("USD", "EUR", "USD", "CHF"):
        TransactionFactory(client=own, currency=currency)
    TransactionFactory(currency="JPY")  # another advisor's client
    client.force_login(advisor)

    response = client.get(reverse(TRANSACTIONS))

    currency = next(f for f in response.context["cl"].filter_specs if f.title == "currency")
    assert currency.lookup_choices == ["CHF", "EUR", "USD"]


def test_the_currency_filter_costs_a_query_per_currency_not_per_row(client, operations, count_queries):
    client.force_login(operations)
    TransactionFactory(currency="USD")
    client.get(reverse(TRANSACTIONS))
    few = count_queries(lambda: client.get(reverse(TRANSACTIONS)))

    for _ in range(10):
        TransactionFactory(currency="USD")
    many = count_queries(lambda: client.get(reverse(TRANSACTIONS)))

    assert few == many


# --- Search -----------------------------------------------------------------------------------------------------


def test_search_finds_a_clients_transactions_by_name_email_portfolio_and_account_number(client, operations):
    zelda = ClientFactory(name="Zelda Quist", email="zq@example.org")
    savings = PortfolioFactory(client=zelda, name="Rainy day", custodian="Custody Bank", account_number="ACC-991")
    main, in_savings = TransactionFactory(client=zelda), TransactionFactory(portfolio=savings)
    TransactionFactory()  # someone else's
    client.force_login(operations)

    for term in ("zelda", "ZQ@EXAMPLE", "rainy", "acc-991"):
        response = client.get(reverse(TRANSACTIONS), {"q": term})
        expected = {in_savings.pk} if term in ("rainy", "acc-991") else {main.pk, in_savings.pk}
        assert changelist_ids(response) == expected, term


def test_search_finds_a_transaction_by_its_exact_reference_only(client, operations):
    tx = TransactionFactory(reference="BANK-2026-0042")
    TransactionFactory(reference="BANK-2026-0043")
    client.force_login(operations)

    assert changelist_ids(client.get(reverse(TRANSACTIONS), {"q": "BANK-2026-0042"})) == {tx.pk}
    assert changelist_ids(client.get(reverse(TRANSACTIONS), {"q": "BANK-2026"})) == set()


def test_search_needs_every_term_to_match(client, operations):
    zelda = ClientFactory(name="Zelda Quist")
    savings = PortfolioFactory(client=zelda, name="Rainy day")
    in_savings = TransactionFactory(portfolio=savings)
    TransactionFactory(client=zelda)
    client.force_login(operations)

    assert changelist_ids(client.get(reverse(TRANSACTIONS), {"q": "zelda rainy"})) == {in_savings.pk}


def test_search_naming_many_owners_finds_them_all(client, operations, monkeypatch):
    monkeypatch.setattr(clients_admin, "MAX_SEARCH_OWNERS", 1)
    rows = [TransactionFactory(client=ClientFactory(name=f"Common name {n}")) for n in range(3)]
    client.force_login(operations)

    response = client.get(reverse(TRANSACTIONS), {"q": "common"})

    assert changelist_ids(response) == {tx.pk for tx in rows}


def test_search_shows_an_advisor_nothing_of_another_advisors_client_it_names(client, advisor):
    TransactionFactory(client=ClientFactory(name="Zelda Quist"), reference="REF-1")  # another advisor's client
    own = TransactionFactory(client=ClientFactory(name="Zelda Own", advisor=advisor), reference="REF-2")
    client.force_login(advisor)

    assert changelist_ids(client.get(reverse(TRANSACTIONS), {"q": "zelda"})) == {own.pk}
    assert changelist_ids(client.get(reverse(TRANSACTIONS), {"q": "REF-1"})) == set()


def test_allocation_search_finds_a_trade_by_the_assets_ticker_or_isin(client, operations):
    asset = AssetFactory(ticker="ZZQ", isin="US0000000ZZQ")
    trade = BuyFactory(asset=asset, quantity=Decimal("1"))
    BuyFactory(quantity=Decimal("1"))
    client.force_login(operations)

    for term in ("zzq", "us0000000zzq"):
        assert changelist_ids(client.get(reverse(ALLOCATIONS), {"q": term})) == {trade.pk}, term


# --- The other lists that grow with the firm --------------------------------------------------------------------


def test_the_security_events_date_hierarchy_offers_the_local_days_between_the_first_and_last_event(client, superuser):
    for moment in ("2026-03-02T09:00:00+00:00", "2026-03-04T23:30:00+00:00"):
        SecurityEvent.objects.create(
            kind=SecurityEvent.Kind.LOGIN_FAILED,
            email="x@example.com",
            created_at=datetime.datetime.fromisoformat(moment),
        )
    client.force_login(superuser)

    response = client.get(reverse("admin:accounts_securityevent_changelist"))

    assert _hierarchy(response) == ["March 2", "March 3", "March 4"]


def test_the_price_list_shows_the_latest_closes_first(client, operations):
    old = PriceFactory(asset=AssetFactory(ticker="AAA"), date=datetime.date(2025, 1, 2))
    new = PriceFactory(asset=AssetFactory(ticker="ZZZ"), date=datetime.date(2026, 1, 2))
    client.force_login(operations)

    response = client.get(reverse("admin:holdings_price_changelist"))

    assert [row.pk for row in response.context["cl"].result_list] == [new.pk, old.pk]


def test_dividend_search_finds_a_dividend_by_the_assets_ticker_and_only_the_advisors(client, advisor):
    asset = AssetFactory(ticker="DIVQ")
    own = DividendFactory(client=ClientFactory(advisor=advisor), asset=asset)
    DividendFactory(asset=asset)  # another advisor's client
    client.force_login(advisor)

    response = client.get(reverse("admin:holdings_dividend_changelist"), {"q": "divq"})

    assert changelist_ids(response) == {own.pk}
