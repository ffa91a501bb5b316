"""A split racing trades in its asset (PostgreSQL: SQLite serialises every writer anyway). The split locks the
holders' portfolios, then the asset, in the order every trade takes them, so they queue and never deadlock; each
holder ends with its fraction paid once, whichever commits first."""

import datetime
from decimal import Decimal
from typing import Any

import pytest

from clients.tests.factories import ClientFactory, main_portfolio
from holdings import services
from holdings.models import Allocation, Split
from holdings.selectors import position
from holdings.tests.factories import AllocationFactory, AssetFactory
from portfolio_site.testing import run_at_once

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

DAY = datetime.date(2026, 7, 1)


def test_a_reverse_split_racing_sells_of_its_holders_pays_each_fraction_once(
    staff_roles: None, operations: Any
) -> None:
    asset = AssetFactory(currency="USD")
    portfolios = [main_portfolio(ClientFactory()) for _ in range(3)]
    for portfolio in portfolios:
        AllocationFactory(portfolio=portfolio, asset=asset, quantity=Decimal("105"), date=DAY - datetime.timedelta(5))
    outcomes: list[str] = []

    def work(n: int) -> None:
        # Its own user object, as each request has (a user caches its roles: one object shared by threads would
        # race on that cache, which no request does).
        actor = type(operations).objects.get(pk=operations.pk)
        if n == 0:
            services.split_create(
                actor=actor, asset=asset, date=DAY, new_units=1, old_units=10, cash_in_lieu_price=Decimal(95)
            )
        else:
            # One new unit, sold after the split's day: before the split is recorded that is 1 of 105, after it
            # 1 of 10; either way the holder ends with 9.
            services.allocation_create(
                actor=actor,
                portfolio=portfolios[n - 1],
                asset=asset,
                kind="sell",
                quantity=Decimal(1),
                price=Decimal(95),
                date=DAY + datetime.timedelta(1),
            )
        outcomes.append("done")

    run_at_once(work, 1 + len(portfolios), timeout=20)

    assert outcomes == ["done"] * 4
    split = Split.objects.get()
    for portfolio in portfolios:
        assert position(portfolio_id=portfolio.pk, asset_id=asset.pk) == 9
        (paid,) = Allocation.objects.filter(portfolio=portfolio, cash_in_lieu_of=split)
        assert paid.quantity == Decimal("0.5")
