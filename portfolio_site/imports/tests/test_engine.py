"""The import engine: decoding, delimiters, quoting, headers, line numbers, errors, dry runs, rejects, the batch.

The engine is exercised through the transactions format (the simplest real one); the format's own rules are in
test_transactions_import.py.
"""

import csv
import datetime
import getpass
import hashlib
import io
from decimal import Decimal
from typing import Any

import pytest

from clients.tests.factories import ClientFactory
from ledger.models import Transaction
from portfolio_site.imports.models import ImportBatch
from portfolio_site.imports.pipeline import PROGRESS_ROWS
from portfolio_site.imports.run import MAX_LISTED, CommandLineActor, ImportResult, run_import

pytestmark = pytest.mark.django_db

HEADER = "client,kind,amount,currency,date,reference,notes"
EMAIL = "ann@example.net"


def csv_file(*rows: str, header: str = HEADER, newline: str = "\n") -> str:
    return newline.join([header, *rows]) + newline


def run(data: str | bytes, *, actor: Any = None, file_name: str = "cash.csv", **options: Any) -> ImportResult:
    raw = data.encode() if isinstance(data, str) else data
    return run_import(
        kind="transactions",
        stream=io.BytesIO(raw),
        file_name=file_name,
        actor=actor if actor is not None else CommandLineActor(),
        **options,
    )


def messages(result: ImportResult) -> list[str]:
    return [str(issue) for issue in result.issues]


@pytest.fixture
def ann() -> Any:
    return ClientFactory(email=EMAIL, base_currency="EUR")


# --- Encoding -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["without-bom", "with-bom"])
def test_utf8_file_imports_with_or_without_a_byte_order_mark(ann, bom):
    data = bom + csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05,,Café — première").encode()

    result = run(data)

    assert messages(result) == []
    assert result.batch.rows_created == 1
    assert Transaction.objects.get().notes == "Café — première"


def test_bytes_that_are_not_utf8_fail_with_a_clear_error_and_write_nothing(ann):
    data = csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05,,Caf").encode() + "é\n".encode("latin-1")

    result = run(data)

    assert result.batch.outcome == ImportBatch.Outcome.FAILED
    assert len(result.issues) == 1
    assert "not UTF-8 text: save the file as UTF-8" in str(result.issues[0])
    assert not Transaction.objects.exists()


def test_bytes_that_are_not_utf8_are_reported_at_their_line(ann):
    rows = [f"{EMAIL},deposit,{n},EUR,2026-01-05,," for n in range(1, 3000)]
    data = csv_file(*rows).encode() + f"{EMAIL},deposit,1,EUR,2026-01-05,,Caf".encode() + "é\n".encode("latin-1")

    result = run(data)

    assert str(result.issues[0]).startswith("line 3001, ")


# --- Delimiters, quoting, line numbers --------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_comma_and_semicolon_delimited_files_import_the_same(ann, delimiter):
    rows = [
        f"{EMAIL},deposit,100.5,EUR,2026-01-05,DEP-1,first",
        f"{EMAIL},withdrawal,0.5,EUR,2026-01-06,,second",
    ]
    data = csv_file(*(row.replace(",", delimiter) for row in rows), header=HEADER.replace(",", delimiter))

    result = run(data)

    assert messages(result) == []
    assert sorted(Transaction.objects.values_list("kind", "amount", "reference", "notes")) == [
        ("deposit", Decimal("100.5000"), "DEP-1", "first"),
        ("withdrawal", Decimal("0.5000"), None, "second"),
    ]


def test_semicolon_file_keeps_commas_inside_cells(ann):
    data = csv_file(f"{EMAIL};deposit;100;EUR;2026-01-05;;rent, January", header=HEADER.replace(",", ";"))

    result = run(data)

    assert messages(result) == []
    assert Transaction.objects.get().notes == "rent, January"


