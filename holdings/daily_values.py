"""The engine behind the daily value table (holdings.PortfolioDailyValue): rebuilds a set of portfolios from a day
on, set-based. What the figures mean is on the model; when a rebuild runs is `holdings.services`' business.

Per portfolio and day: units held per asset (running sums of the allocations by trade date) times the close of
the asset carried forward (the latest on or before the day), cash per currency (running sums of the ledger by
effective date), external flows, each converted at the day's rate. On PostgreSQL one INSERT ... SELECT does it
(a day grid, window running sums, closes carried forward over the grid); on SQLite (development) one pass over
pre-fetched, sorted rows per portfolio. Both read the same grouped queries, and both take their exchange rates
from one grid built with `holdings.fx.RateBook` (one row per currency pair and day, the pairs being few), so that
inverses and crosses are exactly those of every other conversion, and a missing rate is missing, never 1.

Splits (holdings.Split) count: a split scales the units held from the start of its day (holdings.splits: on
PostgreSQL each day's net units are summed scaled and divided by the day's scale, the split days joined in as days
without movement; in Python the held units are multiplied by new/old on the split's day). Prices are unadjusted, so
the value is continuous across a split. Nothing of a split is written anywhere: a rebuild cannot apply it twice.

Sums are exact (PostgreSQL's numeric; Decimal here with room for every digit) and rounded once per figure,
half-even, to the amount's four places.
"""

import bisect
import datetime
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from django.db import connection
from django.db.models import Case, CharField, Exists, F, Min, OuterRef, QuerySet, Value, When

from clients.models import Portfolio
from ledger.models import Transaction, effective_date, signed_amount
from portfolio_site.money import AMOUNT_QUANTUM, ExactSum

from .fx import MissingRate, RateBook
from .models import Allocation, Asset, PortfolioDailyValue, Price, Split, signed_quantity
from .splits import SplitBook

ONE_DAY = datetime.timedelta(days=1)
# Every digit of quantity x close x rate and of their sums: nothing is rounded before the final half-even.
EXACT_PRECISION = 120
# Money that crosses the portfolio's boundary. A transfer from or to another portfolio of the same client is
# external to this one (its performance must not count it as a gain or a loss).
EXTERNAL_CASH = (
    Transaction.Kind.DEPOSIT,
    Transaction.Kind.WITHDRAWAL,
    Transaction.Kind.TRANSFER_IN,
    Transaction.Kind.TRANSFER_OUT,
)
EXTERNAL_UNITS = (Allocation.Kind.TRANSFER_IN, Allocation.Kind.TRANSFER_OUT)
# The parts an external flow is summed in: in or out, from outside the client or between its own portfolios
# (transfers, which the client's performance leaves out). Never netted against each other; a reversal has its
# original's kind, so it nets out in its original's part.
INFLOW, OUTFLOW, TRANSFER_IN, TRANSFER_OUT = "in", "out", "tin", "tout"
INFLOW_PARTS, OUTFLOW_PARTS = (INFLOW, TRANSFER_IN), (OUTFLOW, TRANSFER_OUT)


@dataclass(frozen=True)
class Target:
    """A portfolio to rebuild from `since` (its first stale day) on, in its base currency."""

    portfolio_id: int
    base: str
    since: datetime.date


def first_movements(portfolio_ids: Sequence[int]) -> dict[int, datetime.date]:
    """The day of each portfolio's first movement (allocation, or transaction by effective date): where its table
    starts. Portfolios without any are left out."""
    first: dict[int, datetime.date] = {}
    queries: list[QuerySet[Any]] = [
        Allocation.objects.filter(portfolio_id__in=portfolio_ids).values("portfolio_id").annotate(day=Min("date")),
        Transaction.objects.filter(portfolio_id__in=portfolio_ids)
        .annotate(effective=effective_date())
        .values("portfolio_id")
        .annotate(day=Min("effective")),
    ]
    for query in queries:
        for row in query.order_by():
            pid, day = row["portfolio_id"], row["day"]
            first[pid] = min(day, first.get(pid, day))
    return first


