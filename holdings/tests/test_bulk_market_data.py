"""Bulk loads of closes and rates mark the same history as the per-row services, so no daily value goes stale."""

import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, main_portfolio
from holdings.models import FxRate, Price
from holdings.services import fx_rates_bulk_create, prices_bulk_create
from holdings.tests.factories import AllocationFactory, AssetFactory

pytestmark = pytest.mark.django_db

DAY = datetime.date(2026, 3, 2)


def _marker(portfolio: Portfolio) -> datetime.date | None:
    return Portfolio.objects.values_list("history_changed_from", flat=True).get(pk=portfolio.pk)


def test_bulk_closes_mark_the_holders_of_each_asset_from_its_earliest_new_close_and_no_one_else() -> None:
    held, other = AssetFactory(), AssetFactory()
    holder, bystander = main_portfolio(ClientFactory()), main_portfolio(ClientFactory())
    AllocationFactory(portfolio=holder, asset=held)
    Portfolio.objects.update(history_changed_from=None)  # what the closes mark, not what the holding did

    prices_bulk_create(
        prices=[
            Price(asset=held, date=DAY, close=Decimal("10")),
            Price(asset=held, date=DAY - datetime.timedelta(days=3), close=Decimal("9")),
            Price(asset=other, date=DAY, close=Decimal("5")),
        ]
    )

    assert Price.objects.count() == 3
    assert _marker(holder) == DAY - datetime.timedelta(days=3)
    assert _marker(bystander) is None


def test_bulk_rates_mark_every_portfolio_from_the_earliest_new_day() -> None:
    portfolio = main_portfolio(ClientFactory())

    fx_rates_bulk_create(
        rates=[
            FxRate(base="EUR", quote="USD", date=DAY, rate=Decimal("1.1")),
            FxRate(base="EUR", quote="GBP", date=DAY - datetime.timedelta(days=1), rate=Decimal("0.85")),
        ]
    )

    assert FxRate.objects.count() == 2
    assert _marker(portfolio) == DAY - datetime.timedelta(days=1)


def test_a_bulk_load_with_a_close_the_database_refuses_loads_nothing() -> None:
    asset = AssetFactory()

    with pytest.raises(IntegrityError):
        prices_bulk_create(
            prices=[Price(asset=asset, date=DAY, close=Decimal("1")), Price(asset=asset, date=DAY, close=Decimal("-1"))]
        )

    assert not Price.objects.exists()


def test_a_bulk_close_is_checked_field_by_field_as_a_single_one_is() -> None:
    with pytest.raises(ValidationError):
        prices_bulk_create(prices=[Price(asset=AssetFactory(), date=DAY, close=Decimal("0.12345678901"))])
