"""Orders go through broker connections kept in the database instead of a name in the settings.

Every order placed so far went to a broker named in TRADING_BROKERS, all of them paper brokers: each name becomes a
paper connection, each portfolio that placed orders gets an account there (numbered after the portfolio), and its
orders point at both. The next migration drops the name (apart: PostgreSQL alters no table with row changes of the
same transaction still to check).

Who may do what: Operations manage connections and accounts (and test connections); advisors read them, to choose
where an order goes; auditors read.
"""

from typing import Any

from django.db import migrations

from accounts.roles import Role, grant_role_permissions, model_codenames


def connections_from_names(apps: Any, schema_editor: Any) -> None:
    order_model = apps.get_model("trading", "Order")
    connection_model = apps.get_model("trading", "BrokerConnection")
    account_model = apps.get_model("trading", "BrokerAccount")
    portfolio_model = apps.get_model("clients", "Portfolio")
    for name in order_model.objects.values_list("broker", flat=True).distinct().order_by("broker"):
        connection, _ = connection_model.objects.get_or_create(name=name, defaults={"kind": "paper"})
        portfolio_ids = (
            order_model.objects.filter(broker=name).values_list("portfolio_id", flat=True).distinct().order_by()
        )
        for portfolio in portfolio_model.objects.filter(pk__in=list(portfolio_ids)).order_by("pk"):
            account, _ = account_model.objects.get_or_create(
                connection=connection,
                portfolio=portfolio,
                defaults={"client_id": portfolio.client_id, "account_id": f"PAPER-{portfolio.pk}"},
            )
            order_model.objects.filter(broker=name, portfolio=portfolio).update(
                connection=connection, account_id=account.account_id
            )


def names_from_connections(apps: Any, schema_editor: Any) -> None:
    order_model = apps.get_model("trading", "Order")
    for connection_id, name in apps.get_model("trading", "BrokerConnection").objects.values_list("pk", "name"):
        order_model.objects.filter(connection_id=connection_id).update(broker=name[:40])


def grant(apps: Any, schema_editor: Any) -> None:
    read = [*model_codenames("brokerconnection", "view"), *model_codenames("brokeraccount", "view")]
    manage = [
        *model_codenames("brokerconnection", "view", "add", "change", "delete"),
        *model_codenames("brokeraccount", "view", "add", "change", "delete"),
        "check_brokerconnection",
    ]
    grant_role_permissions(apps, "trading", {Role.ADVISORS: read, Role.OPERATIONS: manage, Role.AUDITORS: read})


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0004_broker_connections"),
    ]

    operations = [
        migrations.RunPython(connections_from_names, names_from_connections),
        migrations.RunPython(grant, migrations.RunPython.noop),
    ]
