"""Exported cells a spreadsheet would run as formulas are quoted, and the import reads them back unchanged."""

import csv
import datetime
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from accounts.tests.factories import AdvisorFactory
from clients.models import Client
from clients.services import client_create
from clients.tests.factories import main_portfolio
from holdings.services import allocation_create, asset_create, price_create
from ledger.services import transaction_post
from portfolio_site.imports.cells import escape_cell, unescape_cell
from portfolio_site.imports.run import run_import

from .test_round_trip import KINDS, empty_the_database, export_all, import_all, snapshot

DAY = datetime.date(2026, 3, 2)
PHONE = "+44 20 7946 0958"
FORMULA = '=HYPERLINK("http://evil.example","click")'


@pytest.mark.parametrize(
    "value",
    [
        "=1+2",
        "+44 20 7946 0958",
        "-minus",
        "@SUM(A1)",
        "\tTabbed",
        "\rReturned",
        "'=already quoted",
        "''+twice quoted",
        "'tis plain",
        "'",
        "",
        "plain",
        "-100.0000",
        "'-100",
    ],
)
def test_escaping_a_cell_and_unescaping_it_gives_the_value_back(value: str) -> None:
    assert unescape_cell(escape_cell(value)) == value


@pytest.mark.parametrize("value", ["=1+2", "+44 20", "-x", "@x", "\tx", "\rx", "'=x", "'-100"])
def test_a_formula_like_value_is_written_behind_a_quote(value: str) -> None:
    assert escape_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["-100.0000", "+5", "42", "0.0000000001", "plain text", "'tis"])
def test_plain_numbers_and_harmless_text_are_written_as_they_are(value: str) -> None:
    assert escape_cell(value) == value


def load_formula_like_history(admin: Any) -> None:
    advisor = AdvisorFactory(email="anna@example.com")
    client = client_create(
        actor=admin,
        name="@Ada Lovelace",
        email="ada@example.com",
        base_currency="EUR",
        advisor=advisor,
        phone=PHONE,
        notes=FORMULA,
    )
    client_create(
        actor=admin, name="'=Quoted", email="q@example.com", base_currency="EUR", advisor=advisor, notes="'+already"
    )
    asset = asset_create(ticker="-DASH", exchange="XETR", name="=SUM(A1:A9)", currency="EUR")
    price_create(asset=asset, date=DAY, close=Decimal("12.5"))
    transaction_post(
        actor=admin,
        portfolio_id=main_portfolio(client).pk,
        kind="deposit",
        amount=Decimal("1000"),
        currency="EUR",
        date=DAY,
        reference="+REF-1",
        notes="-wire from savings",
    )
    allocation_create(
        actor=admin,
        portfolio=main_portfolio(client),
        asset=asset,
        kind="buy",
        quantity=Decimal("2"),
        price=Decimal("12.5"),
        fees=Decimal("0"),
        date=DAY,
        notes="\tfirst buy",
    )


@pytest.mark.django_db
def test_formula_like_text_of_every_kind_survives_export_then_import(superuser, tmp_path: Path) -> None:
    load_formula_like_history(superuser)
    before = snapshot()
    export_all(tmp_path)
    empty_the_database()

    batches = import_all(tmp_path)

    assert [batch.outcome for batch in batches] == ["succeeded"] * len(KINDS), [b.errors for b in batches]
    assert snapshot() == before


@pytest.mark.django_db
def test_exported_formula_like_cells_start_with_a_quote_and_numbers_do_not(superuser, tmp_path: Path) -> None:
    load_formula_like_history(superuser)
    export_all(tmp_path)

    def rows(kind: str) -> list[dict[str, str]]:
        with (tmp_path / f"{kind}.csv").open(newline="", encoding="utf-8") as file:
            return list(csv.DictReader(file))

    ada = next(row for row in rows("clients") if row["email"] == "ada@example.com")
    assert (ada["name"], ada["phone"], ada["notes"]) == ("'@Ada Lovelace", "'" + PHONE, "'" + FORMULA)
    quoted = next(row for row in rows("clients") if row["email"] == "q@example.com")
    assert (quoted["name"], quoted["notes"]) == ("''=Quoted", "''+already")
    assert rows("assets")[0]["name"] == "'=SUM(A1:A9)"
    assert rows("assets")[0]["ticker"] == "'-DASH"
    assert rows("prices")[0]["ticker"] == "'-DASH"
    deposit = rows("transactions")[0]
    assert (deposit["reference"], deposit["notes"]) == ("'+REF-1", "'-wire from savings")
    assert deposit["amount"] == "1000.0000"
    assert rows("allocations")[0]["notes"] == "'\tfirst buy"


@pytest.mark.django_db
def test_an_import_takes_the_quote_off_a_quoted_cell_before_parsing_it(superuser) -> None:
    AdvisorFactory(email="anna@example.com")
    data = f"email,name,advisor,base_currency,phone\nx@example.com,X,anna@example.com,EUR,'{PHONE}\n"

    result = run_import(kind="clients", stream=io.BytesIO(data.encode()), file_name="c.csv", actor=superuser)

    assert result.ok, result.issues
    assert Client.objects.get().phone == PHONE


@pytest.mark.django_db
def test_the_rejects_file_quotes_formula_like_cells(superuser, tmp_path: Path) -> None:
    AdvisorFactory(email="anna@example.com")
    source = tmp_path / "clients.csv"
    source.write_text(
        "email,name,advisor,base_currency,notes\n"
        "ok@example.com,Fine,anna@example.com,EUR,\n"
        "bad@example.com,'=Name,nobody@example.com,EUR,'=1+2\n",
        encoding="utf-8",
    )
    rejects = tmp_path / "rejects.csv"

    call_command("import", "clients", str(source), "--skip-invalid", "--rejects", str(rejects), stdout=io.StringIO())

    with rejects.open(newline="", encoding="utf-8") as file:
        rejected = list(csv.DictReader(file))
    assert [(row["name"], row["notes"]) for row in rejected] == [("'=Name", "'=1+2")]
