"""Allocations edited inline on the client's page: each row through the holdings services, in the page's
transaction; refused rows shown on their form with nothing saved; the portfolio picker scoped to the client."""

import datetime
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from django import forms, test
from django.urls import reverse

from clients.models import Client
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings import services
from holdings.models import Allocation, Asset
from holdings.tests.factories import AssetFactory, BuyFactory
from ledger.models import Transaction
from ledger.selectors import client_balances
from ledger.tests.factories import TransactionFactory
from portfolio_site import history
from portfolio_site.testing import admin_messages, page_queries
from portfolio_site.tests.test_content_security_policy import assert_works_under_its_policy

pytestmark = pytest.mark.django_db

PREFIX = "allocations"
DAY = datetime.date(2026, 2, 2)


def _url(owner: Client) -> str:
    return reverse("admin:clients_client_change", args=[owner.pk])


def _page_data(client: test.Client, url: str) -> dict[str, Any]:
    """What the browser posts from the page as it stands: the client's fields, the allocation rows as shown, and the
    management forms (the other inlines are read-only: none of their rows)."""
    page = client.get(url)
    assert page.status_code == 200
    data: dict[str, Any] = {}

    def add(form: Any) -> None:
        for name, field in form.fields.items():
            value = form[name].value()
            if isinstance(field, forms.BooleanField):
                if value:
                    data[form[name].html_name] = "on"
            elif value is not None:
                data[form[name].html_name] = str(value)

    add(page.context["adminform"].form)
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        rows = formset.initial_forms if formset.prefix == PREFIX else []
        for form in rows:
            add(form)
        data |= {
            f"{formset.prefix}-TOTAL_FORMS": len(rows),
            f"{formset.prefix}-INITIAL_FORMS": len(rows),
            f"{formset.prefix}-MAX_NUM_FORMS": 1000,
        }
    return data


def _new_row(data: dict[str, Any], **fields: Any) -> dict[str, Any]:
    index = data[f"{PREFIX}-TOTAL_FORMS"]
    data[f"{PREFIX}-TOTAL_FORMS"] = index + 1
    return data | {f"{PREFIX}-{index}-{name}": value for name, value in fields.items()}


def _row_index(data: dict[str, Any], allocation: Allocation) -> int:
    (key,) = [key for key, value in data.items() if key.endswith("-id") and value == str(allocation.pk)]
    return int(key.split("-")[1])


def _buy(asset: Asset, portfolio: Any, quantity: str = "10") -> dict[str, Any]:
    return {
        "portfolio": portfolio.pk,
        "asset": asset.pk,
        "kind": Allocation.Kind.BUY,
        "quantity": quantity,
        "price": "25.50",
        "fees": "1",
        "taxes": "",
        "date": DAY.isoformat(),
        "notes": "",
    }


def _funded(owner: Client, amount: str = "10000") -> None:
    TransactionFactory(client=owner, kind=Transaction.Kind.DEPOSIT, amount=Decimal(amount), currency="USD")


def _inline(response: Any) -> Any:
    (inline,) = [inline for inline in response.context["inline_admin_formsets"] if inline.formset.prefix == PREFIX]
    return inline


def test_a_buy_added_inline_is_recorded_through_allocation_create_and_settles_its_cash(client, advisor) -> None:
    owner = ClientFactory(advisor=advisor)
    _funded(owner)
    asset = AssetFactory(currency="USD")
    client.force_login(advisor)
    data = _new_row(_page_data(client, _url(owner)), **_buy(asset, main_portfolio(owner)))

    with mock.patch.object(services, "allocation_create", wraps=services.allocation_create) as create:
        response = client.post(_url(owner), data)

    assert response.status_code == 302, admin_messages(response)
    assert create.call_args.kwargs["actor"] == advisor
    (buy,) = Allocation.objects.filter(client=owner)
    assert (buy.kind, buy.quantity, buy.settlement is not None) == (Allocation.Kind.BUY, Decimal("10"), True)
    assert client_balances(client_id=owner.pk) == {"USD": Decimal("10000") - Decimal("256")}  # 10 x 25.50 + 1
    recorded = Allocation.history.filter(id=buy.pk).latest()  # the change history names who, through which door
    assert (recorded.history_type, recorded.history_user, recorded.history_door) == ("+", advisor, history.Door.ADMIN)


