"""The contract every registered import format keeps, whatever its kind.

Each format has an `Example` here: how to make a small valid row, a cell its parser refuses, and (for kinds whose
rows name a client) a row naming a client the advisor importing may not see. Registering a format without one
fails `test_every_registered_format_has_a_contract_example`.
"""

import datetime
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db.models import Model

from clients.models import Client, Portfolio
from clients.tests.factories import ClientFactory
from holdings.models import Allocation, Asset, Dividend, FxRate, Price, Split
from holdings.tests.factories import AllocationFactory, AssetFactory
from ledger.models import Transaction
from portfolio_site.imports.exporting import export_csv
from portfolio_site.imports.formats import FORMATS
from portfolio_site.imports.models import ImportBatch
from portfolio_site.imports.run import CommandLineActor, ImportResult, run_import

pytestmark = pytest.mark.django_db

MODELS: tuple[type[Model], ...] = (Client, Portfolio, Asset, Price, FxRate, Split, Allocation, Transaction, Dividend)
MINE = "mine@example.net"
THEIRS = "theirs@example.net"
START = datetime.date(2026, 1, 1)


@dataclass(frozen=True)
class World:
    """What the examples' rows refer to: an advisor's client, another advisor's client, an asset."""

    advisor: Any
    mine: Client
    theirs: Client
    asset: Asset


@dataclass(frozen=True)
class Example:
    row: Callable[[World, int], dict[str, str]]  # the n-th valid row (n from 1), distinct from the others
    bad_cell: tuple[str, str]  # (column, text its parser refuses)
    creates: tuple[type[Model], ...]  # the models a valid row creates rows of
    # A row naming `world.theirs`, and the column its refusal names; None for kinds whose rows name no client.
    outside: tuple[Callable[[World], dict[str, str]], str] | None = None


def day(n: int) -> str:
    return (START + datetime.timedelta(days=n)).isoformat()


