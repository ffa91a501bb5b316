#!/usr/bin/env python
"""Benchmark of the daily value table's rebuild (holdings.services.daily_values_refresh).

Fills a dedicated database with a synthetic book (by default 200 portfolios, each holding 20 of 60 assets in
EUR, USD and GBP, three years of weekday closes and EUR/USD and EUR/GBP rates, monthly deposits, a trade every
few weeks), then times:

  full         every portfolio stale from its first movement: the whole table built
  one-recent   one portfolio stale from 30 days before the end (a back-dated trade)
  all-recent   every portfolio stale from 30 days before the end (a price or rate correction)

    .venv/bin/python bench/daily_values_bench.py
    .venv/bin/python bench/daily_values_bench.py --portfolios 50 --years 1
    .venv/bin/python bench/daily_values_bench.py --python      # the SQLite engine's pass, on the same database

The database named by --database-url is created if missing and its clients, holdings and ledger are emptied:
never point it at data you want to keep.
"""

import argparse
import datetime
import os
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/portfolio_bench_daily"
END = datetime.date(2026, 11, 27)
CURRENCIES = ("EUR", "USD", "GBP")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--portfolios", type=int, default=200)
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--assets-per-portfolio", type=int, default=20)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--python", action="store_true", help="time the SQLite engine's Python pass instead")
    return parser.parse_args()


def setup_django(url: str) -> None:
    if url.startswith("postgres"):
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portfolio_site.settings.dev")
    os.environ["DEBUG"] = "false"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def weekdays(start: datetime.date, end: datetime.date) -> list[datetime.date]:
    days, day = [], start
    while day <= end:
        if day.weekday() < 5:
            days.append(day)
        day += datetime.timedelta(days=1)
    return days


def fill(portfolios: int, years: int, per_portfolio: int) -> None:
    """The synthetic book, written straight into the tables (the services would take hours at this size)."""
    from django.db import connection

    from accounts.models import User
    from bench.book import movement, write_closes, write_eur_rates, write_trades
    from clients.models import Client, Portfolio
    from holdings.models import Allocation, Asset, FxRate, PortfolioDailyValue, Price
    from ledger.models import Transaction

    with connection.cursor() as cursor:
        tables = [m._meta.db_table for m in (PortfolioDailyValue, Allocation, Transaction, Price, FxRate, Asset)]
        cursor.execute(f"TRUNCATE {', '.join(tables)}, {Portfolio._meta.db_table}, {Client._meta.db_table} CASCADE")
    rng = random.Random(7)
    start = END - datetime.timedelta(days=365 * years)
    days = weekdays(start, END)
    advisor, _ = User.objects.get_or_create(email="bench-advisor@example.com", defaults={"is_staff": True})
    assets = Asset.objects.bulk_create(
        [Asset(ticker=f"BENCH{n}", name=f"Bench {n}", currency=CURRENCIES[n % 3], exchange="XBEN") for n in range(60)]
    )
    closes, closes_written = write_closes(assets, days, rng)
    write_eur_rates(days, rng)
    clients = Client.objects.bulk_create(
        [
            Client(name=f"Bench {n}", email=f"bench-daily-{n}@example.com", advisor=advisor, base_currency="EUR")
            for n in range(portfolios)
        ]
    )
    book = Portfolio.objects.bulk_create(
        [
            Portfolio(client=c, name="Main", base_currency=CURRENCIES[n % 2], opened_on=start)
            for n, c in enumerate(clients)
        ]
    )
    cash: list[Transaction] = []
    trades: list[tuple[Portfolio, Asset, str, Decimal, datetime.date]] = []
    for portfolio in book:
        for currency in CURRENCIES:
            cash.append(movement(portfolio, "deposit", Decimal(2_000_000), currency, start))
        for day in days[20::21]:  # monthly deposits
            cash.append(movement(portfolio, "deposit", Decimal(1000), portfolio.base_currency, day))
        held: dict[int, Decimal] = {}
        for n, asset in enumerate(rng.sample(assets, per_portfolio)):
            day = days[n * 3]
            trades.append((portfolio, asset, "buy", Decimal(rng.randint(50, 500)), day))
            held[asset.pk] = trades[-1][3]
        for day in days[60::10]:  # a trade every two weeks, alternately a buy and a sell
            asset = rng.choice([a for a in assets if a.pk in held])
            kind = "sell" if day.toordinal() % 2 else "buy"
            quantity = (held[asset.pk] / 10).quantize(Decimal(1)) or Decimal(1)
            if kind == "sell" and quantity >= held[asset.pk]:
                kind = "buy"
            held[asset.pk] += quantity if kind == "buy" else -quantity
            trades.append((portfolio, asset, kind, quantity, day))
    settlements = write_trades(cash, trades, lambda asset, day: closes[(asset.pk, day)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(
        f"book: {len(book)} portfolios, {len(trades)} trades, {len(cash) + len(settlements)} transactions, "
        f"{closes_written} closes, {len(days)} weekdays from {start} to {END}"
    )


def timed(label: str, since: datetime.date | None, portfolio_ids: list[int] | None = None) -> None:
    from clients.models import Portfolio
    from holdings.models import PortfolioDailyValue
    from holdings.services import daily_values_refresh

    stale = Portfolio.objects.all() if portfolio_ids is None else Portfolio.objects.filter(pk__in=portfolio_ids)
    if since is None:
        PortfolioDailyValue.objects.all().delete()
        stale.update(history_changed_from=datetime.date(1900, 1, 1))
    else:
        stale.update(history_changed_from=since)
    began = time.perf_counter()
    count = daily_values_refresh(until=END)
    elapsed = time.perf_counter() - began
    rows = PortfolioDailyValue.objects.count()
    print(f"{label:<11} {count:>4} portfolios rebuilt in {elapsed:7.2f} s   (table: {rows:,} rows)")


def main() -> None:
    args = parse_args()
    setup_django(args.database_url)
    if args.python:
        from holdings import daily_values

        daily_values._insert_sql = daily_values._insert_python  # type: ignore[assignment]
    fill(args.portfolios, args.years, args.assets_per_portfolio)
    from clients.models import Portfolio

    recent = END - datetime.timedelta(days=30)
    timed("full", None)
    timed("one-recent", recent, [Portfolio.objects.order_by("pk").values_list("pk", flat=True)[0]])
    timed("all-recent", recent)


if __name__ == "__main__":
    main()
