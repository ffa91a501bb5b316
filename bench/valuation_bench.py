#!/usr/bin/env python
"""Benchmark of one large portfolio's valuation and performance against a hand-written SQL floor.

Writes a synthetic book straight into a dedicated database (by default one EUR portfolio with 10,000 movements
over 500 assets quoted in EUR, USD and GBP, five years of business-day closes and EUR/USD, EUR/GBP rates), leaves
`Portfolio.history_changed_from` at its first day so that our code builds the daily value table, then times:

  valuation     holdings.valuation.portfolio_valuation, and the API view uncached (cache cleared; the position
                snapshot current, as after the first read that follows a write) and cached
  performance   the five-year performance view uncached (daily table already current) and cached
  (a view is timed until its response is in hand, as the server writes it: the client decoding the JSON is not
  the view's work and is done outside the timing)
  floor         one SQL query for the valuation's eight totals, one for the daily value series, from movements,
                prices and rates: what the database alone needs for the same figures (and, for comparison with
                earlier measurements, the first valuation floor, which computed only two of the totals)
  rebuild       the daily table after a back-dated trade in the first month (through the services), and the
                first valuation after it, which refolds the position snapshot

Each timed figure is a median over rounds that take every measurement of a line in turn (ours, uncached and
cached, and the floor), so that a slow moment of a shared machine weighs on both sides of a ratio.

    .venv/bin/python bench/valuation_bench.py
    .venv/bin/python bench/valuation_bench.py --allocations 500 --assets 20 --years 1

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

from bench.book import Trade, movement, write_closes, write_eur_rates, write_trades  # noqa: E402
from bench.daily_values_bench import setup_django, weekdays  # noqa: E402  (the same scratch database set-up)

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/portfolio_bench_p"
END = datetime.date(2026, 11, 27)
CURRENCIES = ("EUR", "USD", "GBP")
# Rounds of the interleaved timings (medians): the five-year series floor takes seconds a run.
VALUATION_ROUNDS = 15
# What FLOOR_VALUATION computes, in its columns' order: the fields of holdings.valuation's Totals.
TOTALS = ("holdings", "cash", "total", "cost", "unrealized_gain", "price_effect", "currency_effect", "realized_gain")
PERFORMANCE_ROUNDS = 5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--allocations", type=int, default=10_000)
    parser.add_argument("--assets", type=int, default=500)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    return parser.parse_args()


def fill(allocations: int, asset_count: int, years: int) -> tuple[Any, datetime.date]:
    """The book, written straight into the tables (10,000 movements through the services would take minutes and
    build the daily table 10,000 times); the portfolio is left stale from its first day."""
    from django.db import connection

    from accounts.models import User
    from clients.models import Client, Portfolio
    from holdings.models import Allocation, Asset, FxRate, PortfolioDailyValue, Price
    from ledger.models import Transaction

    with connection.cursor() as cursor:
        tables = [m._meta.db_table for m in (PortfolioDailyValue, Allocation, Transaction, Price, FxRate, Asset)]
        cursor.execute(f"TRUNCATE {', '.join(tables)}, {Portfolio._meta.db_table}, {Client._meta.db_table} CASCADE")
    rng = random.Random(11)
    start = END - datetime.timedelta(days=365 * years)
    days = weekdays(start, END)
    admin, _ = User.objects.get_or_create(
        email="bench-valuation@example.com", defaults={"is_staff": True, "is_superuser": True}
    )
    assets = Asset.objects.bulk_create(
        [
            Asset(ticker=f"VAL{n}", name=f"Valuation {n}", currency=CURRENCIES[n % 3], exchange="XBEN")
            for n in range(asset_count)
        ]
    )
    closes, closes_written = write_closes(assets, days, rng)
    write_eur_rates(days, rng)
    client = Client.objects.create(
        name="Valuation bench", email="bench-valuation@example.com", advisor=admin, base_currency="EUR"
    )
    portfolio = Portfolio.objects.create(client=client, name="Main", base_currency="EUR", opened_on=start)

    def tx(kind: str, amount: Decimal, currency: str, day: datetime.date) -> Transaction:
        return movement(portfolio, kind, amount, currency, day)

    # Funded enough that no day closes below zero whatever the trades: checks are the services' business, not
    # what is measured here.
    cash = [tx("deposit", Decimal(10_000_000_000), currency, start) for currency in CURRENCIES]
    cash += [tx("deposit", Decimal(5000), "EUR", day) for day in days[20::21]]
    trades: list[Trade] = []
    held: dict[int, Decimal] = {}
    bought = assets[:allocations]
    for n, asset in enumerate(bought):  # every asset bought once in the first weeks
        trades.append((portfolio, asset, "buy", Decimal(rng.randint(100, 1000)), days[n % 20]))
        held[asset.pk] = trades[-1][3]
    later = days[20:]
    for n in range(allocations - len(trades)):
        asset = rng.choice(bought)
        day = later[n * len(later) // max(1, allocations - len(bought))]
        quantity = Decimal(rng.randint(1, 50))
        kind = "sell" if n % 3 == 0 and held[asset.pk] > quantity else "buy"
        held[asset.pk] += quantity if kind == "buy" else -quantity
        trades.append((portfolio, asset, kind, quantity, day))
    trades.sort(key=lambda trade: trade[4])
    settlements = write_trades(cash, trades, lambda asset, day: closes[(asset.pk, day)])
    Portfolio.objects.filter(pk=portfolio.pk).update(history_changed_from=start)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(
        f"book: 1 portfolio, {len(trades)} allocations over {len(assets)} assets, {len(cash) + len(settlements)} "
        f"transactions, {closes_written} closes, {len(days)} business days from {start} to {END}"
    )
    portfolio.refresh_from_db()
    return portfolio, start


def interleaved(rounds: int, runs: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]]) -> dict[str, Any]:
    """{name: (median time, last result)} of `rounds` rounds, each timing every run of `runs` once in turn
    ({name: (run, untimed before)}). Interleaved rather than one after the other, so that a slow moment of a
    shared machine weighs on both sides of a ratio instead of on one."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, Any] = {}
    for _ in range(rounds):
        for name, (run, before) in runs.items():
            if before:
                before()
            began = time.perf_counter()
            results[name] = run()
            times[name].append(time.perf_counter() - began)
    return {name: (statistics.median(times[name]), results[name]) for name in runs}


