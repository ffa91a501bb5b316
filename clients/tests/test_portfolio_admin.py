"""The portfolios admin: its own changelist, scoped to what the user may see, writes through the clients services,
and a read-only inline on the client's page."""

import datetime
from typing import Any
from unittest import mock

import pytest
from django.contrib.admin import ModelAdmin
from django.urls import reverse

from clients import services
from clients.models import Client, Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from ledger.tests.factories import TransactionFactory
from portfolio_site.testing import admin_messages, changelist_ids, page_queries

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:clients_portfolio_changelist"
ADD = "admin:clients_portfolio_add"


def _change_url(portfolio: Portfolio) -> str:
    return reverse("admin:clients_portfolio_change", args=[portfolio.pk])


def _delete_url(portfolio: Portfolio) -> str:
    return reverse("admin:clients_portfolio_delete", args=[portfolio.pk])


def _portfolio_form(owner: Client, **fields: Any) -> dict[str, Any]:
    return {
        "client": owner.pk,
        "name": "Retirement",
        "kind": Portfolio.Kind.RETIREMENT,
        "custodian": "Fidelity",
        "account_number": "RET-001",
        "base_currency": "usd",
        "opened_on": "2026-01-05",
        "closed_on": "",
        "notes": "",
    } | fields


def _make_portfolios(count: int, **client_fields: Any) -> None:
    """`count` portfolios, two to a client where the count allows, with every column filled."""
    for n in range(count):
        if n % 2 == 0:
            owner = ClientFactory(main_portfolio=None, **client_fields)
        PortfolioFactory(client=owner, custodian="Schwab", account_number=f"ACC-{owner.pk}-{n}")


# --- Changelist -------------------------------------------------------------------------------------------------


def test_portfolio_changelist_loads_with_the_same_query_count_for_5_and_50_rows(client, superuser, count_queries):
    client.force_login(superuser)
    url = reverse(CHANGELIST)
    _make_portfolios(5)
    page_queries(client, count_queries, url)  # warm up per-process caches (content types, ...)
    few = page_queries(client, count_queries, url)

    _make_portfolios(45)
    many = page_queries(client, count_queries, url)

    assert len(client.get(url).context["cl"].result_list) == 50
    assert few == many


def test_portfolio_changelist_query_count_is_the_same_for_5_and_50_rows_for_an_advisor(client, advisor, count_queries):
    client.force_login(advisor)
    url = reverse(CHANGELIST)
    _make_portfolios(5, advisor=advisor)
    page_queries(client, count_queries, url)
    few = page_queries(client, count_queries, url)

    _make_portfolios(45, advisor=advisor)
    _make_portfolios(6)  # not theirs
    many = page_queries(client, count_queries, url)

    assert len(client.get(url).context["cl"].result_list) == 50
    assert few == many


def test_portfolio_changelist_shows_an_advisor_only_their_clients_portfolios(client, advisor):
    own = ClientFactory(advisor=advisor)
    second = PortfolioFactory(client=own)
    ClientFactory()  # another advisor's client, with its Main portfolio
    client.force_login(advisor)

    response = client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    assert changelist_ids(response) == {main_portfolio(own).pk, second.pk}


def test_portfolio_changelist_filters_open_and_closed_portfolios(client, operations):
    owner = ClientFactory()
    closed = PortfolioFactory(client=owner, closed_on=datetime.date(2026, 2, 1))
    client.force_login(operations)

    open_ones = client.get(reverse(CHANGELIST), {"status": "open"})
    closed_ones = client.get(reverse(CHANGELIST), {"status": "closed"})

    assert changelist_ids(open_ones) == {main_portfolio(owner).pk}
    assert changelist_ids(closed_ones) == {closed.pk}


def test_portfolio_changelist_finds_a_portfolio_by_its_account_number(client, operations):
    wanted = PortfolioFactory(custodian="Schwab", account_number="XK-4411")
    PortfolioFactory(custodian="Schwab", account_number="YY-0000")
    client.force_login(operations)

    assert changelist_ids(client.get(reverse(CHANGELIST), {"q": "XK-44"})) == {wanted.pk}


