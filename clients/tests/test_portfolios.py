"""Portfolios: a client's accounts. Their rules as the database and the clients services hold them."""

import datetime
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import ProtectedError
from django.utils import timezone

from clients import services
from clients.models import Client, Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from ledger.tests.factories import TransactionFactory
from portfolio_site.errors import ConflictError
from portfolio_site.testing import refused_by

pytestmark = pytest.mark.django_db


def refused_by_database(constraint: str, **fields: Any) -> None:
    with refused_by(constraint):
        Portfolio.objects.create(**{"opened_on": datetime.date(2026, 1, 1), "base_currency": "EUR", **fields})


# --- The database's rules ------------------------------------------------------------------------


def test_the_database_refuses_two_portfolios_of_one_client_named_alike_whatever_the_case() -> None:
    client = ClientFactory()
    refused_by_database("clients_portfolio_name_unique_per_client", client=client, name="MAIN")


def test_two_clients_may_each_have_a_main_portfolio() -> None:
    first, second = ClientFactory(), ClientFactory()
    assert main_portfolio(first).name == main_portfolio(second).name == "Main"


def test_the_database_refuses_an_account_number_twice_at_one_custodian() -> None:
    PortfolioFactory(custodian="Saxo", account_number="12345")
    refused_by_database(
        "clients_portfolio_account_unique_per_custodian",
        client=ClientFactory(),
        name="Other",
        custodian="Saxo",
        account_number="12345",
    )
    PortfolioFactory(custodian="Pictet", account_number="12345")  # another custodian may use it


def test_the_database_refuses_an_account_number_without_its_custodian() -> None:
    refused_by_database(
        "clients_portfolio_account_needs_custodian", client=ClientFactory(), name="Orphan", account_number="999"
    )


def test_the_database_refuses_a_portfolio_closed_before_it_opened() -> None:
    refused_by_database(
        "clients_portfolio_closed_after_opened",
        client=ClientFactory(),
        name="Odd",
        opened_on=datetime.date(2026, 5, 1),
        closed_on=datetime.date(2026, 4, 30),
    )


@pytest.mark.parametrize(
    ("field", "value", "constraint"),
    [
        ("kind", "crypto-wallet", "clients_portfolio_kind_valid"),
        ("base_currency", "EU", "clients_portfolio_base_currency_iso"),
        ("name", "", "clients_portfolio_name_not_blank"),
    ],
)
def test_the_database_refuses_an_unknown_kind_currency_or_a_blank_name(field: str, value: str, constraint: str) -> None:
    refused_by_database(constraint, **{"client": ClientFactory(), "name": "X", field: value})


# --- Opening, changing, closing, deleting --------------------------------------------------------


def test_a_new_client_gets_one_main_portfolio_in_its_base_currency(operations: Any, advisor: Any) -> None:
    client = services.client_create(
        actor=operations, name="Ada", email="ada@example.net", base_currency="GBP", advisor=advisor
    )
    (portfolio,) = client.portfolios.all()
    assert (portfolio.name, portfolio.base_currency, portfolio.opened_on) == ("Main", "GBP", timezone.localdate())


def test_a_new_client_may_open_other_portfolios_instead(operations: Any, advisor: Any) -> None:
    client = services.client_create(
        actor=operations,
        name="Ada",
        email="ada@example.net",
        base_currency="EUR",
        advisor=advisor,
        portfolios=[
            {
                "name": "ISA",
                "kind": "taxable",
                "base_currency": "GBP",
                "custodian": "Hargreaves",
                "account_number": "1",
            },
            {"name": "Pension", "kind": "retirement"},
        ],
    )
    assert sorted(client.portfolios.values_list("name", "base_currency")) == [("ISA", "GBP"), ("Pension", "EUR")]


