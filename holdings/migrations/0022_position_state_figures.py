from django.db import migrations, models


def drop_snapshots(apps, schema_editor):  # type: ignore[no-untyped-def]
    """A snapshot stored before these fields has no figures to read: they are derived, so dropped, and the next
    read refolds each portfolio."""
    apps.get_model("holdings", "PositionSnapshot").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("holdings", "0021_change_history"),
    ]

    operations = [
        migrations.RunPython(drop_snapshots, migrations.RunPython.noop),
        migrations.AddField(
            model_name="positionstate",
            name="units",
            field=models.TextField(default="0", help_text="The units held, exact."),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="positionstate",
            name="cost",
            field=models.TextField(default="0", help_text="Cost of the units held, in the asset's currency, exact."),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="positionstate",
            name="cost_value",
            field=models.TextField(
                default="0", help_text="Cost in the valuation currency at the trades' rates, exact."
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="positionstate",
            name="realized",
            field=models.TextField(default="0", help_text="Realized gain in the asset's currency, exact."),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="positionstate",
            name="realized_value",
            field=models.TextField(default="0", help_text="Realized gain in the valuation currency, exact."),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="positionstate",
            name="noted",
            field=models.BooleanField(default=False, help_text="The state lists missing rates or warnings."),
        ),
    ]
