from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from ledger.models import Transaction
from ledger.tests.factories import TransactionFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/transactions/"


def deposit(client_id: int, amount: str = "100.00", **extra: Any) -> dict[str, Any]:
    return {"client": client_id, "kind": "deposit", "amount": amount, "currency": "EUR", "date": "2026-06-01", **extra}


def ids(response: Any) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def test_deposit_is_posted_and_amounts_travel_as_decimal_strings(operations, api) -> None:
    client = ClientFactory()
    response = api(operations).post(URL, deposit(client.pk, "1234.5678"))
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["amount"], body["kind"], body["created_by"], body["reversed_by"]) == (
        "1234.5678",
        "deposit",
        operations.pk,
        None,
    )
    assert Transaction.objects.get().amount == Decimal("1234.5678")


def test_withdrawal_larger_than_balance_is_refused_with_409(operations, api) -> None:
    client = ClientFactory()
    api(operations).post(URL, deposit(client.pk, "100"))
    response = api(operations).post(URL, deposit(client.pk, "100.01", kind="withdrawal"))
    assert response.status_code == 409
    assert "Insufficient cash" in response.json()["detail"]
    assert Transaction.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", "0"),
        ("amount", "-1"),
        ("amount", "1.00001"),
        ("amount", "abc"),
        ("currency", "XYZ"),
        ("kind", "buy"),
        ("date", "01/06/2026"),
    ],
)
def test_invalid_transaction_fields_get_a_400_naming_the_field(field: str, value: str, operations, api) -> None:
    response = api(operations).post(URL, deposit(ClientFactory().pk, **{field: value}))
    assert response.status_code == 400
    assert field in response.json()


def test_replaying_a_reference_returns_the_original_with_200(operations, api) -> None:
    client = ClientFactory()
    first = api(operations).post(URL, deposit(client.pk, reference="BANK-1"))
    again = api(operations).post(URL, deposit(client.pk, reference="BANK-1"))
    different = api(operations).post(URL, deposit(client.pk, "5", reference="BANK-1"))
    assert (first.status_code, again.status_code, different.status_code) == (201, 200, 409)
    assert again.json()["id"] == first.json()["id"]


def test_advisor_posts_and_sees_only_their_clients_transactions(advisor, other_advisor, api) -> None:
    mine = TransactionFactory(client=ClientFactory(advisor=advisor))
    theirs = TransactionFactory(client=ClientFactory(advisor=other_advisor))
    client = api(advisor)
    assert ids(client.get(URL)) == {mine.pk}
    assert client.get(f"{URL}{theirs.pk}/").status_code == 404
    filtered = client.get(f"{URL}?client={theirs.client_id}")
    assert filtered.status_code == 400
    assert "client" in filtered.json()
    refused = client.post(URL, deposit(theirs.client_id))
    assert refused.status_code == 400
    assert "client" in refused.json()
    assert client.post(URL, deposit(mine.client_id)).status_code == 201


def test_auditor_reads_every_transaction_but_cannot_post_or_reverse(auditor, api) -> None:
    tx = TransactionFactory()
    assert ids(api(auditor).get(URL)) == {tx.pk}
    assert api(auditor).post(URL, deposit(tx.client_id)).status_code == 403
    assert api(auditor).post(f"{URL}{tx.pk}/reverse/").status_code == 403


def test_staff_in_no_group_get_403(nobody, api) -> None:
    assert api(nobody).get(URL).status_code == 403


def test_posted_transactions_cannot_be_edited_or_deleted(operations, api) -> None:
    tx = TransactionFactory()
    assert api(operations).patch(f"{URL}{tx.pk}/", {"amount": "1"}).status_code == 405
    assert api(operations).put(f"{URL}{tx.pk}/", deposit(tx.client_id)).status_code == 405
    assert api(operations).delete(f"{URL}{tx.pk}/").status_code == 405