# The floor: what PostgreSQL alone needs for the same figures, written by hand for this book's shape (a EUR
# portfolio, rates published as EUR/x, buys and sells only, no reversals). Kinds and signs as in ledger.models and
# holdings.models.
#
# The valuation's eight totals from the movements, prices and rates: each asset's moving-average book folded in
# trade order (same day: increases first, as holdings.valuation.fold does) by a recursive query over its movements
# gathered into arrays, the cost in EUR at each trade day's rate, the realized gain in EUR (proceeds at the sell
# day's rate less the cost share at the trades' rates), then the holdings at the as-of closes and rates and the
# price and currency effects, plus the cash. The arrays take the movements in the order of the sorted `moves`
# (the aggregate's input order); a wrong order would change the averages, which the bench's check would catch.
FLOOR_VALUATION = """
WITH RECURSIVE
rate_days AS MATERIALIZED (
    SELECT r.quote, d::date AS day, r.rate
    FROM (SELECT quote, date, rate, LEAD(date) OVER (PARTITION BY quote ORDER BY date) AS next_day
          FROM holdings_fxrate WHERE base = 'EUR' AND date <= %(day)s) r,
         generate_series(r.date, COALESCE(r.next_day - 1, %(day)s::date), interval '1 day') d
),
moves AS (
    SELECT a.asset_id, a.kind IN ('buy', 'transfer_in') AS increase, a.quantity,
           CASE WHEN a.kind = 'buy' THEN a.quantity * a.price + a.fees + a.taxes
                ELSE a.quantity * a.price - a.fees - a.taxes END AS amount,
           CASE WHEN s.currency = 'EUR' THEN 1 ELSE rd.rate END AS rate
    FROM holdings_allocation a JOIN holdings_asset s ON s.id = a.asset_id
    LEFT JOIN rate_days rd ON rd.quote = s.currency AND rd.day = a.date
    WHERE a.portfolio_id = %(portfolio)s AND a.date <= %(day)s
    ORDER BY a.asset_id, a.date, a.kind IN ('sell', 'transfer_out'), a.id
),
books AS MATERIALIZED (
    SELECT asset_id, count(*) AS moves, array_agg(increase) AS increase, array_agg(quantity) AS quantity,
           array_agg(amount) AS amount, array_agg(amount / rate) AS amount_value
    FROM moves GROUP BY asset_id
),
fold AS (
    SELECT asset_id, 0::bigint AS n, 0::numeric AS quantity, 0::numeric AS cost, 0::numeric AS cost_value,
           0::numeric AS realized_value
    FROM books
  UNION ALL
    SELECT f.asset_id, f.n + 1,
           CASE WHEN m.increase THEN f.quantity + m.quantity ELSE f.quantity - m.quantity END,
           CASE WHEN m.increase THEN f.cost + m.amount
                WHEN m.quantity >= f.quantity THEN 0
                ELSE round(f.cost - f.cost * m.quantity / f.quantity, 20) END,
           CASE WHEN m.increase THEN f.cost_value + m.amount_value
                WHEN m.quantity >= f.quantity THEN 0
                ELSE round(f.cost_value - f.cost_value * m.quantity / f.quantity, 20) END,
           CASE WHEN m.increase THEN f.realized_value
                WHEN m.quantity >= f.quantity THEN f.realized_value + m.amount_value - f.cost_value
                ELSE round(f.realized_value + m.amount_value - f.cost_value * m.quantity / f.quantity, 20) END
    FROM fold f JOIN books b ON b.asset_id = f.asset_id AND f.n < b.moves,
         LATERAL (SELECT b.increase[f.n + 1] AS increase, b.quantity[f.n + 1] AS quantity,
                         b.amount[f.n + 1] AS amount, round(b.amount_value[f.n + 1], 20) AS amount_value) m
),
rates AS (
    SELECT 'EUR' AS quote, 1::numeric AS rate
  UNION ALL
    (SELECT DISTINCT ON (quote) quote, rate FROM holdings_fxrate
     WHERE base = 'EUR' AND date <= %(day)s ORDER BY quote, date DESC)
),
positions AS MATERIALIZED (
    SELECT f.quantity * (SELECT close FROM holdings_price p WHERE p.asset_id = f.asset_id AND p.date <= %(day)s
                         ORDER BY p.date DESC LIMIT 1) / r.rate AS value,
           f.cost / r.rate AS cost_now, f.cost_value, f.realized_value
    FROM fold f JOIN books b ON b.asset_id = f.asset_id AND f.n = b.moves
    JOIN holdings_asset a ON a.id = f.asset_id JOIN rates r ON r.quote = a.currency
),
cash AS (
    SELECT SUM(c.amount / r.rate) AS value FROM (
        SELECT currency,
               SUM(CASE WHEN kind IN ('deposit', 'sell', 'transfer_in') THEN amount ELSE -amount END) AS amount
        FROM ledger_transaction WHERE portfolio_id = %(portfolio)s AND date <= %(day)s GROUP BY currency
    ) c JOIN rates r ON r.quote = c.currency
)
SELECT SUM(value), (SELECT value FROM cash), SUM(value) + (SELECT value FROM cash), SUM(cost_value),
       SUM(value - cost_value), SUM(value - cost_now), SUM(cost_now - cost_value), SUM(realized_value)
FROM positions
"""

