"""How the rows of transactions and allocations files name a portfolio, and the rules that are per portfolio."""

import datetime
import io
from decimal import Decimal
from typing import Any

import pytest

from clients.models import Client, Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings.models import Allocation
from holdings.selectors import position
from holdings.tests.factories import AllocationFactory, AssetFactory
from ledger.models import Transaction
from ledger.selectors import cash_available
from ledger.tests.factories import TransactionFactory
from portfolio_site.imports.run import CommandLineActor, ImportResult, run_import

pytestmark = pytest.mark.django_db

EMAIL = "ann@example.net"
TRANSACTIONS = "client,portfolio,custodian,account_number,kind,amount,currency,date,reference,notes"
ALLOCATIONS = "client,portfolio,custodian,account_number,ticker,exchange,kind,quantity,price,fees,date,notes"


def run(kind: str, header: str, *rows: str, actor: Any = None, **options: Any) -> ImportResult:
    data = "\n".join([header, *rows]) + "\n"
    return run_import(
        kind=kind,
        stream=io.BytesIO(data.encode()),
        file_name=f"{kind}.csv",
        actor=actor if actor is not None else CommandLineActor(),
        **options,
    )


def cash(*rows: str, **options: Any) -> ImportResult:
    return run("transactions", TRANSACTIONS, *rows, **options)


def trades(*rows: str, **options: Any) -> ImportResult:
    return run("allocations", ALLOCATIONS, *rows, **options)


def messages(result: ImportResult) -> list[str]:
    return [str(issue) for issue in result.issues]


def counts(result: ImportResult) -> tuple[int, int, int, int]:
    """(read, created, skipped, rejected)"""
    batch = result.batch
    return batch.rows_read, batch.rows_created, batch.rows_skipped, batch.rows_rejected


def balance(portfolio: Portfolio, currency: str = "EUR") -> Decimal:
    return cash_available(portfolio_id=portfolio.pk, currency=currency)


@pytest.fixture
def ann() -> Client:
    return ClientFactory(email=EMAIL, base_currency="EUR")


@pytest.fixture
def main(ann: Client) -> Portfolio:
    return main_portfolio(ann)


@pytest.fixture
def isa(ann: Client) -> Portfolio:
    return PortfolioFactory(client=ann, name="ISA", custodian="Fineco", account_number="IT-0001")


# --- Naming a portfolio -------------------------------------------------------------------------------------------


def test_a_row_naming_the_portfolio_by_name_whatever_the_case_posts_there(main, isa):
    result = cash(f"{EMAIL},isa,,,deposit,100,EUR,2026-01-05,,", f"{EMAIL},MAIN,,,deposit,7,EUR,2026-01-05,,")

    assert result.ok, messages(result)
    assert (balance(isa), balance(main)) == (Decimal("100"), Decimal("7"))


def test_a_row_naming_the_portfolio_by_custodian_and_account_number_needs_no_client(main, isa):
    result = cash(
        ",,Fineco,IT-0001,deposit,100,EUR,2026-01-05,,", f"{EMAIL},ISA,Fineco,IT-0001,deposit,1,EUR,2026-01-05,,"
    )

    assert result.ok, messages(result)
    tx = Transaction.objects.order_by("pk").first()
    assert (tx.portfolio, tx.client) == (isa, isa.client)
    assert balance(isa) == Decimal("101")


def test_a_row_naming_only_the_client_goes_to_its_single_portfolio(ann, main):
    result = cash(f"{EMAIL},,,,deposit,100,EUR,2026-01-05,,")

    assert result.ok, messages(result)
    assert Transaction.objects.get().portfolio == main