def test_changing_a_rows_units_inline_goes_through_allocation_update_and_resettles(client, operations) -> None:
    owner = ClientFactory()
    _funded(owner)
    buy = BuyFactory(client=owner, asset=AssetFactory(currency="USD"), quantity=Decimal("10"), price=Decimal("10"))
    client.force_login(operations)
    data = _page_data(client, _url(owner))
    data[f"{PREFIX}-{_row_index(data, buy)}-quantity"] = "12"

    with mock.patch.object(services, "allocation_update", wraps=services.allocation_update) as update:
        response = client.post(_url(owner), data)

    assert response.status_code == 302, admin_messages(response)
    assert update.call_args.kwargs["actor"] == operations
    assert set(update.call_args.kwargs) == {"actor", "allocation", "quantity"}
    buy.refresh_from_db()
    assert buy.quantity == Decimal("12")
    assert client_balances(client_id=owner.pk) == {"USD": Decimal("10000") - Decimal("120")}


def test_deleting_a_row_inline_goes_through_allocation_delete_and_reverses_its_cash(client, advisor) -> None:
    owner = ClientFactory(advisor=advisor)
    _funded(owner)
    buy = BuyFactory(client=owner, asset=AssetFactory(currency="USD"), quantity=Decimal("10"), price=Decimal("10"))
    client.force_login(advisor)
    data = _page_data(client, _url(owner))
    data[f"{PREFIX}-{_row_index(data, buy)}-DELETE"] = "on"

    with mock.patch.object(services, "allocation_delete", wraps=services.allocation_delete) as delete:
        response = client.post(_url(owner), data)

    assert response.status_code == 302, admin_messages(response)
    delete.assert_called_once()
    assert not Allocation.objects.filter(pk=buy.pk).exists()
    assert client_balances(client_id=owner.pk) == {"USD": Decimal("10000")}


def test_a_sell_beyond_the_units_held_is_refused_on_its_row_and_nothing_of_the_page_is_saved(client, advisor) -> None:
    owner = ClientFactory(advisor=advisor, name="Before")
    _funded(owner)
    asset = AssetFactory(currency="USD")
    BuyFactory(client=owner, asset=asset, quantity=Decimal("10"), price=Decimal("10"), date=DAY)
    client.force_login(advisor)
    data = _page_data(client, _url(owner)) | {"name": "After"}
    data = _new_row(data, **_buy(asset, main_portfolio(owner), quantity="1"))  # a buy that would be fine alone
    data = _new_row(data, **(_buy(asset, main_portfolio(owner), quantity="50") | {"kind": Allocation.Kind.SELL}))

    response = client.post(_url(owner), data)

    assert response.status_code == 200  # the page again, with the POST's values and the refusal on its row
    formset = _inline(response).formset
    (refused,) = [form for form in formset.forms if form.non_field_errors()]
    assert refused.prefix == f"{PREFIX}-2"
    assert "Not enough units" in refused.non_field_errors()[0]
    assert any("Not enough units" in message for message in admin_messages(response))
    assert "Not enough units" in response.text
    assert_works_under_its_policy(response)  # the page shown again, its error rows included
    owner.refresh_from_db()
    assert owner.name == "Before"  # the client's change in the same POST was rolled back too
    assert Allocation.objects.filter(client=owner).count() == 1
    assert client_balances(client_id=owner.pk) == {"USD": Decimal("10000") - Decimal("100")}


def test_deleting_a_buy_that_a_later_sell_needs_is_refused_and_nothing_is_deleted(client, operations) -> None:
    owner = ClientFactory()
    _funded(owner)
    asset = AssetFactory(currency="USD")
    buy = BuyFactory(client=owner, asset=asset, quantity=Decimal("10"), price=Decimal("10"), date=DAY)
    services.allocation_create(
        actor=operations,
        portfolio=main_portfolio(owner),
        asset=asset,
        kind=Allocation.Kind.SELL,
        quantity=Decimal("5"),
        price=Decimal("10"),
        date=DAY + datetime.timedelta(days=1),
    )
    client.force_login(operations)
    data = _page_data(client, _url(owner))
    data[f"{PREFIX}-{_row_index(data, buy)}-DELETE"] = "on"

    response = client.post(_url(owner), data)

    assert response.status_code == 200
    assert any("Not enough units" in error for error in _inline(response).formset.non_form_errors())
    assert Allocation.objects.filter(client=owner).count() == 2