EXAMPLES: dict[str, Example] = {
    "clients": Example(
        row=lambda w, n: {
            "email": f"c{n}@example.net",
            "name": f"Client {n}",
            "advisor": w.advisor.email,
            "base_currency": "EUR",
            "is_active": "true",
        },
        bad_cell=("base_currency", "EURO"),
        creates=(Client, Portfolio),  # a new client opens with its Main portfolio
        outside=(
            lambda w: {"email": THEIRS, "name": "Theirs", "advisor": w.advisor.email, "base_currency": "EUR"},
            "email",
        ),
    ),
    "portfolios": Example(
        row=lambda w, n: {"client": MINE, "name": f"Account {n}", "kind": "taxable", "opened_on": "2026-01-01"},
        bad_cell=("opened_on", "yesterday"),
        creates=(Portfolio,),
        outside=(lambda w: {"client": THEIRS, "name": "Theirs", "opened_on": "2026-01-01"}, "client"),
    ),
    "assets": Example(
        row=lambda w, n: {
            "ticker": f"T{n}",
            "exchange": "XETR",
            "name": f"Asset {n}",
            "currency": "EUR",
            "asset_type": "equity",
        },
        bad_cell=("asset_type", "bogus"),
        creates=(Asset,),
    ),
    "prices": Example(
        row=lambda w, n: {"ticker": w.asset.ticker, "exchange": w.asset.exchange, "date": day(n), "close": f"{n}.5"},
        bad_cell=("close", "abc"),
        creates=(Price,),
    ),
    "splits": Example(
        row=lambda w, n: {
            "ticker": w.asset.ticker,
            "exchange": w.asset.exchange,
            "date": day(n),
            "new_units": str(n + 1),
            "old_units": "1",
            "cash_in_lieu_price": "2.5" if n % 2 else "",  # with and without
        },
        bad_cell=("new_units", "abc"),
        creates=(Split,),
    ),
    "fx": Example(
        row=lambda w, n: {"base": "EUR", "quote": "USD", "date": day(n), "rate": f"1.{n:04d}"},
        bad_cell=("rate", "abc"),
        creates=(FxRate,),
    ),
    "allocations": Example(
        row=lambda w, n: {
            "client": MINE,
            "ticker": w.asset.ticker,
            "exchange": w.asset.exchange,
            "kind": "transfer_in",
            "quantity": str(n),
            "price": "10",
            "fees": "0",
            "date": day(n),
        },
        bad_cell=("quantity", "abc"),
        creates=(Allocation,),
        outside=(
            lambda w: {
                "client": THEIRS,
                "ticker": "SAP",
                "kind": "transfer_in",
                "quantity": "1",
                "price": "10",
                "date": day(1),
            },
            "client",
        ),
    ),
    "transactions": Example(
        row=lambda w, n: {
            "client": MINE,
            "kind": "deposit",
            "amount": f"{n}.25",
            "currency": "EUR",
            "date": day(n),
            "reference": f"R-{n}" if n % 2 else "",  # with and without a reference: two ways of being known again
        },
        bad_cell=("amount", "abc"),
        creates=(Transaction,),
        outside=(
            lambda w: {"client": THEIRS, "kind": "deposit", "amount": "1", "currency": "EUR", "date": day(1)},
            "client",
        ),
    ),
    "dividends": Example(
        row=lambda w, n: {
            "client": MINE,
            "ticker": w.asset.ticker,
            "exchange": w.asset.exchange,
            "ex_date": day(n),
            "pay_date": day(n + 7),
            # Both ways of giving the amount.
            "gross": f"{n}.5" if n % 2 else "",
            "amount_per_unit": "" if n % 2 else f"0.{n:03d}",
            "withholding_tax": "0.1",
        },
        bad_cell=("gross", "abc"),
        creates=(Dividend, Transaction),  # and its cash
        outside=(
            lambda w: {
                "client": THEIRS,
                "ticker": "SAP",
                "ex_date": day(1),
                "pay_date": day(2),
                "gross": "1",
            },
            "client",
        ),
    ),
}

KINDS = sorted(FORMATS)


@pytest.fixture
def world(advisor, other_advisor, request) -> World:
    made = World(
        advisor=advisor,
        mine=ClientFactory(email=MINE, advisor=advisor),
        theirs=ClientFactory(email=THEIRS, advisor=other_advisor),
        asset=AssetFactory(ticker="SAP", exchange="XETR", currency="EUR"),
    )
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("kind") == "dividends":
        # A dividend is paid on units held: only for this kind, as other kinds export (and re-import) every row.
        AllocationFactory(client=made.mine, asset=made.asset, quantity="1000", date=START - datetime.timedelta(1))
    return made


def csv_text(kind: str, rows: list[dict[str, str]], extra_header: str = "") -> str:
    names = [column.name for column in FORMATS[kind].columns]
    lines = [",".join(names) + extra_header]
    lines += [",".join(row.get(name, "") for name in names) + ("," if extra_header else "") for row in rows]
    return "\n".join(lines) + "\n"


def valid_rows(kind: str, world: World, count: int) -> list[dict[str, str]]:
    return [EXAMPLES[kind].row(world, n) for n in range(1, count + 1)]


def run(kind: str, text: str, *, actor: Any = None, **options: Any) -> ImportResult:
    return run_import(
        kind=kind,
        stream=io.BytesIO(text.encode()),
        file_name=f"{kind}.csv",
        actor=actor if actor is not None else CommandLineActor(),
        **options,
    )