# The first floor (kept for comparison with the rounds measured against it): the holdings at the as-of closes and
# rates and the cash, two of the eight totals; none of the costs, gains and effects.
FLOOR_HOLDINGS_AND_CASH = """
WITH held AS (
    SELECT asset_id, SUM(CASE WHEN kind IN ('buy', 'transfer_in') THEN quantity ELSE -quantity END) AS quantity
    FROM holdings_allocation WHERE portfolio_id = %(portfolio)s AND date <= %(day)s GROUP BY asset_id
),
rates AS (
    SELECT DISTINCT ON (quote) quote, rate FROM holdings_fxrate
    WHERE base = 'EUR' AND date <= %(day)s ORDER BY quote, date DESC
),
legs AS (
    SELECT 'h' AS part, a.currency, h.quantity * (
        SELECT close FROM holdings_price p WHERE p.asset_id = h.asset_id AND p.date <= %(day)s
        ORDER BY p.date DESC LIMIT 1) AS amount
    FROM held h JOIN holdings_asset a ON a.id = h.asset_id WHERE h.quantity <> 0
  UNION ALL
    SELECT 'c', currency, SUM(CASE WHEN kind IN ('deposit', 'sell', 'transfer_in') THEN amount ELSE -amount END)
    FROM ledger_transaction WHERE portfolio_id = %(portfolio)s AND date <= %(day)s GROUP BY currency
)
SELECT SUM(amount / COALESCE(r.rate, 1)) FILTER (WHERE part = 'h'),
       SUM(amount / COALESCE(r.rate, 1)) FILTER (WHERE part = 'c')
FROM legs LEFT JOIN rates r ON r.quote = legs.currency
"""

