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


def write_firm(client_count: int, asset_count: int, advisor_count: int, opened_on: datetime.date) -> list[Any]:
    """A firm: a superuser-free set of `advisor_count` advisors (bench-advisor-N@example.com, in the Advisors role),
    `asset_count` assets in EUR, USD and GBP, and `client_count` clients dealt round the advisors, each with a Main
    and a Savings portfolio opened on `opened_on`; answers the assets (the clients and portfolios are read back
    from the tables by whoever needs them). One client in 25 is inactive."""
    from django.contrib.auth.models import Group

    from accounts.models import User
    from accounts.roles import Role
    from clients.models import Client, Portfolio
    from holdings.models import Asset

    currencies = ("EUR", "USD", "GBP")
    advisors_group = Group.objects.get(name=Role.ADVISORS.value)
    advisors = []
    for n in range(advisor_count):
        advisor, _ = User.objects.get_or_create(email=f"bench-advisor-{n}@example.com", defaults={"is_staff": True})
        advisor.groups.add(advisors_group)
        advisors.append(advisor)
    assets = Asset.objects.bulk_create(
        [
            Asset(ticker=f"BEN{n}", name=f"Bench asset {n}", currency=currencies[n % 3], exchange="XBEN")
            for n in range(asset_count)
        ]
    )
    clients = Client.objects.bulk_create(
        [
            Client(
                name=f"Bench client {n}",
                email=f"bench-client-{n}@example.com",
                advisor=advisors[n % advisor_count],
                base_currency=currencies[n % 2],
                is_active=n % 25 != 0,
            )
            for n in range(client_count)
        ],
        batch_size=5_000,
    )
    Portfolio.objects.bulk_create(
        [
            Portfolio(
                client=c,
                name=name,
                base_currency=c.base_currency,
                opened_on=opened_on,
                history_changed_from=opened_on,
            )
            for c in clients
            for name in ("Main", "Savings")
        ],
        batch_size=5_000,
    )
    return assets


def empty_ledger() -> None:
    """Empties the ledger and the allocations (and whatever points at them), keeping the firm."""
    from django.db import connection

    from holdings.models import Allocation
    from ledger.models import Transaction

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {Allocation._meta.db_table}, {Transaction._meta.db_table} CASCADE")


def write_ledger(trades: int, *, first_day: datetime.date, last_day: datetime.date, advisor: Any | None = None) -> None:
    """`trades` buys and sells (one in five a sell) spread evenly over the firm's portfolios (or only those of the
    clients of `advisor`, when given) and the days from
    `first_day` to `last_day`, each an allocation with its settlement in the ledger: `trades` rows in each table,
    added to what is there. PostgreSQL only: generated by the database itself (INSERT … SELECT over
    generate_series), which writes a million rows of each in about a minute where building them in Python would
    take several. Quantities and prices are plain decimals; the balances are not checked (the benchmarks read
    lists, they do not post)."""
    from django.db import connection

    from clients.models import Client, Portfolio
    from holdings.models import Allocation, Asset
    from ledger.models import Transaction

    tx, alloc = Transaction._meta.db_table, Allocation._meta.db_table
    advisor_id = advisor.pk if advisor is not None else None
    span = (last_day - first_day).days
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {tx}")
        (before,) = cursor.fetchone()
        # Row g (0 the oldest) goes to a portfolio picked by a multiplicative hash of g, so that neighbours in date
        # belong to different clients as in a real ledger; it trades the asset g picks in that asset's currency.
        # Inserted in the order of g, so that its settlement's id is `before + 1 + g`.
        cursor.execute(
            f"""
            WITH book AS (
                SELECT array_agg(id ORDER BY id) AS portfolios, array_agg(client_id ORDER BY id) AS clients,
                       count(*) AS n
                FROM {Portfolio._meta.db_table}
                WHERE %s::bigint IS NULL
                   OR client_id IN (SELECT id FROM {Client._meta.db_table} WHERE advisor_id = %s::bigint)
            ),
            assets AS (
                SELECT array_agg(currency ORDER BY id) AS currencies, count(*) AS n FROM {Asset._meta.db_table}
            )
            INSERT INTO {tx} (created_at, updated_at, kind, amount, currency, date, notes, client_id, portfolio_id)
            SELECT now(), now(), CASE WHEN g %% 5 = 0 THEN 'sell' ELSE 'buy' END,
                   (1 + g %% 300) * (20 + g %% 97), assets.currencies[1 + (g * 31) %% assets.n],
                   %s::date + (g::bigint * %s / %s)::int, '',
                   book.clients[1 + (g * 7919) %% book.n], book.portfolios[1 + (g * 7919) %% book.n]
            FROM generate_series(0::bigint, %s::bigint - 1) AS g, book, assets
            ORDER BY g
            """,
            [advisor_id, advisor_id, first_day, span, trades, trades],
        )
        cursor.execute(
            f"""
            WITH assets AS (SELECT array_agg(id ORDER BY id) AS ids, count(*) AS n FROM {Asset._meta.db_table})
            INSERT INTO {alloc} (created_at, updated_at, kind, quantity, price, fees, taxes, date, notes, client_id,
                                 portfolio_id, asset_id, settlement_id)
            SELECT now(), now(), t.kind, 1 + t.g %% 300, 20 + t.g %% 97, 0, 0, t.date, '', t.client_id, t.portfolio_id,
                   assets.ids[1 + (t.g * 31) %% assets.n], t.id
            FROM (SELECT *, id - %s - 1 AS g FROM {tx} WHERE id > %s) AS t, assets
            ORDER BY t.id
            """,
            [before, before],
        )
        cursor.execute(f"ANALYZE {tx}")
        cursor.execute(f"ANALYZE {alloc}")