def rebuild(targets: Sequence[Target], *, until: datetime.date) -> set[int]:
    """Replaces each target's rows from its `since` on with rows computed from scratch, through `until`. Rows
    before `since` are kept: nothing they depend on changed. The caller holds the transaction (and the locks).
    The targets that have any movement (the others have no rows at all)."""
    if not targets:
        return set()
    ids = [target.portfolio_id for target in targets]
    first = first_movements(ids)
    _delete_from(targets)
    # A table starts on the first movement; a portfolio without one (or only after `until`) has no rows.
    todo = [
        Target(t.portfolio_id, t.base, max(t.since, first[t.portfolio_id]))
        for t in targets
        if t.portfolio_id in first and first[t.portfolio_id] <= until
    ]
    todo = [target for target in todo if target.since <= until]
    if todo and connection.vendor == "postgresql":
        _insert_sql(todo, until=until)
    elif todo:
        _insert_python(todo, until=until)
    return set(first)


def _delete_from(targets: Sequence[Target]) -> None:
    by_day: dict[datetime.date, list[int]] = defaultdict(list)
    for target in targets:
        by_day[target.since].append(target.portfolio_id)
    for day, ids in by_day.items():  # one DELETE per distinct first stale day
        PortfolioDailyValue.objects.filter(portfolio_id__in=ids, date__gte=day).delete()


# --- What both ways read ----------------------------------------------------------------------------------------


def _daily_units(ids: Sequence[int]) -> QuerySet[Any]:
    """Net units per (portfolio, asset, trade day), every movement."""
    allocations = Allocation.objects.filter(portfolio_id__in=ids)
    return allocations.values("portfolio_id", "asset_id", day=F("date")).annotate(net=ExactSum(signed_quantity()))


def _daily_unit_flows(ids: Sequence[int]) -> QuerySet[Any]:
    """Net units transferred per (portfolio, asset, trade day, recorded price, part). A transfer's flow is worth its
    recorded price, or the day's close when that is 0; grouping by the price keeps the units whole, so the product
    is taken once, exactly, by whoever values them (numeric on PostgreSQL, Decimal in Python; SQLite would
    multiply REALs). A transfer with both legs recorded (`counterpart`) moved between the client's portfolios."""
    allocations = Allocation.objects.filter(portfolio_id__in=ids, kind__in=EXTERNAL_UNITS)
    incoming = Allocation.Kind.TRANSFER_IN
    part = Case(
        When(kind=incoming, counterpart__isnull=False, then=Value(TRANSFER_IN)),
        When(kind=incoming, then=Value(INFLOW)),
        When(Exists(Allocation.objects.filter(counterpart=OuterRef("pk"))), then=Value(TRANSFER_OUT)),
        default=Value(OUTFLOW),
        output_field=CharField(),
    )
    return (
        allocations.annotate(part=part)
        .values("portfolio_id", "asset_id", "price", "part", day=F("date"))
        .annotate(net=ExactSum(signed_quantity()))
    )


def _daily_cash(ids: Sequence[int]) -> QuerySet[Any]:
    """Net cash per (portfolio, currency, effective day), by the ledger's own sign and date rules."""
    return (
        Transaction.objects.filter(portfolio_id__in=ids)
        .annotate(day=effective_date())
        .values("portfolio_id", "currency", "day")
        .annotate(net=ExactSum(signed_amount()))
    )


def _daily_cash_flows(ids: Sequence[int]) -> QuerySet[Any]:
    """Net external cash per (portfolio, currency, effective day, part). Every cash transfer moves between two
    portfolios of one client (`ledger.services.cash_transfer`)."""
    kind = Transaction.Kind
    part = Case(
        When(kind=kind.DEPOSIT, then=Value(INFLOW)),
        When(kind=kind.WITHDRAWAL, then=Value(OUTFLOW)),
        When(kind=kind.TRANSFER_IN, then=Value(TRANSFER_IN)),
        default=Value(TRANSFER_OUT),
        output_field=CharField(),
    )
    return (
        Transaction.objects.filter(portfolio_id__in=ids, kind__in=EXTERNAL_CASH)
        .annotate(day=effective_date(), part=part)
        .values("portfolio_id", "currency", "day", "part")
        .annotate(net=ExactSum(signed_amount()))
    )