def test_another_advisors_portfolio_page_redirects_an_advisor_away(client, advisor):
    theirs = main_portfolio(ClientFactory())
    client.force_login(advisor)

    response = client.get(_change_url(theirs))

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


def test_portfolio_changelist_is_forbidden_to_a_user_in_no_group(client, nobody):
    client.force_login(nobody)

    assert client.get(reverse(CHANGELIST)).status_code == 403


# --- Writes through the services --------------------------------------------------------------------------------


def test_adding_a_portfolio_in_the_admin_goes_through_portfolio_create(client, advisor):
    owner = ClientFactory(advisor=advisor)
    client.force_login(advisor)

    with mock.patch.object(services, "portfolio_create", wraps=services.portfolio_create) as create:
        response = client.post(reverse(ADD), _portfolio_form(owner))

    assert response.status_code == 302
    create.assert_called_once()
    assert create.call_args.kwargs["actor"] == advisor
    created = owner.portfolios.get(name="Retirement")
    assert (created.kind, created.custodian, created.account_number, created.base_currency) == (
        Portfolio.Kind.RETIREMENT,
        "Fidelity",
        "RET-001",
        "USD",
    )


def test_an_advisor_cannot_open_a_portfolio_for_another_advisors_client(client, advisor):
    theirs = ClientFactory()
    client.force_login(advisor)

    response = client.post(reverse(ADD), _portfolio_form(theirs))

    assert response.status_code == 200
    assert "client" in response.context["adminform"].form.errors
    assert not theirs.portfolios.filter(name="Retirement").exists()


def test_a_second_portfolio_with_the_same_name_whatever_the_case_is_refused(client, advisor):
    owner = ClientFactory(advisor=advisor)
    client.force_login(advisor)

    response = client.post(reverse(ADD), _portfolio_form(owner, name="main"))

    assert response.status_code == 200
    assert "already has a portfolio with this name" in str(response.context["adminform"].form.errors)
    assert owner.portfolios.count() == 1


def test_closing_a_portfolio_in_the_admin_goes_through_portfolio_update(client, advisor):
    portfolio = main_portfolio(ClientFactory(advisor=advisor))
    client.force_login(advisor)
    form = _portfolio_form(portfolio.client, name="Main", closed_on="2026-03-31")

    with mock.patch.object(services, "portfolio_update", wraps=services.portfolio_update) as update:
        response = client.post(_change_url(portfolio), form)

    assert response.status_code == 302
    update.assert_called_once()
    portfolio.refresh_from_db()
    assert portfolio.closed_on == datetime.date(2026, 3, 31)


def test_a_portfolio_stays_with_its_client_when_its_change_form_names_another(client, operations):
    portfolio = main_portfolio(ClientFactory())
    other = ClientFactory()
    client.force_login(operations)

    client.post(_change_url(portfolio), _portfolio_form(other, name="Main"))

    portfolio.refresh_from_db()
    assert portfolio.client_id != other.pk


def test_deleting_an_empty_portfolio_in_the_admin_goes_through_portfolio_delete(client, operations):
    portfolio = PortfolioFactory()
    client.force_login(operations)

    with mock.patch.object(services, "portfolio_delete", wraps=services.portfolio_delete) as delete:
        response = client.post(_delete_url(portfolio), {"post": "yes"})

    assert response.status_code == 302
    delete.assert_called_once()
    assert not Portfolio.objects.filter(pk=portfolio.pk).exists()


def test_deleting_a_portfolio_with_movements_is_refused_with_their_count_not_a_list_of_rows(client, operations):
    portfolio = main_portfolio(ClientFactory())
    TransactionFactory.create_batch(3, portfolio=portfolio)
    client.force_login(operations)

    page = client.get(_delete_url(portfolio))
    posted = client.post(_delete_url(portfolio), {"post": "yes"})

    assert page.status_code == posted.status_code == 200  # Django's "cannot delete" page, with the reason
    assert page.context["protected"] == ["3 transactions"]
    assert "3 transactions" in posted.text
    assert Portfolio.objects.filter(pk=portfolio.pk).exists()


