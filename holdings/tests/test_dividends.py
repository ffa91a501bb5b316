"""Dividends: entitlement by ex-date, the net cash posted on the pay date through the ledger, reversal and repost,
the database's rules, and the API and admin doors (visibility, query counts)."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from clients.tests.factories import ClientFactory, main_portfolio
from holdings import dividends as services
from holdings.models import Dividend
from holdings.tests.factories import AllocationFactory, AssetFactory, DividendFactory
from ledger.models import Transaction
from ledger.selectors import cash_available
from ledger.services import transaction_post
from ledger.tests.factories import TransactionFactory
from portfolio_site.errors import ConflictError
from portfolio_site.testing import changelist_ids, page_queries, portfolio_client_agreement, refused_by

pytestmark = pytest.mark.django_db
D = Decimal
BOUGHT, EX, PAID = datetime.date(2026, 2, 2), datetime.date(2026, 3, 2), datetime.date(2026, 3, 16)
URL = "/api/v1/dividends/"


@pytest.fixture
def holder(advisor: Any) -> Any:
    """A client of the advisor's holding 40 units of a USD asset since before the ex-date."""
    client = ClientFactory(advisor=advisor, base_currency="EUR")
    asset = AssetFactory(ticker="KO", currency="USD")
    AllocationFactory(client=client, asset=asset, quantity=D("40"), price=D("60"), date=BOUGHT)
    return client, asset


def record(actor: Any, client: Any, asset: Any, **fields: Any) -> Dividend:
    values: dict[str, Any] = {"ex_date": EX, "pay_date": PAID, **fields}
    if "gross" not in values and "amount_per_unit" not in values:
        values["gross"] = D("20")
    return services.dividend_create(actor=actor, portfolio=main_portfolio(client), asset=asset, **values)


def usd(client: Any) -> Decimal:
    return cash_available(portfolio_id=main_portfolio(client).pk, currency="USD")


# --- Services ----------------------------------------------------------------------------------------------------


def test_a_dividend_posts_its_net_cash_on_the_pay_date_and_points_at_it(advisor, holder) -> None:
    client, asset = holder
    dividend = record(advisor, client, asset, gross=D("20"), withholding_tax=D("3"))
    assert (dividend.units, dividend.currency, dividend.net) == (D("40"), "USD", D("17"))
    cash = dividend.cash
    assert (cash.kind, cash.amount, cash.currency, cash.date) == ("dividend", D("17.0000"), "USD", PAID)
    assert cash.created_by == advisor
    assert usd(client) == D("17")
    assert (
        cash_available(portfolio_id=main_portfolio(client).pk, currency="USD", as_of=PAID - datetime.timedelta(1)) == 0
    )


def test_the_gross_is_the_amount_per_unit_times_the_units_held_at_the_close_before_the_ex_date(advisor, holder) -> None:
    client, asset = holder
    # Units bought on the ex-date itself are not entitled; units sold on it still are.
    AllocationFactory(client=client, asset=asset, quantity=D("5"), date=EX)
    AllocationFactory(client=client, asset=asset, kind="transfer_out", quantity=D("10"), date=EX)
    dividend = record(advisor, client, asset, amount_per_unit=D("0.48500"))
    assert (dividend.units, dividend.gross, dividend.amount_per_unit) == (D("40"), D("19.4000"), D("0.485"))


def test_a_dividend_may_be_paid_in_another_currency_than_the_asset_s(advisor, holder) -> None:
    client, asset = holder
    dividend = record(advisor, client, asset, gross=D("18.5"), currency="EUR")
    assert (dividend.cash.currency, dividend.cash.amount) == ("EUR", D("18.5000"))
    assert cash_available(portfolio_id=main_portfolio(client).pk, currency="EUR") == D("18.5")


def test_a_portfolio_without_units_at_the_close_before_the_ex_date_is_refused_with_a_clear_error(
    advisor, holder
) -> None:
    client, asset = holder
    with pytest.raises(ValidationError) as refused:
        record(advisor, client, asset, ex_date=BOUGHT)
    assert refused.value.message_dict["ex_date"] == [
        f"Main held no units of {asset} at the close before the ex-date (2026-02-01): it is not entitled to this "
        "dividend."
    ]
    assert not Transaction.objects.exists()


