"""The figures of the admin's dashboard (a selector: reads only), for what one user may see.

Every figure is scoped by the user's visibility first (`visible_to`), so an advisor's dashboard covers their clients
only. The number of queries is fixed (about a dozen), whatever the number of clients, portfolios or movements:

- assets under management: each portfolio's latest row of the daily value table (holdings.PortfolioDailyValue) on
  or before today, summed per base currency in the database and converted into `settings.REPORTING_CURRENCY` at the
  latest rates. The table is read as it is, not refreshed here: the `holdings.daily_values_refresh` job keeps it
  current (every minute), and the portfolios it has yet to catch up with are counted (`refreshing`) instead of
  rebuilt inside the request. Without a job queue (development: no periodic job) the stale ones in scope are
  rebuilt first, as every reader of the table does then;
- clients, active and inactive;
- deposits and withdrawals posted today and this month (by posting date, a reversal taking its original back),
  per currency;
- the ten largest positions (portfolio and asset) by market value in the reporting currency: units held at the end
  of today (splits counted) times the asset's latest close on or before today;
- unpriced holdings: held assets without any close on or before today (their positions cannot be valued);
- stale prices: held assets whose latest close is more than `settings.VALUATION_STALE_PRICE_DAYS` days before today
  (the rule the valuation flags stale closes by);
- the latest import batches and job runs the user may see.
"""

import datetime
import heapq
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import BooleanField, Count, ExpressionWrapper, F, Min, OuterRef, Q, Subquery
from django.utils import timezone

from clients.models import Client, Portfolio
from clients.scope import ClientScope
from ledger.models import Transaction
from portfolio_site.imports.models import ImportBatch
from portfolio_site.jobs.models import JobRun
from portfolio_site.money import ExactSum

from .fx import MissingRate, RateBook
from .models import Allocation, PortfolioDailyValue
from .selectors import latest_prices
from .services import daily_values_refresh
from .splits import SplitBook, scaled_signed_quantity

LARGEST_POSITIONS = 10
LATEST_ROWS = 5
# Held assets listed by name under "unpriced" and "stale" (all of them are counted).
LISTED_ASSETS = 20


@dataclass(frozen=True)
class CurrencyTotal:
    currency: str
    amount: Decimal
    # The amount in the reporting currency; None when no rate to it was published by today.
    reported: Decimal | None


@dataclass(frozen=True)
class AssetsUnderManagement:
    total: Decimal  # in the reporting currency, of the currencies that could be converted
    by_currency: list[CurrencyTotal]
    portfolios: int  # in scope
    valued: int  # with a row in the daily value table
    incomplete: int  # whose latest row lacked a price or a rate (see PortfolioDailyValue.complete)
    refreshing: int  # the job has yet to bring up to date (history changed, or the day moved on)
    as_of: datetime.date | None  # the oldest latest row among the valued ones
    unconverted: list[str]  # base currencies without a rate to the reporting currency


@dataclass(frozen=True)
class Flows:
    """Deposits or withdrawals of one kind posted in a period, per currency (net of reversals posted in it)."""

    kind: str
    period: str  # "today" or "this month" (on the first of a month both start today)
    start: datetime.date
    end: datetime.date
    count: int
    by_currency: list[CurrencyTotal]
    total: Decimal  # in the reporting currency, of those that could be converted


@dataclass(frozen=True)
class Position:
    portfolio_id: int
    portfolio_name: str
    client_id: int
    client_name: str
    asset_id: int
    ticker: str
    units: Decimal
    close: Decimal
    close_date: datetime.date
    currency: str  # the asset's
    market_value: Decimal  # in the asset's currency
    reported: Decimal  # in the reporting currency


@dataclass(frozen=True)
class HeldAsset:
    asset_id: int
    ticker: str
    close_date: datetime.date | None


@dataclass(frozen=True)
class Dashboard:
    today: datetime.date
    currency: str  # the reporting currency
    stale_days: int
    aum: AssetsUnderManagement
    active_clients: int
    inactive_clients: int
    flows: list[Flows]  # deposits today, withdrawals today, deposits this month, withdrawals this month
    largest: list[Position]
    unpriced: list[HeldAsset]  # the first LISTED_ASSETS
    unpriced_count: int
    unpriced_ids: list[int]
    stale: list[HeldAsset]
    stale_count: int
    stale_ids: list[int]
    missing_rates: list[str]  # asset currencies without a rate to the reporting currency (positions not ranked)
    import_batches: list[ImportBatch] | None  # None: the user may not see import batches
    jobs: list[JobRun] = field(default_factory=list)