def _rate_grid(
    targets: Sequence[Target], *, until: datetime.date
) -> dict[tuple[str, str], dict[datetime.date, Decimal]]:
    """The rate from every currency the targets hold or move to their base currency, for every day of their
    range: {(currency, base): {day: rate}}, days without any rate left out. Currencies times days, not assets."""
    ids = [target.portfolio_id for target in targets]
    currencies = set(
        Asset.objects.filter(allocations__portfolio_id__in=ids).values_list("currency", flat=True).distinct()
    ) | set(Transaction.objects.filter(portfolio_id__in=ids).values_list("currency", flat=True).distinct())
    bases = {target.base for target in targets}
    pairs = sorted((currency, base) for currency in currencies for base in bases if currency != base)
    start = min(target.since for target in targets)
    book = RateBook(currencies | bases, until=until)
    grid: dict[tuple[str, str], dict[datetime.date, Decimal]] = {}
    for currency, base in pairs:
        rates = grid[(currency, base)] = {}
        day = start
        while day <= until:
            with suppress(MissingRate):  # a day without a rate stays out of the grid: missing, never 1
                rates[day] = book.rate(currency, base, day).rate
            day += ONE_DAY
    return grid


def round_amount(value: Decimal) -> Decimal:
    """Half-even to the amount's places, without the default context's 28 digits getting in the way."""
    with localcontext() as context:
        context.prec = EXACT_PRECISION
        return value.quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_EVEN)


# --- PostgreSQL: one INSERT ... SELECT ----------------------------------------------------------------------------


def _half_even(expression: str) -> str:
    """SQL rounding `expression` half-even to four places (PostgreSQL's round() goes half away from zero): an exact
    tie whose lower neighbour is even stays there, every other value rounds as round() does."""
    scaled = f"({expression}) * 10000"
    return f"(CASE WHEN mod({scaled}, 2) IN (0.5, -0.5) THEN trunc({expression}, 4) ELSE round({expression}, 4) END)"


def _sql_list(parts: Sequence[str]) -> str:
    """A tuple of the flow parts (constants of this module, never input) as SQL literals."""
    return "(" + ", ".join(f"'{part}'" for part in parts) + ")"