@pytest.mark.parametrize(
    "fields",
    [{}, {"gross": D("10"), "amount_per_unit": D("1")}],
    ids=["neither", "both"],
)
def test_a_dividend_names_its_gross_or_its_amount_per_unit(advisor, holder, fields: dict[str, Any]) -> None:
    client, asset = holder
    with pytest.raises(ValidationError) as refused:
        services.dividend_create(
            actor=advisor, portfolio=main_portfolio(client), asset=asset, ex_date=EX, pay_date=PAID, **fields
        )
    assert set(refused.value.message_dict) == {"gross", "amount_per_unit"}


def test_the_same_ex_date_twice_is_refused(advisor, holder) -> None:
    client, asset = holder
    record(advisor, client, asset)
    with pytest.raises(ValidationError, match="already has a dividend of this asset with this ex-date"):
        record(advisor, client, asset, pay_date=PAID + datetime.timedelta(1))
    assert Dividend.objects.count() == Transaction.objects.count() == 1


def test_changing_a_dividend_reverses_its_cash_and_posts_the_new(advisor, holder) -> None:
    client, asset = holder
    dividend = record(advisor, client, asset, gross=D("20"))
    old = dividend.cash
    changed = services.dividend_update(actor=advisor, dividend=dividend, withholding_tax=D("3"))
    assert Transaction.objects.filter(reverses=old).exists()
    assert (changed.cash.amount, changed.cash_id != old.pk) == (D("17.0000"), True)
    assert usd(client) == D("17")
    # Switching to an amount per unit derives the gross again.
    changed = services.dividend_update(actor=advisor, dividend=changed, amount_per_unit=D("1"))
    assert (changed.gross, changed.cash.amount) == (D("40.0000"), D("37.0000"))
    assert usd(client) == D("37")


def test_changing_only_the_notes_moves_no_cash(advisor, holder) -> None:
    client, asset = holder
    dividend = record(advisor, client, asset)
    services.dividend_update(actor=advisor, dividend=dividend, notes="Q1")
    assert Transaction.objects.count() == 1


def test_deleting_a_dividend_reverses_its_cash(advisor, holder) -> None:
    client, asset = holder
    dividend = record(advisor, client, asset)
    services.dividend_delete(actor=advisor, dividend=dividend)
    assert not Dividend.objects.exists()
    assert usd(client) == 0
    assert Transaction.objects.filter(reverses=dividend.cash).exists()


def test_deleting_a_dividend_whose_cash_was_spent_is_refused(advisor, holder) -> None:
    client, asset = holder
    dividend = record(advisor, client, asset)
    transaction_post(
        actor=advisor, portfolio_id=main_portfolio(client).pk, kind="fee", amount=D("20"), currency="USD", date=PAID
    )
    with pytest.raises(ConflictError, match="Insufficient cash"):
        services.dividend_delete(actor=advisor, dividend=dividend)
    assert Dividend.objects.exists()


def test_another_advisor_cannot_record_a_dividend_for_a_client_they_do_not_see(other_advisor, holder) -> None:
    client, asset = holder
    with pytest.raises(PermissionDenied):
        record(other_advisor, client, asset)
    assert not Dividend.objects.exists()


# --- The database's rules ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "constraint"),
    [
        ({"gross": D("0")}, "holdings_dividend_gross_positive"),
        ({"withholding_tax": D("25")}, "holdings_dividend_tax_below_gross"),
        ({"withholding_tax": D("-1")}, "holdings_dividend_tax_below_gross"),
        ({"units": D("0")}, "holdings_dividend_units_positive"),
        ({"amount_per_unit": D("0")}, "holdings_dividend_per_unit_positive"),
        ({"pay_date": datetime.date(2026, 3, 1)}, "holdings_dividend_paid_on_or_after_ex_date"),
        ({"currency": "US"}, "holdings_dividend_currency_iso"),
    ],
    ids=["zero-gross", "tax-equal-to-gross", "negative-tax", "no-units", "zero-per-unit", "paid-early", "currency"],
)
def test_database_refuses_an_invalid_dividend(fields: dict[str, Any], constraint: str) -> None:
    cash = TransactionFactory(kind="dividend")
    with refused_by(constraint):
        DividendFactory(portfolio=cash.portfolio, cash=cash, **fields)