def test_quoted_cells_keep_delimiters_doubled_quotes_and_newlines(ann):
    data = csv_file(f'{EMAIL},deposit,100,EUR,2026-01-05,"REF,1","She said ""hi"",\nthen left"')

    result = run(data)

    assert messages(result) == []
    tx = Transaction.objects.get()
    assert (tx.reference, tx.notes) == ("REF,1", 'She said "hi",\nthen left')


def test_line_numbers_after_a_quoted_newline_count_physical_lines(ann):
    data = csv_file(
        f'{EMAIL},deposit,100,EUR,2026-01-05,,"two\nlines"',  # lines 2-3
        f'{EMAIL},deposit,100,EUR,2026-01-05,,"three\nmore\nlines"',  # lines 4-6
        f"{EMAIL},deposit,abc,EUR,2026-01-05,,",  # line 7
    )

    result = run(data)

    assert messages(result) == ["line 7, amount: 'abc' is not a number"]


def test_a_bad_row_spanning_several_lines_is_reported_at_its_first_line(ann):
    data = csv_file(f'{EMAIL},deposit,abc,EUR,2026-01-05,,"two\nlines"')  # lines 2-3

    result = run(data)

    assert messages(result) == ["line 2, amount: 'abc' is not a number"]


def test_windows_line_endings_are_read_and_do_not_end_up_in_cells(ann):
    data = csv_file(
        f"{EMAIL},deposit,100,EUR,2026-01-05,,plain",
        f'{EMAIL},deposit,100,EUR,2026-01-05,,"a\r\nb"',
        f"{EMAIL},deposit,x,EUR,2026-01-05,,",
        newline="\r\n",
    )

    result = run(data)

    assert messages(result) == ["line 5, amount: 'x' is not a number"]
    fixed = data.replace(",x,", ",1,")
    assert messages(run(fixed)) == []
    assert sorted(Transaction.objects.values_list("notes", flat=True)) == ["", "a\r\nb", "plain"]


def test_blank_lines_are_skipped_not_counted_and_line_numbers_still_match_the_file(ann):
    data = csv_file(
        "",
        f"{EMAIL},deposit,100,EUR,2026-01-05,,",
        "   ",
        ",,,,,,",
        f"{EMAIL},deposit,oops,EUR,2026-01-05,,",
        "",
    )

    result = run(data)

    assert messages(result) == ["line 6, amount: 'oops' is not a number"]
    assert result.batch.rows_read == 2


def test_a_row_with_the_wrong_number_of_fields_is_an_error(ann):
    data = csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05", f"{EMAIL},deposit,100,EUR,2026-01-05,,notes,extra")

    result = run(data)

    assert messages(result) == ["line 2, row: expected 7 fields, found 5", "line 3, row: expected 7 fields, found 8"]
    assert not Transaction.objects.exists()


def test_an_unterminated_quote_is_reported_as_invalid_csv(ann):
    data = csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05,,fine", f'{EMAIL},deposit,100,EUR,2026-01-05,,"never closed')

    result = run(data)

    assert result.batch.outcome == ImportBatch.Outcome.FAILED
    assert len(result.issues) == 1
    assert "file: not valid CSV" in str(result.issues[0])
    assert not Transaction.objects.exists()


# --- Header -----------------------------------------------------------------------------------------------------


def test_header_names_match_in_any_case_and_order(ann):
    header = "Notes;DATE;Currency;AMOUNT;kind;Reference; Client "
    data = csv_file(f"memo;2026-01-05;eur;100;Deposit;REF-1;{EMAIL.upper()}", header=header)

    result = run(data)

    assert messages(result) == []
    tx = Transaction.objects.get()
    assert (tx.client_id, tx.kind, tx.amount, tx.currency, tx.date, tx.reference, tx.notes) == (
        ann.pk,
        "deposit",
        Decimal("100"),
        "EUR",
        datetime.date(2026, 1, 5),
        "REF-1",
        "memo",
    )