def test_bulk_deleting_portfolios_with_movements_is_refused_and_deletes_none(client, operations):
    empty = PortfolioFactory()
    used = main_portfolio(ClientFactory())
    TransactionFactory(portfolio=used)
    client.force_login(operations)

    response = client.post(
        reverse(CHANGELIST), {"action": "delete_selected", "_selected_action": [empty.pk, used.pk], "post": "yes"}
    )

    assert response.status_code == 200
    assert response.context["protected"] == ["1 transaction"]
    assert Portfolio.objects.filter(pk__in=[empty.pk, used.pk]).count() == 2


def test_a_portfolio_given_a_movement_after_the_confirmation_page_is_refused_with_a_message(client, operations):
    portfolio = main_portfolio(ClientFactory())
    TransactionFactory(portfolio=portfolio)
    client.force_login(operations)
    url = _delete_url(portfolio)

    # What the admin saw before the movement arrived: nothing protecting the portfolio.
    with (
        mock.patch.object(ModelAdmin, "get_deleted_objects", return_value=([], {}, set(), [])),
        mock.patch("clients.admin._movement_counts", return_value=[]),
    ):
        response = client.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert response["Location"] == url
    assert "Not deleted: It is still referenced by other records and cannot be deleted." in admin_messages(response)
    assert Portfolio.objects.filter(pk=portfolio.pk).exists()


def test_an_advisor_may_not_delete_a_portfolio(client, advisor):
    portfolio = PortfolioFactory(client=ClientFactory(advisor=advisor))
    client.force_login(advisor)

    assert client.post(_delete_url(portfolio), {"post": "yes"}).status_code == 403
    assert Portfolio.objects.filter(pk=portfolio.pk).exists()


@pytest.mark.parametrize("role", ["auditor", "nobody"])
def test_portfolio_add_page_is_forbidden_to_those_who_may_not_open_one(client, request, role):
    client.force_login(request.getfixturevalue(role))

    assert client.get(reverse(ADD)).status_code == 403


# --- On the client's page --------------------------------------------------------------------------------------


def test_client_page_lists_its_portfolios_read_only_with_a_link_to_open_another(client, advisor):
    owner = ClientFactory(advisor=advisor, base_currency="GBP")
    retirement = PortfolioFactory(client=owner, name="Retirement")
    client.force_login(advisor)

    response = client.get(reverse("admin:clients_client_change", args=[owner.pk]))

    (inline,) = [inline for inline in response.context["inline_admin_formsets"] if inline.formset.model is Portfolio]
    assert [form.instance for form in inline.formset.initial_forms] == [main_portfolio(owner), retirement]
    assert (inline.has_add_permission, inline.has_change_permission) == (False, False)
    assert f"{reverse(ADD)}?client={owner.pk}&amp;base_currency=GBP" in response.text
    assert _change_url(retirement) in response.text


def test_the_open_portfolio_link_is_not_offered_to_an_auditor(client, auditor):
    owner = ClientFactory()
    client.force_login(auditor)

    response = client.get(reverse("admin:clients_client_change", args=[owner.pk]))

    assert response.status_code == 200
    assert reverse(ADD) not in response.text


def test_portfolio_add_page_takes_the_client_and_currency_from_the_link(client, advisor):
    owner = ClientFactory(advisor=advisor, base_currency="GBP")
    client.force_login(advisor)

    response = client.get(reverse(ADD), {"client": owner.pk, "base_currency": "GBP"})

    initial = response.context["adminform"].form.initial
    assert (str(initial["client"]), initial["base_currency"]) == (str(owner.pk), "GBP")
    assert "opened_on" in initial