def test_database_refuses_a_second_dividend_with_the_same_ex_date() -> None:
    first = DividendFactory()
    with refused_by("holdings_dividend_unique_per_ex_date"):
        DividendFactory(portfolio=first.portfolio, asset=first.asset)


def test_database_refuses_a_dividend_whose_client_is_not_its_portfolio_s() -> None:
    dividend = DividendFactory()
    with refused_by(portfolio_client_agreement("holdings_dividend")):
        Dividend.objects.filter(pk=dividend.pk).update(client=ClientFactory())


# --- API ---------------------------------------------------------------------------------------------------------


def test_recording_a_dividend_through_the_api_posts_its_cash(advisor, holder, api) -> None:
    client, asset = holder
    body = {"client": client.pk, "asset": asset.pk, "ex_date": str(EX), "pay_date": str(PAID)}
    response = api(advisor).post(URL, {**body, "amount_per_unit": "0.5", "withholding_tax": "3"})
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["units"], data["gross"], data["withholding_tax"], data["net"], data["currency"]) == (
        "40.0000000000",
        "20.0000",
        "3.0000",
        "17.0000",
        "USD",
    )
    assert Transaction.objects.get(pk=data["cash"]).amount == D("17")


def test_a_dividend_without_units_is_refused_with_400_naming_ex_date(advisor, holder, api) -> None:
    client, asset = holder
    body = {"client": client.pk, "asset": asset.pk, "ex_date": str(BOUGHT), "pay_date": str(PAID), "gross": "5"}
    response = api(advisor).post(URL, body)
    assert response.status_code == 400
    assert "not entitled" in response.json()["ex_date"][0]


@pytest.mark.parametrize(
    ("field", "value"),
    [("gross", "-1"), ("withholding_tax", "-0.01"), ("currency", "EURO"), ("ex_date", "soon"), ("asset", "999999")],
)
def test_invalid_dividend_fields_get_a_400_naming_the_field(advisor, holder, api, field: str, value: str) -> None:
    client, asset = holder
    body = {"client": client.pk, "asset": asset.pk, "ex_date": str(EX), "pay_date": str(PAID), "gross": "5"}
    response = api(advisor).post(URL, {**body, field: value})
    assert response.status_code == 400
    assert field in response.json()


def test_a_withholding_tax_not_below_the_gross_gets_a_400_not_a_500(advisor, holder, api) -> None:
    client, asset = holder
    body = {"client": client.pk, "asset": asset.pk, "ex_date": str(EX), "pay_date": str(PAID), "gross": "5"}
    response = api(advisor).post(URL, {**body, "withholding_tax": "5"})
    assert response.status_code == 400
    assert "less than the gross" in str(response.json())


def test_patching_and_deleting_a_dividend_through_the_api_reverses_its_cash(advisor, holder, api) -> None:
    client, asset = holder
    dividend = record(advisor, client, asset, gross=D("20"))
    response = api(advisor).patch(f"{URL}{dividend.pk}/", {"gross": "30"})
    assert response.status_code == 200, response.content
    assert usd(client) == D("30")
    assert api(advisor).delete(f"{URL}{dividend.pk}/").status_code == 204
    assert usd(client) == 0


def test_an_advisor_sees_and_records_only_their_clients_dividends(advisor, other_advisor, holder, api) -> None:
    client, asset = holder
    mine = record(advisor, client, asset)
    theirs = DividendFactory(client=ClientFactory(advisor=other_advisor))
    listed = api(advisor).get(URL).json()["results"]
    assert [row["id"] for row in listed] == [mine.pk]
    assert api(advisor).get(f"{URL}{theirs.pk}/").status_code == 404
    assert api(advisor).delete(f"{URL}{theirs.pk}/").status_code == 404
    body = {"client": theirs.client_id, "asset": asset.pk, "ex_date": str(EX), "pay_date": str(PAID), "gross": "1"}
    response = api(advisor).post(URL, body)
    assert response.status_code == 400
    assert "client" in response.json()


