"""Export then import into an empty database reproduces the data; the example files import cleanly."""

import datetime
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db.models import Sum

from accounts.tests.factories import AdvisorFactory
from clients.models import Client, Portfolio
from clients.services import client_create, client_update, portfolio_create
from clients.tests.factories import main_portfolio
from holdings.dividends import dividend_create
from holdings.models import Allocation, Asset, Dividend, FxRate, Price
from holdings.services import allocation_create, allocation_update, asset_create, fx_rate_create, price_create
from ledger.models import Transaction, signed_amount
from ledger.services import transaction_post, transaction_reverse
from portfolio_site.imports.models import ImportBatch

pytestmark = pytest.mark.django_db
KINDS = ("clients", "portfolios", "assets", "prices", "fx", "transactions", "allocations", "dividends")
EXAMPLES = Path(settings.BASE_DIR) / "docs" / "examples"
DAY = datetime.date(2026, 3, 2)


def snapshot() -> dict[str, Any]:
    """Every model's rows by natural key, with the values an import restores; and the derived cash."""
    current = Transaction.objects.filter(reverses__isnull=True, reversal__isnull=True)
    return {
        "clients": sorted(
            Client.objects.values_list(
                "email", "name", "advisor__email", "base_currency", "phone", "is_active", "notes"
            )
        ),
        "portfolios": sorted(
            Portfolio.objects.values_list(
                "client__email",
                "name",
                "kind",
                "custodian",
                "account_number",
                "base_currency",
                "opened_on",
                "closed_on",
                "notes",
            ),
            key=str,
        ),
        "assets": sorted(Asset.objects.values_list("ticker", "exchange", "name", "currency", "asset_type", "isin")),
        "prices": sorted(Price.objects.values_list("asset__ticker", "asset__exchange", "date", "close")),
        "fx": sorted(FxRate.objects.values_list("base", "quote", "date", "rate")),
        "cash movements": sorted(
            current.filter(kind__in=Transaction.DIRECT).values_list(
                "client__email", "portfolio__name", "kind", "amount", "currency", "date", "reference", "notes"
            ),
            key=str,
        ),
        # Not their notes: the service writes those from the quantity as it was typed ("40" or "40.00").
        "settlements": sorted(
            current.filter(kind__in=Transaction.SETTLEMENTS).values_list(
                "client__email", "portfolio__name", "kind", "amount", "currency", "date"
            ),
            key=str,
        ),
        "allocations": sorted(
            Allocation.objects.values_list(
                "client__email",
                "portfolio__name",
                "asset__ticker",
                "asset__exchange",
                "kind",
                "quantity",
                "price",
                "fees",
                "taxes",
                "date",
                "notes",
                "settlement__amount",
            ),
            key=str,
        ),
        "dividends": sorted(
            Dividend.objects.values_list(
                "client__email",
                "portfolio__name",
                "asset__ticker",
                "asset__exchange",
                "ex_date",
                "pay_date",
                "currency",
                "units",
                "amount_per_unit",
                "gross",
                "withholding_tax",
                "notes",
                "cash__amount",
            ),
            key=str,
        ),
        "cash": sorted(
            Transaction.objects.values("client__email", "portfolio__name", "currency")
            .annotate(balance=Sum(signed_amount()))
            .values_list("client__email", "portfolio__name", "currency", "balance")
        ),
    }


def empty_the_database() -> None:
    """Every imported kind, deleted in dependency order (staff users stay: clients name their advisor)."""
    Dividend.objects.all().delete()
    Allocation.objects.all().delete()
    Transaction.objects.filter(reverses__isnull=False).delete()
    Transaction.objects.all().delete()
    Price.objects.all().delete()
    FxRate.objects.all().delete()
    Asset.objects.all().delete()
    Client.objects.all().delete()  # and, with them, their portfolios