def test_optional_columns_may_be_left_out(ann):
    result = run(csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05", header="client,kind,amount,currency,date"))

    assert messages(result) == []
    assert Transaction.objects.get().notes == ""


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("client,kind,amount,currency,date,memo,colour", "unknown column(s): memo, colour"),
        ("client,kind,currency,notes", "missing column(s): amount, date"),
        ("client,kind,amount,currency,date,Notes,notes", "repeated column(s): notes"),
    ],
    ids=["unknown", "missing", "repeated"],
)
def test_unknown_missing_or_repeated_columns_fail_the_file_naming_them(ann, header, problem):
    width = header.count(",") + 1
    row = ",".join([EMAIL, "deposit", "100", "EUR", "2026-01-05", "x", "y"][:width])

    result = run(csv_file(row, header=header))

    assert result.batch.outcome == ImportBatch.Outcome.FAILED
    assert len(result.issues) == 1
    assert str(result.issues[0]).startswith(f"line 1, header: {problem} (expected: client, kind, amount,")
    assert result.batch.rows_read == 0
    assert not Transaction.objects.exists()


def test_every_header_problem_is_named_at_once(ann):
    result = run(csv_file(header="client,client,kind,extra"))

    assert messages(result) == [
        "line 1, header: unknown column(s): extra; missing column(s): amount, currency, date; "
        "repeated column(s): client (expected: client, kind, amount, currency, date, reference, notes, portfolio, "
        "custodian, account_number)"
    ]


@pytest.mark.parametrize("data", [b"", b"\n\n", b"\xef\xbb\xbf"], ids=["empty", "blank-lines", "bom-only"])
def test_an_empty_file_is_an_error(data):
    result = run(data)

    assert result.batch.outcome == ImportBatch.Outcome.FAILED
    assert messages(result) == ["line 1, header: the file is empty: the first line must name the columns"]


def test_a_header_without_rows_imports_nothing_and_succeeds():
    result = run(csv_file())

    assert result.batch.outcome == ImportBatch.Outcome.SUCCEEDED
    assert (result.batch.rows_read, result.batch.rows_created) == (0, 0)


# --- Errors -------------------------------------------------------------------------------------------------------


def test_a_bad_cell_on_the_last_of_5000_lines_is_reported_and_nothing_is_written(ann):
    rows = [f"{EMAIL},deposit,{n}.25,EUR,2026-01-05,,row {n}" for n in range(1, 4999)]
    data = csv_file(*rows, f"{EMAIL},deposit,12.345678,EUR,2026-01-05,,last")
    assert data.count("\n") == 5000

    result = run(data)

    assert messages(result) == ["line 5000, amount: 12.345678 has more than 4 decimal places"]
    assert result.batch.outcome == ImportBatch.Outcome.FAILED
    assert result.batch.rows_read == 4999
    assert (result.batch.rows_created, result.batch.rows_rejected) == (0, 1)
    assert not Transaction.objects.exists()


def test_every_bad_row_is_reported_in_one_run(ann):
    data = csv_file(
        f"{EMAIL},deposit,-5,EUR,2026-01-05,,",
        f"{EMAIL},transfer,5,EUR,2026-01-05,,",
        f"{EMAIL},deposit,5,XYZ,2026-01-05,,",
        f"{EMAIL},deposit,5,EUR,2026-02-30,,",
        ",deposit,5,EUR,2026-01-05,,",
        f"{EMAIL},deposit,5,EUR,2026-01-05,{'R' * 101},",
    )

    result = run(data)

    assert messages(result) == [
        "line 2, amount: must be greater than 0",
        "line 3, kind: 'transfer' is not one of deposit, withdrawal, interest, fee, tax, tax_refund",
        "line 4, currency: 'XYZ' is not an ISO 4217 currency code",
        "line 5, date: '2026-02-30' is not an ISO date (YYYY-MM-DD)",
        "line 6, client: required, unless custodian and account_number name the portfolio",
        "line 7, reference: longer than 100 characters",
    ]
    assert result.batch.rows_rejected == 6
    assert not Transaction.objects.exists()