def test_a_row_naming_only_a_client_with_several_portfolios_is_refused_with_its_line(main, isa):
    result = cash(f"{EMAIL},,,,deposit,100,EUR,2026-01-05,,", f"{EMAIL},ISA,,,deposit,100,EUR,2026-01-05,,")

    assert messages(result) == [f"line 2, portfolio: {EMAIL} has several portfolios (Main, ISA): name one"]
    assert not Transaction.objects.exists()


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        (f"{EMAIL},Pension,,", f"line 2, portfolio: {EMAIL} has no portfolio named 'Pension'"),
        (f"{EMAIL},,Fineco,IT-9999", "line 2, account_number: no portfolio with the account number IT-9999 at Fineco"),
        (f"{EMAIL},,fineco,IT-0001", "line 2, account_number: no portfolio with the account number IT-0001 at fineco"),
        (f"{EMAIL},,Fineco,", "line 2, account_number: required with custodian"),
        (
            f"{EMAIL},,,IT-0001",
            "line 2, custodian: required with account_number (account numbers are unique per custodian)",
        ),
        (f"{EMAIL},Main,Fineco,IT-0001", "line 2, portfolio: the account IT-0001 at Fineco is the portfolio 'ISA'"),
        (
            "bob@example.net,,Fineco,IT-0001",
            f"line 2, account_number: the account IT-0001 at Fineco is a portfolio of {EMAIL}",
        ),
        (",ISA,,", "line 2, client: required, unless custodian and account_number name the portfolio"),
    ],
    ids=[
        "unknown-name",
        "unknown-account",
        "custodian-case",
        "no-account",
        "no-custodian",
        "other-name",
        "other-client",
        "no-client",
    ],
)
def test_a_portfolio_named_wrongly_is_refused_with_its_line_and_column(main, isa, cells, expected):
    ClientFactory(email="bob@example.net")

    result = cash(f"{cells},deposit,100,EUR,2026-01-05,,")

    assert [message.split(" (or not")[0] for message in messages(result)] == [expected]
    assert not Transaction.objects.exists()


def test_an_advisor_cannot_name_a_portfolio_of_a_client_they_do_not_advise(advisor, other_advisor):
    ClientFactory(email=EMAIL, advisor=other_advisor)
    PortfolioFactory(client=Client.objects.get(email=EMAIL), name="ISA", custodian="Fineco", account_number="IT-0001")

    result = cash(",,Fineco,IT-0001,deposit,100,EUR,2026-01-05,,", actor=advisor)

    assert messages(result) == [
        "line 2, account_number: no portfolio with the account number IT-0001 at Fineco (or not one you may see)"
    ]
    assert not Transaction.objects.exists()


# --- Cash is per portfolio ----------------------------------------------------------------------------------------


def test_a_withdrawal_from_one_portfolio_cannot_use_another_portfolio_s_cash(main, isa):
    result = cash(f"{EMAIL},Main,,,deposit,100,EUR,2026-01-05,,", f"{EMAIL},ISA,,,withdrawal,60,EUR,2026-01-06,,")

    assert [(issue.line, issue.column) for issue in result.issues] == [(3, "amount")]
    assert "Insufficient cash in ISA: the withdrawal of 60.0000 EUR would leave -60.0000 EUR" in messages(result)[0]
    assert not Transaction.objects.exists()


def test_the_balance_already_posted_in_another_portfolio_does_not_count(main, isa):
    TransactionFactory(portfolio=main, amount=Decimal("500"), currency="EUR")

    refused = cash(f"{EMAIL},ISA,,,withdrawal,60,EUR,2026-01-16,,")
    accepted = cash(f"{EMAIL},Main,,,withdrawal,60,EUR,2026-01-16,,")

    assert [(issue.line, issue.column) for issue in refused.issues] == [(2, "amount")]
    assert accepted.ok
    assert (balance(main), balance(isa)) == (Decimal("440"), Decimal("0"))


def test_with_skip_invalid_only_the_row_overdrawing_its_own_portfolio_is_rejected(main, isa):
    result = cash(
        f"{EMAIL},Main,,,deposit,100,EUR,2026-01-05,,",
        f"{EMAIL},ISA,,,withdrawal,60,EUR,2026-01-06,,",
        f"{EMAIL},Main,,,withdrawal,60,EUR,2026-01-07,,",
        skip_invalid=True,
        rejects=io.StringIO(),
    )

    assert counts(result) == (3, 2, 0, 1)
    assert (balance(main), balance(isa)) == (Decimal("40"), Decimal("0"))


def test_a_large_file_checks_each_portfolio_s_running_balance_across_chunks(main, isa, monkeypatch):
    monkeypatch.setattr("ledger.importers.TransactionFormat.chunk_rows", 3)
    rows = [f"{EMAIL},Main,,,deposit,10,EUR,2026-01-{day:02d},,d{day}" for day in range(1, 8)]
    rows.append(f"{EMAIL},ISA,,,withdrawal,1,EUR,2026-01-20,,")

    result = cash(*rows)

    assert [(issue.line, issue.column) for issue in result.issues] == [(9, "amount")]
    assert "Insufficient cash in ISA: the withdrawal of 1.0000 EUR would leave -1.0000 EUR" in messages(result)[0]


