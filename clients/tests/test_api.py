import datetime
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from accounts.roles import Role
from accounts.tests.factories import AdvisorFactory, OperationsFactory
from clients.models import Client, Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from ledger.tests.factories import TransactionFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/clients/"
UNKNOWN_PK = 987654321


def ids(response: Any) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def new_client(**extra: Any) -> dict[str, Any]:
    return {"name": "Maria Gonzalez", "email": "Maria@Example.net", "base_currency": "eur", **extra}


def test_advisor_lists_and_reads_only_their_own_clients(advisor, other_advisor, api) -> None:
    mine = ClientFactory(advisor=advisor)
    theirs = ClientFactory(advisor=other_advisor)
    client = api(advisor)
    assert ids(client.get(URL)) == {mine.pk}
    assert client.get(f"{URL}{mine.pk}/").status_code == 200
    assert client.get(f"{URL}{theirs.pk}/").status_code == 404
    assert ids(client.get(f"{URL}?search={theirs.name}")) == set()
    assert ids(client.get(f"{URL}?advisor={advisor.pk}")) == {mine.pk}


@pytest.mark.parametrize("role_user", ["operations", "auditor", "superuser"])
def test_all_seeing_roles_list_every_client(role_user: str, request, api) -> None:
    clients = ClientFactory.create_batch(3)
    assert ids(api(request.getfixturevalue(role_user)).get(URL)) == {c.pk for c in clients}


def test_staff_in_no_group_are_refused_client_data(nobody, api) -> None:
    client = ClientFactory()
    assert api(nobody).get(URL).status_code == 403
    assert api(nobody).get(f"{URL}{client.pk}/").status_code == 403


def test_anonymous_callers_get_401() -> None:
    from rest_framework.test import APIClient

    assert APIClient().get(URL).status_code == 401


def test_advisor_creates_a_client_for_themselves_by_default(advisor, api) -> None:
    response = api(advisor).post(URL, new_client())
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["advisor"], body["email"], body["base_currency"]) == (advisor.pk, "maria@example.net", "EUR")


def test_advisor_naming_another_advisor_is_refused_like_an_unknown_user(advisor, other_advisor, api) -> None:
    client = api(advisor)
    mine = ClientFactory(advisor=advisor)
    for other, unknown in [
        (client.post(URL, new_client(advisor=other_advisor.pk)), client.post(URL, new_client(advisor=UNKNOWN_PK))),
        (
            client.patch(f"{URL}{mine.pk}/", {"advisor": other_advisor.pk}),
            client.patch(f"{URL}{mine.pk}/", {"advisor": UNKNOWN_PK}),
        ),
    ]:
        assert other.status_code == unknown.status_code == 400
        assert other.json() == {"advisor": [f'Invalid pk "{other_advisor.pk}" - object does not exist.']}
        assert unknown.json() == {"advisor": [f'Invalid pk "{UNKNOWN_PK}" - object does not exist.']}
    mine.refresh_from_db()
    assert mine.advisor == advisor
    assert not Client.objects.filter(email="maria@example.net").exists()


def test_advisor_filtering_by_another_advisor_answers_like_an_unknown_user(advisor, other_advisor, api) -> None:
    ClientFactory(advisor=other_advisor)
    client = api(advisor)
    other = client.get(f"{URL}?advisor={other_advisor.pk}")
    unknown = client.get(f"{URL}?advisor={UNKNOWN_PK}")
    assert other.status_code == unknown.status_code == 400
    assert other.json() == unknown.json()


def test_operations_may_name_and_filter_by_any_advisor(operations, advisor, other_advisor, api) -> None:
    theirs = ClientFactory(advisor=other_advisor)
    client = api(operations)
    assert ids(client.get(f"{URL}?advisor={other_advisor.pk}")) == {theirs.pk}
    assert client.patch(f"{URL}{theirs.pk}/", {"advisor": advisor.pk}).status_code == 200
    assert ids(client.get(f"{URL}?advisor={advisor.pk}")) == {theirs.pk}