def test_reverse_action_posts_a_reversal_once(operations, api) -> None:
    tx = TransactionFactory()
    response = api(operations).post(f"{URL}{tx.pk}/reverse/", {"notes": "Duplicate booking"})
    assert response.status_code == 201, response.content
    assert (response.json()["reverses"], response.json()["notes"]) == (tx.pk, "Duplicate booking")
    assert api(operations).get(f"{URL}{tx.pk}/").json()["reversed_by"] == response.json()["id"]
    again = api(operations).post(f"{URL}{tx.pk}/reverse/")
    assert again.status_code == 409
    assert "already been reversed" in again.json()["detail"]


def test_reversing_a_trade_settlement_directly_is_refused(operations, api) -> None:
    settlement = TransactionFactory(kind="buy")
    assert api(operations).post(f"{URL}{settlement.pk}/reverse/").status_code == 409


def test_advisor_cannot_reverse_another_advisors_transaction(advisor, api) -> None:
    tx = TransactionFactory()
    assert api(advisor).post(f"{URL}{tx.pk}/reverse/").status_code == 404
    assert not Transaction.objects.filter(reverses=tx).exists()


def test_transactions_filter_by_client_kind_currency_date_reference_and_reversal(operations, api) -> None:
    client = ClientFactory()
    early = TransactionFactory(client=client, date="2026-01-01", currency="USD", reference="A-1")
    late = TransactionFactory(client=client, date="2026-03-01", kind="withdrawal", amount=Decimal("1"))
    other = TransactionFactory(date="2026-02-01", notes="Quarterly fee rebate")
    reversal = TransactionFactory(client=client, reverses=early, currency="USD", date="2026-03-02")
    c = api(operations)
    assert ids(c.get(f"{URL}?client={client.pk}")) == {early.pk, late.pk, reversal.pk}
    assert ids(c.get(f"{URL}?kind=withdrawal")) == {late.pk}
    assert ids(c.get(f"{URL}?currency=USD")) == {early.pk, reversal.pk}
    assert ids(c.get(f"{URL}?date_after=2026-01-15&date_before=2026-02-28")) == {other.pk}
    assert ids(c.get(f"{URL}?reference=A-1")) == {early.pk}
    assert ids(c.get(f"{URL}?is_reversal=true")) == {reversal.pk}
    assert ids(c.get(f"{URL}?search=rebate")) == {other.pk}
    dates = [row["date"] for row in c.get(f"{URL}?ordering=date").json()["results"]]
    assert dates == sorted(dates)


def test_transactions_list_query_count_does_not_grow_with_rows(advisor, api, assert_list_queries_constant) -> None:
    client = ClientFactory(advisor=advisor)

    def make(n: int) -> None:
        for tx in TransactionFactory.create_batch(n, client=client):
            TransactionFactory(client=client, reverses=tx)

    assert_list_queries_constant(api(advisor), URL, make)


def test_balances_are_listed_per_currency_for_a_visible_client(advisor, other_advisor, api) -> None:
    client = ClientFactory(advisor=advisor)
    TransactionFactory(client=client, amount=Decimal("100.5"), currency="EUR")
    TransactionFactory(client=client, kind="withdrawal", amount=Decimal("0.25"), currency="EUR")
    TransactionFactory(client=client, amount=Decimal("7"), currency="USD")
    response = api(advisor).get(f"/api/v1/clients/{client.pk}/balances/")
    assert response.status_code == 200
    assert response.json() == {
        "client": client.pk,
        "balances": [
            {"currency": "EUR", "amount": "100.2500", "on_hold": "0.0000", "available": "100.2500"},
            {"currency": "USD", "amount": "7.0000", "on_hold": "0.0000", "available": "7.0000"},
        ],
    }
    assert api(other_advisor).get(f"/api/v1/clients/{client.pk}/balances/").status_code == 404


def test_balances_need_the_view_transaction_permission(nobody, api) -> None:
    assert api(nobody).get(f"/api/v1/clients/{ClientFactory().pk}/balances/").status_code == 403