# --- References and repeated rows are per portfolio ---------------------------------------------------------------


def test_the_same_reference_posts_once_in_each_portfolio(main, isa):
    rows = (f"{EMAIL},Main,,,deposit,100,EUR,2026-01-05,R-1,", f"{EMAIL},ISA,,,deposit,100,EUR,2026-01-05,R-1,")

    first, again = cash(*rows), cash(*rows)

    assert counts(first) == (2, 2, 0, 0)
    assert counts(again) == (2, 0, 2, 0)
    assert sorted(Transaction.objects.values_list("portfolio__name", "reference")) == [("ISA", "R-1"), ("Main", "R-1")]


def test_a_reference_repeated_within_one_portfolio_is_refused(main, isa):
    result = cash(f"{EMAIL},ISA,,,deposit,100,EUR,2026-01-05,R-1,", f"{EMAIL},ISA,,,deposit,100,EUR,2026-01-05,R-1,")

    assert messages(result) == ["line 3, reference: 'R-1' is used on line 2 for the same portfolio too"]


def test_identical_rows_without_reference_are_counted_in_their_own_portfolio(main, isa):
    both = cash(f"{EMAIL},Main,,,deposit,5,EUR,2026-01-05,,", f"{EMAIL},ISA,,,deposit,5,EUR,2026-01-05,,")

    isa_alone = cash(f"{EMAIL},ISA,,,deposit,5,EUR,2026-01-05,,")

    assert counts(both) == (2, 2, 0, 0)
    assert counts(isa_alone) == (1, 0, 1, 0)
    assert (balance(main), balance(isa)) == (Decimal("5"), Decimal("5"))


def test_a_file_imported_when_the_client_had_one_portfolio_still_reads_as_imported_once_it_has_two(ann, main):
    header = "client,kind,amount,currency,date,reference,notes"
    assert run("transactions", header, f"{EMAIL},deposit,5,EUR,2026-01-05,,").ok
    PortfolioFactory(client=ann, name="ISA")

    again = run("transactions", TRANSACTIONS, f"{EMAIL},Main,,,deposit,5,EUR,2026-01-05,,")

    assert counts(again) == (1, 0, 1, 0)
    assert balance(main) == Decimal("5")


def test_a_portfolio_s_rows_still_read_as_imported_after_an_empty_portfolio_of_its_client_is_deleted(main, isa):
    rows = [f"{EMAIL},ISA,,,deposit,5,EUR,2026-01-05,,"]
    assert counts(cash(*rows)) == (1, 1, 0, 0)
    main.delete()  # it never held anything; ISA is now the client's first and only portfolio

    again = cash(*rows)

    assert counts(again) == (1, 0, 1, 0)
    assert balance(isa) == Decimal("5")


# --- Closed portfolios ---------------------------------------------------------------------------------------------


@pytest.fixture
def closed(ann: Client) -> Portfolio:
    return PortfolioFactory(client=ann, name="Old", closed_on=datetime.date(2025, 12, 31))


def test_a_row_for_a_closed_portfolio_is_refused_with_its_line(main, closed):
    result = cash(f"{EMAIL},Main,,,deposit,100,EUR,2026-01-05,,", f"{EMAIL},Old,,,deposit,100,EUR,2026-01-05,,")

    assert messages(result) == [f"line 3, portfolio: The portfolio {closed} is closed: it accepts no new movements."]
    assert not Transaction.objects.exists()


def test_with_skip_invalid_the_rows_for_a_closed_portfolio_go_to_the_rejects_file(main, closed):
    rejects = io.StringIO()

    result = cash(
        f"{EMAIL},Main,,,deposit,100,EUR,2026-01-05,,",
        f"{EMAIL},Old,,,deposit,100,EUR,2026-01-05,,late",
        skip_invalid=True,
        rejects=rejects,
    )

    assert counts(result) == (2, 1, 0, 1)
    line, email, kind, amount, currency, date, reference, notes, *named, error = (
        rejects.getvalue().splitlines()[1].split(",")
    )
    assert (line, email, kind, Decimal(amount), currency, date, reference, notes, named) == (
        "3",
        EMAIL,
        "deposit",
        Decimal("100"),
        "EUR",
        "2026-01-05",
        "",
        "late",
        ["Old", "", ""],
    )
    assert error == f"portfolio: The portfolio {closed} is closed: it accepts no new movements."


