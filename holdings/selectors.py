import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

from django.db.models import ExpressionWrapper, F, OuterRef, QuerySet, Subquery
from django.utils import timezone

from clients.models import Portfolio
from portfolio_site.money import ExactSum, Shortfall, first_shortfalls, to_quantity

from .models import Allocation, Asset, PortfolioDailyValue, Price, UnitHold
from .splits import SCALE_DIGITS, SplitBook, scaled_signed_quantity


def position(*, portfolio_id: int, asset_id: int, as_of: datetime.date | None = None) -> Decimal:
    """Units of an asset a portfolio holds at the end of `as_of` (now when None): the signed sum of the
    portfolio's allocations in it, by trade date."""
    allocations = Allocation.objects.filter(portfolio_id=portfolio_id, asset_id=asset_id)
    if as_of is not None:
        allocations = allocations.filter(date__lte=as_of)
    book = SplitBook.of([asset_id])
    total = allocations.aggregate(q=ExactSum(scaled_signed_quantity(book)))["q"]
    return book.units(asset_id, total if total is not None else Decimal("0"), as_of or datetime.date.max)


def units_shortfalls(
    *, since: dict[tuple[int, int], datetime.date], portfolios: Any = None
) -> dict[tuple[int, int], Shortfall]:
    """For each (portfolio id, asset id) the first day from its `since` on at whose end the portfolio holds fewer
    than zero units of the asset, or from today on fewer than its holds of the asset (`UnitHold`), if any: the same
    rule as cash (`ledger.selectors.cash_shortfalls`), by trade date, set-based.

    Splits count: each day's units are summed scaled (holdings.splits), whose running sum has the sign of the units
    held, so the same query finds the first negative day. A hold's units scale alike (its quantity times the scale of
    its `as_of`), so the holds are one constant floor per key in the scaled sums. The shortfall's balance (what is
    free: the units less the holds) and its held units are then stated in that day's units."""
    if portfolios is None:
        portfolios = sorted({portfolio_id for portfolio_id, _ in since})
    assets = sorted({a for _, a in since})
    book = SplitBook.of(assets)
    daily = (
        Allocation.objects.filter(portfolio_id__in=portfolios, asset_id__in=assets)
        .values("portfolio_id", "asset_id", day=F("date"))
        .annotate(net=ExactSum(scaled_signed_quantity(book)))
    )
    holds = (
        UnitHold.objects.filter(portfolio_id__in=portfolios, asset_id__in=assets)
        .values("portfolio_id", "asset_id")
        .annotate(held=ExactSum(_scaled_hold_quantity(book)))
    )
    found = first_shortfalls(
        daily,
        keys=("portfolio_id", "asset_id"),
        key_types=("bigint", "bigint"),
        since=since,
        floors=holds,
        floor_from=timezone.localdate(),
    )
    return {
        key: Shortfall(
            found_at.day,
            book.units(key[1], Decimal(found_at.balance), found_at.day),
            book.units(key[1], Decimal(found_at.held), found_at.day),
        )
        for key, found_at in found.items()
    }


def _scaled_hold_quantity(book: SplitBook) -> Any:
    """A hold's quantity times the scale of its `as_of` (holdings.splits): summed like allocations' quantities."""
    scale = book.scale_expression(date="as_of")
    if scale is None:
        return F("quantity")
    return ExpressionWrapper(F("quantity") * scale, output_field=scale.output_field)


def units_shortfall(*, portfolio_id: int, asset_id: int, since: datetime.date) -> Shortfall | None:
    """`units_shortfalls` for one portfolio and asset: what a service checks after writing a movement."""
    return units_shortfalls(since={(portfolio_id, asset_id): since}).get((portfolio_id, asset_id))


def units_on_hold(*, portfolio_id: int | None = None, client_id: int | None = None) -> dict[int, Decimal]:
    """Asset id to units on hold (the total of the active holds, in today's units: later splits scale a hold) in
    one portfolio, or in a client's portfolios together; assets without a hold are absent. One query when nothing
    is on hold, two otherwise (the holds, their assets' splits)."""
    holds = UnitHold.objects.all()
    if portfolio_id is not None:
        holds = holds.filter(portfolio_id=portfolio_id)
    if client_id is not None:
        holds = holds.filter(client_id=client_id)
    rows = list(holds.values("asset_id", "as_of").annotate(held=ExactSum("quantity")).order_by("asset_id", "as_of"))
    if not rows:
        return {}
    book = SplitBook.of({row["asset_id"] for row in rows})
    today = timezone.localdate()
    scaled: dict[int, Decimal] = {}
    with localcontext() as context:
        context.prec = SCALE_DIGITS
        for row in rows:
            asset_id = row["asset_id"]
            scaled[asset_id] = scaled.get(asset_id, Decimal(0)) + Decimal(row["held"]) * book.scale(
                asset_id, row["as_of"]
            )
    return {asset_id: book.units(asset_id, total, today) for asset_id, total in scaled.items()}


