"""Every existing client gets one portfolio, "Main", in its base currency: where its ledger transactions and
allocations move (ledger 0006, holdings 0007)."""

from typing import Any

from django.db import migrations


def main_portfolios(apps: Any, schema_editor: Any) -> None:
    Client = apps.get_model("clients", "Client")
    Portfolio = apps.get_model("clients", "Portfolio")
    have_one = Portfolio.objects.values("client_id")
    Portfolio.objects.bulk_create(
        (
            Portfolio(
                client_id=client.pk,
                name="Main",
                kind="other",
                base_currency=client.base_currency,
                opened_on=client.created_at.date(),
            )
            for client in Client.objects.exclude(pk__in=have_one).only("pk", "base_currency", "created_at").iterator()
        ),
        batch_size=1000,
    )


def no_portfolios(apps: Any, schema_editor: Any) -> None:
    apps.get_model("clients", "Portfolio").objects.filter(name="Main").delete()


class Migration(migrations.Migration):
    dependencies = [("clients", "0004_portfolio")]

    operations = [migrations.RunPython(main_portfolios, no_portfolios)]