def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row of every model an import writes, field for field: "nothing written" means this is unchanged."""
    return {model.__name__: list(model._default_manager.order_by("pk").values()) for model in MODELS}


def messages(result: ImportResult) -> list[str]:
    return [str(issue) for issue in result.issues]


def exported(kind: str) -> str:
    out = io.StringIO()
    export_csv(FORMATS[kind], out)
    return out.getvalue()


def test_every_registered_format_has_a_contract_example():
    assert sorted(EXAMPLES) == KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_a_header_with_an_unknown_column_is_refused_naming_it_and_nothing_is_written(kind, world):
    before = snapshot()

    result = run(kind, csv_text(kind, valid_rows(kind, world, 2), extra_header=",bogus_column"))

    assert not result.ok
    assert result.batch.outcome == ImportBatch.Outcome.FAILED
    [issue] = result.issues
    assert (issue.line, issue.column) == (1, "header")
    assert "bogus_column" in issue.message
    assert snapshot() == before


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_cell_deep_in_the_file_is_reported_at_its_line_and_column_and_nothing_is_written(kind, world):
    column, text = EXAMPLES[kind].bad_cell
    rows = valid_rows(kind, world, 60)
    rows[48] = {**rows[48], column: text}  # the 49th data row: line 50, after the header
    before = snapshot()

    result = run(kind, csv_text(kind, rows))

    assert not result.ok
    [message] = messages(result)
    assert message.startswith(f"line 50, {column}: ")
    assert snapshot() == before


@pytest.mark.parametrize("kind", KINDS)
def test_a_dry_run_reports_what_it_would_do_and_writes_nothing(kind, world):
    before = snapshot()

    result = run(kind, csv_text(kind, valid_rows(kind, world, 5)), dry_run=True)

    assert result.ok, messages(result)
    assert result.batch.outcome == ImportBatch.Outcome.DRY_RUN
    assert result.batch.rows_created == 5
    assert snapshot() == before


@pytest.mark.parametrize("kind", KINDS)
def test_every_row_an_import_creates_carries_its_batch(kind, world):
    before = {model: set(model._default_manager.values_list("pk", flat=True)) for model in MODELS}

    result = run(kind, csv_text(kind, valid_rows(kind, world, 5)))

    assert result.ok, messages(result)
    assert result.batch.outcome == ImportBatch.Outcome.SUCCEEDED
    for model in MODELS:
        new = model._default_manager.exclude(pk__in=before[model])
        assert set(new.values_list("import_batch", flat=True)) <= {result.batch.pk}, model.__name__
        if model in EXAMPLES[kind].creates:
            assert new.filter(import_batch=result.batch).count() == 5, model.__name__


@pytest.mark.parametrize("kind", KINDS)
def test_importing_the_same_file_twice_changes_nothing_the_second_time(kind, world):
    text = csv_text(kind, valid_rows(kind, world, 5))
    first = run(kind, text)
    assert first.ok, messages(first)
    after_first = snapshot()

    second = run(kind, text)

    assert second.ok, messages(second)
    assert (second.batch.rows_created, second.batch.rows_updated, second.batch.rows_skipped) == (0, 0, 5)
    assert snapshot() == after_first


@pytest.mark.parametrize("kind", KINDS)
def test_an_export_imports_back_as_it_is(kind, world):
    assert run(kind, csv_text(kind, valid_rows(kind, world, 5))).ok
    export = exported(kind)
    stored = snapshot()

    result = run(kind, export)

    assert result.ok, messages(result)
    assert (result.batch.rows_created, result.batch.rows_updated) == (0, 0)
    assert snapshot() == stored
    assert exported(kind) == export


@pytest.mark.parametrize("kind", KINDS)
def test_a_row_naming_a_client_the_advisor_may_not_see_is_refused_and_nothing_is_written(kind, world):
    outside = EXAMPLES[kind].outside
    if outside is None:
        pytest.skip(f"rows of {kind} name no client")
    make_row, column = outside
    rows = [*valid_rows(kind, world, 3), make_row(world)]
    before = snapshot()

    result = run(kind, csv_text(kind, rows), actor=world.advisor)

    assert not result.ok
    [message] = messages(result)
    assert message.startswith(f"line 5, {column}: ")
    assert snapshot() == before
