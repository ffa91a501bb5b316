import datetime
import io
from typing import Any

import pytest
from django.core.management import call_command

from accounts.tests.factories import AdvisorFactory
from clients.models import Client, Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory
from portfolio_site.cache import namespace_version
from portfolio_site.imports import upsert
from portfolio_site.imports.run import CommandLineActor, ImportResult, run_import

pytestmark = pytest.mark.django_db
HEADER = "email,name,advisor,base_currency,phone,is_active,notes\n"


def import_clients(body: str, actor: Any = None, **options: Any) -> ImportResult:
    return run_import(
        kind="clients",
        stream=io.BytesIO((HEADER + body).encode()),
        file_name="clients.csv",
        actor=actor or CommandLineActor(),
        **options,
    )


def issues(result: ImportResult) -> list[str]:
    return [str(issue) for issue in result.issues]


def counts(result: ImportResult) -> tuple[int, int, int, int]:
    batch = result.batch
    return batch.rows_created, batch.rows_updated, batch.rows_skipped, batch.rows_rejected


def test_clients_are_created_with_their_advisor_and_every_column(advisor) -> None:
    result = import_clients(
        f"elena.rossi@example.it,Elena Rossi,{advisor.email},eur,+39 02 8725 4410,true,Quarterly reports\n"
        f'Contact@Aubert.example,Fondation Aubert,{advisor.email.upper()},CHF,,no,"Foundation; income, low risk"\n'
    )
    assert result.ok, issues(result)
    assert counts(result) == (2, 0, 0, 0)
    elena = Client.objects.get(email="elena.rossi@example.it")
    assert (elena.name, elena.advisor, elena.base_currency, elena.phone, elena.is_active, elena.notes) == (
        "Elena Rossi",
        advisor,
        "EUR",
        "+39 02 8725 4410",
        True,
        "Quarterly reports",
    )
    aubert = Client.objects.get(email="contact@aubert.example")
    assert (aubert.phone, aubert.is_active, aubert.notes) == ("", False, "Foundation; income, low risk")


def test_empty_optional_cells_and_missing_optional_columns_take_the_defaults(advisor) -> None:
    result = run_import(
        kind="clients",
        stream=io.BytesIO(f"email,name,advisor,base_currency\nkim@example.org,Kim Lee,{advisor.email},USD\n".encode()),
        file_name="clients.csv",
        actor=CommandLineActor(),
    )
    assert result.ok, issues(result)
    kim = Client.objects.get(email="kim@example.org")
    assert (kim.phone, kim.is_active, kim.notes) == ("", True, "")


def test_importing_the_same_file_again_creates_nothing_and_skips_every_row(advisor) -> None:
    body = f"a@example.org,Ann,{advisor.email},EUR,,true,\nb@example.org,Bob,{advisor.email},GBP,+44 20 7946 0001,,\n"
    assert counts(import_clients(body)) == (2, 0, 0, 0)
    again = import_clients(body)
    assert again.ok
    assert counts(again) == (0, 0, 2, 0)
    assert Client.objects.count() == 2