def test_an_auditor_sees_the_rows_read_only_with_money_as_people_read_it(client, auditor) -> None:
    owner = ClientFactory()
    BuyFactory(client=owner, asset=AssetFactory(currency="USD"), quantity=Decimal("12.5"), fees=Decimal("3"))
    client.force_login(auditor)

    response = client.get(_url(owner))

    inline = _inline(response)
    assert (inline.has_add_permission, inline.has_change_permission, inline.has_delete_permission) == (
        False,
        False,
        False,
    )
    assert ">12.5<" in response.text
    assert "3.00 USD" in response.text
    assert f'name="{PREFIX}-0-quantity"' not in response.text


def test_the_rows_are_editable_for_an_advisor_with_plain_decimal_inputs(client, advisor) -> None:
    owner = ClientFactory(advisor=advisor)
    BuyFactory(client=owner, asset=AssetFactory(currency="USD"), quantity=Decimal("12.5"))
    client.force_login(advisor)

    response = client.get(_url(owner))

    inline = _inline(response)
    assert (inline.has_add_permission, inline.has_change_permission, inline.has_delete_permission) == (
        True,
        True,
        True,
    )
    assert f'name="{PREFIX}-0-quantity"' in response.text
    all_rows = reverse("admin:holdings_allocation_changelist") + f"?client__id__exact={owner.pk}"
    assert all_rows in response.text
    assert set(client.get(all_rows).context["cl"].result_list) == set(Allocation.objects.filter(client=owner))


def test_new_rows_are_offered_only_this_clients_open_portfolios(client, advisor) -> None:
    owner = ClientFactory(advisor=advisor)
    PortfolioFactory(client=owner, name="Closed one", closed_on=datetime.date(2025, 6, 1))
    ClientFactory(advisor=advisor)  # another of the advisor's clients: not this page's
    client.force_login(advisor)

    response = client.get(_url(owner))

    choices = list(_inline(response).formset.empty_form.fields["portfolio"].choices)
    assert [label for value, label in choices if value] == [main_portfolio(owner).name]


@pytest.mark.parametrize("whose", ["another advisor's client", "another of the advisor's clients"])
def test_a_crafted_post_cannot_add_an_allocation_to_another_clients_portfolio(
    client, advisor, other_advisor, whose
) -> None:
    owner = ClientFactory(advisor=advisor)
    other = ClientFactory(advisor=other_advisor if whose == "another advisor's client" else advisor)
    _funded(other)
    client.force_login(advisor)
    data = _new_row(_page_data(client, _url(owner)), **_buy(AssetFactory(currency="USD"), main_portfolio(other)))

    response = client.post(_url(owner), data)

    assert response.status_code == 200
    assert "portfolio" in _inline(response).formset.forms[0].errors
    assert not Allocation.objects.exists()


def test_saving_the_page_without_touching_the_rows_writes_no_allocation(client, advisor) -> None:
    owner = ClientFactory(advisor=advisor)
    BuyFactory(client=owner, asset=AssetFactory(currency="USD"), quantity=Decimal("12.5000000000"))
    client.force_login(advisor)
    data = _page_data(client, _url(owner))
    assert data[f"{PREFIX}-0-quantity"] == "12.5"

    with mock.patch.object(services, "allocation_update") as update:
        response = client.post(_url(owner), data)

    assert response.status_code == 302
    update.assert_not_called()


def test_the_editable_rows_cost_the_same_queries_for_5_and_25_allocations(client, advisor, count_queries) -> None:
    owner = ClientFactory(advisor=advisor)
    second = PortfolioFactory(client=owner, name="Second")
    client.force_login(advisor)
    url = _url(owner)
    page_queries(client, count_queries, url)  # warm up per-process caches (content types, ...)

    def measure(count: int) -> int:
        for n in range(count):  # each row its own asset, half of them in the second portfolio
            BuyFactory(client=owner, portfolio=second if n % 2 else None, date=DAY)
        return page_queries(client, count_queries, url)

    few = measure(5)
    many = measure(20)

    assert few == many
