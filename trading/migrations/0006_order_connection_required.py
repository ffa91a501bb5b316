"""Orders name their connection (required now that every order has one) instead of a broker's name, and a broker's
order id is unique per connection."""

import django.db.models.deletion
from django.db import migrations, models

from clients.migration_ops import sqlite_rebuild_keeping_agreement


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0005_orders_through_connections"),
    ]

    operations = [
        *sqlite_rebuild_keeping_agreement(
            "trading_order",
            [
                migrations.RemoveConstraint(model_name="order", name="trading_order_broker_order_id_unique"),
                # A default first, so that undoing this migration re-adds the column to rows that have one.
                migrations.AlterField(
                    model_name="order", name="broker", field=models.CharField(default="", max_length=40)
                ),
                migrations.RemoveField(model_name="order", name="broker"),
                migrations.AlterField(
                    model_name="order",
                    name="connection",
                    field=models.ForeignKey(
                        help_text="The broker connection it is placed through.",
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="orders",
                        to="trading.brokerconnection",
                    ),
                ),
                migrations.AlterField(
                    model_name="order",
                    name="account_id",
                    field=models.CharField(
                        editable=False,
                        help_text="The portfolio's account at the broker, as it was when the order was created.",
                        max_length=64,
                        verbose_name="account id",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="order",
                    constraint=models.UniqueConstraint(
                        fields=("connection", "broker_order_id"),
                        name="trading_order_broker_order_id_unique",
                        violation_error_message="The broker already has an order with this id.",
                    ),
                ),
            ],
        ),
    ]