def load_history(admin: Any) -> None:
    anna, ben = AdvisorFactory(email="anna@example.com"), AdvisorFactory(email="ben@example.com")
    elena = client_create(
        actor=admin, name="Elena Rossi", email="elena@example.it", base_currency="EUR", advisor=anna, phone="+39 02 1"
    )
    david = client_create(
        actor=admin,
        name="Chen, David",
        email="david@example.com",
        base_currency="USD",
        advisor=ben,
        notes='Two lines,\n"quoted"',
    )
    gone = client_create(actor=admin, name="Gone", email="gone@example.org", base_currency="GBP", advisor=anna)
    client_update(actor=admin, client=gone, is_active=False)
    isa = portfolio_create(
        actor=admin,
        client=elena,
        name="ISA",
        kind="retirement",
        custodian="Fineco",
        account_number="IT-0001",
        opened_on=datetime.date(2025, 4, 6),
        notes="tax-free",
    )
    portfolio_create(
        actor=admin,
        client=gone,
        name="Closed one",
        base_currency="EUR",
        opened_on=datetime.date(2020, 1, 1),
        closed_on=datetime.date(2024, 12, 31),
    )
    sap_de = asset_create(ticker="SAP", exchange="XETR", name="SAP SE", currency="EUR", isin="DE0007164600")
    sap_us = asset_create(ticker="SAP", exchange="XNYS", name="SAP SE (ADR)", currency="USD", isin="US8030542042")
    eth = asset_create(ticker="ETH", name="Ether", currency="USD", asset_type="crypto")
    asset_create(ticker="IGLT", exchange="XLON", name="iShares Gilts", currency="GBP", asset_type="bond")
    for offset, (de, us, ether) in enumerate([("219.8", "238.45", "2011.4"), ("221.35", "240.1", "0.0000000001")]):
        date = DAY + datetime.timedelta(days=offset)
        price_create(asset=sap_de, date=date, close=Decimal(de))
        price_create(asset=sap_us, date=date, close=Decimal(us))
        price_create(asset=eth, date=date, close=Decimal(ether))
        fx_rate_create(base="EUR", quote="USD", date=date, rate=Decimal("1.08") + offset)
    fx_rate_create(base="GBP", quote="JPY", date=DAY, rate=Decimal("190.1234567891"))

    def post(where: Client | Portfolio, kind: str, amount: str, currency: str, **extra: Any) -> Transaction:
        portfolio = where if isinstance(where, Portfolio) else main_portfolio(where)
        tx, _ = transaction_post(
            actor=admin,
            portfolio_id=portfolio.pk,
            kind=kind,
            amount=Decimal(amount),
            currency=currency,
            date=DAY,
            **extra,
        )
        return tx

    post(elena, "deposit", "25000", "EUR", reference="DEP-1")
    post(elena, "deposit", "100", "EUR", notes="small top-up")
    post(elena, "deposit", "100", "EUR", notes="small top-up")  # the same movement twice, without a reference
    transaction_reverse(actor=admin, transaction=post(elena, "deposit", "999", "EUR", notes="typo"))
    post(david, "deposit", "20000", "USD", reference="DEP-2", notes="wire")
    post(david, "withdrawal", "1500", "USD", notes="tuition")
    post(david, "interest", "12.5", "USD", reference="INT-1")
    post(david, "fee", "9.99", "USD", notes="custody")
    # Per portfolio: the same reference, and the same movement without one, are other rows in another portfolio.
    post(isa, "deposit", "5000", "EUR", reference="DEP-1")
    post(isa, "deposit", "100", "EUR", notes="small top-up")

    def trade(
        where: Client | Portfolio, asset: Asset, kind: str, quantity: str, price: str, fees: str = "0", **extra: Any
    ) -> Any:
        return allocation_create(
            actor=admin,
            portfolio=where if isinstance(where, Portfolio) else main_portfolio(where),
            asset=asset,
            kind=kind,
            quantity=Decimal(quantity),
            price=Decimal(price),
            fees=Decimal(fees),
            date=extra.pop("date", DAY + datetime.timedelta(days=1)),
            **extra,
        )

    trade(elena, sap_de, "buy", "40", "221.35", "9.9", notes="first, with comma")
    trade(elena, sap_de, "buy", "40", "221.35", "9.9", notes="first, with comma")
    trade(elena, sap_de, "sell", "30", "223.1", "2.5", taxes=Decimal("1.75"), date=DAY + datetime.timedelta(days=2))
    changed = trade(david, sap_us, "buy", "25", "240.1", "1")
    allocation_update(actor=admin, allocation=changed, quantity=Decimal("20"))  # reverses and re-posts its cash
    trade(david, eth, "buy", "1.123456789", "2050", "4.1")
    trade(david, eth, "transfer_in", "0.0000000001", "0")
    trade(david, eth, "transfer_out", "0.5", "0", date=DAY + datetime.timedelta(days=3))
    trade(isa, sap_de, "buy", "10", "221.35", "9.9", notes="first, with comma")  # as in Main: another row
    paid = {"ex_date": DAY + datetime.timedelta(days=3), "pay_date": DAY + datetime.timedelta(days=10)}
    dividend_create(
        actor=admin, portfolio=main_portfolio(elena), asset=sap_de, gross=Decimal("88"),
        withholding_tax=Decimal("23.21"), notes="AGM, 2026", **paid,
    )  # fmt: skip
    dividend_create(
        actor=admin, portfolio=main_portfolio(david), asset=sap_us, amount_per_unit=Decimal("2.48"), currency="EUR",
        **paid,
    )  # fmt: skip