def _insert_sql(targets: Sequence[Target], *, until: datetime.date) -> None:
    ids = [target.portfolio_id for target in targets]
    grid = _rate_grid(targets, until=until)
    fx_rows = [(currency, base, day, rate) for (currency, base), days in grid.items() for day, rate in days.items()]
    fx_columns: list[list[Any]] = [list(column) for column in zip(*fx_rows, strict=True)] if fx_rows else [[]] * 4
    parts = [
        (name, *query.order_by().query.sql_with_params())
        for name, query in (
            ("units", _daily_units(ids)),
            ("unit_flows", _daily_unit_flows(ids)),
            ("cash", _daily_cash(ids)),
            ("flows", _daily_cash_flows(ids)),
        )
    ]
    table = PortfolioDailyValue._meta.db_table
    held, held_params = _held_sql(SplitBook.of(Allocation.objects.filter(portfolio_id__in=ids).values("asset_id")))
    # Each leg is one amount in one currency on one day: a holding (units x close), a cash balance, a flow. The
    # day ranges are integer series added to a date (date + integer is a date: no time zone in between).
    query = f"""
WITH targets (portfolio_id, since) AS (SELECT * FROM unnest(%s::bigint[], %s::date[])),
bounds (until, grid_start) AS (SELECT %s::date, %s::date),
fx (currency, base, day, rate) AS (SELECT * FROM unnest(%s::varchar[], %s::varchar[], %s::date[], %s::numeric[])),
{", ".join(f"{name} AS ({sql})" for name, sql, _ in parts)},
pf AS (
    SELECT t.portfolio_id, t.since, p.base_currency AS base
    FROM targets t JOIN {Portfolio._meta.db_table} p ON p.id = t.portfolio_id
),
{held}
balances AS (
    SELECT portfolio_id, currency, day, SUM(net) OVER w AS balance, LEAD(day) OVER w AS next_day
    FROM cash WINDOW w AS (PARTITION BY portfolio_id, currency ORDER BY day)
),
closes AS (
    SELECT asset_id, date AS day, close, LEAD(date) OVER (PARTITION BY asset_id ORDER BY date) AS next_day
    FROM {Price._meta.db_table}
    WHERE asset_id IN (SELECT asset_id FROM units) AND date <= (SELECT until FROM bounds)
),
price_days AS (
    SELECT c.asset_id, r.lo + n AS day, c.close
    FROM closes c CROSS JOIN bounds b
    CROSS JOIN LATERAL (SELECT GREATEST(c.day, b.grid_start) AS lo, COALESCE(c.next_day - 1, b.until) AS hi) r
    CROSS JOIN LATERAL generate_series(0, r.hi - r.lo) n
),
holding_legs AS (
    SELECT h.portfolio_id, r.lo + n AS day, a.currency, h.quantity * pd.close AS amount, h.asset_id,
           pd.close IS NULL AS unpriced
    FROM held h JOIN pf ON pf.portfolio_id = h.portfolio_id
    JOIN {Asset._meta.db_table} a ON a.id = h.asset_id CROSS JOIN bounds b
    CROSS JOIN LATERAL (SELECT GREATEST(h.day, pf.since) AS lo, COALESCE(h.next_day - 1, b.until) AS hi) r
    CROSS JOIN LATERAL generate_series(0, r.hi - r.lo) n
    LEFT JOIN price_days pd ON pd.asset_id = h.asset_id AND pd.day = r.lo + n
    WHERE h.quantity <> 0
),
-- A transfer is worth its recorded price; one recorded at 0 (no price given) is worth the day's close.
unit_flow_legs AS (
    SELECT u.portfolio_id, u.day, u.part, a.currency,
           u.net * CASE WHEN u.price > 0 THEN u.price ELSE pd.close END AS amount,
           u.asset_id, u.price = 0 AND pd.close IS NULL AS unpriced
    FROM unit_flows u JOIN pf ON pf.portfolio_id = u.portfolio_id
    JOIN {Asset._meta.db_table} a ON a.id = u.asset_id CROSS JOIN bounds b
    LEFT JOIN price_days pd ON pd.asset_id = u.asset_id AND pd.day = u.day AND u.price = 0
    WHERE u.day BETWEEN pf.since AND b.until AND u.net <> 0
),
-- Amounts are summed per currency before they are converted (exact numerics: the same total), so the rates
-- meet one row per portfolio, day and currency rather than one per asset. Unpriced assets travel as text lists.
legs AS (
    SELECT portfolio_id, day, 'h' AS part, currency, SUM(amount) AS amount,
           string_agg(asset_id::text, ',') FILTER (WHERE unpriced) AS unpriced
    FROM holding_legs GROUP BY portfolio_id, day, currency
  UNION ALL
    SELECT c.portfolio_id, r.lo + n, 'c', c.currency, c.balance, NULL
    FROM balances c JOIN pf ON pf.portfolio_id = c.portfolio_id CROSS JOIN bounds b
    CROSS JOIN LATERAL (SELECT GREATEST(c.day, pf.since) AS lo, COALESCE(c.next_day - 1, b.until) AS hi) r
    CROSS JOIN LATERAL generate_series(0, r.hi - r.lo) n
    WHERE c.balance <> 0
  UNION ALL
    SELECT f.portfolio_id, f.day, f.part, f.currency, f.net, NULL
    FROM flows f JOIN pf ON pf.portfolio_id = f.portfolio_id CROSS JOIN bounds b
    WHERE f.day BETWEEN pf.since AND b.until AND f.net <> 0
  UNION ALL
    SELECT portfolio_id, day, part, currency, SUM(amount), string_agg(asset_id::text, ',') FILTER (WHERE unpriced)
    FROM unit_flow_legs GROUP BY portfolio_id, day, part, currency
),
valued AS (
    SELECT l.portfolio_id, l.day, l.part, l.currency, l.unpriced, l.amount * x.rate AS amount,
           x.rate IS NULL AS unrated
    FROM legs l JOIN pf ON pf.portfolio_id = l.portfolio_id
    LEFT JOIN fx ON fx.currency = l.currency AND fx.base = pf.base AND fx.day = l.day
    CROSS JOIN LATERAL (SELECT CASE WHEN l.currency = pf.base THEN 1::numeric ELSE fx.rate END AS rate) x
),
per_day AS (
    SELECT portfolio_id, day,
           SUM(amount) FILTER (WHERE part = 'h') AS holdings,
           SUM(amount) FILTER (WHERE part = 'c') AS cash,
           SUM(amount) FILTER (WHERE part IN {_sql_list(INFLOW_PARTS)}) AS inflow,
           -SUM(amount) FILTER (WHERE part IN {_sql_list(OUTFLOW_PARTS)}) AS outflow,
           SUM(amount) FILTER (WHERE part = '{TRANSFER_IN}') AS transfers_in,
           -SUM(amount) FILTER (WHERE part = '{TRANSFER_OUT}') AS transfers_out,
           (SELECT array_agg(DISTINCT a::bigint ORDER BY a::bigint)
            FROM unnest(string_to_array(string_agg(unpriced, ','), ',')) a) AS prices,
           array_agg(DISTINCT currency ORDER BY currency) FILTER (WHERE unrated) AS rates
    FROM valued GROUP BY portfolio_id, day
),
days AS (
    SELECT pf.portfolio_id, pf.since + n AS day,
           COALESCE(p.holdings, 0) AS holdings, COALESCE(p.cash, 0) AS cash, COALESCE(p.inflow, 0) AS inflow,
           COALESCE(p.outflow, 0) AS outflow, COALESCE(p.transfers_in, 0) AS transfers_in,
           COALESCE(p.transfers_out, 0) AS transfers_out, p.prices, p.rates
    FROM pf CROSS JOIN bounds b CROSS JOIN LATERAL generate_series(0, b.until - pf.since) n
    LEFT JOIN per_day p ON p.portfolio_id = pf.portfolio_id AND p.day = pf.since + n
),
rounded AS (
    SELECT portfolio_id, day, {_half_even("holdings")} AS holdings, {_half_even("cash")} AS cash,
           {_half_even("inflow")} AS inflow, {_half_even("outflow")} AS outflow,
           {_half_even("transfers_in")} AS transfers_in, {_half_even("transfers_out")} AS transfers_out, prices, rates
    FROM days
)
INSERT INTO {table} (portfolio_id, date, holdings_value, cash_value, value, inflow, outflow, transfers_in,
                     transfers_out, complete, missing)
SELECT portfolio_id, day, holdings, cash, holdings + cash, inflow, outflow, transfers_in, transfers_out,
       prices IS NULL AND rates IS NULL,
       jsonb_strip_nulls(jsonb_build_object('prices', to_jsonb(prices), 'rates', to_jsonb(rates)))
FROM rounded
"""
    params: list[Any] = [
        ids,
        [target.since for target in targets],
        until,
        min(target.since for target in targets),
        *fx_columns,
    ]
    for _, _, part_params in parts:
        params.extend(part_params)
    params.extend(held_params)
    with connection.cursor() as cursor:
        # For this transaction only. generate_series over lateral bounds is estimated at 1,000 rows a call, so the
        # plan looks costly enough to JIT-compile (measured: 2.7 s compiling for 50 ms of work on one portfolio),
        # and the misestimates make the planner sort millions of holding-days for merge joins where hashing them
        # against the few thousand closes per asset is cheaper (bench/daily_values_bench.py: 12 s -> 9 s).
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL enable_mergejoin = off")
        cursor.execute("SET LOCAL work_mem = %s", ["64MB"])
        cursor.execute(query, params)


