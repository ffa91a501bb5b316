"""The transactions format: duplicates, references, idempotency, the running balance, exactness and visibility."""

import csv
import datetime
import io
import threading
import time
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction

from accounts.tests.factories import SuperuserFactory
from clients.models import Client, Portfolio
from clients.tests.factories import ClientFactory, main_portfolio
from ledger.importers import TransactionFormat
from ledger.models import Transaction
from ledger.selectors import cash_available
from ledger.tests.factories import TransactionFactory
from portfolio_site.imports.models import ImportBatch
from portfolio_site.imports.run import CommandLineActor, ImportResult, run_import

pytestmark = pytest.mark.django_db

HEADER = "client,kind,amount,currency,date,reference,notes"
EMAIL = "ann@example.net"


def csv_file(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def run(data: str, *, actor: Any = None, **options: Any) -> ImportResult:
    return run_import(
        kind="transactions",
        stream=io.BytesIO(data.encode()),
        file_name="cash.csv",
        actor=actor if actor is not None else CommandLineActor(),
        **options,
    )


def messages(result: ImportResult) -> list[str]:
    return [str(issue) for issue in result.issues]


def counts(result: ImportResult) -> tuple[int, int, int, int]:
    """(read, created, skipped, rejected)"""
    batch = result.batch
    return batch.rows_read, batch.rows_created, batch.rows_skipped, batch.rows_rejected


def ledger() -> list[tuple[str, Decimal, str, datetime.date, str | None]]:
    return sorted(
        Transaction.objects.values_list("kind", "amount", "currency", "date", "reference"),
        key=lambda row: (row[3], row[0], row[1], row[4] or ""),
    )


@pytest.fixture
def ann() -> Client:
    return ClientFactory(email=EMAIL, base_currency="EUR")


# --- Posting ------------------------------------------------------------------------------------------------------


def test_rows_are_posted_as_transactions_of_the_named_client(ann, operations):
    data = csv_file(
        f"{EMAIL},deposit,1000.1234,eur,2026-01-05,DEP-1,opening",
        f"{EMAIL},withdrawal,0.0001,EUR,2026-01-06,,",
    )

    result = run(data, actor=operations)

    assert messages(result) == []
    assert counts(result) == (2, 2, 0, 0)
    deposit = Transaction.objects.get(kind="deposit")
    assert (deposit.client, deposit.amount, deposit.currency, deposit.date) == (
        ann,
        Decimal("1000.1234"),
        "EUR",
        datetime.date(2026, 1, 5),
    )
    assert (deposit.reference, deposit.import_key, deposit.notes, deposit.created_by) == (
        "DEP-1",
        None,
        "opening",
        operations,
    )
    withdrawal = Transaction.objects.get(kind="withdrawal")
    assert withdrawal.reference is None
    assert withdrawal.import_key
    assert cash_available(portfolio_id=main_portfolio(ann).pk, currency="EUR") == Decimal("1000.1233")


def test_an_unknown_client_is_an_error_naming_the_email(ann):
    result = run(csv_file("ghost@example.net,deposit,10,EUR,2026-01-05,,"))

    assert messages(result) == ["line 2, client: no client with the email ghost@example.net (or not one you may see)"]
    assert not Transaction.objects.exists()


def test_cells_with_copy_special_characters_are_stored_exactly(ann):
    notes = 'tab\there, back\\slash \\N, "quoted", é€ 😀 and a\nnewline'
    result = run(csv_file(f'{EMAIL},deposit,10,EUR,2026-01-05,\\N,"{notes.replace(chr(34), chr(34) * 2)}"'))

    assert messages(result) == []
    tx = Transaction.objects.get()
    assert (tx.reference, tx.notes) == ("\\N", notes)


# --- Exactness ----------------------------------------------------------------------------------------------------


def test_amounts_are_exact_decimals_so_0_1_plus_0_2_is_0_3(ann):
    result = run(csv_file(f"{EMAIL},deposit,0.1,EUR,2026-01-05,,", f"{EMAIL},deposit,0.2,EUR,2026-01-06,,"))

    assert messages(result) == []
    assert cash_available(portfolio_id=main_portfolio(ann).pk, currency="EUR") == Decimal("0.3000")
    assert str(cash_available(portfolio_id=main_portfolio(ann).pk, currency="EUR")) == "0.3000"


def test_withdrawing_exactly_0_1_plus_0_2_after_depositing_it_leaves_zero(ann):
    data = csv_file(
        f"{EMAIL},deposit,0.1,EUR,2026-01-05,,",
        f"{EMAIL},deposit,0.2,EUR,2026-01-05,,",
        f"{EMAIL},withdrawal,0.3,EUR,2026-01-06,,",
    )

    assert messages(run(data)) == []
    assert cash_available(portfolio_id=main_portfolio(ann).pk, currency="EUR") == Decimal("0")


def test_withdrawing_0_1_and_0_2_from_a_deposit_of_0_3_is_not_an_overdraft(ann):
    data = csv_file(
        f"{EMAIL},deposit,0.3,EUR,2026-01-05,,",
        f"{EMAIL},withdrawal,0.1,EUR,2026-01-06,,",
        f"{EMAIL},withdrawal,0.2,EUR,2026-01-07,,",
    )

    assert messages(run(data)) == []
    assert cash_available(portfolio_id=main_portfolio(ann).pk, currency="EUR") == Decimal("0")


# --- Rows without a reference: content and occurrence -------------------------------------------------------------


def test_two_identical_rows_without_reference_in_one_file_are_both_posted(ann):
    row = f"{EMAIL},deposit,25,EUR,2026-01-05,,coffee fund"

    result = run(csv_file(row, row))

    assert counts(result) == (2, 2, 0, 0)
    assert Transaction.objects.count() == 2
    assert len(set(Transaction.objects.values_list("import_key", flat=True))) == 2


def test_importing_the_file_again_skips_both_identical_rows(ann):
    row = f"{EMAIL},deposit,25,EUR,2026-01-05,,coffee fund"
    run(csv_file(row, row))

    result = run(csv_file(row, row))

    assert counts(result) == (2, 0, 2, 0)
    assert Transaction.objects.count() == 2


def test_a_third_identical_row_in_a_later_file_is_posted_once(ann):
    row = f"{EMAIL},deposit,25,EUR,2026-01-05,,coffee fund"
    run(csv_file(row, row))

    result = run(csv_file(row, row, row))

    assert counts(result) == (3, 1, 2, 0)
    assert Transaction.objects.count() == 3
    assert counts(run(csv_file(row, row, row))) == (3, 0, 3, 0)


def test_a_later_file_with_the_row_once_counts_as_its_first_occurrence_and_is_skipped(ann):
    """As the format documents: a row without reference is identified by its content and its occurrence."""
    row = f"{EMAIL},deposit,25,EUR,2026-01-05,,coffee fund"
    run(csv_file(row, row))

    assert counts(run(csv_file(row))) == (1, 0, 1, 0)


def test_the_same_amount_written_differently_is_the_same_row(ann):
    run(csv_file(f"{EMAIL},deposit,25,EUR,2026-01-05,,"))

    result = run(csv_file(f"{EMAIL},deposit,25.0000,eur,2026-01-05,,"))

    assert counts(result) == (1, 0, 1, 0)


@pytest.mark.parametrize(
    "changed",
    [
        f"{EMAIL},deposit,25,EUR,2026-01-05,,other notes",
        f"{EMAIL},deposit,25.0001,EUR,2026-01-05,,",
        f"{EMAIL},deposit,25,USD,2026-01-05,,",
        f"{EMAIL},deposit,25,EUR,2026-01-06,,",
        "bob@example.net,deposit,25,EUR,2026-01-05,,",
    ],
    ids=["notes", "amount", "currency", "date", "client"],
)
def test_a_row_differing_in_any_detail_is_a_new_row(ann, changed):
    ClientFactory(email="bob@example.net")
    run(csv_file(f"{EMAIL},deposit,25,EUR,2026-01-05,,"))

    assert counts(run(csv_file(changed))) == (1, 1, 0, 0)


def test_identical_rows_with_a_reference_do_not_count_as_occurrences_of_a_row_without_one(ann):
    run(csv_file(f"{EMAIL},deposit,25,EUR,2026-01-05,REF-1,", f"{EMAIL},deposit,25,EUR,2026-01-05,,"))

    result = run(csv_file(f"{EMAIL},deposit,25,EUR,2026-01-05,,"))

    assert counts(result) == (1, 0, 1, 0)
    assert Transaction.objects.count() == 2


# --- References ---------------------------------------------------------------------------------------------------


def test_a_reference_repeated_in_the_file_is_an_error_and_nothing_is_written(ann):
    data = csv_file(
        f"{EMAIL},deposit,10,EUR,2026-01-05,REF-1,",
        f"{EMAIL},deposit,20,EUR,2026-01-05,REF-2,",
        f"{EMAIL},deposit,10,EUR,2026-01-05,REF-1,",
    )

    result = run(data)

    assert [(issue.line, issue.column) for issue in result.issues] == [(4, "reference")]
    assert "'REF-1'" in result.issues[0].message
    assert result.batch.outcome == ImportBatch.Outcome.FAILED
    assert not Transaction.objects.exists()


def test_a_reference_repeated_in_the_file_is_an_error_naming_the_first_line(ann):
    data = csv_file(
        f"{EMAIL},deposit,10,EUR,2026-01-05,REF-1,",
        f"{EMAIL},deposit,20,EUR,2026-01-05,REF-2,",
        f"{EMAIL},deposit,10,EUR,2026-01-05,REF-1,",
    )

    result = run(data)

    assert [(issue.line, issue.column) for issue in result.issues] == [(4, "reference")]
    assert "line 2" in result.issues[0].message


def test_two_clients_may_use_the_same_reference(ann):
    ClientFactory(email="bob@example.net")

    result = run(
        csv_file(f"{EMAIL},deposit,10,EUR,2026-01-05,REF-1,", "bob@example.net,deposit,10,EUR,2026-01-05,REF-1,")
    )

    assert counts(result) == (2, 2, 0, 0)


def test_a_reference_already_posted_with_other_details_is_an_error(ann):
    TransactionFactory(client=ann, amount=Decimal("10"), currency="EUR", date=datetime.date(2026, 1, 5), reference="R")

    result = run(csv_file(f"{EMAIL},deposit,11,EUR,2026-01-05,R,"))

    assert [(issue.line, issue.column) for issue in result.issues] == [(2, "reference")]
    assert "'R' was already posted" in result.issues[0].message
    assert "different details" in result.issues[0].message
    assert Transaction.objects.count() == 1


def test_a_reference_already_posted_with_the_same_movement_is_skipped(ann):
    TransactionFactory(client=ann, amount=Decimal("10"), currency="EUR", date=datetime.date(2026, 1, 5), reference="R")

    result = run(csv_file(f"{EMAIL},deposit,10.00,EUR,2026-01-05,R,notes may differ"))

    assert messages(result) == []
    assert counts(result) == (1, 0, 1, 0)


def test_importing_the_same_file_again_changes_nothing(ann):
    data = csv_file(
        f"{EMAIL},deposit,100,EUR,2026-01-05,DEP-1,",
        f"{EMAIL},deposit,5,EUR,2026-01-05,,",
        f"{EMAIL},deposit,5,EUR,2026-01-05,,",
        f"{EMAIL},withdrawal,60,EUR,2026-01-07,,",
        f"{EMAIL},withdrawal,50,EUR,2026-01-08,WD-1,",
    )
    first = run(data)
    before = ledger()

    again = run(data)

    assert counts(first) == (5, 5, 0, 0)
    assert counts(again) == (5, 0, 5, 0)
    assert again.batch.outcome == ImportBatch.Outcome.SUCCEEDED
    assert ledger() == before
    assert cash_available(portfolio_id=main_portfolio(ann).pk, currency="EUR") == Decimal("0")


# --- The running balance ------------------------------------------------------------------------------------------


def test_a_withdrawal_dated_after_the_deposit_is_fine_even_if_it_comes_first_in_the_file(ann):
    data = csv_file(
        f"{EMAIL},withdrawal,80,EUR,2026-01-20,,",
        f"{EMAIL},deposit,100,EUR,2026-01-10,,",
    )

    result = run(data)

    assert messages(result) == []
    assert cash_available(portfolio_id=main_portfolio(ann).pk, currency="EUR") == Decimal("20")


def test_a_withdrawal_dated_before_the_deposit_is_refused_naming_its_line(ann):
    data = csv_file(
        f"{EMAIL},deposit,100,EUR,2026-01-10,,",
        f"{EMAIL},withdrawal,80,EUR,2026-01-09,,",
    )

    result = run(data)

    assert len(result.issues) == 1
    assert str(result.issues[0]) == (
        "line 3, amount: Insufficient cash in Main: the withdrawal of 80.0000 EUR would leave -80.0000 EUR at the end "
        "of 2026-01-09."
    )
    assert not Transaction.objects.exists()


def test_the_balance_already_posted_counts(ann):
    TransactionFactory(client=ann, amount=Decimal("50"), currency="EUR")

    ok = run(csv_file(f"{EMAIL},withdrawal,50,EUR,2026-02-01,,"))
    refused = run(csv_file(f"{EMAIL},withdrawal,0.0001,EUR,2026-02-02,,"))

    assert messages(ok) == []
    assert [issue.line for issue in refused.issues] == [2]
    assert cash_available(portfolio_id=main_portfolio(ann).pk, currency="EUR") == Decimal("0")


def test_a_withdrawal_dated_before_a_larger_deposit_is_refused_too(ann):
    data = csv_file(
        f"{EMAIL},deposit,100,EUR,2026-01-10,,",
        f"{EMAIL},withdrawal,50,EUR,2026-01-09,,",
    )

    result = run(data)

    assert [(issue.line, issue.column) for issue in result.issues] == [(3, "amount")]
    assert not Transaction.objects.exists()


def test_balances_are_per_client_and_currency(ann):
    ClientFactory(email="bob@example.net")
    data = csv_file(
        f"{EMAIL},deposit,100,EUR,2026-01-05,,",
        f"{EMAIL},withdrawal,100,USD,2026-01-06,,",
        "bob@example.net,withdrawal,1,EUR,2026-01-06,,",
    )

    result = run(data)

    assert [(issue.line, issue.column) for issue in result.issues] == [(3, "amount"), (4, "amount")]


def test_with_skip_invalid_only_the_overdrawing_row_is_rejected_and_later_rows_still_apply(ann):
    rejects = io.StringIO()
    data = csv_file(
        f"{EMAIL},deposit,100,EUR,2026-01-05,,",
        f"{EMAIL},withdrawal,150,EUR,2026-01-06,,too much",
        f"{EMAIL},withdrawal,60,EUR,2026-01-07,,fine without the one before",
        f"{EMAIL},withdrawal,60,EUR,2026-01-08,,too much again",
    )

    result = run(data, skip_invalid=True, rejects=rejects)

    assert [issue.line for issue in result.issues] == [3, 5]
    assert counts(result) == (4, 2, 0, 2)
    assert cash_available(portfolio_id=main_portfolio(ann).pk, currency="EUR") == Decimal("40")
    rejected = list(csv.reader(io.StringIO(rejects.getvalue())))
    assert [(row[0], row[2], Decimal(row[3])) for row in rejected[1:]] == [
        ("3", "withdrawal", Decimal("150")),
        ("5", "withdrawal", Decimal("60")),
    ]


def test_rows_rejected_by_the_checks_after_the_last_row_go_to_the_rejects_file(ann):
    rejects = io.StringIO()
    data = csv_file(
        f"{EMAIL},deposit,10,EUR,2026-01-05,R,first",
        f"{EMAIL},deposit,10,EUR,2026-01-05,R,again",
    )

    result = run(data, skip_invalid=True, rejects=rejects)

    assert counts(result) == (2, 1, 0, 1)
    rejected = list(csv.reader(io.StringIO(rejects.getvalue())))
    assert len(rejected) == 2
    line, email, kind, amount, currency, date, reference, notes, portfolio, _, _, error = rejected[1]
    assert (line, email, kind, Decimal(amount), currency, date, reference, notes, portfolio) == (
        "3",
        EMAIL,
        "deposit",
        Decimal("10"),
        "EUR",
        "2026-01-05",
        "R",
        "again",
        "Main",
    )
    assert error.startswith("reference: 'R' ")


# --- Files longer than a chunk -------------------------------------------------------------------------------------


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of two rows, so that small files exercise what a file of millions of rows does."""
    monkeypatch.setattr(TransactionFormat, "chunk_rows", 2)


def test_a_file_of_several_chunks_posts_every_row_once_and_again_skips_every_row(ann, small_chunks):
    row = f"{EMAIL},deposit,5,EUR,2026-01-05,,"
    data = csv_file(row, f"{EMAIL},deposit,10,EUR,2026-01-06,D-1,", row, row, f"{EMAIL},withdrawal,20,EUR,2026-01-07,,")

    first = run(data)
    again = run(data)

    assert counts(first) == (5, 5, 0, 0)
    assert counts(again) == (5, 0, 5, 0)
    assert cash_available(portfolio_id=main_portfolio(ann).pk, currency="EUR") == Decimal("5")


def test_the_running_balance_spans_chunks_in_date_order(ann, small_chunks):
    data = csv_file(
        f"{EMAIL},withdrawal,30,EUR,2026-01-20,,",
        f"{EMAIL},deposit,10,EUR,2026-01-05,,",
        f"{EMAIL},withdrawal,10,EUR,2026-01-06,,",
        f"{EMAIL},deposit,40,EUR,2026-01-10,,",
        f"{EMAIL},withdrawal,25,EUR,2026-01-09,,",
    )

    result = run(data)

    assert [(issue.line, issue.column) for issue in result.issues] == [(6, "amount")]
    assert not Transaction.objects.exists()


def test_a_reference_repeated_in_a_later_chunk_is_an_error_and_nothing_is_written(ann, small_chunks):
    data = csv_file(
        f"{EMAIL},deposit,10,EUR,2026-01-05,R-1,",
        f"{EMAIL},deposit,10,EUR,2026-01-05,R-2,",
        f"{EMAIL},deposit,10,EUR,2026-01-05,R-3,",
        f"{EMAIL},deposit,10,EUR,2026-01-05,R-1,",
    )

    result = run(data)

    assert [(issue.line, issue.column) for issue in result.issues] == [(5, "reference")]
    assert "'R-1'" in result.issues[0].message
    assert not Transaction.objects.exists()


def test_a_dry_run_of_several_chunks_counts_every_row_and_writes_nothing(ann, small_chunks):
    data = csv_file(*(f"{EMAIL},deposit,{n},EUR,2026-01-05,," for n in range(1, 8)))

    result = run(data, dry_run=True)

    assert counts(result) == (7, 7, 0, 0)
    assert result.batch.outcome == ImportBatch.Outcome.DRY_RUN
    assert not Transaction.objects.exists()


# --- Visibility ---------------------------------------------------------------------------------------------------


def test_an_advisor_imports_for_the_clients_they_advise(advisor):
    ClientFactory(email=EMAIL, advisor=advisor)

    result = run(csv_file(f"{EMAIL},deposit,10,EUR,2026-01-05,,"), actor=advisor)

    assert counts(result) == (1, 1, 0, 0)
    assert result.batch.user == advisor


def test_an_advisor_cannot_import_for_a_client_they_do_not_advise(advisor, other_advisor):
    ClientFactory(email=EMAIL, advisor=other_advisor)

    result = run(csv_file(f"{EMAIL},deposit,10,EUR,2026-01-05,,"), actor=advisor)

    assert messages(result) == ["line 2, client: no client with the email ann@example.net (or not one you may see)"]
    assert not Transaction.objects.exists()


def test_a_user_in_no_role_can_import_for_no_client(ann, nobody):
    result = run(csv_file(f"{EMAIL},deposit,10,EUR,2026-01-05,,"), actor=nobody)

    assert [issue.column for issue in result.issues] == ["client"]
    assert not Transaction.objects.exists()


# --- PostgreSQL: COPY and row locks ---------------------------------------------------------------------------------


@pytest.mark.postgres
def test_rows_stream_into_the_database_through_copy(ann, monkeypatch):
    statements: list[str] = []
    original = psycopg.Cursor.copy

    def spy(self: Any, statement: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(str(statement))
        return original(self, statement, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "copy", spy)
    rows = [f"{EMAIL},deposit,{n}.5,EUR,2026-01-05,REF-{n}," for n in range(1, 12_001)]

    result = run(csv_file(*rows))

    assert counts(result) == (12_000, 12_000, 0, 0)
    assert statements
    assert all(statement.startswith("COPY ") and statement.endswith(" FROM STDIN") for statement in statements)
    assert cash_available(portfolio_id=main_portfolio(ann).pk, currency="EUR") == Decimal(
        sum(n for n in range(1, 12_001)) + 6000
    )


def _temporary_tables() -> list[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT relname FROM pg_class WHERE relnamespace = pg_my_temp_schema() AND relkind = 'r'")
        else:
            cursor.execute("SELECT name FROM sqlite_temp_master WHERE type = 'table'")
        return [name for (name,) in cursor.fetchall()]


def test_the_staging_tables_are_gone_after_a_run(ann):
    run(csv_file(f"{EMAIL},deposit,10,EUR,2026-01-05,,"))
    run(csv_file(f"{EMAIL},deposit,x,EUR,2026-01-05,,"))
    run(csv_file(f"{EMAIL},withdrawal,10,EUR,2026-01-05,,"))

    assert _temporary_tables() == []


def _wait_for_lock_waiters(count: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0] >= count:
                return
        time.sleep(0.05)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT state, wait_event_type, wait_event, left(query, 120) FROM pg_stat_activity "
            "WHERE datname = current_database()"
        )
        activity = cursor.fetchall()
    raise AssertionError(f"{count} imports never queued on the portfolio's lock: {activity}")


def _concurrent_imports(client: Client, files: list[str]) -> list[Any]:
    """Runs the imports in threads while the client's (single) portfolio is locked, so that every one of them has
    passed its checks up to the lock before the first goes on; returns each one's result or exception, in the given
    order.

    The actor is a superuser: a transactional test flushes the roles the migrations created, so a later one
    would find an Operations user in no group."""
    operations = SuperuserFactory()
    outcomes: list[Any] = [None] * len(files)
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        try:
            with transaction.atomic():
                # The lock every cash movement takes: its portfolio's row.
                Portfolio.objects.select_for_update().get(pk=main_portfolio(client).pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    def work(index: int, data: str) -> None:
        try:
            outcomes[index] = run(data, actor=operations)
        except Exception as error:  # reported by the test
            outcomes[index] = error
        finally:
            connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(timeout=10)
    workers = [threading.Thread(target=work, args=(index, data)) for index, data in enumerate(files)]
    for worker in workers:
        worker.start()
    try:
        _wait_for_lock_waiters(len(files))
    finally:
        release.set()
        holder.join(timeout=30)
        for worker in workers:
            worker.join(timeout=30)
    return outcomes


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_imports_never_overdraw_the_client():
    client = ClientFactory(email=EMAIL)
    TransactionFactory(client=client, amount=Decimal("150"), currency="EUR")

    outcomes = _concurrent_imports(
        client,
        [
            csv_file(f"{EMAIL},withdrawal,100,EUR,2026-02-01,,first"),
            csv_file(f"{EMAIL},withdrawal,100,EUR,2026-02-01,,second"),
        ],
    )

    assert sorted(result.batch.outcome for result in outcomes) == ["failed", "succeeded"]
    assert cash_available(portfolio_id=main_portfolio(client).pk, currency="EUR") == Decimal("50")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_file_imported_twice_at_once_posts_once():
    client = ClientFactory(email=EMAIL)
    data = csv_file(f"{EMAIL},deposit,100,EUR,2026-02-01,DEP-1,", f"{EMAIL},deposit,5,EUR,2026-02-01,,")

    outcomes = _concurrent_imports(client, [data, data])

    assert all(isinstance(result, ImportResult) for result in outcomes), outcomes
    assert sorted(counts(result) for result in outcomes) == [(2, 0, 2, 0), (2, 2, 0, 0)]
    assert Transaction.objects.count() == 2


def test_rows_already_posted_do_not_count_twice_in_the_balance_check(ann):
    assert run(csv_file(f"{EMAIL},deposit,100,EUR,2026-01-01,D1,")).ok

    result = run(csv_file(f"{EMAIL},deposit,100,EUR,2026-01-01,D1,", f"{EMAIL},withdrawal,150,EUR,2026-01-02,W1,"))

    assert [(issue.line, issue.column) for issue in result.issues] == [(3, "amount")]
    assert cash_available(portfolio_id=main_portfolio(ann).pk, currency="EUR") == Decimal("100")


def test_reimporting_a_withdrawal_file_skips_it_instead_of_refusing_it(ann):
    assert run(csv_file(f"{EMAIL},deposit,80,EUR,2026-01-01,D1,")).ok
    withdrawal = csv_file(f"{EMAIL},withdrawal,50,EUR,2026-01-02,W1,")
    assert run(withdrawal).ok

    again = run(withdrawal)

    assert again.ok, again.issues
    assert counts(again) == (1, 0, 1, 0)
    assert cash_available(portfolio_id=main_portfolio(ann).pk, currency="EUR") == Decimal("30")


# --- Exact money on SQLite ------------------------------------------------------------------------------


@pytest.mark.skipif(connection.vendor != "sqlite", reason="only SQLite rounds past 15 significant digits")
def test_an_amount_sqlite_would_round_is_refused_with_its_line_and_the_ledger_still_reads(ann):
    # 9999999999999999.9999 used to be stored as 1E+16, after which every read of the ledger raised.
    result = run(
        csv_file(
            f"{EMAIL},deposit,10.00,EUR,2026-01-02,,",
            f"{EMAIL},deposit,9999999999999999.9999,EUR,2026-01-03,,",
        )
    )
    assert messages(result) == [
        "line 3, amount: 9999999999999999.9999 has 20 significant digits; this database stores at most 15 exactly."
    ]
    assert not Transaction.objects.exists()
    assert cash_available(portfolio_id=main_portfolio(ann).pk, currency="EUR") == Decimal("0")


@pytest.mark.parametrize("amount", ["\u0661\u0662\u0663", "\uff11\uff12\uff13", "1e5", "1_000", "NaN", "Infinity"])
def test_an_amount_not_in_ascii_digits_is_refused_with_its_line(ann, amount):
    result = run(csv_file(f"{EMAIL},deposit,{amount},EUR,2026-01-05,,"))

    assert [(issue.line, issue.column) for issue in result.issues] == [(2, "amount")]
    assert result.issues[0].message.startswith(f"{amount!r} is not a number")
    assert not Transaction.objects.exists()


# --- The services' rule, by date, with the rows already in the ledger -------------------------------------------


def test_a_back_dated_withdrawal_that_leaves_a_later_day_negative_is_refused_like_through_the_api(ann):
    from clients.tests.factories import main_portfolio

    portfolio = main_portfolio(ann)
    TransactionFactory(portfolio=portfolio, amount=Decimal("100"), currency="EUR", date=datetime.date(2026, 1, 1))
    TransactionFactory(
        portfolio=portfolio, kind="withdrawal", amount=Decimal("80"), currency="EUR", date=datetime.date(2026, 1, 10)
    )
    # Today's total (20) would allow 50 only if the 10 January withdrawal were not counted on its day.
    result = run(csv_file(f"{EMAIL},withdrawal,50,EUR,2026-01-05,,"))
    assert messages(result) == [
        "line 2, amount: Insufficient cash in Main: the withdrawal of 50.0000 EUR would leave -30.0000 EUR at the end "
        "of 2026-01-10."
    ]
    assert cash_available(portfolio_id=portfolio.pk, currency="EUR") == Decimal("20")


def test_a_reversal_counts_from_its_original_s_date_in_the_import_s_check(ann, operations):
    from clients.tests.factories import main_portfolio
    from ledger.services import transaction_reverse

    portfolio = main_portfolio(ann)
    early = TransactionFactory(
        portfolio=portfolio, amount=Decimal("100"), currency="EUR", date=datetime.date(2026, 1, 1)
    )
    TransactionFactory(portfolio=portfolio, amount=Decimal("100"), currency="EUR", date=datetime.date(2026, 1, 20))
    transaction_reverse(actor=operations, transaction=early)  # posted today, counts from 1 January
    result = run(csv_file(f"{EMAIL},withdrawal,50,EUR,2026-01-10,,"))
    assert messages(result) == [
        "line 2, amount: Insufficient cash in Main: the withdrawal of 50.0000 EUR would leave -50.0000 EUR at the end "
        "of 2026-01-10."
    ]


# --- Income and costs ---------------------------------------------------------------------------------------------


def test_interest_fees_taxes_and_refunds_are_imported_with_their_kinds(ann):
    data = csv_file(
        f"{EMAIL},deposit,100,EUR,2026-01-05,,",
        f"{EMAIL},interest,1.5,EUR,2026-01-31,INT-1,",
        f"{EMAIL},fee,10,EUR,2026-01-31,,custody",
        f"{EMAIL},tax,0.4,EUR,2026-01-31,,",
        f"{EMAIL},tax_refund,0.1,EUR,2026-02-01,,",
    )

    result = run(data)

    assert messages(result) == []
    assert counts(result) == (5, 5, 0, 0)
    assert cash_available(portfolio_id=main_portfolio(ann).pk, currency="EUR") == Decimal("91.2000")
    assert counts(run(data)) == (5, 0, 5, 0)


def test_a_dividend_row_is_refused_naming_its_line_and_the_kind(ann):
    result = run(csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05,,", f"{EMAIL},dividend,5,EUR,2026-01-06,,"))

    assert len(result.issues) == 1
    assert str(result.issues[0]).startswith("line 3, kind: ")
    assert not Transaction.objects.exists()


def test_a_fee_that_overdraws_is_refused_naming_its_line_as_a_fee(ann):
    result = run(csv_file(f"{EMAIL},deposit,10,EUR,2026-01-05,,", f"{EMAIL},fee,12,EUR,2026-01-06,,"))

    assert [str(issue) for issue in result.issues] == [
        "line 3, amount: Insufficient cash in Main: the fee of 12.0000 EUR would leave -2.0000 EUR at the end of "
        "2026-01-06."
    ]
    assert not Transaction.objects.exists()
