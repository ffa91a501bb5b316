"""The income report: dividends by asset and by month, interest tied to no asset, each at its payment day's rate;
visibility, parameters, query counts and the cache."""

import datetime
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache

from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings.models import FxRate
from holdings.tests.factories import AssetFactory, DividendFactory
from ledger.services import transaction_post, transaction_reverse
from ledger.tests.factories import TransactionFactory

pytestmark = pytest.mark.django_db
D = Decimal
MAR, APR = datetime.date(2026, 3, 16), datetime.date(2026, 4, 15)


@pytest.fixture
def book(advisor: Any) -> dict[str, Any]:
    """A EUR client: dividends of a USD and a EUR asset in March and April, EUR/USD 1.25 then 1.60, and interest."""
    client = ClientFactory(advisor=advisor, base_currency="EUR")
    portfolio = main_portfolio(client)
    usd_asset = AssetFactory(ticker="KO", currency="USD")
    eur_asset = AssetFactory(ticker="SAP", exchange="XETR", currency="EUR")
    FxRate.objects.create(base="EUR", quote="USD", date=datetime.date(2026, 3, 1), rate=D("1.25"))
    FxRate.objects.create(base="EUR", quote="USD", date=datetime.date(2026, 4, 1), rate=D("1.60"))
    # 100 USD gross, 15 withheld: 80 / 12 / 68 EUR at 1.25; then 40 / 6 / 34 EUR at 1.60 for 64 / 9.6 / 54.4 USD.
    DividendFactory(portfolio=portfolio, asset=usd_asset, gross=D("100"), withholding_tax=D("15"), pay_date=MAR)
    DividendFactory(
        portfolio=portfolio,
        asset=usd_asset,
        gross=D("64"),
        withholding_tax=D("9.6"),
        ex_date=datetime.date(2026, 4, 1),
        pay_date=APR,
    )
    DividendFactory(portfolio=portfolio, asset=eur_asset, gross=D("50"), withholding_tax=D("13.19"), pay_date=APR)
    TransactionFactory(portfolio=portfolio, kind="interest", amount=D("2.5"), currency="EUR", date=MAR)
    TransactionFactory(portfolio=portfolio, kind="fee", amount=D("9"), currency="EUR", date=MAR)  # no income
    return {"client": client, "portfolio": portfolio, "usd_asset": usd_asset, "eur_asset": eur_asset}


def url(book: dict[str, Any], query: str = "", kind: str = "portfolios") -> str:
    pk = book["portfolio"].pk if kind == "portfolios" else book["client"].pk
    return f"/api/v1/{kind}/{pk}/income/?end=2026-12-31{query}"


def test_income_by_asset_and_by_month_at_each_payment_day_s_rate(advisor, api, book) -> None:
    body = api(advisor).get(url(book)).json()

    assert body["currency"] == "EUR"
    assert [(a["ticker"], a["gross"], a["tax"], a["net"], a["payments"]) for a in body["by_asset"]] == [
        ("KO", "120.00", "18.00", "102.00", 2),
        ("SAP", "50.00", "13.19", "36.81", 1),
    ]
    assert [(m["month"], m["gross"], m["tax"], m["net"], m["dividends"], m["interest"]) for m in body["by_month"]] == [
        ("2026-03", "82.50", "12.00", "70.50", "68.00", "2.50"),
        ("2026-04", "90.00", "19.19", "70.81", "70.81", "0.00"),
    ]
    assert body["interest"] == {"gross": "2.50", "tax": "0.00", "net": "2.50"}
    assert body["dividends"] == {"gross": "170.00", "tax": "31.19", "net": "138.81"}
    assert body["totals"] == {"gross": "172.50", "tax": "31.19", "net": "141.31"}
    assert body["missing_fx"] == []


def test_income_in_another_currency_and_over_a_period(advisor, api, book) -> None:
    body = api(advisor).get(url(book, "&currency=usd&start=2026-04-01")).json()
    assert body["currency"] == "USD"
    # April only: KO 64 / 9.6 / 54.4 USD as paid; SAP 50 / 13.19 EUR at 1.60.
    assert [(a["ticker"], a["gross"], a["tax"], a["net"]) for a in body["by_asset"]] == [
        ("KO", "64.00", "9.60", "54.40"),
        ("SAP", "80.00", "21.10", "58.90"),
    ]
    assert body["interest"]["net"] == "0.00"