def _held_sql(book: SplitBook) -> tuple[str, list[Any]]:
    """The `held` CTE (units per portfolio, asset and day on which they change, and the next such day) and its
    parameters. Without splits, running sums of the units CTE; with them, the running sums of each day's scaled
    net units divided by the day's scale (holdings.splits), each split's day joined in as a day on which the units
    change for every portfolio that held the asset before it."""
    if not book:
        return (
            """held AS (
    SELECT portfolio_id, asset_id, day, SUM(net) OVER w AS quantity, LEAD(day) OVER w AS next_day
    FROM units WINDOW w AS (PARTITION BY portfolio_id, asset_id ORDER BY day)
),""",
            [],
        )
    periods = book.periods()
    columns = [list(column) for column in zip(*periods, strict=True)]
    sql = f"""scales (asset_id, lo, hi, scale) AS (
    SELECT * FROM unnest(%s::bigint[], %s::date[], %s::date[], %s::numeric[])
),
unit_days AS (
    SELECT portfolio_id, asset_id, day, net FROM units
  UNION ALL
    SELECT DISTINCT u.portfolio_id, s.asset_id, s.date, 0 FROM units u
    JOIN {Split._meta.db_table} s ON s.asset_id = u.asset_id AND s.date > u.day AND s.date <= (SELECT until FROM bounds)
),
scaled AS (
    SELECT u.portfolio_id, u.asset_id, u.day, SUM(u.net) * COALESCE(MAX(k.scale), 1) AS net,
           COALESCE(MAX(k.scale), 1) AS scale
    FROM unit_days u LEFT JOIN scales k ON k.asset_id = u.asset_id AND u.day >= k.lo AND u.day < k.hi
    GROUP BY u.portfolio_id, u.asset_id, u.day
),
held AS (
    SELECT portfolio_id, asset_id, day, SUM(net) OVER w / scale AS quantity, LEAD(day) OVER w AS next_day
    FROM scaled WINDOW w AS (PARTITION BY portfolio_id, asset_id ORDER BY day)
),"""
    return sql, columns


