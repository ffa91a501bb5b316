"""The transactions admin: read-only, scoped to what the user may see, corrections by the reverse action only."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django import test
from django.urls import reverse

from clients.admin import PortfolioListFilter
from clients.models import Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings.tests.factories import BuyFactory
from ledger.models import Transaction
from ledger.selectors import cash_available
from ledger.services import cash_transfer
from ledger.tests.factories import TransactionFactory
from portfolio_site.testing import admin_messages, changelist_ids, page_queries

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:ledger_transaction_changelist"
TODAY = datetime.date(2026, 2, 2)


def _reverse_action(client: test.Client, *transactions: Transaction, reason: str | None = "Posted twice") -> Any:
    """The action as the confirmation page posts it, with a reason; `reason=None`: the list's first post."""
    data: dict[str, Any] = {"action": "reverse_selected", "_selected_action": [tx.pk for tx in transactions]}
    if reason is not None:
        data.update({"post": "yes", "reason": reason})
    return client.post(reverse(CHANGELIST), data)


def _make_transactions(count: int, created_by: Any) -> None:
    """Deposits of several clients, some reversed, so every column of the list has something to show."""
    for _ in range(count // 5):
        deposits = TransactionFactory.create_batch(4, created_by=created_by)
        TransactionFactory(client=deposits[0].client, reverses=deposits[0], created_by=created_by)


# --- Changelist -------------------------------------------------------------------------------------------------


def test_transaction_changelist_loads_with_the_same_query_count_for_5_and_50_rows(client, superuser, count_queries):
    client.force_login(superuser)
    url = reverse(CHANGELIST)
    _make_transactions(5, superuser)
    page_queries(client, count_queries, url)  # warm up per-process caches (content types, ...)
    few = page_queries(client, count_queries, url)

    _make_transactions(45, superuser)
    many = page_queries(client, count_queries, url)

    assert client.get(url).context["cl"].result_count == 50  # the page really listed the rows added
    assert few == many


def test_transaction_changelist_shows_an_advisor_only_transactions_of_their_own_clients(client, advisor):
    own = TransactionFactory(client=ClientFactory(advisor=advisor))
    TransactionFactory()  # another advisor's client
    client.force_login(advisor)

    response = client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    assert changelist_ids(response) == {own.pk}


def test_transaction_changelist_shows_operations_every_transaction(client, operations):
    transactions = TransactionFactory.create_batch(3)
    client.force_login(operations)

    response = client.get(reverse(CHANGELIST))

    assert changelist_ids(response) == {tx.pk for tx in transactions}


def test_transaction_changelist_is_forbidden_to_a_user_in_no_group(client, nobody):
    TransactionFactory()
    client.force_login(nobody)

    assert client.get(reverse(CHANGELIST)).status_code == 403


def test_another_advisors_transaction_page_is_not_shown_to_an_advisor(client, advisor):
    theirs = TransactionFactory(reference="THEIRS-1")
    client.force_login(advisor)

    response = client.get(reverse("admin:ledger_transaction_change", args=[theirs.pk]))

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


# --- Read-only ----------------------------------------------------------------------------------------------------


def test_transaction_add_page_is_forbidden_even_to_operations(client, operations):
    client.force_login(operations)

    assert client.get(reverse("admin:ledger_transaction_add")).status_code == 403
    response = client.post(
        reverse("admin:ledger_transaction_add"),
        {"client": ClientFactory().pk, "kind": "deposit", "amount": "10", "currency": "EUR", "date": "2026-01-01"},
    )

    assert response.status_code == 403
    assert not Transaction.objects.exists()


def test_transaction_change_page_is_view_only_and_a_posted_change_is_forbidden(client, operations):
    tx = TransactionFactory(amount=Decimal("100"))
    client.force_login(operations)
    url = reverse("admin:ledger_transaction_change", args=[tx.pk])

    page = client.get(url)
    posted = client.post(url, {"amount": "999", "kind": "withdrawal", "currency": "EUR", "date": "2026-01-01"})

    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert posted.status_code == 403
    tx.refresh_from_db()
    assert (tx.amount, tx.kind) == (Decimal("100"), Transaction.Kind.DEPOSIT)


def test_transaction_cannot_be_deleted_in_the_admin(client, superuser):
    tx = TransactionFactory()
    client.force_login(superuser)
    url = reverse("admin:ledger_transaction_delete", args=[tx.pk])

    assert client.get(url).status_code == 403
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert Transaction.objects.filter(pk=tx.pk).exists()


def test_transaction_changelist_offers_no_bulk_delete_only_the_reverse_and_export_actions(client, operations):
    client.force_login(operations)

    response = client.get(reverse(CHANGELIST))

    actions = [name for name, _ in response.context["action_form"].fields["action"].choices if name]
    assert actions == ["reverse_selected", "export_selected"]


def test_reverse_action_is_not_offered_to_an_auditor(client, auditor):
    TransactionFactory()
    client.force_login(auditor)

    response = client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    actions = [name for name, _ in response.context["action_form"].fields["action"].choices if name]
    assert actions == ["export_selected"]  # reading, not writing


# --- The reverse action -------------------------------------------------------------------------------------------


def test_reverse_action_reverses_a_deposit_with_a_reversal_pointing_at_it(client, advisor):
    deposit = TransactionFactory(client=ClientFactory(advisor=advisor), amount=Decimal("250"))
    client.force_login(advisor)

    response = _reverse_action(client, deposit)

    assert response.status_code == 302
    reversal = Transaction.objects.get(reverses=deposit)
    assert (reversal.client_id, reversal.kind, reversal.amount, reversal.currency) == (
        deposit.client_id,
        Transaction.Kind.DEPOSIT,
        Decimal("250"),
        deposit.currency,
    )
    assert reversal.created_by == advisor
    assert "Reversed 1 transaction(s)." in admin_messages(response)


def test_reverse_action_refuses_a_deposit_whose_reversal_would_overdraw_and_writes_nothing(client, advisor):
    deposit = TransactionFactory(client=ClientFactory(advisor=advisor), amount=Decimal("1000"))
    TransactionFactory(client=deposit.client, kind=Transaction.Kind.WITHDRAWAL, amount=Decimal("800"))
    client.force_login(advisor)

    response = _reverse_action(client, deposit)

    assert response.status_code == 302
    assert Transaction.objects.count() == 2
    assert not Transaction.objects.filter(reverses=deposit).exists()
    assert any("Insufficient cash" in message for message in admin_messages(response))


def test_reverse_action_refuses_a_buy_settlement(client, advisor):
    buy = BuyFactory(client=ClientFactory(advisor=advisor))
    client.force_login(advisor)

    response = _reverse_action(client, buy.settlement)

    assert response.status_code == 302
    assert not Transaction.objects.filter(reverses=buy.settlement).exists()
    assert any("settles a trade" in message for message in admin_messages(response))


def test_reverse_action_refuses_to_reverse_twice(client, operations):
    deposit = TransactionFactory()
    TransactionFactory(client=deposit.client, reverses=deposit)
    client.force_login(operations)

    response = _reverse_action(client, deposit)

    assert Transaction.objects.filter(reverses=deposit).count() == 1
    assert any("already been reversed" in message for message in admin_messages(response))


def test_reverse_action_cannot_reach_another_advisors_transaction(client, advisor):
    theirs = TransactionFactory()
    client.force_login(advisor)

    _reverse_action(client, theirs)

    assert not Transaction.objects.filter(reverses=theirs).exists()


def test_reverse_action_is_refused_to_an_auditor(client, auditor):
    deposit = TransactionFactory()
    client.force_login(auditor)

    _reverse_action(client, deposit)

    assert not Transaction.objects.filter(reverses=deposit).exists()


def test_reverse_action_first_asks_for_a_reason_and_reverses_nothing_yet(client, advisor):
    deposit = TransactionFactory(client=ClientFactory(advisor=advisor))
    client.force_login(advisor)

    response = _reverse_action(client, deposit, reason=None)

    assert response.status_code == 200
    assert response.templates[0].name == "admin/ledger/transaction/reverse_confirmation.html"
    assert 'name="reason"' in response.content.decode()
    assert [tx.pk for tx in response.context["transactions"]] == [deposit.pk]
    assert not Transaction.objects.filter(reverses=deposit).exists()


def test_reverse_action_without_a_reason_asks_again_and_reverses_nothing(client, advisor):
    deposit = TransactionFactory(client=ClientFactory(advisor=advisor))
    client.force_login(advisor)

    response = _reverse_action(client, deposit, reason="  ")

    assert response.status_code == 200
    assert response.context["form"].errors == {"reason": ["This field is required."]}
    assert not Transaction.objects.filter(reverses=deposit).exists()


def test_reverse_action_keeps_the_reason_as_the_reversals_notes(client, operations):
    deposit = TransactionFactory()
    client.force_login(operations)

    _reverse_action(client, deposit, reason="Client paid by mistake, ticket 4711")

    assert Transaction.objects.get(reverses=deposit).notes == "Client paid by mistake, ticket 4711"


def test_reverse_action_reverses_none_when_one_of_the_selected_is_refused(client, advisor):
    owner = ClientFactory(advisor=advisor)
    fine = TransactionFactory(client=owner, amount=Decimal("100"))
    buy = BuyFactory(client=owner)
    client.force_login(advisor)

    response = _reverse_action(client, fine, buy.settlement)

    assert not Transaction.objects.filter(reverses__in=[fine, buy.settlement]).exists()
    shown = admin_messages(response)
    assert any("settles a trade" in message for message in shown)
    assert "Nothing was reversed." in shown


def test_reverse_action_on_both_legs_of_a_transfer_reverses_the_transfer_once(client, advisor):
    main, retirement = _two_accounts(advisor)
    out, into = cash_transfer(
        actor=advisor,
        from_portfolio_id=main.pk,
        to_portfolio_id=retirement.pk,
        amount=Decimal("300"),
        currency="EUR",
        date=TODAY,
    )
    client.force_login(advisor)

    response = _reverse_action(client, out, into)

    assert Transaction.objects.filter(reverses=out).count() == Transaction.objects.filter(reverses=into).count() == 1
    assert "Reversed 1 transaction(s)." in admin_messages(response)


def test_change_page_offers_reverse_for_a_deposit_and_it_posts_the_reversal_with_the_reason(client, advisor):
    deposit = TransactionFactory(client=ClientFactory(advisor=advisor))
    client.force_login(advisor)
    reverse_url = reverse("admin:ledger_transaction_reverse", args=[deposit.pk])

    page = client.get(reverse("admin:ledger_transaction_change", args=[deposit.pk]))
    asked = client.get(reverse_url)
    done = client.post(reverse_url, {"post": "yes", "reason": "Wrong client"})

    assert reverse_url in page.content.decode()
    assert asked.status_code == 200
    assert 'name="reason"' in asked.content.decode()
    assert done.status_code == 302
    reversal = Transaction.objects.get(reverses=deposit)
    assert reversal.notes == "Wrong client"
    assert reversal.created_by == advisor


def test_change_page_offers_no_reverse_for_a_settlement_a_reversal_or_a_reversed_transaction(client, operations):
    buy = BuyFactory()
    deposit = TransactionFactory()
    reversal = TransactionFactory(client=deposit.client, reverses=deposit)
    client.force_login(operations)

    for tx in (buy.settlement, deposit, reversal):
        page = client.get(reverse("admin:ledger_transaction_change", args=[tx.pk]))
        assert page.status_code == 200
        assert reverse("admin:ledger_transaction_reverse", args=[tx.pk]) not in page.content.decode()


def test_reverse_page_refuses_an_auditor_and_hides_another_advisors_transaction(client, auditor, advisor):
    theirs = TransactionFactory()
    url = reverse("admin:ledger_transaction_reverse", args=[theirs.pk])

    client.force_login(auditor)
    assert client.get(url).status_code == 403
    assert client.post(url, {"post": "yes", "reason": "x"}).status_code == 403
    client.force_login(advisor)
    assert client.post(url, {"post": "yes", "reason": "x"}).status_code == 302  # "does not exist"

    assert not Transaction.objects.filter(reverses=theirs).exists()


def test_reverse_page_reports_an_overdraft_and_reverses_nothing(client, advisor):
    deposit = TransactionFactory(client=ClientFactory(advisor=advisor), amount=Decimal("1000"))
    TransactionFactory(client=deposit.client, kind=Transaction.Kind.WITHDRAWAL, amount=Decimal("800"))
    client.force_login(advisor)

    response = client.post(
        reverse("admin:ledger_transaction_reverse", args=[deposit.pk]), {"post": "yes", "reason": "x"}, follow=True
    )

    assert not Transaction.objects.filter(reverses=deposit).exists()
    assert any("Insufficient cash" in str(message) for message in response.context["messages"])


# --- Portfolios ---------------------------------------------------------------------------------------------------


def _two_accounts(advisor: Any) -> tuple[Portfolio, Portfolio]:
    """A client of `advisor` with two portfolios, 1000 EUR deposited in the first."""
    owner = ClientFactory(advisor=advisor)
    main = main_portfolio(owner)
    TransactionFactory(portfolio=main, amount=Decimal("1000"))
    return main, PortfolioFactory(client=owner, name="Retirement")


def test_transaction_changelist_filters_by_portfolio_offering_an_advisor_only_their_clients_portfolios(client, advisor):
    main, retirement = _two_accounts(advisor)
    _, into = cash_transfer(
        actor=advisor,
        from_portfolio_id=main.pk,
        to_portfolio_id=retirement.pk,
        amount=Decimal("300"),
        currency="EUR",
        date=TODAY,
    )
    theirs = TransactionFactory()
    client.force_login(advisor)

    everything = client.get(reverse(CHANGELIST))
    filtered = client.get(reverse(CHANGELIST), {"portfolio": retirement.pk})
    foreign = client.get(reverse(CHANGELIST), {"portfolio": theirs.portfolio_id})

    (portfolio_filter,) = [spec for spec in everything.context["cl"].filter_specs if spec.title == "portfolio"]
    assert {pk for pk, _ in portfolio_filter.lookup_choices} == {str(main.pk), str(retirement.pk)}
    assert changelist_ids(filtered) == {into.pk}
    assert changelist_ids(foreign) == set()
    assert '<td class="field-portfolio_name">Retirement</td>' in filtered.text


def test_the_portfolio_filter_follows_the_search_box_and_caps_its_choices(client, operations, monkeypatch):
    monkeypatch.setattr(PortfolioListFilter, "max_choices", 3)
    wanted = PortfolioFactory(client=ClientFactory(name="Zelda Wanted"))
    for _ in range(4):
        ClientFactory()
    client.force_login(operations)

    everything = client.get(reverse(CHANGELIST))
    searched = client.get(reverse(CHANGELIST), {"q": "Zelda"})

    def portfolio_filter(response: Any) -> Any:
        (spec,) = [spec for spec in response.context["cl"].filter_specs if isinstance(spec, PortfolioListFilter)]
        return spec

    assert len(portfolio_filter(everything).lookup_choices) == 3
    assert portfolio_filter(everything).title == "portfolio (first 3: search to narrow)"
    assert {pk for pk, _ in portfolio_filter(searched).lookup_choices} == {
        str(wanted.pk),
        str(main_portfolio(wanted.client).pk),
    }


def test_transaction_changelist_ignores_a_portfolio_filter_that_is_not_an_id(client, operations):
    TransactionFactory()
    client.force_login(operations)

    response = client.get(reverse(CHANGELIST), {"portfolio": "x"})

    assert response.status_code == 200
    assert changelist_ids(response) == set()


def test_reverse_action_on_one_leg_of_a_cash_transfer_reverses_both(client, advisor):
    main, retirement = _two_accounts(advisor)
    out, into = cash_transfer(
        actor=advisor,
        from_portfolio_id=main.pk,
        to_portfolio_id=retirement.pk,
        amount=Decimal("300"),
        currency="EUR",
        date=TODAY,
    )
    client.force_login(advisor)

    response = _reverse_action(client, out)

    assert response.status_code == 302
    assert set(Transaction.objects.filter(reverses__isnull=False).values_list("reverses", flat=True)) == {
        out.pk,
        into.pk,
    }
    assert cash_available(portfolio_id=main.pk, currency="EUR") == Decimal("1000")
    assert cash_available(portfolio_id=retirement.pk, currency="EUR") == Decimal("0")


def test_reverse_action_in_a_closed_portfolio_is_refused_with_a_message(client, advisor):
    deposit = TransactionFactory(client=ClientFactory(advisor=advisor))
    Portfolio.objects.filter(pk=deposit.portfolio_id).update(closed_on=datetime.date(2026, 3, 1))
    client.force_login(advisor)

    response = _reverse_action(client, deposit)

    assert response.status_code == 302
    assert not Transaction.objects.filter(reverses=deposit).exists()
    assert any("is closed" in message for message in admin_messages(response))


def test_reverse_action_reverses_a_fee_and_refuses_a_dividend_s_cash(client, advisor):
    owner = ClientFactory(advisor=advisor)
    fee = TransactionFactory(client=owner, kind=Transaction.Kind.FEE, amount=Decimal("9.5"))
    dividend_cash = TransactionFactory(client=owner, kind=Transaction.Kind.DIVIDEND, amount=Decimal("12"))
    client.force_login(advisor)

    _reverse_action(client, fee)
    response = _reverse_action(client, dividend_cash)

    assert Transaction.objects.get(reverses=fee).kind == Transaction.Kind.FEE
    assert not Transaction.objects.filter(reverses=dividend_cash).exists()
    assert any("change or delete the dividend" in message for message in admin_messages(response))


def test_transaction_changelist_filters_by_the_new_kinds(client, operations):
    interest = TransactionFactory(kind=Transaction.Kind.INTEREST)
    TransactionFactory(kind=Transaction.Kind.TAX)
    client.force_login(operations)

    assert changelist_ids(client.get(reverse(CHANGELIST), {"kind__exact": "interest"})) == {interest.pk}
