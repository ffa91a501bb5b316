"""The migration that brings portfolios in, run on a database holding data: every row moves into its client's
"Main" portfolio and every balance and position stays what it was."""

import datetime
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [
    ("clients", "0003_notes_max_length"),
    ("ledger", "0005_notes_max_length"),
    ("holdings", "0006_notes_max_length"),
]
INFLOWS = {"deposit", "sell"}


@pytest.fixture
def executor() -> Iterator[MigrationExecutor]:
    """Migrates the test database back to before portfolios, and forward to the latest migrations afterwards
    (whatever the test did)."""
    migrator = MigrationExecutor(connection)
    latest = migrator.loader.graph.leaf_nodes()
    migrator.migrate(BEFORE)
    yield migrator
    migrator = MigrationExecutor(connection)
    migrator.migrate(latest)


def _history(apps: Any) -> list[Any]:
    """Two clients (one advised, one not yet moved), deposits, withdrawals, settled buys and transfers."""
    User = apps.get_model("accounts", "User")
    Client = apps.get_model("clients", "Client")
    Asset = apps.get_model("holdings", "Asset")
    Transaction = apps.get_model("ledger", "Transaction")
    Allocation = apps.get_model("holdings", "Allocation")
    advisor = User.objects.create(email="advisor@example.com", password="!", is_staff=True)
    asset = Asset.objects.create(ticker="ACME", name="Acme", exchange="XNAS", currency="USD", asset_type="equity")
    clients = []
    for n, currency in enumerate(["EUR", "GBP"]):
        client = Client.objects.create(
            name=f"Client {n}", email=f"c{n}@example.net", advisor=advisor, base_currency=currency
        )
        clients.append(client)
        day = datetime.date(2024, 3, 1)
        Transaction.objects.create(client=client, kind="deposit", amount="5000", currency="USD", date=day)
        Transaction.objects.create(client=client, kind="deposit", amount="100.1", currency=currency, date=day)
        Transaction.objects.create(client=client, kind="withdrawal", amount="0.1", currency=currency, date=day)
        settlement = Transaction.objects.create(client=client, kind="buy", amount="1234.5", currency="USD", date=day)
        Allocation.objects.create(
            client=client, asset=asset, kind="buy", quantity="12.5", price="98.76", date=day, settlement=settlement
        )
        Allocation.objects.create(client=client, asset=asset, kind="transfer_in", quantity="1", price="0", date=day)
    return clients


def _cash(apps: Any) -> dict[tuple[int, str], Decimal]:
    totals: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for tx in apps.get_model("ledger", "Transaction").objects.all():
        sign = 1 if tx.kind in INFLOWS else -1
        totals[tx.client_id, tx.currency] += sign * Decimal(tx.amount)
    return dict(totals)


def _units(apps: Any) -> dict[tuple[int, int], Decimal]:
    totals: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for allocation in apps.get_model("holdings", "Allocation").objects.all():
        sign = 1 if allocation.kind in {"buy", "transfer_in"} else -1
        totals[allocation.client_id, allocation.asset_id] += sign * Decimal(allocation.quantity)
    return dict(totals)


@pytest.mark.django_db(transaction=True)
def test_every_row_moves_into_its_clients_main_portfolio_and_every_balance_is_unchanged(
    executor: MigrationExecutor,
) -> None:
    old_apps = executor.loader.project_state(BEFORE).apps
    clients = _history(old_apps)
    cash_before, units_before = _cash(old_apps), _units(old_apps)
    rows_before = (
        old_apps.get_model("ledger", "Transaction").objects.count(),
        old_apps.get_model("holdings", "Allocation").objects.count(),
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    from clients.models import Portfolio
    from holdings.models import Allocation
    from holdings.selectors import position
    from ledger.models import Transaction
    from ledger.selectors import cash_available, client_balances

    for client in clients:
        (main,) = Portfolio.objects.filter(client_id=client.pk)
        assert (main.name, main.base_currency) == ("Main", client.base_currency)
        assert main.opened_on == datetime.date(2024, 3, 1)  # no later than its earliest movement
        assert not Transaction.objects.filter(client_id=client.pk).exclude(portfolio=main).exists()
        assert not Allocation.objects.filter(client_id=client.pk).exclude(portfolio=main).exists()
        for (client_id, currency), balance in cash_before.items():
            if client_id == client.pk:
                assert cash_available(portfolio_id=main.pk, currency=currency) == balance
                assert client_balances(client_id=client.pk)[currency] == balance
        for (client_id, asset_id), units in units_before.items():
            if client_id == client.pk:
                assert position(portfolio_id=main.pk, asset_id=asset_id) == units
    assert (Transaction.objects.count(), Allocation.objects.count()) == rows_before