def dashboard(*, user: Any, today: datetime.date | None = None) -> Dashboard:
    today = today or timezone.localdate()
    reporting = settings.REPORTING_CURRENCY
    portfolios = Portfolio.objects.visible_to(user)
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # No job queue (development): no periodic refresh either, so the dashboard brings its own portfolios up to
        # date first, as every other reader of the table does then. With a queue the job does it (every minute).
        behind = list(portfolios.filter(history_changed_from__lte=today).values_list("pk", flat=True))
        if behind:
            daily_values_refresh(portfolio_ids=behind, until=today)

    aum_rows = _aum_rows(portfolios, today)
    flow_rows = _flow_rows(Transaction.objects.visible_to(user), today)
    held = _held(Allocation.objects.visible_to(user), today)
    quotes = {row["pk"]: row for row in latest_prices(asset_ids={asset for _, asset in held}, as_of=today)}
    currencies = {row["currency"] for row in aum_rows} | {row["currency"] for row in flow_rows}
    currencies |= {quote["currency"] for quote in quotes.values()}
    rates = RateBook(currencies | {reporting}, until=today, latest_only=True)

    factors: dict[str, Decimal | None] = {}

    def factor(currency: str) -> Decimal | None:
        # A rate per currency, found once: tens of thousands of positions share a handful of currencies.
        if currency not in factors:
            try:
                factors[currency] = rates.rate(currency, reporting, today).rate
            except MissingRate:
                factors[currency] = None
        return factors[currency]

    def reported(amount: Decimal, currency: str) -> Decimal | None:
        rate = factor(currency)
        return None if rate is None else amount * rate

    largest, missing_rates = _largest(held, quotes, factor)
    unpriced = sorted((q for q in quotes.values() if q["price_date"] is None), key=lambda q: q["ticker"])
    stale_before = today - datetime.timedelta(days=settings.VALUATION_STALE_PRICE_DAYS)
    stale = sorted(
        (q for q in quotes.values() if q["price_date"] is not None and q["price_date"] < stale_before),
        key=lambda q: (q["price_date"], q["ticker"]),
    )
    clients = Client.objects.visible_to(user).aggregate(
        active=Count("pk", filter=Q(is_active=True)), inactive=Count("pk", filter=Q(is_active=False))
    )
    return Dashboard(
        today=today,
        currency=reporting,
        stale_days=settings.VALUATION_STALE_PRICE_DAYS,
        aum=_aum(aum_rows, portfolios, today, reported),
        active_clients=clients["active"],
        inactive_clients=clients["inactive"],
        flows=_flows(flow_rows, today, reported),
        largest=largest,
        unpriced=[_held_asset(q) for q in unpriced[:LISTED_ASSETS]],
        unpriced_count=len(unpriced),
        unpriced_ids=[q["pk"] for q in unpriced],
        stale=[_held_asset(q) for q in stale[:LISTED_ASSETS]],
        stale_count=len(stale),
        stale_ids=[q["pk"] for q in stale],
        missing_rates=missing_rates,
        import_batches=_import_batches(user),
        jobs=list(JobRun.objects.visible_to(user).select_related("requested_by")[:LATEST_ROWS]),
    )


def _aum_rows(portfolios: Any, today: datetime.date) -> list[dict[str, Any]]:
    """Per base currency: the sum of each portfolio's latest daily value on or before today, and counts. One query:
    the latest row of each portfolio is found by the (portfolio, date) unique index, never by scanning history."""
    latest = PortfolioDailyValue.objects.filter(portfolio=OuterRef("pk"), date__lte=today).order_by("-date")
    rows = (
        PortfolioDailyValue.objects.filter(
            pk__in=portfolios.annotate(latest=Subquery(latest.values("pk")[:1])).values("latest")
        )
        .values(currency=F("portfolio__base_currency"))
        .annotate(
            amount=ExactSum("value"),
            valued=Count("pk"),
            incomplete=Count("pk", filter=Q(complete=False)),
            as_of=Min("date"),
        )
        .order_by("currency")
    )
    return [{**row, "amount": Decimal(row["amount"])} for row in rows]


def _aum(rows: list[dict[str, Any]], portfolios: Any, today: datetime.date, reported: Any) -> AssetsUnderManagement:
    counts = portfolios.aggregate(total=Count("pk"), refreshing=Count("pk", filter=Q(history_changed_from__lte=today)))
    by_currency = [
        CurrencyTotal(row["currency"], row["amount"], reported(row["amount"], row["currency"])) for row in rows
    ]
    return AssetsUnderManagement(
        total=sum((each.reported for each in by_currency if each.reported is not None), Decimal(0)),
        by_currency=by_currency,
        portfolios=counts["total"],
        valued=sum(row["valued"] for row in rows),
        incomplete=sum(row["incomplete"] for row in rows),
        refreshing=counts["refreshing"],
        as_of=min((row["as_of"] for row in rows), default=None),
        unconverted=[each.currency for each in by_currency if each.reported is None],
    )


FLOW_KINDS = (Transaction.Kind.DEPOSIT, Transaction.Kind.WITHDRAWAL)


