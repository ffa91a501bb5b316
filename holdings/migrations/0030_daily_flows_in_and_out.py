import datetime
from decimal import Decimal

from django.db import migrations, models
from django.db.models import F, Value
from django.db.models.functions import Greatest

import portfolio_site.money

ZERO = Value(Decimal(0), output_field=models.DecimalField(max_digits=20, decimal_places=4))


def _mark_stale(apps):
    """Every portfolio stale from its first day, with a new data version (cached reports and position snapshots
    miss), as after a write: readers and the refresh job rebuild the rows with the flows of the running code."""
    apps.get_model("clients", "Portfolio").objects.update(
        data_version=F("data_version") + 1, history_changed_from=datetime.date.min
    )


def split_the_net_flows(apps, schema_editor):
    """The rows kept one net flow a day, from which the flows in and out cannot be told apart (a deposit and a
    withdrawal on one day had netted out). The values stay (they did not change); until its rebuild a row shows
    its net flow as an inflow or an outflow, which no return reads: every reader of returns refreshes a stale
    portfolio first."""
    daily = apps.get_model("holdings", "PortfolioDailyValue").objects
    daily.update(inflow=Greatest(F("external_flow"), ZERO), outflow=Greatest(ZERO - F("external_flow"), ZERO))
    _mark_stale(apps)


def net_the_flows(apps, schema_editor):
    apps.get_model("holdings", "PortfolioDailyValue").objects.update(external_flow=F("inflow") - F("outflow"))
    _mark_stale(apps)


def _amount(help_text, **kwargs):
    return models.DecimalField(
        decimal_places=4,
        help_text=help_text,
        max_digits=20,
        validators=[portfolio_site.money.validate_storable],
        **kwargs,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("clients", "0009_client_portfolio_change_history"),
        ("holdings", "0029_keys_checked_by_the_portfolio_client_pair"),
    ]

    operations = [
        *[
            migrations.AddField(
                model_name="portfoliodailyvalue",
                name=name,
                field=_amount(help_text, default=Decimal(0)),
                preserve_default=False,
            )
            for name, help_text in (
                ("inflow", "Money and units in from outside the portfolio that day."),
                ("outflow", "Money and units out of the portfolio that day."),
                ("transfers_in", "Of the inflow: what came from the client's other portfolios."),
                ("transfers_out", "Of the outflow: what went to the client's other portfolios."),
            )
        ],
        migrations.RunPython(split_the_net_flows, net_the_flows),
        # A default for the way back only: re-added to a table with rows, the column needs one.
        migrations.AlterField(
            model_name="portfoliodailyvalue",
            name="external_flow",
            field=_amount("Net money and units in from outside the portfolio that day.", default=Decimal(0)),
        ),
        migrations.RemoveField(model_name="portfoliodailyvalue", name="external_flow"),
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
