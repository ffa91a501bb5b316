"""What the benchmarks' scratch books are made of, written straight into the tables: closes on a random walk, the
EUR rates, cash movements, and trades with their settlements. Imported after Django is set up (`setup_django`)."""

import datetime
import random
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

# A trade of the book: the portfolio, the asset, buy or sell, the units and the day.
Trade = tuple[Any, Any, str, Decimal, datetime.date]
EUR_RATES = (("USD", 1.08), ("GBP", 0.85))


def movement(portfolio: Any, kind: str, amount: Decimal, currency: str, day: datetime.date) -> Any:
    """An unsaved ledger row of the portfolio (written in bulk by the caller)."""
    from ledger.models import Transaction

    return Transaction(
        client_id=portfolio.client_id, portfolio=portfolio, kind=kind, amount=amount, currency=currency, date=day
    )


def write_closes(
    assets: Iterable[Any],
    days: list[datetime.date],
    rng: random.Random,
    *,
    unpriced: Iterable[Any] = (),
    recorded: Callable[[Any, datetime.date], bool] = lambda asset, day: True,
) -> tuple[dict[tuple[int, datetime.date], Decimal], int]:
    """Each asset's closes on a random walk (about 1% a day), written where `recorded` says; an unpriced asset gets
    none. Answers every day's close by (asset id, day), written or not, and how many rows were written."""
    from holdings.models import Price

    skipped = set(unpriced)
    closes: dict[tuple[int, datetime.date], Decimal] = {}
    prices = []
    for asset in assets:
        if asset in skipped:
            continue
        level = Decimal(rng.randint(20, 400))
        for day in days:
            level = max(Decimal("1"), level * Decimal(str(round(rng.gauss(1, 0.01), 6)))).quantize(Decimal("0.0001"))
            closes[(asset.pk, day)] = level
            if recorded(asset, day):
                prices.append(Price(asset=asset, date=day, close=level))
    Price.objects.bulk_create(prices, batch_size=10_000)
    return closes, len(prices)


def write_eur_rates(days: list[datetime.date], rng: random.Random) -> None:
    """EUR/USD and EUR/GBP every day, around a fixed level."""
    from holdings.models import FxRate

    FxRate.objects.bulk_create(
        [
            FxRate(base="EUR", quote=quote, date=day, rate=Decimal(str(round(level + rng.uniform(-0.02, 0.02), 4))))
            for quote, level in EUR_RATES
            for day in days
        ],
        batch_size=10_000,
    )


def write_trades(cash: list[Any], trades: list[Trade], price_of: Callable[[Any, datetime.date], Decimal]) -> list[Any]:
    """The cash movements, then each trade's settlement and the trade itself (at `price_of` its asset that day),
    in that order; answers the settlements."""
    from holdings.models import Allocation
    from ledger.models import Transaction

    settlements = [
        movement(p, kind, (quantity * price_of(asset, day)).quantize(Decimal("0.0001")), asset.currency, day)
        for p, asset, kind, quantity, day in trades
    ]
    Transaction.objects.bulk_create(cash, batch_size=10_000)
    Transaction.objects.bulk_create(settlements, batch_size=10_000)
    Allocation.objects.bulk_create(
        [
            Allocation(
                client_id=p.client_id,
                portfolio=p,
                asset=asset,
                kind=kind,
                quantity=quantity,
                price=price_of(asset, day),
                date=day,
                settlement=settlement,
            )
            for (p, asset, kind, quantity, day), settlement in zip(trades, settlements, strict=True)
        ],
        batch_size=10_000,
    )
    return settlements