def test_a_client_with_no_transactions_has_no_balances(operations, api) -> None:
    client = ClientFactory()
    assert api(operations).get(f"/api/v1/clients/{client.pk}/balances/").json()["balances"] == []


# --- Exact money on SQLite ------------------------------------------------------------------------------


@pytest.mark.skipif(connection.vendor != "sqlite", reason="only SQLite rounds past 15 significant digits")
@pytest.mark.parametrize("amount", ["9999999999999999.9999", "123456789012.3456"])
def test_amount_sqlite_cannot_store_exactly_is_refused_with_400_and_the_ledger_still_lists(
    amount: str, operations, api
) -> None:
    # 9999999999999999.9999 used to commit as 1E+16, after which every read of the ledger raised (500).
    client = ClientFactory()
    TransactionFactory(client=client, amount=Decimal("1.0000"))
    response = api(operations).post(URL, deposit(client.pk, amount))
    assert response.status_code == 400
    assert "15" in response.json()["amount"][0]
    assert Transaction.objects.count() == 1
    assert api(operations).get(URL).status_code == 200


@pytest.mark.postgres
def test_postgresql_accepts_every_digit_of_an_amount(operations, api) -> None:
    response = api(operations).post(URL, deposit(ClientFactory().pk, "9999999999999999.9999"))
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == "9999999999999999.9999"
    assert api(operations).get(URL).status_code == 200


# Decimal() takes all of these; none is how a person types an amount.
NOT_PLAIN_AMOUNTS = ["\u0661\u0662\u0663", "\uff11\uff12\uff13", "1e5", "1E-2", "1_000", "NaN", "Infinity", "-Infinity"]


@pytest.mark.parametrize("amount", NOT_PLAIN_AMOUNTS)
def test_an_amount_not_in_ascii_digits_is_refused_with_400_naming_the_field(operations, api, amount) -> None:
    client = ClientFactory()

    response = api(operations).post(URL, deposit(client.pk, amount), format="json")

    assert response.status_code == 400, response.content
    assert list(response.json()) == ["amount"]
    assert not Transaction.objects.exists()


@pytest.mark.parametrize("amount", ["100", "100.5", ".5", "+7", 12.5, 12])
def test_an_amount_in_ascii_digits_is_accepted_as_text_or_json_number(operations, api, amount) -> None:
    response = api(operations).post(URL, deposit(ClientFactory().pk, amount), format="json")

    assert response.status_code == 201, response.content


# --- Portfolios ------------------------------------------------------------------------------------------


def test_a_deposit_naming_only_its_client_goes_to_the_clients_single_portfolio(advisor, api) -> None:
    client = ClientFactory(advisor=advisor)
    response = api(advisor).post(URL, deposit(client.pk))
    assert response.status_code == 201, response.content
    assert (response.json()["client"], response.json()["portfolio"]) == (client.pk, main_portfolio(client).pk)


def test_naming_only_a_client_with_several_portfolios_is_refused_with_400_on_portfolio(advisor, api) -> None:
    client = ClientFactory(advisor=advisor)
    PortfolioFactory(client=client)
    response = api(advisor).post(URL, deposit(client.pk))
    assert response.status_code == 400
    assert list(response.json()) == ["portfolio"]
    assert not Transaction.objects.exists()


def test_naming_neither_portfolio_nor_client_is_refused_with_400_on_portfolio(advisor, api) -> None:
    body = deposit(0)
    del body["client"]
    response = api(advisor).post(URL, body)
    assert response.status_code == 400
    assert list(response.json()) == ["portfolio"]


def test_a_deposit_naming_its_portfolio_goes_there(advisor, api) -> None:
    client = ClientFactory(advisor=advisor)
    pension = PortfolioFactory(client=client)
    body = deposit(client.pk, portfolio=pension.pk)
    del body["client"]
    response = api(advisor).post(URL, body)
    assert response.status_code == 201, response.content
    assert (response.json()["client"], response.json()["portfolio"]) == (client.pk, pension.pk)