def export_all(directory: Path) -> None:
    for kind in KINDS:
        call_command("export", kind, str(directory / f"{kind}.csv"), stdout=io.StringIO())


def import_all(directory: Path) -> list[ImportBatch]:
    for kind in KINDS:
        call_command("import", kind, str(directory / f"{kind}.csv"), "--quiet", stdout=io.StringIO())
    return list(ImportBatch.objects.order_by("-pk")[: len(KINDS)])[::-1]


def created_and_skipped(batches: list[ImportBatch]) -> dict[str, tuple[int, int, int]]:
    return {batch.kind: (batch.rows_created, batch.rows_updated, batch.rows_skipped) for batch in batches}


def test_export_then_import_into_an_empty_database_reproduces_every_kind(superuser, tmp_path) -> None:
    load_history(superuser)
    before = snapshot()
    export_all(tmp_path)
    empty_the_database()
    assert not any(model.objects.exists() for model in (Client, Portfolio, Asset, Price, Transaction, Allocation))

    batches = import_all(tmp_path)

    assert [batch.outcome for batch in batches] == ["succeeded"] * len(KINDS)
    assert snapshot() == before
    assert created_and_skipped(batches) == {
        "clients": (3, 0, 0),
        # The clients import opened each new client's "Main" portfolio, as client_create does.
        "portfolios": (2, 0, 3),
        "assets": (4, 0, 0),
        "prices": (6, 0, 0),
        "fx": (3, 0, 0),
        "transactions": (9, 0, 0),
        "allocations": (8, 0, 0),
        "dividends": (2, 0, 0),
    }
    # And importing the export again changes nothing.
    assert created_and_skipped(import_all(tmp_path)) == {
        "clients": (0, 0, 3),
        "portfolios": (0, 0, 5),
        "assets": (0, 0, 4),
        "prices": (0, 0, 6),
        "fx": (0, 0, 3),
        "transactions": (0, 0, 9),
        "allocations": (0, 0, 8),
        "dividends": (0, 0, 2),
    }
    assert snapshot() == before


EXAMPLE_COUNTS = {
    "clients": 4,
    "portfolios": 4,
    "assets": 5,
    "prices": 15,
    "fx": 9,
    "transactions": 6,
    "allocations": 8,
    "dividends": 3,
}
# The clients import opens each client's "Main" portfolio; portfolios.csv then describes it (custodian, ...).
FIRST_IMPORT = {kind: (0, rows, 0) if kind == "portfolios" else (rows, 0, 0) for kind, rows in EXAMPLE_COUNTS.items()}


def test_the_example_files_import_cleanly_into_an_empty_database_and_once_only() -> None:
    AdvisorFactory(email="anna.advisor@example.com")
    AdvisorFactory(email="ben.advisor@example.com")
    batches = import_all(EXAMPLES)
    assert created_and_skipped(batches) == FIRST_IMPORT
    assert created_and_skipped(import_all(EXAMPLES)) == {kind: (0, 0, rows) for kind, rows in EXAMPLE_COUNTS.items()}


def test_the_example_movements_name_only_clients_and_go_to_each_client_s_single_portfolio() -> None:
    AdvisorFactory(email="anna.advisor@example.com")
    AdvisorFactory(email="ben.advisor@example.com")
    for kind in ("transactions", "allocations"):
        header = (EXAMPLES / f"{kind}.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
        assert not {"portfolio", "custodian", "account_number"} & set(header)
    # As a user who never heard of portfolios would: clients, then their movements, no portfolios file.
    for kind in ("clients", "assets", "prices", "transactions", "allocations"):
        call_command("import", kind, str(EXAMPLES / f"{kind}.csv"), "--quiet", stdout=io.StringIO())

    assert Transaction.objects.count() == 6 + 7  # the deposits and withdrawals, and the trades' settlements
    assert Allocation.objects.count() == 8
    for movement in [*Transaction.objects.select_related("portfolio"), *Allocation.objects.select_related("portfolio")]:
        assert movement.portfolio.name == "Main"
        assert movement.portfolio.client_id == movement.client_id
    assert Portfolio.objects.count() == Client.objects.count() == 4


def test_the_example_files_import_cleanly_into_the_demo_database() -> None:
    call_command("seed_demo", stdout=io.StringIO())
    batches = import_all(EXAMPLES)
    # The demo publishes EUR/USD and EUR/GBP on every business day of three years: the example's six rates of
    # those pairs update the demo's, its three EUR/CHF rates are new.
    assert created_and_skipped(batches) == FIRST_IMPORT | {"fx": (3, 6, 0)}