def test_reversed_interest_is_no_income(advisor, api, book) -> None:
    posted, _ = transaction_post(
        actor=advisor, portfolio_id=book["portfolio"].pk, kind="interest", amount=D("7"), currency="EUR", date=APR
    )
    transaction_reverse(actor=advisor, transaction=posted)
    assert api(advisor).get(url(book)).json()["interest"]["net"] == "2.50"


def test_a_payment_without_a_rate_is_listed_and_left_out_never_taken_as_1(advisor, api, book) -> None:
    chf = AssetFactory(ticker="NESN", currency="CHF")
    DividendFactory(portfolio=book["portfolio"], asset=chf, gross=D("610"), withholding_tax=D("213.5"), pay_date=APR)
    body = api(advisor).get(url(book)).json()
    assert body["missing_fx"] == [{"kind": "dividend", "date": str(APR), "currency": "CHF"}]
    assert body["totals"]["gross"] == "172.50"
    assert "NESN" not in [a["ticker"] for a in body["by_asset"]]


def test_a_client_s_income_sums_its_portfolios_in_its_base_currency(advisor, api, book) -> None:
    other = PortfolioFactory(client=book["client"], name="Savings", base_currency="USD")
    TransactionFactory(portfolio=other, kind="interest", amount=D("16"), currency="USD", date=APR)
    body = api(advisor).get(url(book, kind="clients")).json()
    assert body["portfolios"] == [book["portfolio"].pk, other.pk]
    assert body["interest"]["net"] == "12.50"  # 2.50 EUR + 16 USD at 1.60
    assert body["totals"]["net"] == "151.31"


@pytest.mark.parametrize("kind", ["portfolios", "clients"])
def test_an_advisor_gets_404_for_another_advisors_client(other_advisor, api, book, kind: str) -> None:
    assert api(other_advisor).get(url(book, kind=kind)).status_code == 404


def test_a_user_without_a_role_is_refused(nobody, api, book) -> None:
    assert api(nobody).get(url(book)).status_code == 403


@pytest.mark.parametrize(
    ("query", "field"), [("&start=2027-01-01", "start"), ("&currency=EURO", "currency"), ("&start=soon", "start")]
)
def test_bad_parameters_are_refused_with_400_naming_them(advisor, api, book, query: str, field: str) -> None:
    response = api(advisor).get(url(book, query))
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.parametrize("kind", ["portfolios", "clients"])
def test_queries_do_not_grow_with_payments(
    advisor, api, book, count_queries: Callable[[Callable[[], Any]], int], kind: str
) -> None:
    def measure() -> int:
        cache.clear()
        user = type(advisor).objects.get(pk=advisor.pk)
        return count_queries(lambda: api(user).get(url(book, kind=kind)))

    few = measure()
    for n in range(20):
        day = datetime.date(2026, 5, 1) + datetime.timedelta(days=n)
        asset = AssetFactory(currency="USD")
        DividendFactory(portfolio=book["portfolio"], asset=asset, ex_date=day, pay_date=day)
        TransactionFactory(portfolio=book["portfolio"], kind="interest", amount=D("1"), date=day)
    assert measure() == few


def test_a_cached_answer_is_served_until_the_portfolio_changes(advisor, api, book, count_queries) -> None:
    first = api(advisor).get(url(book)).json()
    user = type(advisor).objects.get(pk=advisor.pk)
    # The portfolio only: the caller's roles and permissions come from the cache (accounts.grants), and nothing of
    # the history is read.
    assert count_queries(lambda: api(user).get(url(book))) == 1
    transaction_post(
        actor=advisor, portfolio_id=book["portfolio"].pk, kind="interest", amount=D("1"), currency="EUR", date=APR
    )
    again = api(advisor).get(url(book)).json()
    assert again["interest"]["net"] == "3.50"
    assert again != first