def test_a_portfolio_and_a_client_that_disagree_are_refused_with_400(operations, api) -> None:
    portfolio = PortfolioFactory()
    response = api(operations).post(URL, deposit(ClientFactory().pk, portfolio=portfolio.pk))
    assert response.status_code == 400
    assert list(response.json()) == ["portfolio"]
    assert not Transaction.objects.exists()


def test_another_advisors_portfolio_is_refused_like_an_unknown_one(advisor, other_advisor, api) -> None:
    theirs = main_portfolio(ClientFactory(advisor=other_advisor))
    c = api(advisor)
    for query in (f"{URL}?portfolio={theirs.pk}", f"{URL}?portfolio=987654321"):
        refused = c.get(query)
        assert refused.status_code == 400
        assert list(refused.json()) == ["portfolio"]
    body = deposit(0)
    del body["client"]
    other = c.post(URL, {**body, "portfolio": theirs.pk})
    unknown = c.post(URL, {**body, "portfolio": 987654321})
    assert other.status_code == unknown.status_code == 400
    assert other.json() == {"portfolio": [f'Invalid pk "{theirs.pk}" - object does not exist.']}
    assert unknown.json() == {"portfolio": ['Invalid pk "987654321" - object does not exist.']}


def test_a_closed_portfolio_refuses_a_deposit_with_409(advisor, api) -> None:
    client = ClientFactory(advisor=advisor)
    Portfolio.objects.filter(client=client).update(closed_on="2026-01-31")
    response = api(advisor).post(URL, deposit(client.pk))
    assert response.status_code == 409
    assert "closed" in response.json()["detail"]


def test_transactions_filter_by_portfolio(operations, api) -> None:
    client = ClientFactory()
    pension = PortfolioFactory(client=client)
    in_pension = TransactionFactory(portfolio=pension)
    TransactionFactory(client=client)
    assert ids(api(operations).get(f"{URL}?portfolio={pension.pk}")) == {in_pension.pk}


def test_a_withdrawal_cannot_take_cash_from_another_portfolio_of_the_client(advisor, api) -> None:
    client = ClientFactory(advisor=advisor)
    pension = PortfolioFactory(client=client)
    TransactionFactory(client=client, amount=Decimal("500"))
    body = {**deposit(client.pk, "100", kind="withdrawal"), "portfolio": pension.pk}
    response = api(advisor).post(URL, body)
    assert response.status_code == 409
    assert "Insufficient cash" in response.json()["detail"]


PORTFOLIOS = "/api/v1/portfolios/"


def test_portfolio_balances_are_per_currency_and_the_client_balances_their_sum(advisor, other_advisor, api) -> None:
    client = ClientFactory(advisor=advisor)
    main, pension = main_portfolio(client), PortfolioFactory(client=client)
    TransactionFactory(portfolio=main, amount=Decimal("100.5"), currency="EUR")
    TransactionFactory(portfolio=pension, amount=Decimal("20"), currency="EUR")
    TransactionFactory(portfolio=pension, amount=Decimal("7"), currency="USD")
    c = api(advisor)
    assert c.get(f"{PORTFOLIOS}{pension.pk}/balances/").json() == {
        "portfolio": pension.pk,
        "client": client.pk,
        "balances": [
            {"currency": "EUR", "amount": "20.0000", "on_hold": "0.0000", "available": "20.0000"},
            {"currency": "USD", "amount": "7.0000", "on_hold": "0.0000", "available": "7.0000"},
        ],
    }
    assert c.get(f"/api/v1/clients/{client.pk}/balances/").json()["balances"] == [
        {"currency": "EUR", "amount": "120.5000", "on_hold": "0.0000", "available": "120.5000"},
        {"currency": "USD", "amount": "7.0000", "on_hold": "0.0000", "available": "7.0000"},
    ]
    assert api(other_advisor).get(f"{PORTFOLIOS}{pension.pk}/balances/").status_code == 404


def test_portfolio_balances_need_the_view_transaction_permission(nobody, api) -> None:
    assert api(nobody).get(f"{PORTFOLIOS}{PortfolioFactory().pk}/balances/").status_code == 403