# The day grids are MATERIALIZED: inlined, the planner joins them in a loop per holding interval (0.8 s for a
# 300-movement book instead of 55 ms), a plan no one writing this by hand would keep.
FLOOR_SERIES = """
WITH bounds AS (SELECT %(start)s::date AS lo, %(end)s::date AS hi),
net AS (
    SELECT asset_id, date AS day, SUM(CASE WHEN kind IN ('buy', 'transfer_in') THEN quantity ELSE -quantity END) AS n
    FROM holdings_allocation WHERE portfolio_id = %(portfolio)s GROUP BY asset_id, date
),
held AS (
    SELECT asset_id, day, SUM(n) OVER w AS quantity, LEAD(day) OVER w AS next_day
    FROM net WINDOW w AS (PARTITION BY asset_id ORDER BY day)
),
held_days AS MATERIALIZED (
    SELECT h.asset_id, d::date AS day, h.quantity
    FROM held h, bounds b, generate_series(h.day, COALESCE(h.next_day - 1, b.hi), interval '1 day') d
    WHERE h.quantity <> 0
),
closes AS (
    SELECT asset_id, date AS day, close, LEAD(date) OVER (PARTITION BY asset_id ORDER BY date) AS next_day
    FROM holdings_price WHERE asset_id IN (SELECT asset_id FROM net)
),
close_days AS MATERIALIZED (
    SELECT c.asset_id, d::date AS day, c.close
    FROM closes c, bounds b, generate_series(c.day, COALESCE(c.next_day - 1, b.hi), interval '1 day') d
),
rates AS (
    SELECT quote, date AS day, rate, LEAD(date) OVER (PARTITION BY quote ORDER BY date) AS next_day
    FROM holdings_fxrate WHERE base = 'EUR'
),
rate_days AS MATERIALIZED (
    SELECT r.quote, d::date AS day, r.rate
    FROM rates r, bounds b, generate_series(r.day, COALESCE(r.next_day - 1, b.hi), interval '1 day') d
    UNION ALL
    SELECT 'EUR', d::date, 1 FROM bounds b, generate_series(b.lo, b.hi, interval '1 day') d
),
cash AS (
    SELECT currency, date AS day,
           SUM(SUM(CASE WHEN kind IN ('deposit', 'sell', 'transfer_in') THEN amount ELSE -amount END))
               OVER (PARTITION BY currency ORDER BY date) AS balance
    FROM ledger_transaction WHERE portfolio_id = %(portfolio)s GROUP BY currency, date
),
cash_days AS MATERIALIZED (
    SELECT c.currency, d::date AS day, c.balance
    FROM (SELECT *, LEAD(day) OVER (PARTITION BY currency ORDER BY day) AS next_day FROM cash) c, bounds b,
         generate_series(c.day, COALESCE(c.next_day - 1, b.hi), interval '1 day') d
),
legs AS (
    SELECT hd.day, a.currency, SUM(hd.quantity * cd.close) AS amount
    FROM held_days hd JOIN close_days cd USING (asset_id, day) JOIN holdings_asset a ON a.id = hd.asset_id
    GROUP BY hd.day, a.currency
  UNION ALL
    SELECT day, currency, balance FROM cash_days
)
SELECT l.day, SUM(l.amount / rd.rate) AS value
FROM legs l JOIN rate_days rd ON rd.quote = l.currency AND rd.day = l.day, bounds b
WHERE l.day BETWEEN b.lo AND b.hi
GROUP BY l.day ORDER BY l.day
"""