def test_a_changed_field_counts_as_updated_and_an_identical_row_as_skipped(advisor, other_advisor) -> None:
    same = ClientFactory(email="same@example.org", name="Same", advisor=advisor, base_currency="EUR", phone="")
    moved = ClientFactory(email="moved@example.org", name="Moved", advisor=advisor, base_currency="EUR", phone="")
    renamed = ClientFactory(email="renamed@example.org", name="Old name", advisor=advisor, base_currency="EUR")
    result = import_clients(
        f"same@example.org,Same,{advisor.email},EUR,,true,\n"
        f"MOVED@example.org,Moved,{other_advisor.email},EUR,,true,\n"
        f"renamed@example.org,New name,{advisor.email},USD,{renamed.phone},false,now inactive\n"
    )
    assert result.ok, issues(result)
    assert counts(result) == (0, 2, 1, 0)
    for client in (same, moved, renamed):
        client.refresh_from_db()
    assert moved.advisor == other_advisor
    assert (renamed.name, renamed.base_currency, renamed.is_active, renamed.notes) == (
        "New name",
        "USD",
        False,
        "now inactive",
    )
    assert same.updated_at < renamed.updated_at


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("not-an-email,Ann,{advisor},EUR,,,", "line 3, email: 'not-an-email' is not an email address"),
        (",Ann,{advisor},EUR,,,", "line 3, email: required"),
        ("a@example.org,,{advisor},EUR,,,", "line 3, name: required"),
        ("a@example.org,{long_name},{advisor},EUR,,,", "line 3, name: longer than 200 characters"),
        (
            "a@example.org,Ann,ghost@example.com,EUR,,,",
            "line 3, advisor: no staff member with the email ghost@example.com",
        ),
        ("a@example.org,Ann,{advisor},EURO,,,", "line 3, base_currency: 'EURO' is not an ISO 4217 currency code"),
        ("a@example.org,Ann,{advisor},XXY,,,", "line 3, base_currency: 'XXY' is not an ISO 4217 currency code"),
        (
            "a@example.org,Ann,{advisor},EUR,call me,,",
            "line 3, phone: Enter a phone number of digits, spaces and - ( ) . /, optionally starting with +.",
        ),
        ("a@example.org,Ann,{advisor},EUR,,maybe,", "line 3, is_active: 'maybe' is not true or false"),
        ("a@example.org,Ann,{advisor},EUR,,,,extra", "line 3, row: expected 7 fields, found 8"),
    ],
)
def test_an_invalid_row_is_refused_with_its_line_and_column_and_nothing_is_written(advisor, row, expected) -> None:
    result = import_clients(
        f"first@example.org,First,{advisor.email},EUR,,,\n"
        + row.format(advisor=advisor.email, long_name="x" * 201)
        + "\n"
    )
    assert not result.ok
    assert issues(result) == [expected]
    assert not Client.objects.exists()


def test_an_email_repeated_in_the_file_is_refused_naming_the_earlier_line(advisor) -> None:
    result = import_clients(
        f"a@example.org,Ann,{advisor.email},EUR,,,\nb@example.org,Bob,{advisor.email},EUR,,,\n"
        f"A@EXAMPLE.ORG,Ann again,{advisor.email},EUR,,,\n"
    )
    assert issues(result) == ["line 4, email: a@example.org is already on line 2"]
    assert not Client.objects.exists()


def test_an_inactive_advisor_is_refused_for_a_new_client(advisor) -> None:
    advisor.is_active = False
    advisor.save()
    result = import_clients(f"a@example.org,Ann,{advisor.email},EUR,,,\n")
    assert issues(result) == ["line 2, advisor: The advisor's account is not active."]


def test_a_client_keeping_its_inactive_advisor_may_still_be_updated(advisor) -> None:
    client = ClientFactory(email="a@example.org", advisor=advisor, base_currency="EUR", phone="")
    advisor.is_active = False
    advisor.save()
    result = import_clients(f"a@example.org,New name,{advisor.email},EUR,,,\n")
    assert result.ok, issues(result)
    client.refresh_from_db()
    assert client.name == "New name"


def test_every_problem_of_the_file_is_listed_in_one_run(advisor) -> None:
    result = import_clients(
        f"a@example.org,Ann,{advisor.email},EURO,,,\nb@example.org,Bob,ghost@example.com,EUR,,,\n"
        f"c@example.org,Cy,{advisor.email},EUR,,,\n"
    )
    assert issues(result) == [
        "line 2, base_currency: 'EURO' is not an ISO 4217 currency code",
        "line 3, advisor: no staff member with the email ghost@example.com",
    ]
    assert counts(result) == (0, 0, 0, 2)


def test_skip_invalid_writes_the_valid_rows_and_lists_the_others_in_the_rejects_file(advisor) -> None:
    rejects = io.StringIO()
    result = import_clients(
        f"a@example.org,Ann,{advisor.email},EUR,,,\nb@example.org,Bob,{advisor.email},EURO,,,\n"
        f"c@example.org,Cy,{advisor.email},EUR,,,\n",
        skip_invalid=True,
        rejects=rejects,
    )
    assert result.ok
    assert counts(result) == (2, 0, 0, 1)
    assert set(Client.objects.values_list("email", flat=True)) == {"a@example.org", "c@example.org"}
    assert rejects.getvalue().splitlines() == [
        "line,email,name,advisor,base_currency,phone,is_active,notes,error",
        f"3,b@example.org,Bob,{advisor.email},EURO,,,,base_currency: 'EURO' is not an ISO 4217 currency code",
    ]


