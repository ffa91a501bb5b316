"""The migration that moves orders from broker names in the settings onto broker connections, run on a database
holding orders: each name becomes a paper connection, each portfolio that placed orders an account there."""

from collections.abc import Iterator

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("trading", "0003_orders_poll_schedule")]


@pytest.fixture
def executor() -> Iterator[MigrationExecutor]:
    migrator = MigrationExecutor(connection)
    latest = migrator.loader.graph.leaf_nodes()
    migrator.migrate(BEFORE)
    yield migrator
    MigrationExecutor(connection).migrate(latest)


def test_orders_placed_by_broker_name_move_onto_connections_and_accounts(executor: MigrationExecutor) -> None:
    apps = executor.loader.project_state(BEFORE).apps
    advisor = apps.get_model("accounts", "User").objects.create(
        email="advisor@example.com", password="!", is_staff=True
    )
    client = apps.get_model("clients", "Client").objects.create(
        name="C", email="c@example.net", base_currency="USD", advisor=advisor
    )
    portfolio_model = apps.get_model("clients", "Portfolio")
    main = portfolio_model.objects.create(client=client, name="Main", base_currency="USD", opened_on="2026-01-01")
    other = portfolio_model.objects.create(client=client, name="Other", base_currency="USD", opened_on="2026-01-01")
    asset = apps.get_model("holdings", "Asset").objects.create(
        ticker="ACME", name="Acme", exchange="XNAS", currency="USD", asset_type="equity"
    )
    order_model = apps.get_model("trading", "Order")
    for n, (portfolio, broker) in enumerate([(main, "paper"), (main, "paper"), (other, "paper-eu")]):
        order_model.objects.create(
            client=client, portfolio=portfolio, asset=asset, side="buy", quantity="1", broker=broker,
            client_order_id=f"pb-{n}", status="draft",
        )  # fmt: skip

    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    apps = executor.loader.project_state(executor.loader.graph.leaf_nodes()).apps
    connections = apps.get_model("trading", "BrokerConnection").objects.order_by("name")
    assert [(c.name, c.kind, c.environment) for c in connections] == [
        ("paper", "paper", "paper"),
        ("paper-eu", "paper", "paper"),
    ]
    accounts = apps.get_model("trading", "BrokerAccount").objects.order_by("connection__name")
    assert [(a.connection.name, a.portfolio_id, a.client_id, a.account_id) for a in accounts] == [
        ("paper", main.pk, client.pk, f"PAPER-{main.pk}"),
        ("paper-eu", other.pk, client.pk, f"PAPER-{other.pk}"),
    ]
    orders = apps.get_model("trading", "Order").objects.order_by("client_order_id")
    assert [(o.connection.name, o.account_id) for o in orders] == [
        ("paper", f"PAPER-{main.pk}"),
        ("paper", f"PAPER-{main.pk}"),
        ("paper-eu", f"PAPER-{other.pk}"),
    ]