def test_reimporting_a_file_once_its_portfolio_has_closed_skips_its_rows(ann, main):
    rows = (f"{EMAIL},Main,,,deposit,100,EUR,2026-01-05,R-1,", f"{EMAIL},Main,,,deposit,5,EUR,2026-01-05,,")
    assert cash(*rows).ok
    Portfolio.objects.filter(pk=main.pk).update(closed_on=datetime.date(2026, 2, 1))

    again = cash(*rows)

    assert again.ok, messages(again)
    assert counts(again) == (2, 0, 2, 0)


def test_an_allocation_for_a_closed_portfolio_is_refused_with_its_line(main, closed):
    AssetFactory(ticker="SAP", exchange="XETR", currency="EUR")

    result = trades(f"{EMAIL},Old,,,SAP,XETR,transfer_in,1,0,0,2026-03-03,")

    assert messages(result) == [f"line 2, portfolio: The portfolio {closed} is closed: it accepts no new movements."]
    assert not Allocation.objects.exists()


# --- Allocations --------------------------------------------------------------------------------------------------


def test_allocations_name_their_portfolio_like_transactions_and_settle_in_its_cash(main, isa):
    sap = AssetFactory(ticker="SAP", exchange="XETR", currency="EUR")
    TransactionFactory(portfolio=isa, amount=Decimal("1000"), currency="EUR")

    result = trades(
        ",,Fineco,IT-0001,SAP,XETR,buy,5,100,0,2026-03-03,",
        f"{EMAIL},Main,,,SAP,XETR,transfer_in,2,0,0,2026-03-03,",
    )

    assert result.ok, messages(result)
    assert (position(portfolio_id=isa.pk, asset_id=sap.pk), position(portfolio_id=main.pk, asset_id=sap.pk)) == (5, 2)
    assert (balance(isa), balance(main)) == (Decimal("500"), Decimal("0"))


def test_a_buy_cannot_use_another_portfolio_s_cash(main, isa):
    AssetFactory(ticker="SAP", exchange="XETR", currency="EUR")
    TransactionFactory(portfolio=main, amount=Decimal("1000"), currency="EUR")

    result = trades(f"{EMAIL},ISA,,,SAP,XETR,buy,5,100,0,2026-03-03,")

    assert messages(result) == [
        "line 2, quantity: Insufficient cash in ISA: the buy settlement of 500.0000 EUR would leave -500.0000 EUR "
        "at the end of 2026-03-03."
    ]


def test_a_sell_cannot_use_another_portfolio_s_units(main, isa):
    sap = AssetFactory(ticker="SAP", exchange="XETR", currency="EUR")
    AllocationFactory(portfolio=main, asset=sap, quantity=Decimal("10"))

    result = trades(f"{EMAIL},ISA,,,SAP,XETR,transfer_out,1,0,0,2026-03-03,")

    assert [(issue.line, issue.column) for issue in result.issues] == [(2, "quantity")]


def test_an_allocation_naming_only_a_client_with_several_portfolios_is_refused(main, isa):
    AssetFactory(ticker="SAP", exchange="XETR", currency="EUR")

    result = trades(f"{EMAIL},,,,SAP,XETR,transfer_in,1,0,0,2026-03-03,")

    assert messages(result) == [f"line 2, portfolio: {EMAIL} has several portfolios (Main, ISA): name one"]


def test_identical_allocations_are_counted_in_their_own_portfolio(main, isa):
    AssetFactory(ticker="SAP", exchange="XETR", currency="EUR")
    both = trades(
        f"{EMAIL},Main,,,SAP,XETR,transfer_in,1,0,0,2026-03-03,",
        f"{EMAIL},ISA,,,SAP,XETR,transfer_in,1,0,0,2026-03-03,",
    )

    isa_alone = trades(f"{EMAIL},ISA,,,SAP,XETR,transfer_in,1,0,0,2026-03-03,")

    assert counts(both) == (2, 2, 0, 0)
    assert counts(isa_alone) == (1, 0, 1, 0)