def floor(sql: str, params: dict[str, Any]) -> Callable[[], list[tuple[Any, ...]]]:
    from django.db import connection

    def run() -> list[tuple[Any, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    return run


def main() -> None:
    args = parse_args()
    # The API client calls the views as "testserver"; the bench's own settings, not the environment's.
    os.environ["ALLOWED_HOSTS"] = "testserver"
    setup_django(args.database_url)
    from django.conf import settings
    from django.core.cache import cache
    from django.db import connection
    from rest_framework.test import APIClient

    from accounts.models import User
    from holdings import services
    from holdings.models import Asset, PortfolioDailyValue, Price
    from holdings.performance import portfolio_performance
    from holdings.valuation import portfolio_valuation
    from portfolio_site.money import present_amount

    portfolio, start = fill(args.allocations, args.assets, args.years)
    with connection.cursor() as cursor:
        # For the whole session, ours and the floors alike: JIT compiling costs more than these queries' work
        # (the daily table's own statement turns it off for the same reason).
        cursor.execute("SET jit = off")
    api = APIClient()
    api.force_authenticate(User.objects.get(email="bench-valuation@example.com"))
    print(
        f"cache: {settings.CACHES['default']['BACKEND'].rsplit('.', 1)[1]}; medians of {VALUATION_ROUNDS} (valuation) "
        f"and {PERFORMANCE_ROUNDS} (performance) interleaved rounds"
    )

    began = time.perf_counter()
    services.daily_values_refresh(portfolio_ids=[portfolio.pk], until=END)
    build = time.perf_counter() - began
    print(f"daily table built by our code: {PortfolioDailyValue.objects.count():,} rows in {build:.2f} s")

    # The position snapshot (holdings.valuation.snapshot): folded and stored by the first valuation read after
    # any write; the uncached runs below read it current, as every read until the next write does.
    began = time.perf_counter()
    services.position_snapshots_refresh(portfolio_ids=[portfolio.pk], cost_method="average", currency="EUR")
    snapshot_build = time.perf_counter() - began
    print(f"position snapshot folded and stored by our code: {snapshot_build * 1000:.0f} ms")

    def get(path: str, **query: Any) -> Any:
        """The view's response, as a client receives it: what the server does (decoding the JSON it wrote is the
        client's work, not the view's, and is not timed)."""
        response = api.get(path, query)
        assert response.status_code == 200, response.content
        return response

    valuation_url = f"/api/v1/portfolios/{portfolio.pk}/valuation/"
    performance_url = f"/api/v1/portfolios/{portfolio.pk}/performance/"
    five_years = {"start": (END - datetime.timedelta(days=365 * args.years)).isoformat(), "end": END.isoformat()}

    valuation = interleaved(
        VALUATION_ROUNDS,
        {
            "function": (lambda: portfolio_valuation(portfolio=portfolio, as_of=END), None),
            "uncached": (lambda: get(valuation_url, as_of=END.isoformat()), cache.clear),
            "cached": (lambda: get(valuation_url, as_of=END.isoformat()), None),
            "floor": (floor(FLOOR_VALUATION, {"portfolio": portfolio.pk, "day": END}), None),
            "floor, holdings and cash": (floor(FLOOR_HOLDINGS_AND_CASH, {"portfolio": portfolio.pk, "day": END}), None),
        },
    )
    (ours_valuation, report), (view_valuation, uncached_response) = valuation["function"], valuation["uncached"]
    (cached_valuation, cached_response), (floor_valuation, totals) = valuation["cached"], valuation["floor"]
    first_floor, (first_totals,) = valuation["floor, holdings and cash"]
    assert cached_response.content == uncached_response.content
    assert uncached_response.json()["totals"]["total"] == str(present_amount(report.totals.total, "EUR"))
    performance = interleaved(
        PERFORMANCE_ROUNDS,
        {
            "function": (lambda: portfolio_performance(portfolio=portfolio, start=start, end=END), None),
            "uncached": (lambda: get(performance_url, **five_years), cache.clear),
            "cached": (lambda: get(performance_url, **five_years), None),
            "floor": (floor(FLOOR_SERIES, {"portfolio": portfolio.pk, "start": start, "end": END}), None),
        },
    )
    ours_performance, view_performance = performance["function"][0], performance["uncached"][0]
    cached_performance, (floor_series, series) = performance["cached"][0], performance["floor"]

    # The floors compute the same figures: checked, so that a fast floor is never a wrong one.
    for names, figures in ((TOTALS, totals[0]), (("holdings", "cash"), first_totals)):
        for name, figure in zip(names, figures, strict=True):
            assert abs(figure - getattr(report.totals, name)) < Decimal("0.01"), (name, figure, report.totals)
    table = dict(PortfolioDailyValue.objects.filter(portfolio=portfolio).values_list("date", "value"))
    assert len(series) == len(table)
    assert all(abs(value - table[day]) < Decimal("0.01") for day, value in series)

    def line(label: str, ours: float, floor_time: float, cached: float) -> None:
        print(
            f"{label:<12} function {ours * 1000:8.1f} ms   view uncached {ours_view[label] * 1000:8.1f} ms   "
            f"cached {cached * 1000:6.2f} ms   floor {floor_time * 1000:8.1f} ms   "
            f"ratio uncached/floor {ours_view[label] / floor_time:5.2f}   "
            f"uncached/cached {ours_view[label] / cached:6.1f}"
        )

    ours_view = {"valuation": view_valuation, "performance": view_performance}
    line("valuation", ours_valuation, floor_valuation, cached_valuation)
    print(
        f"{'':<12} against the first floor (holdings and cash only, {first_floor * 1000:.1f} ms): "
        f"ratio uncached/floor {view_valuation / first_floor:5.2f}"
    )
    line("performance", ours_performance, floor_series, cached_performance)
    print(f"full daily table build / series floor: {build / floor_series:.2f}")

    # A back-dated trade in the first month, through the services (its settlement, the checks, the marker).
    asset = Asset.objects.order_by("pk").first()
    assert asset is not None
    day = start + datetime.timedelta(days=14)
    close = Price.objects.filter(asset=asset, date__lte=day).order_by("-date").values_list("close", flat=True)[0]
    services.allocation_create(
        actor=User.objects.get(email="bench-valuation@example.com"),
        portfolio=portfolio,
        asset=asset,
        kind="buy",
        quantity=Decimal(5),
        price=close,
        date=day,
    )
    began = time.perf_counter()
    services.daily_values_refresh(portfolio_ids=[portfolio.pk], until=END)
    print(f"daily table rebuilt after a back-dated trade on {day}: {time.perf_counter() - began:.2f} s")
    began = time.perf_counter()
    after = portfolio_valuation(portfolio=portfolio, as_of=END)
    print(f"first valuation after it (the snapshot refolded): {(time.perf_counter() - began) * 1000:.0f} ms")
    began = time.perf_counter()
    portfolio_valuation(portfolio=portfolio, as_of=END)
    print(f"the next one (snapshot current): {(time.perf_counter() - began) * 1000:.0f} ms")
    assert after.totals.holdings != report.totals.holdings
    connection.close()


if __name__ == "__main__":
    main()
