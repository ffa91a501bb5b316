"""The allocations list at any size: page numbers with an honest count, cursor pages however deep, lean rows."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings import services
from holdings.api import AllocationSerializer, AllocationViewSet
from holdings.models import Allocation
from holdings.tests.factories import AllocationFactory, AssetFactory, BuyFactory, SellFactory, SplitFactory
from ledger.tests.factories import TransactionFactory
from portfolio_site.api.pagination import KeysetPagination

pytestmark = pytest.mark.django_db
URL = "/api/v1/allocations/"
DAY = datetime.date(2026, 3, 2)


def get_ok(c: Any, url: str) -> dict[str, Any]:
    response = c.get(url)
    assert response.status_code == 200, response.content
    return response.json()


def walk(c: Any, url: str) -> list[int]:
    ids: list[int] = []
    for _ in range(100):
        body = get_ok(c, url)
        ids.extend(row["id"] for row in body["results"])
        if body["next"] is None:
            return ids
        url = body["next"]
    raise AssertionError("the links never end")


def in_default_order(queryset: Any) -> list[int]:
    return list(queryset.order_by("-date", "-id").values_list("pk", flat=True))


def holdings_of_shared_dates(client: Any) -> None:
    for day, count in ((DAY, 6), (DAY - datetime.timedelta(days=2), 2), (DAY + datetime.timedelta(days=1), 3)):
        AllocationFactory.create_batch(count, client=client, date=day)


def test_cursor_pages_walk_every_allocation_once_in_order_including_rows_sharing_a_date(operations, api) -> None:
    holdings_of_shared_dates(ClientFactory())
    assert walk(api(operations), f"{URL}?cursor=&page_size=4") == in_default_order(Allocation.objects.all())


def test_allocation_cursor_pages_apply_the_filters_and_the_advisors_scope(advisor, other_advisor, api) -> None:
    mine, theirs = ClientFactory(advisor=advisor), ClientFactory(advisor=other_advisor)
    holdings_of_shared_dates(mine)
    holdings_of_shared_dates(theirs)
    pension = PortfolioFactory(client=mine)
    AllocationFactory.create_batch(3, portfolio=pension, date=DAY)
    c = api(advisor)
    assert walk(c, f"{URL}?cursor=&page_size=4") == in_default_order(Allocation.objects.filter(client=mine))
    assert walk(c, f"{URL}?cursor=&page_size=2&portfolio={pension.pk}") == in_default_order(
        Allocation.objects.filter(portfolio=pension)
    )
    assert walk(c, f"{URL}?cursor=&page_size=2&date_after={DAY}&date_before={DAY}") == in_default_order(
        Allocation.objects.filter(client=mine, date=DAY)
    )
    their_newest = Allocation.objects.filter(client=theirs).order_by("-date", "-id").first()
    token = KeysetPagination().encode([their_newest.date, their_newest.pk])
    leaked = set(walk(c, f"{URL}?cursor={token}")) & set(
        Allocation.objects.filter(client=theirs).values_list("pk", flat=True)
    )
    assert not leaked


def test_an_allocation_cursor_that_is_not_ours_is_a_400_naming_cursor(operations, api) -> None:
    response = api(operations).get(URL, {"cursor": "bm90IGEgdG9rZW4:abc"})
    assert response.status_code == 400
    assert "cursor" in response.json()


@pytest.mark.parametrize("page", ["?cursor=&page_size=3", "?page_size=3"])
def test_an_allocations_page_costs_as_many_queries_with_many_rows_as_with_few(page: str, advisor, api) -> None:
    client = ClientFactory(advisor=advisor)
    c = api(advisor)

    def queries(url: str) -> int:
        # A fresh user object, as each real request has: role and permission look-ups are counted.
        c.force_authenticate(type(advisor).objects.get(pk=advisor.pk))
        cache.clear()
        with CaptureQueriesContext(connection) as captured:
            get_ok(c, url)
        return len(captured.captured_queries)

    BuyFactory.create_batch(4, client=client)
    with_few = queries(URL + page)
    BuyFactory.create_batch(30, client=client, date=DAY)
    AllocationFactory.create_batch(10, client=client, date=DAY)
    assert with_few == queries(URL + page) == queries(get_ok(c, URL + page)["next"])


def test_listed_allocations_are_exactly_what_the_serializer_gives(operations, api) -> None:
    client = ClientFactory(base_currency="USD")
    main, pension = main_portfolio(client), PortfolioFactory(client=client)
    usd, gbp = AssetFactory(currency="USD"), AssetFactory(currency="GBP")
    TransactionFactory(portfolio=main, amount=Decimal("100000"), currency="USD", date=DAY)
    BuyFactory(portfolio=main, asset=usd, quantity=Decimal("12.5"), price=Decimal("101.1234567891"), date=DAY)
    BuyFactory(portfolio=main, asset=gbp, quantity=Decimal("0.0000000001"), price=Decimal("3"), fees=Decimal("1.5"))
    AllocationFactory(portfolio=main, asset=usd, quantity=Decimal("3"), date=DAY, notes="Carried over")
    services.units_transfer(
        actor=operations, from_portfolio=main, to_portfolio=pension, asset=usd, quantity=Decimal("2"), date=DAY
    )
    SellFactory(
        portfolio=main, asset=usd, quantity=Decimal("0.5"), price=Decimal("95"), cash_in_lieu_of=SplitFactory(asset=usd)
    )
    c = api(operations)
    context = {"request": None, "view": AllocationViewSet()}
    expected = [
        dict(AllocationSerializer(row, context=context).data)
        for row in AllocationViewSet.queryset.all().order_by("-date", "-id")
    ]
    for url in (URL, f"{URL}?cursor="):
        assert get_ok(c, url)["results"] == expected
    assert {row["kind"] for row in expected} == {"buy", "sell", "transfer_in", "transfer_out"}
    assert any(row["counterpart"] for row in expected)
    assert any(row["cash_in_lieu_of"] for row in expected)
    assert all(isinstance(row["quantity"], str) for row in expected)
