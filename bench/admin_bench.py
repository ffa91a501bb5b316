#!/usr/bin/env python
"""Benchmark of the admin's pages on a book of realistic size, through Django's test client (the whole request:
middleware, login session, scoping, templates).

Writes a synthetic firm straight into a dedicated database (by default 2,000 clients, each with two portfolios,
spread over 20 advisors; 200 assets in EUR, USD and GBP, one year of weekday closes with a few assets left unpriced
or stale, EUR/USD and EUR/GBP rates; monthly deposits, some withdrawals, about 25 trades a portfolio), builds the
daily value table with our own code, then runs each section:

  dashboard     the admin index with its dashboard (holdings.dashboard), as a superuser (the whole firm) and as
                one advisor (their 100 clients): median of the timed runs after one warm-up, and its queries

  changelists   each large changelist (transactions, allocations: unfiltered, by a list filter, one year of the
                date hierarchy, a search) as a superuser and as an advisor, with its table at 1,000 and at 1,000,000
                rows: the same firm, the two tables written again at each size (bench.book.write_ledger; the small
                size all in the advisor's clients, so that both roles see full pages at both sizes); prints the ratio

Each section is one function in SECTIONS, measuring on the same firm. The changelists section replaces the book's
ledger with its own: run it last, or alone.

    .venv/bin/python bench/admin_bench.py
    .venv/bin/python bench/admin_bench.py --clients 200 --sections dashboard
    .venv/bin/python bench/admin_bench.py --reuse            # the book already filled by a previous run
    .venv/bin/python bench/admin_bench.py --reuse --sections changelists --rows 1000 100000

The database named by --database-url is created if missing and its clients, holdings and ledger are emptied:
never point it at data you want to keep.
"""

import argparse
import datetime
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.book import movement, write_closes, write_eur_rates, write_firm, write_trades  # noqa: E402
from bench.daily_values_bench import setup_django, weekdays  # noqa: E402  (the same scratch database set-up)

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/portfolio_bench_admin"
CURRENCIES = ("EUR", "USD", "GBP")
ADVISORS = 20
SUPERUSER = "bench-admin@example.com"
ADVISOR = "bench-advisor-0@example.com"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=2_000)
    parser.add_argument("--assets", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[1_000, 1_000_000], help="the changelists' table sizes to compare"
    )
    parser.add_argument("--sections", nargs="*", default=None, help="the sections to run (all by default)")
    parser.add_argument("--reuse", action="store_true", help="keep the book of a previous run")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    return parser.parse_args()


def fill(client_count: int, asset_count: int, today: datetime.date) -> None:
    """The firm, written straight into the tables (through the services it would take hours), then the daily value
    table built by our code (holdings.services.daily_values_refresh), as the refresh job would."""
    from django.db import connection

    from accounts.models import User
    from clients.models import Client, Portfolio
    from holdings.models import Allocation, Asset, FxRate, PortfolioDailyValue, PositionSnapshot, Price
    from holdings.services import daily_values_refresh
    from ledger.models import Transaction

    with connection.cursor() as cursor:
        tables = [
            m._meta.db_table
            for m in (PortfolioDailyValue, PositionSnapshot, Allocation, Transaction, Price, FxRate, Asset)
        ]
        cursor.execute(f"TRUNCATE {', '.join(tables)}, {Portfolio._meta.db_table}, {Client._meta.db_table} CASCADE")
    rng = random.Random(14)
    start = today - datetime.timedelta(days=365)
    days = weekdays(start, today)
    User.objects.filter(email=SUPERUSER).delete()
    User.objects.create_user(email=SUPERUSER, password=None, is_staff=True, is_superuser=True)
    assets = write_firm(client_count, asset_count, ADVISORS, start)
    # The last assets: two never priced, three whose closes stop a month ago (stale on the dashboard).
    unpriced, stale = assets[-2:], assets[-5:-2]
    month_ago = today - datetime.timedelta(days=30)
    closes, closes_written = write_closes(
        assets, days, rng, unpriced=unpriced, recorded=lambda asset, day: asset not in stale or day < month_ago
    )
    write_eur_rates(days, rng)
    clients = list(Client.objects.order_by("pk"))
    book = list(Portfolio.objects.order_by("pk"))
    cash: list[Transaction] = []
    trades: list[tuple[Portfolio, Asset, str, Decimal, datetime.date]] = []
    for portfolio in book:
        for currency in CURRENCIES:
            cash.append(movement(portfolio, "deposit", Decimal(500_000), currency, start))
        for day in days[20::21]:  # monthly deposits, and a withdrawal now and then
            cash.append(movement(portfolio, "deposit", Decimal(rng.randint(1, 50) * 100), portfolio.base_currency, day))
            if rng.random() < 0.2:
                cash.append(movement(portfolio, "withdrawal", Decimal(500), portfolio.base_currency, day))
        if rng.random() < 0.05:  # a few movements today, so that "today" has figures
            cash.append(movement(portfolio, "deposit", Decimal(1000), portfolio.base_currency, today))
        held: dict[int, Decimal] = {}
        for n, asset in enumerate(rng.sample(assets, 12)):
            day = days[n * 2]
            trades.append((portfolio, asset, "buy", Decimal(rng.randint(10, 300)), day))
            held[asset.pk] = trades[-1][3]
        for day in days[40::20]:  # a trade every four weeks
            asset = rng.choice([a for a in assets if a.pk in held])
            kind = "sell" if rng.random() < 0.4 else "buy"
            quantity = (held[asset.pk] / 10).quantize(Decimal(1)) or Decimal(1)
            if kind == "sell" and quantity >= held[asset.pk]:
                kind = "buy"
            held[asset.pk] += quantity if kind == "buy" else -quantity
            trades.append((portfolio, asset, kind, quantity, day))

    def trade_price(asset: Asset, day: datetime.date) -> Decimal:
        return closes.get((asset.pk, day), Decimal(50))

    settlements = write_trades(cash, trades, trade_price)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    began = time.perf_counter()
    daily_values_refresh(until=today)
    print(
        f"book: {len(clients):,} clients, {len(book):,} portfolios, {ADVISORS} advisors, {len(assets)} assets, "
        f"{len(trades):,} trades, {len(cash) + len(settlements):,} transactions, {closes_written:,} closes; "
        f"daily value table: {PortfolioDailyValue.objects.count():,} rows built in {time.perf_counter() - began:.1f} s"
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def login(email: str) -> Any:
    """A test client logged in to the admin as the admin's login form would (a live LoginSession bound to it)."""
    from django.test import Client

    from accounts.models import LoginSession, User
    from accounts.services.events import ClientInfo
    from accounts.services.sessions import session_start
    from accounts.web import LOGIN_SESSION_KEY

    user = User.objects.get(email=email)
    client = Client()
    client.force_login(user)
    login_session, _ = session_start(
        user=user, client=ClientInfo(ip="127.0.0.1", user_agent="admin_bench"), channel=LoginSession.Channel.ADMIN
    )
    session = client.session
    session[LOGIN_SESSION_KEY] = str(login_session.id)
    session.save()
    return client


def timed_get(client: Any, path: str, repeats: int) -> tuple[float, int]:
    """Median seconds of `repeats` GETs of `path` after one warm-up, and the queries of one of them."""
    from django.db import connection

    def get() -> None:
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)

    get()
    executed = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        executed.append(sql)
        return execute(sql, params, many, context)

    # An execute wrapper rather than the debug cursor: it counts whether or not the request reconnects.
    with connection.execute_wrapper(count):
        get()
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        get()
        runs.append(time.perf_counter() - began)
    return statistics.median(runs), len(executed)


