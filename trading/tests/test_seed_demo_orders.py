import datetime
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.tests.factories import SuperuserFactory
from clients.tests.factories import ClientFactory, main_portfolio
from holdings.tests.factories import AllocationFactory, AssetFactory, PriceFactory
from ledger.tests.factories import TransactionFactory
from trading.management.commands.seed_demo_orders import ADMIN_EMAIL
from trading.models import ModelAssignment, ModelPortfolio, Order

pytestmark = pytest.mark.django_db


def test_demo_orders_need_the_demo_data() -> None:
    with pytest.raises(CommandError, match=r"run `manage\.py seed_demo` first"):
        call_command("seed_demo_orders", stdout=StringIO())


def test_demo_orders_are_placed_once_through_the_paper_broker(django_capture_on_commit_callbacks: Any) -> None:
    # What the command reads of seed_demo's data: its administrator, open portfolios holding priced assets, cash.
    SuperuserFactory(email=ADMIN_EMAIL)
    today = timezone.localdate()
    for _ in range(3):
        portfolio = main_portfolio(ClientFactory())
        asset = AssetFactory(currency="EUR")
        PriceFactory(asset=asset, date=today - datetime.timedelta(days=1), close=Decimal("50"))
        TransactionFactory(portfolio=portfolio, amount=Decimal("1000"), date=today - datetime.timedelta(days=9))
        AllocationFactory(
            portfolio=portfolio, asset=asset, quantity=Decimal("8"), date=today - datetime.timedelta(days=9)
        )
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo_orders", stdout=out)

    assert "Placed 8 demo orders" in out.getvalue()
    # The third portfolio, with no order under way, follows the demo model: its one asset at 90%, 10% in cash.
    [model] = ModelPortfolio.objects.all()
    assert [(w.weight, model.cash_weight) for w in model.weights.all()] == [(Decimal("90"), Decimal("10"))]
    assert ModelAssignment.objects.get().portfolio_id == portfolio.pk
    assert 'Model portfolio "Balanced (demo)" followed by 1 portfolio(s).' in out.getvalue()
    statuses = sorted(Order.objects.values_list("status", flat=True))
    assert statuses.count(Order.Status.CANCELLED) == 2
    assert Order.Status.FILLED in statuses
    assert Order.Status.SUBMITTED in statuses
    again = StringIO()
    call_command("seed_demo_orders", stdout=again)
    assert "already placed" in again.getvalue()
    assert Order.objects.count() == 8