def test_operations_may_filter_by_a_deactivated_advisor_but_not_name_one(operations, advisor, api) -> None:
    departed = AdvisorFactory(is_active=False)
    theirs = ClientFactory(advisor=advisor)
    Client.objects.filter(pk=theirs.pk).update(advisor=departed)
    client = api(operations)
    # Finding a departed advisor's clients is how Operations hands them over.
    assert ids(client.get(f"{URL}?advisor={departed.pk}")) == {theirs.pk}
    refused = client.post(URL, new_client(advisor=departed.pk))
    assert refused.status_code == 400
    assert "advisor" in refused.json()


def test_browsable_api_forms_show_an_advisor_no_other_staff(advisor, api) -> None:
    others = [
        AdvisorFactory(email="colleague@example.com", full_name="Ophelia Colleague"),
        OperationsFactory(email="backoffice@example.com", full_name="Bartholomew Backoffice"),
    ]
    ClientFactory(advisor=others[0])
    response = api(advisor).get(URL, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    html = response.content.decode()
    # The forms are there (the advisor's own entry proves it), just without anyone else in them.
    assert f'<option value="{advisor.pk}"' in html
    for user in others:
        assert user.email not in html
        assert user.full_name not in html
        assert f'<option value="{user.pk}"' not in html


def test_browsable_api_forms_show_operations_every_advisor(operations, advisor, api) -> None:
    html = api(operations).get(URL, HTTP_ACCEPT="text/html").content.decode()
    assert f'<option value="{advisor.pk}"' in html


def test_operations_must_name_the_advisor(operations, advisor, api) -> None:
    missing = api(operations).post(URL, new_client())
    assert missing.status_code == 400
    assert "advisor" in missing.json()
    assert api(operations).post(URL, new_client(advisor=advisor.pk)).status_code == 201


def test_auditor_cannot_write_clients(auditor, advisor, api) -> None:
    client = ClientFactory()
    assert api(auditor).post(URL, new_client(advisor=advisor.pk)).status_code == 403
    assert api(auditor).patch(f"{URL}{client.pk}/", {"name": "X"}).status_code == 403
    assert api(auditor).delete(f"{URL}{client.pk}/").status_code == 403


def test_invalid_client_fields_are_reported_per_field(operations, advisor, api) -> None:
    ClientFactory(email="taken@example.net")
    response = api(operations).post(
        URL, new_client(email="TAKEN@example.net", base_currency="XYZ", phone="call me", advisor=advisor.pk)
    )
    assert response.status_code == 400
    assert set(response.json()) == {"email", "base_currency", "phone"}


def test_deleting_a_client_with_ledger_history_is_a_conflict(operations, api) -> None:
    tx = TransactionFactory()
    response = api(operations).delete(f"{URL}{tx.client_id}/")
    assert response.status_code == 409
    assert "detail" in response.json()
    assert Client.objects.filter(pk=tx.client_id).exists()


def test_deleting_a_client_without_history_is_allowed_for_operations(operations, advisor, api) -> None:
    client = ClientFactory()
    assert api(advisor).delete(f"{URL}{client.pk}/").status_code in {403, 404}
    assert api(operations).delete(f"{URL}{client.pk}/").status_code == 204
    assert not Client.objects.filter(pk=client.pk).exists()


def test_clients_filter_by_active_currency_and_search(operations, api) -> None:
    euro = ClientFactory(name="Hartmann Family Office", base_currency="EUR")
    dollar = ClientFactory(name="Kenji Watanabe", base_currency="USD", is_active=False)
    client = api(operations)
    assert ids(client.get(f"{URL}?base_currency=USD")) == {dollar.pk}
    assert ids(client.get(f"{URL}?is_active=true")) == {euro.pk}
    assert ids(client.get(f"{URL}?search=hartmann")) == {euro.pk}
    assert ids(client.get(f"{URL}?advisor={euro.advisor_id}")) == {euro.pk}
    names = [row["name"] for row in client.get(f"{URL}?ordering=-name").json()["results"]]
    assert names == ["Kenji Watanabe", "Hartmann Family Office"]


def test_page_size_is_capped(operations, api) -> None:
    ClientFactory.create_batch(3)
    body = api(operations).get(f"{URL}?page_size=1&page=2").json()
    assert (body["count"], len(body["results"])) == (3, 1)
    assert api(operations).get(f"{URL}?page=99").status_code == 404


def test_clients_list_query_count_does_not_grow_with_rows(advisor, api, assert_list_queries_constant) -> None:
    assert_list_queries_constant(api(advisor), URL, lambda n: ClientFactory.create_batch(n, advisor=advisor))


# --- A client's portfolios ------------------------------------------------------------------------------


def test_a_new_client_gets_one_main_portfolio_in_its_base_currency(advisor, api) -> None:
    response = api(advisor).post(URL, new_client(base_currency="chf"), format="json")
    assert response.status_code == 201, response.content
    portfolio = Portfolio.objects.get(client_id=response.json()["id"])
    assert (portfolio.name, portfolio.base_currency) == ("Main", "CHF")
    assert response.json()["portfolios"] == [{"id": portfolio.pk, "name": "Main"}]


def test_a_new_client_opens_the_portfolios_its_request_lists_instead_of_main(advisor, api) -> None:
    portfolios = [
        {"name": "Taxable", "kind": "taxable", "custodian": "Acme Bank", "account_number": "CH-1"},
        {"name": "Pension", "kind": "retirement", "base_currency": "usd", "opened_on": "2025-03-01"},
    ]
    response = api(advisor).post(URL, new_client(portfolios=portfolios), format="json")
    assert response.status_code == 201, response.content
    opened = {p.name: p for p in Portfolio.objects.filter(client_id=response.json()["id"])}
    assert set(opened) == {"Taxable", "Pension"}
    assert (opened["Taxable"].custodian, opened["Taxable"].account_number, opened["Taxable"].base_currency) == (
        "Acme Bank",
        "CH-1",
        "EUR",
    )
    assert (opened["Pension"].kind, opened["Pension"].base_currency) == ("retirement", "USD")
    assert str(opened["Pension"].opened_on) == "2025-03-01"
    assert [p["name"] for p in response.json()["portfolios"]] == ["Pension", "Taxable"]


def test_a_new_clients_invalid_portfolio_is_refused_with_400_and_opens_nothing(advisor, api) -> None:
    response = api(advisor).post(URL, new_client(portfolios=[{"name": "X", "kind": "tulips"}]), format="json")
    assert response.status_code == 400
    assert "portfolios" in response.json()
    assert not Client.objects.filter(email="maria@example.net").exists()


def test_an_existing_clients_portfolios_are_not_changed_through_the_client(advisor, api) -> None:
    client = ClientFactory(advisor=advisor)
    response = api(advisor).patch(f"{URL}{client.pk}/", {"portfolios": [{"name": "New"}]}, format="json")
    assert response.status_code == 400
    assert "portfolios" in response.json()
    assert list(client.portfolios.values_list("name", flat=True)) == ["Main"]


PORTFOLIOS = "/api/v1/portfolios/"


def test_advisor_lists_and_reads_only_their_clients_portfolios(advisor, other_advisor, api) -> None:
    mine = ClientFactory(advisor=advisor)
    second = PortfolioFactory(client=mine)
    theirs = main_portfolio(ClientFactory(advisor=other_advisor))
    c = api(advisor)
    assert ids(c.get(PORTFOLIOS)) == {main_portfolio(mine).pk, second.pk}
    body = c.get(f"{PORTFOLIOS}{second.pk}/").json()
    assert (body["client"], body["client_name"], body["name"], body["is_open"]) == (
        mine.pk,
        mine.name,
        second.name,
        True,
    )
    assert c.get(f"{PORTFOLIOS}{theirs.pk}/").status_code == 404
    assert c.patch(f"{PORTFOLIOS}{theirs.pk}/", {"name": "Mine now"}).status_code == 404
    assert ids(c.get(f"{PORTFOLIOS}?search={theirs.client.name}")) == set()


def test_staff_in_no_group_are_refused_portfolios(nobody, api) -> None:
    portfolio = PortfolioFactory()
    assert api(nobody).get(PORTFOLIOS).status_code == 403
    assert api(nobody).get(f"{PORTFOLIOS}{portfolio.pk}/").status_code == 403


def test_a_portfolio_opens_in_its_clients_currency_from_today_unless_told(advisor, api) -> None:
    client = ClientFactory(advisor=advisor, base_currency="GBP")
    response = api(advisor).post(PORTFOLIOS, {"client": client.pk, "name": "ISA", "kind": "taxable"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["base_currency"], body["opened_on"], body["closed_on"]) == (
        "GBP",
        timezone.localdate().isoformat(),
        None,
    )


def test_advisor_naming_another_advisors_client_for_a_portfolio_is_refused_like_an_unknown_one(
    advisor, other_advisor, api
) -> None:
    theirs = ClientFactory(advisor=other_advisor)
    other = api(advisor).post(PORTFOLIOS, {"client": theirs.pk, "name": "Sneaky"})
    unknown = api(advisor).post(PORTFOLIOS, {"client": UNKNOWN_PK, "name": "Sneaky"})
    assert other.status_code == unknown.status_code == 400
    assert other.json() == {"client": [f'Invalid pk "{theirs.pk}" - object does not exist.']}
    assert not Portfolio.objects.filter(name="Sneaky").exists()


def test_a_portfolio_name_is_unique_per_client_whatever_the_case(advisor, api) -> None:
    client = ClientFactory(advisor=advisor)
    response = api(advisor).post(PORTFOLIOS, {"client": client.pk, "name": "MAIN"})
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["This client already has a portfolio with this name."]}


def test_a_portfolio_stays_with_its_client(operations, api) -> None:
    portfolio = PortfolioFactory()
    response = api(operations).patch(f"{PORTFOLIOS}{portfolio.pk}/", {"client": ClientFactory().pk})
    assert response.status_code == 400
    assert "client" in response.json()


def test_closing_a_portfolio_before_it_opened_is_refused(advisor, api) -> None:
    portfolio = PortfolioFactory(client=ClientFactory(advisor=advisor), opened_on=datetime.date(2025, 6, 1))
    response = api(advisor).patch(f"{PORTFOLIOS}{portfolio.pk}/", {"closed_on": "2025-05-31"})
    assert response.status_code == 400
    closed = api(advisor).patch(f"{PORTFOLIOS}{portfolio.pk}/", {"closed_on": "2025-06-30"})
    assert closed.status_code == 200, closed.content
    assert closed.json()["is_open"] is False


def test_deleting_an_empty_portfolio_answers_204(operations, api) -> None:
    portfolio = PortfolioFactory()
    assert api(operations).delete(f"{PORTFOLIOS}{portfolio.pk}/").status_code == 204
    assert not Portfolio.objects.filter(pk=portfolio.pk).exists()


def test_deleting_a_portfolio_with_history_is_a_conflict(operations, api) -> None:
    tx = TransactionFactory()
    response = api(operations).delete(f"{PORTFOLIOS}{tx.portfolio_id}/")
    assert response.status_code == 409
    assert "detail" in response.json()
    assert Portfolio.objects.filter(pk=tx.portfolio_id).exists()


def test_roles_hold_on_portfolios_what_they_hold_on_clients() -> None:
    for role in Role:
        group = Group.objects.get(name=role.value)
        codenames = set(group.permissions.filter(content_type__app_label="clients").values_list("codename", flat=True))
        on_clients = {c.removesuffix("_client") for c in codenames if c.endswith("_client")}
        on_portfolios = {c.removesuffix("_portfolio") for c in codenames if c.endswith("_portfolio")}
        assert on_portfolios == on_clients, role


def test_advisor_may_open_and_change_but_not_delete_portfolios_like_clients(advisor, api) -> None:
    portfolio = PortfolioFactory(client=ClientFactory(advisor=advisor))
    assert api(advisor).patch(f"{PORTFOLIOS}{portfolio.pk}/", {"custodian": "Acme"}).status_code == 200
    assert api(advisor).delete(f"{PORTFOLIOS}{portfolio.pk}/").status_code == 403


def test_auditor_reads_portfolios_but_cannot_write_them(auditor, api) -> None:
    portfolio = PortfolioFactory()
    assert ids(api(auditor).get(PORTFOLIOS)) == {portfolio.pk}
    assert api(auditor).post(PORTFOLIOS, {"client": portfolio.client_id, "name": "X"}).status_code == 403
    assert api(auditor).patch(f"{PORTFOLIOS}{portfolio.pk}/", {"name": "X"}).status_code == 403


@pytest.fixture
def two_clients_portfolios(db: None) -> dict[str, Portfolio]:
    hartmann = ClientFactory(name="Hartmann", main_portfolio=None)
    watanabe = ClientFactory(name="Watanabe", main_portfolio=None, base_currency="USD")
    return {
        "taxable": PortfolioFactory(client=hartmann, name="Taxable", kind="taxable", custodian="Acme Bank"),
        "pension": PortfolioFactory(
            client=hartmann, name="Pension", kind="retirement", account_number="P-77", custodian="Zenith"
        ),
        "closed": PortfolioFactory(client=watanabe, name="Old", kind="other", closed_on=datetime.date(2025, 6, 1)),
    }


def names(response: Any) -> set[str]:
    assert response.status_code == 200, response.content
    return {row["name"] for row in response.json()["results"]}


def test_portfolios_filter_by_client(operations, two_clients_portfolios, api) -> None:
    client_id = two_clients_portfolios["taxable"].client_id
    assert names(api(operations).get(f"{PORTFOLIOS}?client={client_id}")) == {"Taxable", "Pension"}


def test_portfolios_filter_by_another_advisors_client_answers_like_an_unknown_client(
    advisor, two_clients_portfolios, api
) -> None:
    other = api(advisor).get(f"{PORTFOLIOS}?client={two_clients_portfolios['taxable'].client_id}")
    unknown = api(advisor).get(f"{PORTFOLIOS}?client={UNKNOWN_PK}")
    assert other.status_code == unknown.status_code == 400
    assert set(other.json()) == set(unknown.json()) == {"client"}


def test_portfolios_filter_by_kind(operations, two_clients_portfolios, api) -> None:
    assert names(api(operations).get(f"{PORTFOLIOS}?kind=retirement")) == {"Pension"}


def test_portfolios_filter_by_custodian_whatever_the_case(operations, two_clients_portfolios, api) -> None:
    assert names(api(operations).get(f"{PORTFOLIOS}?custodian=acme bank")) == {"Taxable"}


def test_portfolios_filter_by_base_currency(operations, two_clients_portfolios, api) -> None:
    assert names(api(operations).get(f"{PORTFOLIOS}?base_currency=USD")) == {"Old"}


def test_portfolios_filter_open_or_closed(operations, two_clients_portfolios, api) -> None:
    assert names(api(operations).get(f"{PORTFOLIOS}?is_open=true")) == {"Taxable", "Pension"}
    assert names(api(operations).get(f"{PORTFOLIOS}?is_open=false")) == {"Old"}


def test_portfolios_search_name_custodian_and_account_number(operations, two_clients_portfolios, api) -> None:
    c = api(operations)
    assert names(c.get(f"{PORTFOLIOS}?search=pens")) == {"Pension"}
    assert names(c.get(f"{PORTFOLIOS}?search=zenith")) == {"Pension"}
    assert names(c.get(f"{PORTFOLIOS}?search=p-77")) == {"Pension"}


def test_portfolios_are_ordered_by_client_then_name_unless_asked(operations, two_clients_portfolios, api) -> None:
    c = api(operations)
    assert [row["name"] for row in c.get(PORTFOLIOS).json()["results"]] == ["Pension", "Taxable", "Old"]
    assert [row["name"] for row in c.get(f"{PORTFOLIOS}?ordering=-name").json()["results"]] == [
        "Taxable",
        "Pension",
        "Old",
    ]


def test_portfolios_list_query_count_does_not_grow_with_rows(advisor, api, assert_list_queries_constant) -> None:
    assert_list_queries_constant(
        api(advisor),
        PORTFOLIOS,
        lambda n: [PortfolioFactory(client=ClientFactory(advisor=advisor)) for _ in range(n)],
    )


def test_clients_list_query_count_does_not_grow_with_their_portfolios(
    advisor, api, assert_list_queries_constant
) -> None:
    def make(n: int) -> None:
        for client in ClientFactory.create_batch(n, advisor=advisor):
            PortfolioFactory.create_batch(2, client=client)

    assert_list_queries_constant(api(advisor), URL, make)