# --- Cash transfers between portfolios -------------------------------------------------------------------


@pytest.fixture
def two_portfolios(advisor: Any) -> tuple[Portfolio, Portfolio]:
    client = ClientFactory(advisor=advisor)
    main = main_portfolio(client)
    TransactionFactory(portfolio=main, amount=Decimal("1000"), currency="EUR")
    return main, PortfolioFactory(client=client, name="Pension")


def transfer(to: Portfolio, amount: str = "250.50", **extra: Any) -> dict[str, Any]:
    return {"to_portfolio": to.pk, "amount": amount, "currency": "eur", "date": "2026-06-01", **extra}


def balances(api_client: Any, portfolio: Portfolio) -> list[dict[str, str]]:
    return api_client.get(f"{PORTFOLIOS}{portfolio.pk}/balances/").json()["balances"]


def test_a_cash_transfer_posts_both_legs_and_moves_the_balance(advisor, two_portfolios, api) -> None:
    main, pension = two_portfolios
    c = api(advisor)
    response = c.post(f"{PORTFOLIOS}{main.pk}/transfer-cash/", transfer(pension, notes="Annual contribution"))
    assert response.status_code == 201, response.content
    out, into = response.json()["outgoing"], response.json()["incoming"]
    assert (out["kind"], out["portfolio"], out["amount"], out["currency"]) == (
        "transfer_out",
        main.pk,
        "250.5000",
        "EUR",
    )
    assert (into["kind"], into["portfolio"], into["counterpart"]) == ("transfer_in", pension.pk, out["id"])
    assert into["notes"] == out["notes"] == "Annual contribution"
    assert balances(c, main) == [
        {"currency": "EUR", "amount": "749.5000", "on_hold": "0.0000", "available": "749.5000"}
    ]
    assert balances(c, pension) == [
        {"currency": "EUR", "amount": "250.5000", "on_hold": "0.0000", "available": "250.5000"}
    ]
    client_balances = c.get(f"/api/v1/clients/{main.client_id}/balances/").json()["balances"]
    assert client_balances == [
        {"currency": "EUR", "amount": "1000.0000", "on_hold": "0.0000", "available": "1000.0000"}
    ]


def test_a_cash_transfer_beyond_the_portfolios_cash_is_refused_with_409(advisor, two_portfolios, api) -> None:
    main, pension = two_portfolios
    response = api(advisor).post(f"{PORTFOLIOS}{main.pk}/transfer-cash/", transfer(pension, "1000.01"))
    assert response.status_code == 409
    assert "Insufficient cash" in response.json()["detail"]
    assert not Transaction.objects.filter(kind__in=Transaction.TRANSFERS).exists()


def test_a_cash_transfer_into_a_closed_portfolio_is_refused_with_409(advisor, two_portfolios, api) -> None:
    main, pension = two_portfolios
    Portfolio.objects.filter(pk=pension.pk).update(closed_on="2026-01-31")
    response = api(advisor).post(f"{PORTFOLIOS}{main.pk}/transfer-cash/", transfer(pension))
    assert response.status_code == 409
    assert "closed" in response.json()["detail"]


def test_a_cash_transfer_to_the_same_portfolio_is_refused_with_400(advisor, two_portfolios, api) -> None:
    main, _ = two_portfolios
    response = api(advisor).post(f"{PORTFOLIOS}{main.pk}/transfer-cash/", transfer(main))
    assert response.status_code == 400
    assert list(response.json()) == ["to_portfolio"]


def test_a_cash_transfer_to_another_clients_portfolio_is_refused_with_400(operations, two_portfolios, api) -> None:
    main, _ = two_portfolios
    response = api(operations).post(f"{PORTFOLIOS}{main.pk}/transfer-cash/", transfer(PortfolioFactory()))
    assert response.status_code == 400
    assert list(response.json()) == ["to_portfolio"]


