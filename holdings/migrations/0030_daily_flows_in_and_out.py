import datetime
from decimal import Decimal

from django.db import migrations, models
from django.db.models import F

import portfolio_site.money


def forget_the_netted_flows(apps, schema_editor):
    """The rows kept one net flow a day, which the new columns cannot be derived from (a deposit and a withdrawal
    on one day had netted out): every row goes, and every portfolio is stale from its first day with a new data
    version (cached reports miss), as after a write. Readers and the refresh job rebuild them."""
    apps.get_model("holdings", "PortfolioDailyValue").objects.all().delete()
    apps.get_model("clients", "Portfolio").objects.update(
        data_version=F("data_version") + 1, history_changed_from=datetime.date.min
    )


class Migration(migrations.Migration):
    dependencies = [
        ("clients", "0009_client_portfolio_change_history"),
        ("holdings", "0029_keys_checked_by_the_portfolio_client_pair"),
    ]

    operations = [
        migrations.RunPython(forget_the_netted_flows, migrations.RunPython.noop, elidable=True),
        migrations.RemoveField(model_name="portfoliodailyvalue", name="external_flow"),
        *[
            migrations.AddField(
                model_name="portfoliodailyvalue",
                name=name,
                field=models.DecimalField(
                    decimal_places=4,
                    default=Decimal(0),
                    help_text=help_text,
                    max_digits=20,
                    validators=[portfolio_site.money.validate_storable],
                ),
                preserve_default=False,
            )
            for name, help_text in (
                ("inflow", "Money and units in from outside the portfolio that day."),
                ("outflow", "Money and units out of the portfolio that day."),
                ("transfers_in", "Of the inflow: what came from the client's other portfolios."),
                ("transfers_out", "Of the outflow: what went to the client's other portfolios."),
            )
        ],
        migrations.AddConstraint(
            model_name="portfoliodailyvalue",
            constraint=models.CheckConstraint(
                condition=models.Q(("transfers_in__gte", 0), ("transfers_in__lte", models.F("inflow"))),
                name="holdings_dailyvalue_inflow_holds_its_transfers",
                violation_error_message="Inflows and their transfers are zero or more, the transfers part of them.",
            ),
        ),
        migrations.AddConstraint(
            model_name="portfoliodailyvalue",
            constraint=models.CheckConstraint(
                condition=models.Q(("transfers_out__gte", 0), ("transfers_out__lte", models.F("outflow"))),
                name="holdings_dailyvalue_outflow_holds_its_transfers",
                violation_error_message="Outflows and their transfers are zero or more, the transfers part of them.",
            ),
        ),
    ]