def _flow_rows(transactions: Any, today: datetime.date) -> list[dict[str, Any]]:
    """This month's deposits and withdrawals by kind, currency, day and whether a reversal: a few dozen rows."""
    reversal = ExpressionWrapper(Q(reverses__isnull=False), output_field=BooleanField())
    return list(
        transactions.filter(kind__in=FLOW_KINDS, date__range=(today.replace(day=1), today))
        .annotate(is_reversal=reversal)
        .values("kind", "currency", "date", "is_reversal")
        .annotate(amount=ExactSum("amount"), count=Count("pk"))
        .order_by()
    )


def _flows(rows: list[dict[str, Any]], today: datetime.date, reported: Any) -> list[Flows]:
    first = today.replace(day=1)
    found = []
    for period, start in (("today", today), ("this month", first)):
        for kind in FLOW_KINDS:
            amounts: dict[str, Decimal] = {}
            count = 0
            for row in rows:
                if row["kind"] == kind and row["date"] >= start:
                    # A reversal posted in the period takes back what it reverses.
                    sign = -1 if row["is_reversal"] else 1
                    amounts[row["currency"]] = amounts.get(row["currency"], Decimal(0)) + sign * Decimal(row["amount"])
                    count += row["count"]
            by_currency = [CurrencyTotal(c, amount, reported(amount, c)) for c, amount in sorted(amounts.items())]
            total = sum((each.reported for each in by_currency if each.reported is not None), Decimal(0))
            found.append(Flows(str(kind), period, start, today, count, by_currency, total))
    return found


def _held(allocations: Any, today: datetime.date) -> dict[tuple[int, int], Decimal]:
    """Units held at the end of today per (portfolio, asset), positive ones only: one grouped query (and one for the
    splits). The sign test runs here: on SQLite the exact sum is text (see ExactSum)."""
    allocations = allocations.filter(date__lte=today)
    book = SplitBook.of(allocations.values("asset_id"))
    rows = (
        allocations.values_list("portfolio_id", "asset_id")
        .annotate(units=ExactSum(scaled_signed_quantity(book)))
        .order_by()
    )
    held = {}
    for portfolio_id, asset_id, scaled in rows:
        units = book.units(asset_id, Decimal(scaled), today)
        if units > 0:
            held[(portfolio_id, asset_id)] = units
    return held


def _largest(
    held: dict[tuple[int, int], Decimal], quotes: dict[int, dict[str, Any]], factor: Any
) -> tuple[list[Position], list[str]]:
    """The ten largest valued positions, in the reporting currency; and the asset currencies with no rate to it."""
    # Per asset once: its close times its currency's rate (what one unit is worth in the reporting currency).
    unit_values: dict[int, Decimal] = {}
    missing: set[str] = set()
    for asset_id, quote in quotes.items():
        if quote["price_close"] is None:
            continue  # unpriced: listed apart
        rate = factor(quote["currency"])
        if rate is None:
            missing.add(quote["currency"])
        else:
            unit_values[asset_id] = quote["price_close"] * rate
    ranked = (
        (units * unit_values[asset_id], portfolio_id, asset_id, units)
        for (portfolio_id, asset_id), units in held.items()
        if asset_id in unit_values
    )
    top = heapq.nsmallest(LARGEST_POSITIONS, ranked, key=lambda each: (-each[0], each[1], each[2]))
    names = {
        pk: (name, client_id, client_name)
        for pk, name, client_id, client_name in Portfolio.objects.filter(pk__in=[each[1] for each in top]).values_list(
            "pk", "name", "client_id", "client__name"
        )
    }
    positions = []
    for _, portfolio_id, asset_id, units in top:
        quote = quotes[asset_id]
        name, client_id, client_name = names[portfolio_id]
        positions.append(
            Position(
                portfolio_id=portfolio_id,
                portfolio_name=name,
                client_id=client_id,
                client_name=client_name,
                asset_id=asset_id,
                ticker=quote["ticker"],
                units=units,
                close=quote["price_close"],
                close_date=quote["price_date"],
                currency=quote["currency"],
                market_value=units * quote["price_close"],
                reported=units * quote["price_close"] * factor(quote["currency"]),
            )
        )
    return positions, sorted(missing)


def _held_asset(quote: dict[str, Any]) -> HeldAsset:
    return HeldAsset(asset_id=quote["pk"], ticker=quote["ticker"], close_date=quote["price_date"])


def _import_batches(user: Any) -> list[ImportBatch] | None:
    """The latest import batches, for those who may view them; a user who does not see every client sees only the
    batches they ran (a file may name clients of others)."""
    if not user.has_perm("imports.view_importbatch"):
        return None
    batches = ImportBatch.objects.select_related("user")
    if not ClientScope.of(user).sees_all:
        batches = batches.filter(user_id=user.pk)
    return list(batches.order_by("-started_at", "-pk")[:LATEST_ROWS])