def units_free(*, portfolio_id: int, asset_id: int) -> Decimal:
    """Units of an asset a portfolio can still sell, move out or put on hold, in today's units: the lowest of its
    positions at the end of today and of every later day a future-dated movement falls on, less its holds of the
    asset. Negative when the portfolio is already short (a broker's fill may leave it so)."""
    today = timezone.localdate()
    book = SplitBook.of([asset_id])
    days = (
        Allocation.objects.filter(portfolio_id=portfolio_id, asset_id=asset_id)
        .values("date")
        .annotate(net=ExactSum(scaled_signed_quantity(book)))
        .order_by("date")
    )
    running = Decimal(0)
    closing_today = Decimal(0)  # today closes at the balance of the last movement on or before it
    later: Decimal | None = None  # the lowest close of a later day
    for row in days:  # scaled sums (holdings.splits): comparable across days, and with the holds' scaled total
        running += Decimal(row["net"])
        if row["date"] <= today:
            closing_today = running
            continue
        later = running if later is None else min(later, running)
    lowest = closing_today if later is None else min(closing_today, later)
    held = UnitHold.objects.filter(portfolio_id=portfolio_id, asset_id=asset_id).aggregate(
        held=ExactSum(_scaled_hold_quantity(book))
    )["held"]
    free = lowest - (Decimal(held) if held is not None else Decimal(0))
    return book.units(asset_id, free, today)


def unit_hold_quantity(*, reference: str) -> Decimal:
    """The units on hold under `reference` in today's units (a split after the hold's day scales it), 0 when there
    is no such hold."""
    hold = UnitHold.objects.filter(reference=reference).values("asset_id", "quantity", "as_of").first()
    if hold is None:
        return Decimal("0")
    book = SplitBook.of([hold["asset_id"]])
    factor = book.factor(hold["asset_id"], after=hold["as_of"], through=timezone.localdate())
    with localcontext() as context:
        context.prec = SCALE_DIGITS
        return to_quantity(hold["quantity"] * factor)


def _positions(as_of: datetime.date | None = None, **scope: int) -> dict[int, Decimal]:
    allocations = Allocation.objects.filter(**scope)
    if as_of is not None:
        allocations = allocations.filter(date__lte=as_of)
    book = SplitBook.of(allocations.values("asset_id"))
    rows = allocations.values("asset_id").annotate(q=ExactSum(scaled_signed_quantity(book))).order_by("asset_id")
    return {row["asset_id"]: book.units(row["asset_id"], row["q"], as_of or datetime.date.max) for row in rows}


def client_positions(*, client_id: int, as_of: datetime.date | None = None) -> dict[int, Decimal]:
    """Asset id to units held by the client as a whole (its portfolios together) at the end of `as_of`, for the
    assets it holds or has held."""
    return _positions(as_of, client_id=client_id)


def portfolio_positions(*, portfolio_id: int, as_of: datetime.date | None = None) -> dict[int, Decimal]:
    """Asset id to units held in one portfolio at the end of `as_of`, for the assets it holds or has held."""
    return _positions(as_of, portfolio_id=portfolio_id)


def positions_of(*, portfolio_ids: Iterable[int]) -> dict[int, dict[int, Decimal]]:
    """`portfolio_positions` (now) of several portfolios at once: portfolio id to asset id to units, in two queries
    however many portfolios (their allocations' splits, then one aggregate); portfolios with no allocation absent."""
    allocations = Allocation.objects.filter(portfolio_id__in=list(portfolio_ids))
    book = SplitBook.of(allocations.values("asset_id"))
    rows = (
        allocations.values("portfolio_id", "asset_id")
        .annotate(q=ExactSum(scaled_signed_quantity(book)))
        .order_by("portfolio_id", "asset_id")
    )
    found: dict[int, dict[int, Decimal]] = {}
    for row in rows:
        found.setdefault(row["portfolio_id"], {})[row["asset_id"]] = book.units(
            row["asset_id"], row["q"], datetime.date.max
        )
    return found