@pytest.mark.parametrize(("field", "value"), [("amount", "0"), ("amount", "1e3"), ("currency", "XYZ"), ("date", "")])
def test_invalid_cash_transfer_fields_get_a_400_naming_the_field(field, value, advisor, two_portfolios, api) -> None:
    main, pension = two_portfolios
    response = api(advisor).post(f"{PORTFOLIOS}{main.pk}/transfer-cash/", transfer(pension, **{field: value}))
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_another_advisors_portfolios_cannot_be_transferred_from_or_to(
    advisor, other_advisor, two_portfolios, api
) -> None:
    main, pension = two_portfolios
    c = api(other_advisor)
    theirs = PortfolioFactory(client=ClientFactory(advisor=other_advisor))
    assert c.post(f"{PORTFOLIOS}{main.pk}/transfer-cash/", transfer(pension)).status_code == 404
    refused = c.post(f"{PORTFOLIOS}{main_portfolio(theirs.client).pk}/transfer-cash/", transfer(pension))
    assert refused.status_code == 400
    assert list(refused.json()) == ["to_portfolio"]
    assert not Transaction.objects.filter(kind__in=Transaction.TRANSFERS).exists()


def test_an_auditor_cannot_transfer_cash(auditor, two_portfolios, api) -> None:
    main, pension = two_portfolios
    assert api(auditor).post(f"{PORTFOLIOS}{main.pk}/transfer-cash/", transfer(pension)).status_code == 403


def test_reversing_one_leg_of_a_cash_transfer_through_the_api_reverses_both(advisor, two_portfolios, api) -> None:
    main, pension = two_portfolios
    c = api(advisor)
    legs = c.post(f"{PORTFOLIOS}{main.pk}/transfer-cash/", transfer(pension)).json()
    response = c.post(f"{URL}{legs['outgoing']['id']}/reverse/")
    assert response.status_code == 201, response.content
    assert response.json()["reverses"] == legs["outgoing"]["id"]
    assert c.get(f"{URL}{legs['incoming']['id']}/").json()["reversed_by"] is not None
    assert balances(c, main) == [
        {"currency": "EUR", "amount": "1000.0000", "on_hold": "0.0000", "available": "1000.0000"}
    ]
    assert balances(c, pension) == [{"currency": "EUR", "amount": "0.0000", "on_hold": "0.0000", "available": "0.0000"}]


@pytest.mark.parametrize("kind", ["interest", "fee", "tax", "tax_refund"])
def test_income_and_costs_are_posted_like_deposits(operations, api, kind: str) -> None:
    client = ClientFactory()
    api(operations).post(URL, deposit(client.pk, "100"))
    response = api(operations).post(URL, deposit(client.pk, "2.5", kind=kind, reference=f"{kind}-1"))
    assert response.status_code == 201, response.content
    assert (response.json()["kind"], response.json()["amount"]) == (kind, "2.5000")
    replay = api(operations).post(URL, deposit(client.pk, "2.5", kind=kind, reference=f"{kind}-1"))
    assert (replay.status_code, replay.json()["id"]) == (200, response.json()["id"])


def test_posting_a_dividend_directly_is_refused_with_400_naming_kind(operations, api) -> None:
    response = api(operations).post(URL, deposit(ClientFactory().pk, "10", kind="dividend"))
    assert response.status_code == 400
    assert list(response.json()) == ["kind"]
    assert not Transaction.objects.exists()


def test_a_fee_larger_than_the_cash_is_refused_with_409(operations, api) -> None:
    client = ClientFactory()
    api(operations).post(URL, deposit(client.pk, "1"))
    response = api(operations).post(URL, deposit(client.pk, "1.01", kind="fee"))
    assert response.status_code == 409
    assert "the fee of 1.0100 EUR" in response.json()["detail"]


def test_reversing_a_dividend_s_cash_directly_is_refused_with_409(operations, api) -> None:
    cash = TransactionFactory(kind="dividend")
    response = api(operations).post(f"{URL}{cash.pk}/reverse/")
    assert response.status_code == 409
    assert "dividend" in response.json()["detail"]
