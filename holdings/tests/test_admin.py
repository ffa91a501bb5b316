"""The holdings admin: assets and prices, and allocations whose buys and sells settle through the ledger."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings.models import Allocation, Asset, FxRate, Price, Split
from holdings.selectors import position
from holdings.services import units_transfer
from holdings.tests.factories import (
    AllocationFactory,
    AssetFactory,
    BuyFactory,
    FxRateFactory,
    PriceFactory,
    SplitFactory,
)
from ledger.models import Transaction
from ledger.selectors import cash_available, client_balances
from ledger.tests.factories import TransactionFactory
from portfolio_site.testing import admin_messages, changelist_ids, page_queries

pytestmark = pytest.mark.django_db

ALLOCATIONS = "admin:holdings_allocation_changelist"
TODAY = datetime.date(2026, 2, 2)


def _buy_form(
    *,
    client_pk: int | str = "",
    asset_pk: int,
    portfolio_pk: int | str = "",
    quantity: str = "10",
    price: str = "50",
    fees: str = "5",
) -> dict:
    return {
        "client": client_pk,
        "portfolio": portfolio_pk,
        "asset": asset_pk,
        "kind": Allocation.Kind.BUY,
        "quantity": quantity,
        "price": price,
        "fees": fees,
        "date": "2026-02-01",
        "notes": "",
    }


@pytest.fixture
def usd_client(advisor: Any) -> Any:
    """A client of `advisor` with 1000 USD of cash (the default asset currency)."""
    owner = ClientFactory(advisor=advisor)
    TransactionFactory(client=owner, currency="USD", amount=Decimal("1000"))
    return owner


# --- Changelists ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url_name", "make_rows"),
    [
        ("admin:holdings_asset_changelist", lambda n: AssetFactory.create_batch(n)),
        ("admin:holdings_price_changelist", lambda n: PriceFactory.create_batch(n)),
        ("admin:holdings_split_changelist", lambda n: SplitFactory.create_batch(n)),
        (
            ALLOCATIONS,
            lambda n: (BuyFactory.create_batch(n - n // 5), AllocationFactory.create_batch(n // 5)),
        ),
    ],
    ids=["assets", "prices", "splits", "allocations"],
)
def test_holdings_changelist_loads_with_the_same_query_count_for_5_and_50_rows(
    client, superuser, count_queries, url_name, make_rows
):
    client.force_login(superuser)
    url = reverse(url_name)
    make_rows(5)
    page_queries(client, count_queries, url)  # warm up per-process caches (content types, ...)
    few = page_queries(client, count_queries, url)

    make_rows(45)
    many = page_queries(client, count_queries, url)

    assert len(client.get(url).context["cl"].result_list) == 50
    assert few == many


def test_allocation_changelist_query_count_is_the_same_for_5_and_50_rows_for_an_advisor(client, advisor, count_queries):
    owner = ClientFactory(advisor=advisor)
    client.force_login(advisor)
    url = reverse(ALLOCATIONS)
    BuyFactory.create_batch(5, client=owner)
    page_queries(client, count_queries, url)
    few = page_queries(client, count_queries, url)

    BuyFactory.create_batch(45, client=owner)
    BuyFactory.create_batch(10)  # not theirs
    many = page_queries(client, count_queries, url)

    assert few == many


@pytest.mark.parametrize("model_name", ["asset", "price", "split", "allocation"])
def test_holdings_changelist_is_forbidden_to_a_user_in_no_group(client, nobody, model_name):
    client.force_login(nobody)

    assert client.get(reverse(f"admin:holdings_{model_name}_changelist")).status_code == 403


# --- Visibility -----------------------------------------------------------------------------------------------


def test_allocation_changelist_shows_an_advisor_only_allocations_of_their_own_clients(client, advisor):
    own = BuyFactory(client=ClientFactory(advisor=advisor))
    BuyFactory()
    client.force_login(advisor)

    response = client.get(reverse(ALLOCATIONS))

    assert response.status_code == 200
    assert changelist_ids(response) == {own.pk}


def test_allocation_changelist_shows_an_auditor_every_allocation(client, auditor):
    allocations = [BuyFactory(), AllocationFactory()]
    client.force_login(auditor)

    assert changelist_ids(client.get(reverse(ALLOCATIONS))) == {allocation.pk for allocation in allocations}


def test_another_advisors_allocation_page_redirects_an_advisor_away(client, advisor):
    theirs = BuyFactory()
    client.force_login(advisor)

    response = client.get(reverse("admin:holdings_allocation_change", args=[theirs.pk]))

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


def test_allocation_form_client_picker_offers_only_visible_clients(client, advisor):
    own = ClientFactory(advisor=advisor)
    ClientFactory()
    client.force_login(advisor)

    response = client.get(reverse("admin:holdings_allocation_add"))

    assert response.status_code == 200
    assert list(response.context["adminform"].form.fields["client"].queryset) == [own]


def test_allocation_client_autocomplete_offers_only_visible_clients(client, advisor):
    own = ClientFactory(advisor=advisor, name="Ada Own")
    ClientFactory(name="Ada Theirs")
    client.force_login(advisor)

    response = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "holdings", "model_name": "allocation", "field_name": "client", "term": "Ada"},
    )

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [str(own.pk)]


def test_allocation_for_another_advisors_client_is_refused_by_the_form(client, advisor):
    theirs = ClientFactory()
    TransactionFactory(client=theirs, currency="USD")
    asset = AssetFactory()
    client.force_login(advisor)

    response = client.post(reverse("admin:holdings_allocation_add"), _buy_form(client_pk=theirs.pk, asset_pk=asset.pk))

    assert response.status_code == 200
    assert "client" in response.context["adminform"].form.errors
    assert not Allocation.objects.exists()


# --- Allocations: writes through the service -------------------------------------------------------------------


def test_adding_a_buy_in_the_admin_posts_its_settlement_through_the_ledger(client, advisor, usd_client):
    asset = AssetFactory(currency="USD")
    client.force_login(advisor)

    response = client.post(
        reverse("admin:holdings_allocation_add"), _buy_form(client_pk=usd_client.pk, asset_pk=asset.pk)
    )

    assert response.status_code == 302
    assert response["Location"] == reverse(ALLOCATIONS)
    allocation = Allocation.objects.get()
    settlement = allocation.settlement
    assert (settlement.client_id, settlement.kind, settlement.amount, settlement.currency) == (
        usd_client.pk,
        Transaction.Kind.BUY,
        Decimal("505"),
        "USD",
    )
    assert settlement.created_by == advisor
    assert client_balances(client_id=usd_client.pk)["USD"] == Decimal("495")


def test_buy_larger_than_the_cash_shows_an_error_and_writes_nothing(client, advisor, usd_client):
    asset = AssetFactory(currency="USD")
    client.force_login(advisor)
    url = reverse("admin:holdings_allocation_add")

    response = client.post(url, _buy_form(client_pk=usd_client.pk, asset_pk=asset.pk, quantity="100"))

    assert response.status_code == 302
    assert response["Location"] == url
    assert any(message.startswith("Not saved: Insufficient cash") for message in admin_messages(response))
    assert not Allocation.objects.exists()
    assert Transaction.objects.count() == 1
    assert client_balances(client_id=usd_client.pk)["USD"] == Decimal("1000")


def test_buy_in_a_currency_the_client_holds_no_cash_in_is_refused(client, advisor, usd_client):
    asset = AssetFactory(currency="GBP")
    client.force_login(advisor)

    response = client.post(
        reverse("admin:holdings_allocation_add"), _buy_form(client_pk=usd_client.pk, asset_pk=asset.pk)
    )

    assert response.status_code == 302
    assert any("Insufficient cash" in message for message in admin_messages(response))
    assert not Allocation.objects.exists()


def test_changing_a_buys_quantity_in_the_admin_reverses_the_old_settlement_and_posts_a_new_one(
    client, advisor, usd_client
):
    buy = BuyFactory(client=usd_client, quantity=Decimal("2"), price=Decimal("100"))  # 200 USD settled
    client.force_login(advisor)
    form = _buy_form(client_pk=usd_client.pk, asset_pk=buy.asset_id, quantity="3", price="100", fees="0")

    response = client.post(reverse("admin:holdings_allocation_change", args=[buy.pk]), form)

    assert response.status_code == 302
    old_settlement = buy.settlement
    buy.refresh_from_db()
    assert Transaction.objects.filter(reverses=old_settlement).exists()
    assert buy.settlement.amount == Decimal("300")
    assert client_balances(client_id=usd_client.pk)["USD"] == Decimal("700")  # 1000 - 300


def test_deleting_an_allocation_in_the_admin_reverses_its_settlement(client, advisor, usd_client):
    buy = BuyFactory(client=usd_client)
    client.force_login(advisor)

    response = client.post(reverse("admin:holdings_allocation_delete", args=[buy.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not Allocation.objects.filter(pk=buy.pk).exists()
    reversal = Transaction.objects.get(reverses=buy.settlement)
    assert (reversal.kind, reversal.amount, reversal.created_by) == (
        Transaction.Kind.BUY,
        buy.settlement.amount,
        advisor,
    )


def test_deleting_a_buy_that_later_units_were_moved_out_of_is_refused_with_a_message(client, advisor, usd_client):
    buy = BuyFactory(client=usd_client, asset=AssetFactory(currency="USD"))
    AllocationFactory(client=usd_client, asset=buy.asset, kind=Allocation.Kind.TRANSFER_OUT, quantity=buy.quantity)
    client.force_login(advisor)
    url = reverse("admin:holdings_allocation_delete", args=[buy.pk])

    response = client.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert response["Location"] == url
    assert any(message.startswith("Not deleted: Not enough units") for message in admin_messages(response))
    assert Allocation.objects.filter(pk=buy.pk).exists()
    assert not Transaction.objects.filter(reverses=buy.settlement).exists()


def test_bulk_deleting_allocations_reverses_each_settlement(client, advisor, usd_client):
    buys = BuyFactory.create_batch(2, client=usd_client)
    client.force_login(advisor)

    response = client.post(
        reverse(ALLOCATIONS),
        {"action": "delete_selected", "_selected_action": [buy.pk for buy in buys], "post": "yes"},
    )

    assert response.status_code == 302
    assert not Allocation.objects.exists()
    assert Transaction.objects.filter(reverses__in=[buy.settlement for buy in buys]).count() == 2


def test_bulk_delete_refused_by_the_service_shows_an_error_and_deletes_nothing(client, advisor, usd_client):
    asset = AssetFactory(currency="USD")
    first, second = BuyFactory.create_batch(2, client=usd_client, asset=asset)
    AllocationFactory(client=usd_client, asset=asset, kind=Allocation.Kind.TRANSFER_OUT, quantity=Decimal("15"))
    client.force_login(advisor)

    response = client.post(
        reverse(ALLOCATIONS),
        {"action": "delete_selected", "_selected_action": [first.pk, second.pk], "post": "yes"},
    )

    assert response.status_code == 302
    assert any(message.startswith("Not done: Not enough units") for message in admin_messages(response))
    assert Allocation.objects.filter(pk__in=[first.pk, second.pk]).count() == 2
    assert not Transaction.objects.filter(reverses__isnull=False).exists()


def test_allocation_add_page_is_forbidden_to_an_auditor(client, auditor):
    client.force_login(auditor)

    assert client.get(reverse("admin:holdings_allocation_add")).status_code == 403


# --- Allocations: portfolios --------------------------------------------------------------------------------


@pytest.fixture
def two_accounts(advisor: Any) -> tuple[Portfolio, Portfolio]:
    """A client of `advisor` with two portfolios, the second holding 1000 USD of cash."""
    owner = ClientFactory(advisor=advisor)
    second = PortfolioFactory(client=owner, name="Retirement")
    TransactionFactory(portfolio=second, currency="USD", amount=Decimal("1000"))
    return main_portfolio(owner), second


def test_adding_a_buy_in_the_admin_lands_in_the_chosen_portfolio_and_settles_there(client, advisor, two_accounts):
    main, retirement = two_accounts
    asset = AssetFactory(currency="USD")
    client.force_login(advisor)

    response = client.post(
        reverse("admin:holdings_allocation_add"), _buy_form(portfolio_pk=retirement.pk, asset_pk=asset.pk)
    )

    assert response.status_code == 302
    allocation = Allocation.objects.get()
    assert (allocation.portfolio, allocation.client_id) == (retirement, retirement.client_id)
    assert allocation.settlement.portfolio == retirement
    assert cash_available(portfolio_id=retirement.pk, currency="USD") == Decimal("495")
    assert cash_available(portfolio_id=main.pk, currency="USD") == Decimal("0")


def test_a_buy_naming_only_a_client_with_several_portfolios_asks_for_one(client, advisor, two_accounts):
    main, _ = two_accounts
    client.force_login(advisor)

    response = client.post(
        reverse("admin:holdings_allocation_add"), _buy_form(client_pk=main.client_id, asset_pk=AssetFactory().pk)
    )

    assert response.status_code == 200
    assert "several portfolios" in str(response.context["adminform"].form.errors["portfolio"])
    assert not Allocation.objects.exists()


def test_a_buy_naming_a_client_and_another_clients_portfolio_is_refused_by_the_form(client, advisor, two_accounts):
    _, retirement = two_accounts
    other = ClientFactory(advisor=advisor)
    client.force_login(advisor)

    response = client.post(
        reverse("admin:holdings_allocation_add"),
        _buy_form(client_pk=other.pk, portfolio_pk=retirement.pk, asset_pk=AssetFactory().pk),
    )

    assert response.status_code == 200
    assert "belongs to another client" in str(response.context["adminform"].form.errors["portfolio"])
    assert not Allocation.objects.exists()


def test_a_buy_naming_neither_client_nor_portfolio_is_refused_by_the_form(client, advisor):
    client.force_login(advisor)

    response = client.post(reverse("admin:holdings_allocation_add"), _buy_form(asset_pk=AssetFactory().pk))

    assert response.status_code == 200
    assert "Choose a portfolio" in str(response.context["adminform"].form.errors["portfolio"])


def test_allocation_portfolio_picker_offers_only_visible_open_portfolios(client, advisor, two_accounts):
    main, retirement = two_accounts
    PortfolioFactory(client=main.client, name="Old account", closed_on=datetime.date(2026, 1, 31))
    ClientFactory()  # another advisor's client and its portfolio
    client.force_login(advisor)

    form = client.get(reverse("admin:holdings_allocation_add")).context["adminform"].form
    lookup = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "holdings", "model_name": "allocation", "field_name": "portfolio", "term": ""},
    )

    assert set(form.fields["portfolio"].queryset) == {main, retirement}
    assert lookup.status_code == 200
    assert {row["id"] for row in lookup.json()["results"]} == {str(main.pk), str(retirement.pk)}


def test_a_buy_in_a_closed_portfolio_is_refused_by_the_form(client, advisor, two_accounts):
    _, retirement = two_accounts
    Portfolio.objects.filter(pk=retirement.pk).update(closed_on=datetime.date(2026, 3, 1))
    client.force_login(advisor)

    response = client.post(
        reverse("admin:holdings_allocation_add"), _buy_form(portfolio_pk=retirement.pk, asset_pk=AssetFactory().pk)
    )

    assert response.status_code == 200
    assert "portfolio" in response.context["adminform"].form.errors
    assert not Allocation.objects.exists()


def test_a_buy_for_a_client_whose_only_portfolio_is_closed_is_refused_with_a_message(client, advisor, usd_client):
    Portfolio.objects.filter(client=usd_client).update(closed_on=datetime.date(2026, 3, 1))
    client.force_login(advisor)
    url = reverse("admin:holdings_allocation_add")

    response = client.post(url, _buy_form(client_pk=usd_client.pk, asset_pk=AssetFactory(currency="USD").pk))

    assert response.status_code == 302
    assert response["Location"] == url
    assert any(
        message.startswith("Not saved: The portfolio") and "is closed" in message
        for message in admin_messages(response)
    )
    assert not Allocation.objects.exists()


def test_changing_a_movement_of_a_closed_portfolio_is_refused_with_a_message(client, advisor, usd_client):
    buy = BuyFactory(client=usd_client, quantity=Decimal("2"), price=Decimal("100"))
    Portfolio.objects.filter(pk=buy.portfolio_id).update(closed_on=datetime.date(2026, 3, 1))
    client.force_login(advisor)
    url = reverse("admin:holdings_allocation_change", args=[buy.pk])
    form = _buy_form(portfolio_pk=buy.portfolio_id, asset_pk=buy.asset_id, quantity="3", price="100", fees="0")

    response = client.post(url, form)

    assert response.status_code == 302
    assert response["Location"] == url
    assert any("is closed" in message for message in admin_messages(response))
    buy.refresh_from_db()
    assert buy.quantity == Decimal("2")


def test_moving_a_buy_to_the_clients_other_portfolio_moves_its_settlement(client, advisor, two_accounts):
    main, retirement = two_accounts
    TransactionFactory(portfolio=main, currency="USD", amount=Decimal("1000"))
    buy = BuyFactory(portfolio=main, quantity=Decimal("2"), price=Decimal("100"))
    client.force_login(advisor)
    form = _buy_form(portfolio_pk=retirement.pk, asset_pk=buy.asset_id, quantity="2", price="100", fees="0")

    response = client.post(reverse("admin:holdings_allocation_change", args=[buy.pk]), form)

    assert response.status_code == 302
    buy.refresh_from_db()
    assert (buy.portfolio, buy.settlement.portfolio) == (retirement, retirement)
    assert cash_available(portfolio_id=main.pk, currency="USD") == Decimal("1000")
    assert cash_available(portfolio_id=retirement.pk, currency="USD") == Decimal("800")


def test_allocation_changelist_filters_by_portfolio_offering_an_advisor_only_their_clients_portfolios(
    client, advisor, two_accounts
):
    main, retirement = two_accounts
    in_retirement = AllocationFactory(portfolio=retirement)
    AllocationFactory(portfolio=main)
    theirs = AllocationFactory()
    client.force_login(advisor)

    everything = client.get(reverse(ALLOCATIONS))
    filtered = client.get(reverse(ALLOCATIONS), {"portfolio": retirement.pk})
    foreign = client.get(reverse(ALLOCATIONS), {"portfolio": theirs.portfolio_id})

    (portfolio_filter,) = [spec for spec in everything.context["cl"].filter_specs if spec.title == "portfolio"]
    assert {pk for pk, _ in portfolio_filter.lookup_choices} == {str(main.pk), str(retirement.pk)}
    assert changelist_ids(filtered) == {in_retirement.pk}
    assert changelist_ids(foreign) == set()
    assert str(theirs.portfolio) not in foreign.text


def test_allocation_changelist_shows_each_rows_portfolio(client, advisor, two_accounts):
    _, retirement = two_accounts
    AllocationFactory(portfolio=retirement)
    client.force_login(advisor)

    response = client.get(reverse(ALLOCATIONS))

    assert '<td class="field-portfolio_name">Retirement</td>' in response.text


def test_deleting_one_leg_of_a_units_transfer_in_the_admin_deletes_both(client, advisor, two_accounts):
    main, retirement = two_accounts
    asset = AssetFactory(currency="USD")
    AllocationFactory(portfolio=main, asset=asset, quantity=Decimal("10"))
    out, into = units_transfer(
        actor=advisor, from_portfolio=main, to_portfolio=retirement, asset=asset, quantity=Decimal("4"), date=TODAY
    )
    client.force_login(advisor)

    response = client.post(reverse("admin:holdings_allocation_delete", args=[into.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not Allocation.objects.filter(pk__in=[out.pk, into.pk]).exists()


# --- Assets and prices ----------------------------------------------------------------------------------------

# The management forms of the asset page's (empty) inlines: market data symbols and images.
NO_SYMBOLS = {
    "symbols-TOTAL_FORMS": "0",
    "symbols-INITIAL_FORMS": "0",
    "images-TOTAL_FORMS": "0",
    "images-INITIAL_FORMS": "0",
}


def test_adding_an_asset_in_the_admin_stores_the_ticker_upper_case(client, operations):
    client.force_login(operations)

    response = client.post(
        reverse("admin:holdings_asset_add"),
        {
            "ticker": " aapl ",
            "name": "Apple Inc.",
            "exchange": "xnas",
            "currency": "usd",
            "asset_type": "equity",
            **NO_SYMBOLS,
        },
    )

    assert response.status_code == 302
    asset = Asset.objects.get()
    assert (asset.ticker, asset.exchange, asset.currency) == ("AAPL", "XNAS", "USD")


def test_adding_an_asset_whose_upper_case_ticker_exists_is_refused_by_the_form(client, operations):
    AssetFactory(ticker="AAPL", exchange="XNAS")
    client.force_login(operations)

    response = client.post(
        reverse("admin:holdings_asset_add"),
        {
            "ticker": "aapl",
            "name": "Apple again",
            "exchange": "XNAS",
            "currency": "USD",
            "asset_type": "equity",
            **NO_SYMBOLS,
        },
    )

    assert response.status_code == 200
    assert "already exists" in str(response.context["adminform"].form.errors)
    assert Asset.objects.count() == 1


def test_adding_a_price_in_the_admin_stores_it(client, operations):
    asset = AssetFactory()
    client.force_login(operations)

    response = client.post(
        reverse("admin:holdings_price_add"), {"asset": asset.pk, "date": "2026-03-02", "close": "123.456789"}
    )

    assert response.status_code == 302
    price = Price.objects.get()
    assert (price.asset, price.date, price.close) == (asset, datetime.date(2026, 3, 2), Decimal("123.456789"))


def test_adding_a_split_in_the_admin_records_it_through_its_service(client, operations):
    asset = AssetFactory()
    portfolio = main_portfolio(ClientFactory())
    AllocationFactory(portfolio=portfolio, asset=asset, quantity=Decimal("10"), date=datetime.date(2026, 3, 1))
    Portfolio.objects.update(history_changed_from=None)  # what the split marks, not what the holding did
    client.force_login(operations)

    response = client.post(
        reverse("admin:holdings_split_add"),
        {"asset": asset.pk, "date": "2026-03-02", "new_units": "3", "old_units": "1", "notes": ""},
    )

    assert response.status_code == 302
    assert Split.objects.get().new_units == 3
    assert position(portfolio_id=portfolio.pk, asset_id=asset.pk) == 30
    portfolio.refresh_from_db()
    assert portfolio.history_changed_from == datetime.date(2026, 3, 2)  # stale from the split's day


def test_a_second_split_of_an_asset_on_a_day_is_refused_by_the_admin_form(client, operations):
    split = SplitFactory()
    client.force_login(operations)

    response = client.post(
        reverse("admin:holdings_split_add"),
        {"asset": split.asset_id, "date": split.date.isoformat(), "new_units": "3", "old_units": "1"},
    )

    assert response.status_code == 200
    assert "already has a split on this date" in str(response.context["adminform"].form.errors)


@pytest.mark.parametrize("model_name", ["asset", "price", "split"])
def test_asset_and_price_add_pages_are_forbidden_to_an_advisor(client, advisor, model_name):
    client.force_login(advisor)

    assert client.get(reverse(f"admin:holdings_{model_name}_add")).status_code == 403


# --- FX rates ---------------------------------------------------------------------------------------------------


def test_fx_rate_changelist_loads_with_the_same_query_count_for_5_and_50_rows(client, superuser, count_queries):
    client.force_login(superuser)
    url = reverse("admin:holdings_fxrate_changelist")
    FxRateFactory.create_batch(5)
    page_queries(client, count_queries, url)
    few = page_queries(client, count_queries, url)
    FxRateFactory.create_batch(45)
    assert page_queries(client, count_queries, url) == few


def test_fx_rate_changelist_is_forbidden_to_a_user_in_no_group(client, nobody):
    client.force_login(nobody)
    assert client.get(reverse("admin:holdings_fxrate_changelist")).status_code == 403


def test_adding_changing_and_deleting_a_rate_in_the_admin_goes_through_the_services(client, superuser, monkeypatch):
    from holdings import services

    called: list[str] = []
    for name in ("fx_rate_create", "fx_rate_update", "fx_rate_delete"):
        original = getattr(services, name)
        monkeypatch.setattr(services, name, lambda *a, _f=original, _n=name, **k: (called.append(_n), _f(*a, **k))[1])
    client.force_login(superuser)
    form = {"base": "eur", "quote": "usd", "date": "2026-03-02", "rate": "1.0812"}
    assert client.post(reverse("admin:holdings_fxrate_add"), form).status_code == 302
    fx = FxRate.objects.get()
    assert (fx.base, fx.quote) == ("EUR", "USD")
    change = client.post(reverse("admin:holdings_fxrate_change", args=[fx.pk]), {**form, "rate": "1.09"})
    assert change.status_code == 302
    assert client.post(reverse("admin:holdings_fxrate_delete", args=[fx.pk]), {"post": "yes"}).status_code == 302
    assert called == ["fx_rate_create", "fx_rate_update", "fx_rate_delete"]
    assert not FxRate.objects.exists()


def test_a_rate_between_a_currency_and_itself_is_refused_by_the_admin_form(client, superuser):
    client.force_login(superuser)
    form = {"base": "EUR", "quote": "EUR", "date": "2026-03-02", "rate": "1"}
    assert client.post(reverse("admin:holdings_fxrate_add"), form).status_code == 200
    assert not FxRate.objects.exists()