def test_an_auditor_reads_every_dividend_but_cannot_record_one(auditor, holder, api) -> None:
    client, asset = holder
    DividendFactory(client=client, asset=asset)
    assert len(api(auditor).get(URL).json()["results"]) == 1
    body = {"client": client.pk, "asset": asset.pk, "ex_date": str(EX), "pay_date": str(PAID), "gross": "1"}
    assert api(auditor).post(URL, body).status_code == 403


def test_dividends_filter_by_portfolio_asset_and_pay_date(operations, api) -> None:
    early = DividendFactory(pay_date=datetime.date(2026, 3, 5))
    late = DividendFactory(pay_date=datetime.date(2026, 6, 5), ex_date=datetime.date(2026, 6, 1))
    c = api(operations)

    def ids(query: str) -> set[int]:
        return {row["id"] for row in c.get(f"{URL}?{query}").json()["results"]}

    assert ids(f"portfolio={early.portfolio_id}") == {early.pk}
    assert ids(f"asset={late.asset_id}") == {late.pk}
    assert ids("pay_date_after=2026-04-01") == {late.pk}
    assert ids(f"search={early.asset.ticker}") == {early.pk}


def test_dividends_list_query_count_does_not_grow_with_rows(advisor, api, assert_list_queries_constant) -> None:
    owner = ClientFactory(advisor=advisor)

    def make_rows(count: int) -> None:
        for _ in range(count):
            DividendFactory(client=owner)
            DividendFactory()  # another advisor's

    assert_list_queries_constant(api(advisor), URL, make_rows)


# --- Admin -------------------------------------------------------------------------------------------------------


CHANGELIST = "admin:holdings_dividend_changelist"


def test_dividend_changelist_query_count_is_the_same_for_5_and_50_rows(client, advisor, count_queries) -> None:
    owner = ClientFactory(advisor=advisor)
    client.force_login(advisor)
    url = reverse(CHANGELIST)
    DividendFactory.create_batch(5, client=owner)
    page_queries(client, count_queries, url)
    few = page_queries(client, count_queries, url)
    DividendFactory.create_batch(45, client=owner)
    DividendFactory.create_batch(10)
    assert page_queries(client, count_queries, url) == few


def test_dividend_changelist_shows_an_advisor_only_their_clients_dividends(client, advisor) -> None:
    own = DividendFactory(client=ClientFactory(advisor=advisor))
    DividendFactory()
    client.force_login(advisor)
    assert changelist_ids(client.get(reverse(CHANGELIST))) == {own.pk}


def test_adding_a_dividend_in_the_admin_posts_its_cash_through_the_ledger(client, advisor, holder) -> None:
    owner, asset = holder
    client.force_login(advisor)
    form = {
        "client": owner.pk,
        "portfolio": main_portfolio(owner).pk,
        "asset": asset.pk,
        "ex_date": str(EX),
        "pay_date": str(PAID),
        "amount_per_unit": "0.25",
        "withholding_tax": "1.5",
        "currency": "",
        "gross": "",
        "notes": "",
    }
    response = client.post(reverse("admin:holdings_dividend_add"), form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    dividend = Dividend.objects.get()
    assert (dividend.gross, dividend.cash.amount, dividend.cash.currency) == (D("10"), D("8.5"), "USD")


def test_deleting_a_dividend_in_the_admin_reverses_its_cash(client, advisor, holder) -> None:
    owner, asset = holder
    dividend = record(advisor, owner, asset)
    client.force_login(advisor)
    response = client.post(reverse("admin:holdings_dividend_delete", args=[dividend.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert usd(owner) == 0


def test_client_page_lists_the_client_s_latest_dividends_at_a_constant_query_cost(
    client, advisor, count_queries
) -> None:
    owner = ClientFactory(advisor=advisor)
    client.force_login(advisor)
    url = reverse("admin:clients_client_change", args=[owner.pk])
    for _ in range(3):
        DividendFactory(client=owner, asset=AssetFactory(), ex_date=EX, pay_date=PAID)
    page_queries(client, count_queries, url)
    few = page_queries(client, count_queries, url)
    for n in range(30):
        DividendFactory(client=owner, asset=AssetFactory(), ex_date=EX, pay_date=PAID + datetime.timedelta(n))
    response = client.get(url)
    assert "Latest 20 dividends" in response.content.decode()
    assert page_queries(client, count_queries, url) == few