def test_a_dry_run_writes_nothing_but_counts(advisor) -> None:
    result = import_clients(f"a@example.org,Ann,{advisor.email},EUR,,,\n", dry_run=True)
    assert result.ok
    assert counts(result) == (1, 0, 0, 0)
    assert not Client.objects.exists()


def test_rows_are_written_in_batches_and_checked_across_them(advisor, monkeypatch) -> None:
    # The batches are the upsert engine's (clients.importers only re-exported the constant for its export).
    monkeypatch.setattr(upsert, "BATCH_ROWS", 2)
    ClientFactory(email="c@example.org", name="Cy", advisor=advisor, base_currency="EUR", phone="", notes="")
    body = "".join(f"{name}@example.org,{name.upper()},{advisor.email},EUR,,,\n" for name in "abcde")
    result = import_clients(body)
    assert result.ok, issues(result)
    assert counts(result) == (4, 1, 0, 0)
    assert Client.objects.count() == 5
    repeated = import_clients(body + f"b@example.org,B,{advisor.email},EUR,,,\n")
    assert issues(repeated) == ["line 7, email: b@example.org is already on line 3"]


# --- Visibility -----------------------------------------------------------------------------


def test_an_advisor_may_create_and_update_their_own_clients(advisor) -> None:
    ClientFactory(email="mine@example.org", name="Mine", advisor=advisor, base_currency="EUR")
    result = import_clients(
        f"mine@example.org,Mine renamed,{advisor.email},EUR,,,\nnew@example.org,New,{advisor.email},USD,,,\n",
        actor=advisor,
    )
    assert result.ok, issues(result)
    assert counts(result) == (1, 1, 0, 0)
    assert result.batch.user == advisor


def test_an_advisor_may_not_give_a_client_to_another_advisor(advisor, other_advisor) -> None:
    ClientFactory(email="mine@example.org", advisor=advisor, base_currency="EUR")
    result = import_clients(
        f"new@example.org,New,{other_advisor.email},EUR,,,\nmine@example.org,Mine,{other_advisor.email},EUR,,,\n",
        actor=advisor,
    )
    assert issues(result) == [
        "line 2, advisor: An advisor may only take on clients for themselves.",
        "line 3, advisor: An advisor may only take on clients for themselves.",
    ]
    assert Client.objects.get(email="mine@example.org").advisor == advisor


def test_an_advisor_may_not_touch_a_client_of_another_advisor(advisor, other_advisor) -> None:
    theirs = ClientFactory(email="theirs@example.org", name="Theirs", advisor=other_advisor, base_currency="EUR")
    result = import_clients(f"theirs@example.org,Taken over,{advisor.email},EUR,,,\n", actor=advisor)
    assert issues(result) == ["line 2, email: a client with this email exists and is not one you may act on"]
    theirs.refresh_from_db()
    assert (theirs.name, theirs.advisor) == ("Theirs", other_advisor)


def test_operations_may_import_clients_for_any_advisor(operations, advisor, other_advisor) -> None:
    result = import_clients(
        f"a@example.org,Ann,{advisor.email},EUR,,,\nb@example.org,Bob,{other_advisor.email},EUR,,,\n", actor=operations
    )
    assert result.ok, issues(result)
    assert counts(result) == (2, 0, 0, 0)


def test_staff_without_a_role_may_import_no_client(nobody) -> None:
    result = import_clients(f"a@example.org,Ann,{nobody.email},EUR,,,\n", actor=nobody)
    assert issues(result) == ["line 2, row: You may only act on clients you are allowed to see."]


# --- Cache and export -----------------------------------------------------------------------


