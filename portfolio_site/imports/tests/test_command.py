"""manage.py import: files and standard input, the report, the exit status, dry runs, rejects and --user."""

import csv
import io
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError

from clients.tests.factories import ClientFactory
from ledger.models import Transaction
from portfolio_site.imports.models import ImportBatch

pytestmark = pytest.mark.django_db

HEADER = "client,kind,amount,currency,date,reference,notes"
EMAIL = "ann@example.net"


def csv_file(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def write(tmp_path: Path, data: str | bytes, name: str = "cash.csv") -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def import_(*args: Any, **options: Any) -> tuple[str, str]:
    """Runs `import` and returns (stdout, stderr); a CommandError propagates."""
    out, err = io.StringIO(), io.StringIO()
    call_command("import", *[str(arg) for arg in args], stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def import_failing(*args: Any) -> tuple[str, str]:
    """Runs `import` expecting it to fail; returns (the error, stderr)."""
    err = io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("import", *[str(arg) for arg in args], stdout=io.StringIO(), stderr=err)
    return str(failure.value), err.getvalue()


def stdin_with(data: bytes) -> Any:
    """Standard input as a process gets it: text, with the bytes underneath in `.buffer`."""
    return mock.patch("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


@pytest.fixture
def ann() -> Any:
    return ClientFactory(email=EMAIL, base_currency="EUR")


# --- Success ------------------------------------------------------------------------------------------------------


def test_import_posts_the_file_and_prints_a_summary(ann, tmp_path):
    path = write(tmp_path, csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05,,", f"{EMAIL},withdrawal,40,EUR,2026-01-06,,"))

    out, err = import_("transactions", path)

    batch = ImportBatch.objects.get()
    assert out.startswith(
        "transactions from cash.csv: succeeded; read 2, created 2, updated 0, skipped 0, rejected 0 in "
    )
    assert out.rstrip().endswith(f"batch {batch.pk}")
    assert err == ""
    assert Transaction.objects.count() == 2


def test_importing_the_same_file_again_creates_nothing_and_skips_every_row(ann, tmp_path):
    path = write(tmp_path, csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05,,", f"{EMAIL},deposit,100,EUR,2026-01-05,,"))
    import_("transactions", path)

    out, _ = import_("transactions", path)

    assert "read 2, created 0, updated 0, skipped 2, rejected 0" in out
    assert Transaction.objects.count() == 2


def test_import_reads_standard_input_given_as_a_dash(ann):
    data = b"\xef\xbb\xbf" + csv_file(f"{EMAIL};deposit;100;EUR;2026-01-05;;").replace(",", ";").encode()

    with stdin_with(data):
        out, _ = import_("transactions", "-")

    assert out.startswith("transactions from <stdin>: succeeded; read 1, created 1")
    assert ImportBatch.objects.get().file_name == "<stdin>"
    assert Transaction.objects.count() == 1


def test_exit_status_is_zero_on_success_and_one_on_failure(ann, tmp_path, capsys):
    good = write(tmp_path, csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05,,"), "good.csv")
    bad = write(tmp_path, csv_file(f"{EMAIL},deposit,1e,EUR,2026-01-05,,"), "bad.csv")

    # run_from_argv closes the database connections when it ends, which would end the test's transaction.
    with mock.patch("django.core.management.base.connections.close_all"):
        execute_from_command_line(["manage.py", "import", "transactions", str(good), "--quiet"])
        with pytest.raises(SystemExit) as exit_status:
            execute_from_command_line(["manage.py", "import", "transactions", str(bad), "--quiet"])

    assert exit_status.value.code == 1
    err = capsys.readouterr().err
    assert "line 2, amount: '1e' is not a number" in err
    assert "CommandError: transactions from bad.csv: failed (nothing written); read 1, created 0" in err
    assert Transaction.objects.count() == 1


# --- Failure ------------------------------------------------------------------------------------------------------


def test_a_bad_row_fails_the_command_lists_the_error_and_writes_nothing(ann, tmp_path):
    path = write(tmp_path, csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05,,", f"{EMAIL},deposit,100,EUR,2026-13-01,,"))

    error, err = import_failing("transactions", path)

    assert err.splitlines() == ["line 3, date: '2026-13-01' is not an ISO date (YYYY-MM-DD)"]
    assert error.startswith("transactions from cash.csv: failed (nothing written); read 2, created 0")
    assert "rejected 1" in error
    assert not Transaction.objects.exists()
    assert ImportBatch.objects.get().outcome == ImportBatch.Outcome.FAILED


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("client,kind,amount,currency,date,colour", "unknown column(s): colour"),
        ("client,kind,amount,currency", "missing column(s): date"),
        ("client,kind,amount,currency,date,date", "repeated column(s): date"),
    ],
    ids=["unknown", "missing", "repeated"],
)
def test_a_header_problem_fails_the_command_naming_the_columns(ann, tmp_path, header, named):
    path = write(tmp_path, f"{header}\n{EMAIL},deposit,100,EUR,2026-01-05,x\n")

    _, err = import_failing("transactions", path)

    assert err.startswith(
        f"line 1, header: {named} (expected: client, kind, amount, currency, date, reference, notes, portfolio, "
        "custodian, account_number)"
    )
    assert not Transaction.objects.exists()


def test_more_than_50_errors_are_listed_as_50_and_a_count_of_the_rest(ann, tmp_path):
    path = write(tmp_path, csv_file(*(f"{EMAIL},deposit,,EUR,2026-01-05,," for _ in range(73))))

    error, err = import_failing("transactions", path)

    lines = err.splitlines()
    assert len(lines) == 51
    assert lines[0] == "line 2, amount: required"
    assert lines[49] == "line 51, amount: required"
    assert lines[50] == "... and 23 more"
    assert "rejected 73" in error


def test_bytes_that_are_not_utf8_fail_with_a_clear_error(ann, tmp_path):
    path = write(tmp_path, csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05,,Caf\xe9").encode("cp1252"))

    _, err = import_failing("transactions", path)

    assert "not UTF-8 text: save the file as UTF-8" in err
    assert not Transaction.objects.exists()


def test_a_missing_file_is_an_error_before_anything_runs(tmp_path):
    error, _ = import_failing("transactions", tmp_path / "nowhere.csv")

    assert error == f"{tmp_path / 'nowhere.csv'}: no such file"
    assert not ImportBatch.objects.exists()


def test_an_unknown_kind_is_refused(tmp_path):
    path = write(tmp_path, csv_file())

    with pytest.raises(CommandError, match="invalid choice: 'cash'"):
        call_command("import", "cash", str(path))


# --- Dry run and skip invalid -------------------------------------------------------------------------------------


def test_dry_run_reports_the_counts_and_writes_nothing_but_the_batch(ann, tmp_path):
    path = write(tmp_path, csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05,,", f"{EMAIL},withdrawal,40,EUR,2026-01-06,,"))

    out, _ = import_("transactions", path, "--dry-run")

    assert out.startswith("transactions from cash.csv: dry run (nothing written); read 2, created 2, updated 0")
    assert not Transaction.objects.exists()
    assert ImportBatch.objects.get().outcome == ImportBatch.Outcome.DRY_RUN


def test_skip_invalid_writes_the_good_rows_and_the_bad_ones_to_file_rejects_csv(ann, tmp_path):
    path = write(
        tmp_path,
        csv_file(
            f"{EMAIL},deposit,100,EUR,2026-01-05,,good",
            f"{EMAIL},deposit,abc,EUR,2026-01-05,,bad",
            "nobody@example.net,deposit,5,EUR,2026-01-05,,unknown",
        ),
    )

    out, err = import_("transactions", path, "--skip-invalid")

    rejects = tmp_path / "cash.csv.rejects.csv"
    assert "read 3, created 1, updated 0, skipped 0, rejected 2" in out
    assert out.rstrip().endswith(f"; rejected rows in {rejects}")
    assert err.splitlines() == [
        "line 3, amount: 'abc' is not a number",
        "line 4, client: no client with the email nobody@example.net (or not one you may see)",
    ]
    with rejects.open(newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert rows[0] == [
        "line",
        "client",
        "kind",
        "amount",
        "currency",
        "date",
        "reference",
        "notes",
        "portfolio",
        "custodian",
        "account_number",
        "error",
    ]
    assert [(row[0], row[-1]) for row in rows[1:]] == [
        ("3", "amount: 'abc' is not a number"),
        ("4", "client: no client with the email nobody@example.net (or not one you may see)"),
    ]
    assert list(Transaction.objects.values_list("notes", flat=True)) == ["good"]
    assert ImportBatch.objects.get().outcome == ImportBatch.Outcome.SUCCEEDED


def test_skip_invalid_with_standard_input_needs_a_rejects_file(ann, tmp_path):
    data = csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05,,", f"{EMAIL},deposit,x,EUR,2026-01-05,,").encode()

    with stdin_with(data):
        error, _ = import_failing("transactions", "-", "--skip-invalid")
    with stdin_with(data):
        out, _ = import_("transactions", "-", "--skip-invalid", "--rejects", tmp_path / "out.csv")

    assert error == "--skip-invalid with standard input needs --rejects FILE"
    assert "created 1" in out
    assert (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines()[1].startswith("3,")


# --- Who imports --------------------------------------------------------------------------------------------------


def test_an_unknown_user_is_an_error(tmp_path):
    path = write(tmp_path, csv_file())

    error, _ = import_failing("transactions", path, "--user", "ghost@example.com")

    assert error == "--user ghost@example.com: no such user"
    assert not ImportBatch.objects.exists()


def test_with_user_the_import_sees_only_the_clients_that_user_may_see(advisor, other_advisor, tmp_path):
    ClientFactory(email=EMAIL, advisor=advisor)
    ClientFactory(email="theirs@example.net", advisor=other_advisor)
    own = write(tmp_path, csv_file(f"{EMAIL},deposit,100,EUR,2026-01-05,,"), "own.csv")
    theirs = write(tmp_path, csv_file("theirs@example.net,deposit,100,EUR,2026-01-05,,"), "theirs.csv")

    import_("transactions", own, "--user", advisor.email)
    _, err = import_failing("transactions", theirs, "--user", advisor.email)

    assert err.splitlines() == ["line 2, client: no client with the email theirs@example.net (or not one you may see)"]
    assert list(ImportBatch.objects.values_list("user", "run_by")) == [(advisor.pk, advisor.email)] * 2
    assert Transaction.objects.get().created_by == advisor


def test_help_lists_the_columns_of_every_kind():
    out = io.StringIO()
    with pytest.raises(SystemExit), mock.patch("sys.stdout", out):
        call_command("import", "--help")

    assert (
        "transactions: deposits, withdrawals, interest, fees, taxes and tax refunds in clients' portfolios."
        in out.getvalue()
    )
    assert "portfolios: clients' portfolios (accounts), created or updated by client email and name" in out.getvalue()
    assert "account_number  optional  the custodian's number, unique per custodian" in out.getvalue()
    assert "amount          required  positive, up to 4 decimal places" in out.getvalue()
