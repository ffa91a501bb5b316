"""The ledger's list at any size: page numbers with an honest count, cursor pages however deep, lean rows."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings.tests.factories import BuyFactory, DividendFactory
from ledger import services
from ledger.api import TransactionSerializer, transactions
from ledger.models import Transaction
from ledger.tests.factories import TransactionFactory
from portfolio_site.api.pagination import KeysetPagination
from portfolio_site.counting import CountedPaginator

pytestmark = pytest.mark.django_db
URL = "/api/v1/transactions/"
DAY = datetime.date(2026, 3, 2)


def get_ok(c: Any, url: str) -> dict[str, Any]:
    response = c.get(url)
    assert response.status_code == 200, response.content
    return response.json()


def walk(c: Any, url: str, link: str = "next") -> list[dict[str, Any]]:
    """Every row of the list, following `link` from `url`; refuses a walk that never ends."""
    rows: list[dict[str, Any]] = []
    for _ in range(100):
        body = get_ok(c, url)
        rows.extend(body["results"])
        if body[link] is None:
            return rows
        url = body[link]
    raise AssertionError("the links never end")


def in_default_order(queryset: Any) -> list[int]:
    return list(queryset.order_by("-date", "-id").values_list("pk", flat=True))


def ledger_of_shared_dates(client: Any) -> None:
    """Eleven rows over three days, most on one day: a page ends inside a day."""
    for day, count in ((DAY, 7), (DAY - datetime.timedelta(days=1), 1), (DAY + datetime.timedelta(days=3), 3)):
        TransactionFactory.create_batch(count, client=client, date=day)


def test_cursor_pages_walk_every_row_once_in_order_including_rows_sharing_a_date(operations, api) -> None:
    ledger_of_shared_dates(ClientFactory())
    c = api(operations)
    expected = in_default_order(Transaction.objects.all())
    forwards = walk(c, f"{URL}?cursor=&page_size=3")
    assert [row["id"] for row in forwards] == expected
    first = get_ok(c, f"{URL}?cursor=&page_size=3")
    assert set(first) == {"next", "previous", "results"}  # no count: it is what a cursor page saves
    assert first["previous"] is None

    last_page_url = f"{URL}?cursor=&page_size=3"
    while (body := get_ok(c, last_page_url))["next"] is not None:
        last_page_url = body["next"]
    backwards: list[dict[str, Any]] = []
    url: str | None = last_page_url
    while url is not None:
        body = get_ok(c, url)
        backwards[:0] = body["results"]
        url = body["previous"]
    assert [row["id"] for row in backwards] == expected


def test_a_previous_link_leads_back_to_the_page_before(operations, api) -> None:
    ledger_of_shared_dates(ClientFactory())
    c = api(operations)
    first = get_ok(c, f"{URL}?cursor=&page_size=4")
    second = get_ok(c, first["next"])
    again = get_ok(c, second["previous"])
    assert again["results"] == first["results"]
    assert again["previous"] is None
    assert again["next"] is not None


def test_cursor_pages_apply_the_filters(operations, api) -> None:
    mine, theirs = ClientFactory(), ClientFactory()
    ledger_of_shared_dates(mine)
    ledger_of_shared_dates(theirs)
    TransactionFactory.create_batch(3, client=mine, kind=Transaction.Kind.INTEREST, date=DAY)
    c = api(operations)
    by_client = walk(c, f"{URL}?cursor=&page_size=4&client={mine.pk}")
    assert [row["id"] for row in by_client] == in_default_order(Transaction.objects.filter(client=mine))
    interest = walk(c, f"{URL}?cursor=&page_size=2&kind=interest")
    assert [row["id"] for row in interest] == in_default_order(Transaction.objects.filter(kind="interest"))
    one_day = walk(c, f"{URL}?cursor=&page_size=2&client={theirs.pk}&date_after={DAY}&date_before={DAY}")
    assert [row["id"] for row in one_day] == in_default_order(Transaction.objects.filter(client=theirs, date=DAY))


def test_an_advisors_cursor_pages_hold_only_their_clients_rows(advisor, other_advisor, api) -> None:
    mine, theirs = ClientFactory(advisor=advisor), ClientFactory(advisor=other_advisor)
    ledger_of_shared_dates(mine)
    ledger_of_shared_dates(theirs)
    rows = walk(api(advisor), f"{URL}?cursor=&page_size=4")
    assert [row["id"] for row in rows] == in_default_order(Transaction.objects.filter(client=mine))


def test_a_cursor_made_from_another_advisors_row_leaks_nothing(advisor, other_advisor, api) -> None:
    mine, theirs = ClientFactory(advisor=advisor), ClientFactory(advisor=other_advisor)
    ledger_of_shared_dates(mine)
    ledger_of_shared_dates(theirs)
    their_newest = Transaction.objects.filter(client=theirs).order_by("-date", "-id").first()
    # A valid token (as if the server had given it out) positioned on the other advisor's newest row.
    for backwards in (False, True):
        token = KeysetPagination().encode([their_newest.date, their_newest.pk + 1], backwards=backwards)
        rows = walk(api(advisor), f"{URL}?cursor={token}&page_size=4", "previous" if backwards else "next")
        assert {row["client"] for row in rows} <= {mine.pk}


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-token",
        KeysetPagination().encode([str(DAY), 5])[:-3] + "abc",  # tampered signature
        KeysetPagination().encode([str(DAY), 5]).replace(":", "x:", 1),  # tampered payload
        KeysetPagination().encode([str(DAY)]),  # signed, but not a position of this ordering
        KeysetPagination().encode(["the day after", 5]),
        KeysetPagination().encode([None, 5]),
    ],
    # The signed tokens carry the time they were made: named by hand so that every pytest-xdist worker collects
    # the same test ids.
    ids=["not-a-token", "tampered-signature", "tampered-payload", "not-a-position", "not-a-date", "no-date"],
)
def test_a_malformed_or_tampered_cursor_is_a_400_naming_cursor(cursor: str, operations, api) -> None:
    TransactionFactory()
    response = api(operations).get(URL, {"cursor": cursor})
    assert response.status_code == 400, response.content
    assert "Invalid cursor" in response.json()["cursor"][0]


def test_a_cursor_with_another_ordering_is_refused_with_400_naming_ordering(operations, api) -> None:
    TransactionFactory()
    c = api(operations)
    refused = c.get(f"{URL}?cursor=&ordering=amount")
    assert refused.status_code == 400
    assert "default ordering" in refused.json()["ordering"][0]
    assert get_ok(c, f"{URL}?cursor=&ordering=-date,-id")["results"]
    assert get_ok(c, f"{URL}?ordering=amount")["count"] == 1  # page numbers keep every ordering


def test_page_and_cursor_together_are_refused_with_400(operations, api) -> None:
    TransactionFactory()
    response = api(operations).get(f"{URL}?cursor=&page=2")
    assert response.status_code == 400
    assert "page" in response.json()


def test_page_number_responses_say_whether_the_count_is_exact(operations, api) -> None:
    TransactionFactory.create_batch(3)
    body = get_ok(api(operations), URL)
    assert (body["count"], body["count_exact"]) == (3, True)
    assert list(body) == ["count", "count_exact", "next", "previous", "results"]


def test_a_count_past_the_bound_is_inexact_and_a_full_page_links_to_the_next(operations, api, monkeypatch) -> None:
    monkeypatch.setattr(CountedPaginator, "bound", 3)
    client = ClientFactory()
    TransactionFactory.create_batch(7, client=client)
    c = api(operations)
    first = get_ok(c, f"{URL}?client={client.pk}&page_size=2")
    assert (first["count"], first["count_exact"]) == (3, False)
    rows = list(first["results"])
    url = first["next"]
    while url is not None:
        body = get_ok(c, url)
        rows.extend(body["results"])
        url = body["next"]
    assert [row["id"] for row in rows] == in_default_order(Transaction.objects.filter(client=client))


def page_queries(c: Any, url: str) -> int:
    # A fresh user object, as each real request has: role and permission look-ups are counted.
    user = c.handler._force_user
    c.force_authenticate(type(user).objects.get(pk=user.pk))
    cache.clear()
    with CaptureQueriesContext(connection) as captured:
        get_ok(c, url)
    return len(captured.captured_queries)


@pytest.mark.parametrize("page", ["?cursor=&page_size=3", "?page_size=3"])
def test_a_page_costs_as_many_queries_with_many_rows_as_with_few(page: str, advisor, api) -> None:
    client = ClientFactory(advisor=advisor)
    c = api(advisor)
    TransactionFactory.create_batch(4, client=client)
    with_few = page_queries(c, URL + page)
    TransactionFactory.create_batch(40, client=client, date=DAY)
    with_many = page_queries(c, URL + page)
    second_page = page_queries(c, get_ok(c, URL + page)["next"])
    assert with_few == with_many == second_page


def test_a_cursor_page_counts_nothing(operations, api) -> None:
    TransactionFactory.create_batch(3)
    with CaptureQueriesContext(connection) as captured:
        get_ok(api(operations), f"{URL}?cursor=")
    assert not [q for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]


def test_listed_transactions_are_exactly_what_the_serializer_gives(advisor, api) -> None:
    client = ClientFactory(advisor=advisor)
    main, pension = main_portfolio(client), PortfolioFactory(client=client)
    deposit, _ = services.transaction_post(
        actor=advisor,
        portfolio_id=main.pk,
        kind=Transaction.Kind.DEPOSIT,
        amount=Decimal("5000.1234"),
        currency=client.base_currency,
        date=DAY,
        reference="wire-7",
        notes="First funding",
    )
    services.transaction_post(
        actor=advisor,
        portfolio_id=main.pk,
        kind=Transaction.Kind.FEE,
        amount=Decimal("12.5"),
        currency=client.base_currency,
        date=DAY,
    )
    services.cash_transfer(
        actor=advisor,
        from_portfolio_id=main.pk,
        to_portfolio_id=pension.pk,
        amount=Decimal("100"),
        currency=client.base_currency,
        date=DAY,
    )
    mistaken, _ = services.transaction_post(
        actor=advisor,
        portfolio_id=main.pk,
        kind=Transaction.Kind.DEPOSIT,
        amount=Decimal("1"),
        currency=client.base_currency,
        date=DAY,
    )
    services.transaction_reverse(actor=advisor, transaction=mistaken, notes="Entered twice")
    BuyFactory(portfolio=main, quantity=Decimal("2"), price=Decimal("10.5"), date=DAY)
    DividendFactory(portfolio=main, pay_date=DAY)
    c = api(advisor)
    kinds = set()
    for url in (URL, f"{URL}?cursor="):
        listed = get_ok(c, url)["results"]
        context = {"request": None}
        expected = [TransactionSerializer(row, context=context).data for row in transactions().order_by("-date", "-id")]
        assert listed == [dict(row) for row in expected]
        kinds = {row["kind"] for row in listed}
    assert {"deposit", "fee", "transfer_in", "transfer_out", "buy", "dividend"} <= kinds
    assert any(row["reversed_by"] for row in listed)
    assert any(row["reverses"] for row in listed)
    assert any(row["counterpart"] for row in listed)
    assert deposit.pk in {row["id"] for row in listed}


@pytest.mark.postgres
def test_postgresql_serves_a_deep_cursor_page_from_the_date_index_without_sorting(operations, api) -> None:
    TransactionFactory.create_batch(3)
    token = KeysetPagination().encode([DAY, 10**9])
    with CaptureQueriesContext(connection) as captured:
        get_ok(api(operations), f"{URL}?cursor={token}")
    (page_sql,) = [q["sql"] for q in captured.captured_queries if "ledger_transaction" in q["sql"]]
    assert '("ledger_transaction"."date", "ledger_transaction"."id") <' in page_sql
    with connection.cursor() as cursor:
        # A tiny test table is cheaper read whole and sorted: ask whether the index can serve the page at all.
        cursor.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {page_sql}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "ledger_tx_date_id" in plan, plan
    assert "Sort" not in plan, plan