def latest_prices(*, asset_ids: Iterable[int], as_of: datetime.date | None = None) -> list[dict[str, Any]]:
    """Each of the assets (those that exist, by id) with its latest close on or before `as_of` (ever, when None)
    and that close's date; both None for an asset with no price yet. One query however many assets: a
    correlated subquery per column, each answered by the (asset, date) unique index, on every database."""
    prices = Price.objects.filter(asset_id=OuterRef("pk"))
    if as_of is not None:
        prices = prices.filter(date__lte=as_of)
    latest = prices.order_by("-date")[:1]
    rows = (
        Asset.objects.filter(pk__in=asset_ids)
        .annotate(price_date=Subquery(latest.values("date")), price_close=Subquery(latest.values("close")))
        .order_by("pk")
        .values("pk", "ticker", "exchange", "currency", "price_date", "price_close")
    )
    return [dict(row) for row in rows]


def asset_holders(*, allocations: QuerySet[Allocation], asset_id: int, as_of: datetime.date) -> list[dict[str, Any]]:
    """The portfolios among `allocations` (the caller's visible ones: the door scopes them) that hold units of the
    asset at the end of `as_of`, with their client, in one aggregate query.

    The positive-position filter runs here, not in SQL: on SQLite the exact sum is text (see `ExactSum`), which
    SQL would compare as text. The rows are one per portfolio that ever held the asset by then."""
    book = SplitBook.of([asset_id])
    rows = (
        allocations.filter(asset_id=asset_id, date__lte=as_of)
        .values("portfolio_id", "portfolio__name", "client_id", "client__name")
        .annotate(units=ExactSum(scaled_signed_quantity(book)))
        .order_by("client__name", "portfolio__name", "portfolio_id", "client_id")
    )
    holders = []
    for row in rows:
        units = book.units(asset_id, row["units"], as_of)
        if units > 0:
            holders.append(
                {
                    "portfolio": row["portfolio_id"],
                    "portfolio_name": row["portfolio__name"],
                    "client": row["client_id"],
                    "client_name": row["client__name"],
                    "quantity": units,
                }
            )
    return holders


@dataclass(frozen=True)
class DailyValue:
    """One day of a portfolio's daily value table (see holdings.models.PortfolioDailyValue), in base currency."""

    date: datetime.date
    holdings_value: Decimal
    cash_value: Decimal
    value: Decimal
    inflow: Decimal
    outflow: Decimal
    transfers_in: Decimal
    transfers_out: Decimal
    complete: bool
    missing: dict[str, list[Any]]


def daily_values(*, portfolio_id: int, start: datetime.date, end: datetime.date) -> list[DailyValue]:
    """The portfolio's daily values from `start` to `end`, in date order (no rows before its first movement).

    Never stale: when the portfolio's history changed on or before `end` (or the table stops short of it), the
    table is refreshed first, through `end` or today, whichever is later. Until the job queue exists that refresh
    runs here, on read, and from `manage.py refresh_daily_values`; then a job will usually have done it already.
    """
    return daily_values_of(portfolio_ids=[portfolio_id], start=start, end=end)[portfolio_id]


def daily_values_of(
    *, portfolio_ids: list[int], start: datetime.date, end: datetime.date
) -> dict[int, list[DailyValue]]:
    """`daily_values` for several portfolios at once (a client's): one staleness check, one refresh of the stale
    ones together, one read, however many portfolios. Portfolios without rows map to an empty list."""
    from .services import daily_values_refresh  # the services read this module: imported when first needed

    until = max(end, timezone.localdate())
    if Portfolio.objects.filter(pk__in=portfolio_ids, history_changed_from__lte=end).exists():
        daily_values_refresh(portfolio_ids=portfolio_ids, until=until)
    found: dict[int, list[DailyValue]] = {pk: [] for pk in portfolio_ids}
    rows = PortfolioDailyValue.objects.filter(portfolio_id__in=portfolio_ids, date__range=(start, end)).order_by(
        "portfolio_id", "date"
    )
    for row in rows:
        found[row.portfolio_id].append(
            DailyValue(
                date=row.date,
                holdings_value=row.holdings_value,
                cash_value=row.cash_value,
                value=row.value,
                inflow=row.inflow,
                outflow=row.outflow,
                transfers_in=row.transfers_in,
                transfers_out=row.transfers_out,
                complete=row.complete,
                missing=row.missing,
            )
        )
    return found