def test_more_than_50_errors_lists_the_first_50_and_counts_the_rest(ann):
    data = csv_file(*(f"{EMAIL},deposit,bad{n},EUR,2026-01-05,," for n in range(60)))

    result = run(data)

    assert len(result.issues) == MAX_LISTED == 50
    assert result.issue_count == 60
    assert str(result.issues[0]).startswith("line 2, amount:")
    assert str(result.issues[-1]).startswith("line 51, amount:")
    assert result.batch.rows_rejected == 60
    assert len(result.batch.errors.splitlines()) == 50


def test_a_nul_character_in_a_cell_is_a_row_error(ann):
    result = run(csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05,,a\x00b"))

    assert [(issue.line, issue.column) for issue in result.issues] == [(2, "notes")]
    assert not Transaction.objects.exists()


# --- Dry run, skip invalid ----------------------------------------------------------------------------------------


def test_dry_run_reports_the_counts_writes_nothing_and_records_a_dry_run_batch(ann):
    data = csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05,,", f"{EMAIL},withdrawal,40,EUR,2026-01-06,,")

    result = run(data, dry_run=True)

    assert result.ok
    batch = ImportBatch.objects.get()
    assert batch == result.batch
    assert batch.outcome == ImportBatch.Outcome.DRY_RUN
    assert (batch.rows_read, batch.rows_created, batch.rows_skipped, batch.rows_rejected) == (2, 2, 0, 0)
    assert not Transaction.objects.exists()


def test_dry_run_of_a_bad_file_fails_like_the_real_run(ann):
    result = run(csv_file(f"{EMAIL},deposit,zero,EUR,2026-01-05,,"), dry_run=True)

    assert result.batch.outcome == ImportBatch.Outcome.FAILED
    assert messages(result) == ["line 2, amount: 'zero' is not a number"]


def test_skip_invalid_writes_the_good_rows_and_the_bad_ones_to_the_rejects_file(ann):
    rejects = io.StringIO()
    data = csv_file(
        f"{EMAIL},deposit,100,EUR,2026-01-05,,good",
        f"{EMAIL},deposit,1.00001,EUR,2026-01-05,,too precise",
        f"{EMAIL},withdrawal,30,EUR,2026-01-06,,good too",
        "nobody@example.net,deposit,5,EUR,2026-01-05,,unknown",
    )

    result = run(data, skip_invalid=True, rejects=rejects)

    assert result.ok
    assert result.batch.outcome == ImportBatch.Outcome.SUCCEEDED
    assert (result.batch.rows_read, result.batch.rows_created, result.batch.rows_rejected) == (4, 2, 2)
    assert sorted(Transaction.objects.values_list("notes", flat=True)) == ["good", "good too"]
    assert list(csv.reader(io.StringIO(rejects.getvalue()))) == [
        [
            *["line", "client", "kind", "amount", "currency", "date", "reference", "notes"],
            *["portfolio", "custodian", "account_number", "error"],
        ],
        [
            "3",
            EMAIL,
            "deposit",
            "1.00001",
            "EUR",
            "2026-01-05",
            "",
            "too precise",
            *["", "", ""],
            "amount: 1.00001 has more than 4 decimal places",
        ],
        [
            "5",
            "nobody@example.net",
            "deposit",
            "5",
            "EUR",
            "2026-01-05",
            "",
            "unknown",
            *["", "", ""],
            "client: no client with the email nobody@example.net (or not one you may see)",
        ],
    ]


def test_rejects_file_lists_the_cells_in_the_declared_column_order_whatever_the_file_order(ann):
    rejects = io.StringIO()
    data = csv_file("bad;2026-01-05;EUR;deposit;" + EMAIL, header="amount;date;currency;kind;client")

    run(data, skip_invalid=True, rejects=rejects)

    assert list(csv.reader(io.StringIO(rejects.getvalue())))[1] == [
        "2",
        EMAIL,
        "deposit",
        "bad",
        "EUR",
        "2026-01-05",
        "",
        "",
        *["", "", ""],
        "amount: 'bad' is not a number",
    ]


def test_skip_invalid_does_not_skip_a_bad_header(ann):
    result = run(csv_file(f"{EMAIL},deposit", header="client,kind"), skip_invalid=True, rejects=io.StringIO())

    assert result.batch.outcome == ImportBatch.Outcome.FAILED


# --- Progress -----------------------------------------------------------------------------------------------------


def test_progress_is_reported_every_flush_of_rows(ann):
    data = csv_file(*(f"{EMAIL},deposit,{n},EUR,2026-01-05,," for n in range(1, PROGRESS_ROWS + 2)))
    calls: list[tuple[int, int]] = []

    run(data, on_progress=lambda rows, size: calls.append((rows, size)))

    assert len(calls) == 1
    rows, size = calls[0]
    assert rows == PROGRESS_ROWS
    assert 0 < size <= len(data)


# --- The batch record ---------------------------------------------------------------------------------------------


def test_batch_records_what_was_read_and_done_and_who_did_it(ann, operations):
    data = csv_file(
        f"{EMAIL},deposit,100,EUR,2026-01-05,DEP-1,",
        f"{EMAIL},deposit,50,EUR,2026-01-05,,",
    ).encode()
    run(data)  # posts both
    more = data + f"{EMAIL},withdrawal,20,EUR,2026-01-07,,\n".encode()
    before = datetime.datetime.now(tz=datetime.UTC)

    result = run(more, actor=operations, file_name="january.csv")

    batch = ImportBatch.objects.get(pk=result.batch.pk)
    assert batch.kind == "transactions"
    assert batch.file_name == "january.csv"
    assert batch.sha256 == hashlib.sha256(more).hexdigest()
    assert (batch.rows_read, batch.rows_created, batch.rows_updated, batch.rows_skipped, batch.rows_rejected) == (
        3,
        1,
        0,
        2,
        0,
    )
    assert batch.outcome == ImportBatch.Outcome.SUCCEEDED
    assert batch.errors == ""
    assert batch.user == operations
    assert batch.run_by == operations.email
    assert before <= batch.started_at <= datetime.datetime.now(tz=datetime.UTC)
    assert datetime.timedelta(0) <= batch.duration < datetime.timedelta(minutes=1)
    assert Transaction.objects.get(kind="withdrawal").created_by == operations


def test_batch_run_from_the_command_line_records_the_operating_system_account(ann):
    result = run(csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05,,"))

    assert result.batch.user is None
    assert result.batch.run_by == getpass.getuser()
    assert Transaction.objects.get().created_by is None


def test_failed_batch_records_the_errors_zero_counts_and_the_hash_of_the_whole_file(ann):
    data = csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05,,", f"{EMAIL},deposit,x,EUR,2026-01-05,,").encode()

    result = run(data)

    batch = ImportBatch.objects.get()
    assert batch.outcome == ImportBatch.Outcome.FAILED
    assert (batch.rows_read, batch.rows_created, batch.rows_skipped, batch.rows_rejected) == (2, 0, 0, 1)
    assert batch.errors == "line 3, amount: 'x' is not a number"
    assert batch.sha256 == hashlib.sha256(data).hexdigest()
    assert not result.ok


def test_hash_covers_the_whole_file_even_when_the_header_stops_the_run():
    data = ("client,colour\n" + "x,y\n" * 50_000).encode()

    result = run(data)

    assert result.batch.outcome == ImportBatch.Outcome.FAILED
    assert result.batch.sha256 == hashlib.sha256(data).hexdigest()


def test_a_long_file_name_is_cut_to_fit(ann):
    result = run(csv_file(), file_name="x" * 300 + ".csv")

    assert result.batch.file_name == "x" * 255


def test_a_database_error_while_writing_ends_the_run_without_hanging_the_parser(ann, monkeypatch):
    from ledger.importers import TransactionFormat

    monkeypatch.setattr(TransactionFormat, "chunk_rows", 10)

    def failing(self, chunk):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(TransactionFormat, "write_chunk", failing)
    rows = [f"{EMAIL},deposit,{n},EUR,2026-01-05,," for n in range(1, 500)]
    with pytest.raises(RuntimeError, match="went away"):
        run(csv_file(*rows))
    assert not Transaction.objects.exists()