def test_a_new_client_with_a_refused_portfolio_is_not_created(operations: Any, advisor: Any) -> None:
    with pytest.raises(ValidationError):
        services.client_create(
            actor=operations,
            name="Ada",
            email="ada@example.net",
            base_currency="EUR",
            advisor=advisor,
            portfolios=[{"name": "A", "base_currency": "XXX1"}],
        )
    assert not Client.objects.filter(email="ada@example.net").exists()


def test_an_advisor_cannot_open_a_portfolio_for_someone_elses_client(advisor: Any) -> None:
    with pytest.raises(PermissionDenied):
        services.portfolio_create(actor=advisor, client=ClientFactory(), name="Sneaky")


def test_a_portfolio_stays_with_its_client(operations: Any) -> None:
    portfolio = main_portfolio(ClientFactory())
    with pytest.raises(ValidationError):
        services.portfolio_update(actor=operations, portfolio=portfolio, client=ClientFactory())


def test_a_closed_portfolio_accepts_no_new_movement(operations: Any) -> None:
    portfolio = services.portfolio_update(
        actor=operations, portfolio=main_portfolio(ClientFactory()), closed_on=datetime.date(2026, 6, 30)
    )
    with pytest.raises(ConflictError, match="closed"):
        services.portfolio_lock(actor=operations, portfolio_id=portfolio.pk)
    # Reopened, it accepts them again.
    services.portfolio_update(actor=operations, portfolio=portfolio, closed_on=None)
    services.portfolio_lock(actor=operations, portfolio_id=portfolio.pk)


def test_an_empty_portfolio_is_deleted_and_one_with_history_is_protected(operations: Any) -> None:
    client = ClientFactory()
    empty = PortfolioFactory(client=client)
    services.portfolio_delete(actor=operations, portfolio=empty)
    assert not Portfolio.objects.filter(pk=empty.pk).exists()

    TransactionFactory(client=client)
    with pytest.raises(ProtectedError):
        services.portfolio_delete(actor=operations, portfolio=main_portfolio(client))


def test_deleting_a_client_without_history_deletes_its_empty_portfolios(operations: Any) -> None:
    client = ClientFactory()
    PortfolioFactory(client=client)
    services.client_delete(actor=operations, client=client)
    assert not Portfolio.objects.filter(client_id=client.pk).exists()


def test_a_client_whose_portfolio_has_history_cannot_be_deleted(operations: Any) -> None:
    client = ClientFactory()
    TransactionFactory(portfolio=PortfolioFactory(client=client))
    with pytest.raises(ProtectedError):
        services.client_delete(actor=operations, client=client)
    assert Client.objects.filter(pk=client.pk).exists()


# --- Which portfolio a write naming only its client means ---------------------------------------------


def test_a_write_naming_only_a_client_uses_its_single_portfolio() -> None:
    client = ClientFactory()
    assert services.client_single_portfolio(client=client) == main_portfolio(client)


def test_a_write_naming_only_a_client_with_several_portfolios_must_name_one() -> None:
    client = ClientFactory()
    PortfolioFactory(client=client)
    with pytest.raises(ValidationError) as refused:
        services.client_single_portfolio(client=client)
    assert "several portfolios" in refused.value.message_dict["portfolio"][0]


def test_a_client_without_portfolio_is_asked_to_open_one() -> None:
    client = ClientFactory(main_portfolio=None)
    with pytest.raises(ValidationError) as refused:
        services.client_single_portfolio(client=client)
    assert "no portfolio" in refused.value.message_dict["portfolio"][0]


def test_whoever_sees_a_client_sees_its_portfolios(advisor: Any, other_advisor: Any, operations: Any) -> None:
    mine = ClientFactory(advisor=advisor)
    PortfolioFactory(client=mine)
    theirs = ClientFactory(advisor=other_advisor)
    assert set(Portfolio.objects.visible_to(advisor)) == set(mine.portfolios.all())
    assert set(Portfolio.objects.visible_to(operations)) == set(Portfolio.objects.all())
    assert not Portfolio.objects.visible_to(advisor).filter(client=theirs).exists()