def test_a_run_that_writes_invalidates_the_clients_cache_once_it_commits(
    advisor, django_capture_on_commit_callbacks
) -> None:
    before = namespace_version("clients")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        import_clients(f"a@example.org,Ann,{advisor.email},EUR,,,\nb@example.org,Bob,{advisor.email},EUR,,,\n")
    assert len(callbacks) == 1
    assert namespace_version("clients") != before


def test_a_failed_or_unchanged_run_leaves_the_cache_alone(advisor, django_capture_on_commit_callbacks) -> None:
    ClientFactory(email="a@example.org", name="Ann", advisor=advisor, base_currency="EUR", phone="")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        import_clients(f"a@example.org,Ann,{advisor.email},EUR,,,\n")
        import_clients(f"b@example.org,Bob,{advisor.email},EURO,,,\n")
    assert callbacks == []


def test_export_writes_the_import_columns(tmp_path) -> None:
    advisor = AdvisorFactory(email="anna@example.com")
    ClientFactory(
        email="b@example.org",
        name="Bob, Jr.",
        advisor=advisor,
        base_currency="GBP",
        phone="",
        is_active=False,
        notes="two\nlines",
    )
    ClientFactory(email="a@example.org", name="Ann", advisor=advisor, base_currency="EUR", phone="+1 555 0100")
    path = tmp_path / "clients.csv"
    call_command("export", "clients", str(path), stdout=io.StringIO())
    assert path.read_text() == (
        HEADER
        + "a@example.org,Ann,anna@example.com,EUR,'+1 555 0100,true,\n"
        + 'b@example.org,"Bob, Jr.",anna@example.com,GBP,,false,"two\nlines"\n'
    )
    Client.objects.all().delete()
    call_command("import", "clients", str(path), stdout=io.StringIO())
    assert list(Client.objects.order_by("email").values_list("email", "name", "is_active", "notes")) == [
        ("a@example.org", "Ann", True, ""),
        ("b@example.org", "Bob, Jr.", False, "two\nlines"),
    ]


# --- Portfolios ---------------------------------------------------------------------------------------------------

PORTFOLIOS = "client,name,kind,custodian,account_number,base_currency,opened_on,closed_on,notes\n"


def import_portfolios(body: str, actor: Any = None, **options: Any) -> ImportResult:
    return run_import(
        kind="portfolios",
        stream=io.BytesIO((PORTFOLIOS + body).encode()),
        file_name="portfolios.csv",
        actor=actor or CommandLineActor(),
        **options,
    )


def portfolios() -> list[tuple[Any, ...]]:
    return sorted(
        Portfolio.objects.values_list(
            "client__email", "name", "kind", "custodian", "account_number", "base_currency", "opened_on", "closed_on"
        ),
        key=str,
    )


def test_a_new_client_from_the_clients_import_opens_its_main_portfolio(advisor) -> None:
    result = import_clients(f"kim@example.org,Kim Lee,{advisor.email},USD,,,\n")

    assert result.ok, issues(result)
    assert list(Portfolio.objects.values_list("client__email", "name", "base_currency")) == [
        ("kim@example.org", "Main", "USD")
    ]