# --- Sections ---------------------------------------------------------------------------------------------------


def dashboard(args: argparse.Namespace) -> None:
    """The admin index with its dashboard: well under a second, whoever asks (issue 14)."""
    from django.urls import reverse

    path = reverse("admin:index")
    for label, email in (("superuser", SUPERUSER), ("advisor", ADVISOR)):
        seconds, queries = timed_get(login(email), path, args.repeats)
        print(f"dashboard  {label:<10} {seconds * 1000:7.1f} ms  ({queries} queries, median of {args.repeats})")


# The changelists of the tables that grow with the firm, and the lists people open on them: unfiltered, by a
# list filter, a year of the date hierarchy, and a search (every "Savings" portfolio: half the firm's rows).
LARGE_CHANGELISTS = {
    "transactions": (
        "admin:ledger_transaction_changelist",
        ("", "?currency__exact=USD", "?date__year={year}", "?q=Savings"),
    ),
    "allocations": (
        "admin:holdings_allocation_changelist",
        ("", "?kind__exact=sell", "?date__year={year}", "?q=Savings"),
    ),
}


def changelists(args: argparse.Namespace) -> None:
    """Each large changelist with its table at each of --rows (1,000 and 1,000,000 by default): the same firm, the
    ledger and the allocations emptied and written again with that many trades over five years (each an
    allocation and its settlement: that many rows in both tables). Prints each list's median time and queries per
    size and role, and the ratio of the largest size's time to the smallest's (target ≤ 1.2, issue 15)."""
    from django.urls import reverse
    from django.utils import timezone

    from accounts.models import User
    from bench.book import empty_ledger, write_ledger

    today = timezone.localdate()
    first_day = today.replace(year=today.year - 5)
    clients = {label: login(email) for label, email in (("superuser", SUPERUSER), ("advisor", ADVISOR))}
    timings: dict[tuple[str, str, str], dict[int, float]] = {}
    smallest, largest = min(args.rows), max(args.rows)
    for rows in sorted(args.rows):
        began = time.perf_counter()
        empty_ledger()
        # The smallest table is all the advisor's, so that both roles see full pages at every size: the ratio
        # compares the same page read out of a small table and a large one, not 50 rows with 100.
        owner = User.objects.get(email=ADVISOR) if rows == smallest else None
        write_ledger(rows, first_day=first_day, last_day=today, advisor=owner)
        took = time.perf_counter() - began
        print(f"changelists: {rows:,} transactions and {rows:,} allocations written in {took:.0f} s")
        for name, (url_name, queries) in LARGE_CHANGELISTS.items():
            for query in queries:
                query = query.format(year=today.year - 1)
                path = reverse(url_name) + query
                for label, client in clients.items():
                    seconds, count = timed_get(client, path, args.repeats)
                    timings.setdefault((name, query, label), {})[rows] = seconds
                    shown = f"{name:<12} {label:<9} {query or '(all)':<22}"
                    print(f"  {rows:>9,} rows  {shown} {seconds * 1000:7.1f} ms  ({count} queries)")
    print(f"changelists: time at {largest:,} rows ÷ time at {smallest:,} rows (target ≤ 1.2)")
    for (name, query, label), by_rows in timings.items():
        ratio = by_rows[largest] / by_rows[smallest]
        print(f"  {name:<12} {label:<9} {query or '(all)':<22} {ratio:5.2f}  {'ok' if ratio <= 1.2 else 'MISSED'}")


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {"dashboard": dashboard, "changelists": changelists}


def main() -> None:
    args = parse_args()
    # The test client calls the views as "testserver"; the bench's own settings, not the environment's.
    os.environ["ALLOWED_HOSTS"] = "testserver"
    setup_django(args.database_url)
    from django.utils import timezone

    today = timezone.localdate()
    if not args.reuse:
        fill(args.clients, args.assets, today)
    for name in args.sections or list(SECTIONS):
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