# --- SQLite (development): one pass per portfolio over sorted rows ---------------------------------------------------


def _grouped(query: QuerySet[Any], key: str) -> dict[int, list[tuple[datetime.date, Any, Decimal]]]:
    grouped: dict[int, list[tuple[datetime.date, Any, Decimal]]] = defaultdict(list)
    for row in query.order_by("portfolio_id", "day", key):
        grouped[row["portfolio_id"]].append((row["day"], row[key], Decimal(row["net"])))
    return grouped


def _insert_python(targets: Sequence[Target], *, until: datetime.date) -> None:
    ids = [target.portfolio_id for target in targets]
    grid = _rate_grid(targets, until=until)
    units = _grouped(_daily_units(ids), "asset_id")
    unit_flows: dict[int, list[tuple[datetime.date, int, Decimal, str, Decimal]]] = defaultdict(list)
    for row in _daily_unit_flows(ids).order_by("portfolio_id", "day", "asset_id", "price", "part"):
        unit_flows[row["portfolio_id"]].append(
            (row["day"], row["asset_id"], row["price"], row["part"], Decimal(row["net"]))
        )
    cash = _grouped(_daily_cash(ids), "currency")
    flows: dict[int, list[tuple[datetime.date, str, str, Decimal]]] = defaultdict(list)
    for row in _daily_cash_flows(ids).order_by("portfolio_id", "day", "currency", "part"):
        flows[row["portfolio_id"]].append((row["day"], row["currency"], row["part"], Decimal(row["net"])))
    assets = {row[1] for rows in units.values() for row in rows}
    book = SplitBook.of(assets)
    currency_of = dict(Asset.objects.filter(pk__in=assets).values_list("pk", "currency"))
    closes: dict[int, tuple[list[datetime.date], list[Decimal]]] = defaultdict(lambda: ([], []))
    for asset_id, day, close in (
        Price.objects.filter(asset_id__in=assets, date__lte=until)
        .order_by("asset_id", "date")
        .values_list("asset_id", "date", "close")
    ):
        closes[asset_id][0].append(day)
        closes[asset_id][1].append(close)

    def close_on(asset_id: int, day: datetime.date) -> Decimal | None:
        dates, values = closes[asset_id]
        index = bisect.bisect_right(dates, day)
        return values[index - 1] if index else None

    rows: list[PortfolioDailyValue] = []
    with localcontext() as context:
        context.prec = EXACT_PRECISION
        for target in targets:
            pid = target.portfolio_id
            # (part, currency or asset, net amount or units, recorded price: None for cash, 0 for "at the day's
            # close")
            flows_by_day: dict[datetime.date, list[tuple[str, Any, Decimal, Decimal | None]]] = defaultdict(list)
            for day, currency, part, net in flows.get(pid, []):
                flows_by_day[day].append((part, currency, net, None))
            for day, asset_id, unit_price, part, net in unit_flows.get(pid, []):
                flows_by_day[day].append((part, asset_id, net, unit_price))
            held: dict[int, Decimal] = defaultdict(Decimal)
            balances: dict[str, Decimal] = defaultdict(Decimal)
            unit_rows, cash_rows = _with_splits(units.get(pid, []), book), cash.get(pid, [])
            u = c = 0
            day = target.since
            while day <= until:
                # Movements up to the day's end: before `since` they only build the opening state.
                while u < len(unit_rows) and unit_rows[u][0] <= day:
                    _, asset_id, net, factor = unit_rows[u]
                    held[asset_id] = held[asset_id] * factor if factor is not None else held[asset_id] + net
                    u += 1
                while c < len(cash_rows) and cash_rows[c][0] <= day:
                    balances[cash_rows[c][1]] += cash_rows[c][2]
                    c += 1
                values = _DayValuation(day=day, base=target.base, grid=grid, close_on=close_on)
                holdings = sum((values.units(a, q, currency_of[a]) for a, q in held.items() if q != 0), Decimal(0))
                cash_value = sum((values.cash(b, ccy) for ccy, b in balances.items() if b != 0), Decimal(0))
                by_part: dict[str, Decimal] = defaultdict(Decimal)
                for part, key, net, recorded in flows_by_day.get(day, []):
                    if net != 0:
                        by_part[part] += (
                            values.transfer(key, net, recorded, currency_of[key])
                            if recorded is not None
                            else values.cash(net, key)
                        )
                h, cv = round_amount(holdings), round_amount(cash_value)
                rows.append(
                    PortfolioDailyValue(
                        portfolio_id=pid,
                        date=day,
                        holdings_value=h,
                        cash_value=cv,
                        value=h + cv,
                        inflow=round_amount(by_part[INFLOW] + by_part[TRANSFER_IN]),
                        outflow=round_amount(Decimal(0) - by_part[OUTFLOW] - by_part[TRANSFER_OUT]),
                        transfers_in=round_amount(by_part[TRANSFER_IN]),
                        transfers_out=round_amount(Decimal(0) - by_part[TRANSFER_OUT]),
                        complete=not values.missing(),
                        missing=values.missing(),
                    )
                )
                day += ONE_DAY
    PortfolioDailyValue.objects.bulk_create(rows, batch_size=2000)