def test_portfolios_are_created_by_client_and_name_and_updated_or_skipped_when_imported_again() -> None:
    ClientFactory(email="ann@example.net", base_currency="GBP")
    body = (
        "ann@example.net,ISA,retirement,Fineco,IT-1,EUR,2025-04-06,,tax-free\n"
        "ann@example.net,Joint,joint,,,,2025-01-01,,\n"
    )

    first = import_portfolios(body)
    again = import_portfolios(body)
    changed = import_portfolios("ann@example.net,isa,retirement,Fineco,IT-1,EUR,2025-04-06,2026-01-31,tax-free\n")

    assert (first.ok, counts(first)) == (True, (2, 0, 0, 0)), issues(first)
    assert counts(again) == (0, 0, 2, 0)
    assert counts(changed) == (0, 1, 0, 0)
    assert portfolios() == [
        ("ann@example.net", "Joint", "joint", "", "", "GBP", datetime.date(2025, 1, 1), None),
        ("ann@example.net", "Main", "taxable", "", "", "GBP", datetime.date(2025, 1, 1), None),
        (
            "ann@example.net",
            "isa",
            "retirement",
            "Fineco",
            "IT-1",
            "EUR",
            datetime.date(2025, 4, 6),
            datetime.date(2026, 1, 31),
        ),
    ]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            "ghost@example.net,X,,,,,,,",
            "line 2, client: no client with the email ghost@example.net (or not one you may see)",
        ),
        ("ann@example.net,X,safe,,,,,,", "line 2, kind: 'safe' is not one of taxable, retirement, joint, trust, other"),
        ("ann@example.net,X,,,IT-2,,,,", "line 2, row: An account number is given with its custodian."),
        (
            "ann@example.net,X,,Fineco,IT-1,,,,",
            "line 2, row: This custodian already has a portfolio with this account number.",
        ),
        (
            "ann@example.net,X,,,,,2026-01-02,2026-01-01,",
            "line 2, row: A portfolio closes on or after the day it opened.",
        ),
        ("ann@example.net,X,,,,EURO,,,", "line 2, base_currency: 'EURO' is not an ISO 4217 currency code"),
    ],
    ids=["unknown-client", "kind", "account-without-custodian", "account-taken", "closed-before-opened", "currency"],
)
def test_an_invalid_portfolio_row_is_refused_with_its_line_and_nothing_is_written(row: str, expected: str) -> None:
    PortfolioFactory(
        client=ClientFactory(email="ann@example.net"), name="ISA", custodian="Fineco", account_number="IT-1"
    )

    result = import_portfolios(row + "\n")

    assert issues(result) == [expected]
    assert Portfolio.objects.count() == 2


def test_every_refused_portfolio_is_listed_and_skip_invalid_writes_the_others() -> None:
    ClientFactory(email="ann@example.net")
    body = "ann@example.net,A,,,,,,,\nann@example.net,a,,,,,,,\nann@example.net,B,,,X-1,,,,\nann@example.net,C,,,,,,,\n"

    failed = import_portfolios(body)
    skipped = import_portfolios(body, skip_invalid=True, rejects=io.StringIO())

    assert issues(failed) == [
        "line 3, name: ann@example.net's portfolio 'a' is already on line 2",
        "line 4, row: An account number is given with its custodian.",
    ]
    assert counts(skipped) == (2, 0, 0, 2)
    assert sorted(Portfolio.objects.values_list("name", flat=True)) == ["A", "C", "Main"]


def test_an_advisor_may_import_portfolios_of_their_own_clients_only(advisor, other_advisor) -> None:
    ClientFactory(email="mine@example.net", advisor=advisor)
    ClientFactory(email="theirs@example.net", advisor=other_advisor)

    mine = import_portfolios("mine@example.net,ISA,,,,,,,\n", actor=advisor)
    theirs = import_portfolios("theirs@example.net,ISA,,,,,,,\n", actor=advisor)

    assert mine.ok, issues(mine)
    assert issues(theirs) == ["line 2, client: no client with the email theirs@example.net (or not one you may see)"]
    assert list(Portfolio.objects.filter(name="ISA").values_list("client__email", flat=True)) == ["mine@example.net"]


def test_portfolios_export_as_they_import(tmp_path) -> None:
    ann = ClientFactory(email="ann@example.net")
    PortfolioFactory(client=ann, name="=ISA", custodian="Fineco", account_number="IT-1", notes="a, b")
    path = tmp_path / "portfolios.csv"

    call_command("export", "portfolios", str(path), stdout=io.StringIO())
    Portfolio.objects.filter(name="=ISA").delete()
    result = import_portfolios(path.read_text(encoding="utf-8").split("\n", 1)[1])

    assert path.read_text(encoding="utf-8").splitlines() == [
        PORTFOLIOS.strip(),
        'ann@example.net,\'=ISA,taxable,Fineco,IT-1,EUR,2025-01-01,,"a, b"',
        "ann@example.net,Main,taxable,,,EUR,2025-01-01,,",
    ]
    assert counts(result) == (1, 0, 1, 0)
    assert Portfolio.objects.get(custodian="Fineco").name == "=ISA"