def _with_splits(
    rows: list[tuple[datetime.date, Any, Decimal]], book: SplitBook
) -> list[tuple[datetime.date, int, Decimal, Decimal | None]]:
    """A portfolio's net units per (day, asset) with its assets' splits merged in, each split first of its day (it
    takes effect at the start of it): (day, asset id, net units, None) or (day, asset id, 0, new/old)."""
    merged: list[tuple[datetime.date, int, int, Decimal, Decimal | None]] = [
        (day, 1, asset_id, net, None) for day, asset_id, net in rows
    ]
    for asset_id in {asset_id for _, asset_id, _ in rows}:
        for step in book.steps.get(asset_id, ()):
            merged.append((step.date, 0, asset_id, Decimal(0), step.new / step.old))
    merged.sort(key=lambda row: (row[0], row[1], row[2]))
    return [(day, asset_id, net, factor) for day, _, asset_id, net, factor in merged]


@dataclass
class _DayValuation:
    """Converts one day's amounts of one portfolio to its base currency, remembering what could not be valued."""

    day: datetime.date
    base: str
    grid: dict[tuple[str, str], dict[datetime.date, Decimal]]
    close_on: Callable[[int, datetime.date], Decimal | None]
    missing_prices: set[int] = field(default_factory=set)
    missing_rates: set[str] = field(default_factory=set)

    def cash(self, amount: Decimal | None, currency: str) -> Decimal:
        rate = Decimal(1) if currency == self.base else self.grid.get((currency, self.base), {}).get(self.day)
        if rate is None:
            self.missing_rates.add(currency)
        return amount * rate if amount is not None and rate is not None else Decimal(0)

    def units(self, asset_id: int, quantity: Decimal, currency: str) -> Decimal:
        close = self.close_on(asset_id, self.day)
        if close is None:
            self.missing_prices.add(asset_id)
        return self.cash(quantity * close if close is not None else None, currency)

    def transfer(self, asset_id: int, quantity: Decimal, unit_price: Decimal, currency: str) -> Decimal:
        """Units moved in (+) or out (-) at their recorded price, or at the day's close when that is 0."""
        if unit_price > 0:
            return self.cash(quantity * unit_price, currency)
        return self.units(asset_id, quantity, currency)

    def missing(self) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        if self.missing_prices:
            found["prices"] = sorted(self.missing_prices)
        if self.missing_rates:
            found["rates"] = sorted(self.missing_rates)
        return found
