"""Positions as a fold over a portfolio's movements, one asset at a time, in a documented order.

Pure: no database. The events come from `holdings.valuation.load`; rates from anything with a RateBook's
`rate(base, quote, on)`.

Same-day order: a day's movements are applied in `SAME_DAY_ORDER` (increases before decreases: transfers in,
buys, then sells, transfers out), then by id. The services check units at the end of each day, so a sell may
use a buy of the same day: increases first makes that so whatever order they were typed in. Event kinds added
later take their place in that tuple, and their handler in `Holding.apply`.

Splits: a split (holdings.Split) is an event of every portfolio that held the asset before its day, first of its
day (it takes effect at the start of it: that day's movements are in new units). It scales the units and each lot's
units by new/old and leaves every cost as it was: per-unit cost scales by old/new, value (units x the unadjusted
close) is continuous. Being an event of the fold, and never a change to any allocation, a split is applied once
however often a position is recomputed. A lot keeps its acquisition day across a split.

A trade's taxes count as its fees do: a buy's are part of what the units cost (a stamp duty or a transaction tax
is paid to acquire them, and tax rules add it to the acquisition cost), a sell's reduce its proceeds, so that the
realized gain is what the round trip left in cash. A dividend moves no units and no cost (its cash is the ledger's,
valued as cash), so it is no event of this fold.

Cost is carried in the asset's currency and, at the same time, in the valuation currency at each movement's own
day's rate, so that a valuation can split its unrealized gain into a price and a currency effect.
"""

import datetime
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from decimal import Decimal, localcontext
from typing import Any, Protocol

from ..fx import MissingRate, Rate
from ..models import AllocationKind

SPLIT = "split"
SAME_DAY_ORDER: tuple[str, ...] = (
    SPLIT,
    AllocationKind.TRANSFER_IN,
    AllocationKind.BUY,
    AllocationKind.SELL,
    AllocationKind.TRANSFER_OUT,
)
_RANK = {kind: rank for rank, kind in enumerate(SAME_DAY_ORDER)}

AVERAGE, FIFO = "average", "fifo"
COST_METHODS = (AVERAGE, FIFO)
ZERO = Decimal(0)
# Cost shares are quotients: enough digits that rounding them never shows in a presented amount.
PRECISION = 50


class Rates(Protocol):
    def rate(self, base: str, quote: str, on: datetime.date) -> Rate: ...


@dataclass(frozen=True)
class Event:
    """One movement of units. `price` is what the units are valued at: the recorded price, or for a transfer in
    recorded at 0, the asset's close on that day (`close_on_day`, None when there was none). A SPLIT event carries
    its (new units, old units) in `ratio` (its id is the split's); quantity, price and fees are 0."""

    id: int
    portfolio_id: int
    asset_id: int
    currency: str
    kind: str
    date: datetime.date
    quantity: Decimal
    price: Decimal
    fees: Decimal
    close_on_day: Decimal | None = None
    taxes: Decimal = Decimal(0)
    ratio: tuple[Decimal, Decimal] | None = None  # a split's (new, old)

    @property
    def order(self) -> tuple[datetime.date, int, int]:
        return (self.date, _RANK[self.kind], self.id)


@dataclass
class Lot:
    quantity: Decimal
    cost: Decimal  # asset currency
    cost_value: Decimal  # valuation currency, at the rate of the day it came in
    # The day its units came in (for an average pool: the day the position was last opened from zero).
    acquired: datetime.date | None = None

    def scaled(self, factor: Decimal) -> "Lot":
        return Lot(self.quantity * factor, self.cost, self.cost_value, self.acquired)


class AverageCost:
    """Moving average: one pool; a decrease takes its share of the pool's cost, so the average is unchanged."""

    def __init__(self) -> None:
        self.pool = Lot(ZERO, ZERO, ZERO)
        self.taken: list[Lot] = []  # what the last `remove` took, for a report of the sale

    @property
    def lots(self) -> list[Lot]:
        return [self.pool] if self.pool.quantity else []

    @property
    def kept(self) -> list[Lot]:
        """The book's whole state (the pool, even empty: a crumb of cost may sit in it)."""
        return [self.pool]

    def restore(self, kept: list[Lot]) -> None:
        (self.pool,) = kept

    def add(self, lot: Lot) -> None:
        acquired = self.pool.acquired if self.pool.quantity > 0 else lot.acquired
        self.pool = Lot(
            self.pool.quantity + lot.quantity,
            self.pool.cost + lot.cost,
            self.pool.cost_value + lot.cost_value,
            acquired,
        )

    def scale(self, factor: Decimal) -> None:
        self.pool = self.pool.scaled(factor)

    def remove(self, quantity: Decimal) -> tuple[Decimal, Decimal]:
        pool = self.pool
        if pool.quantity <= 0:
            self.pool = Lot(pool.quantity - quantity, ZERO, ZERO)
            self.taken = []
            return ZERO, ZERO
        if quantity >= pool.quantity:
            # All of it: exactly the remaining cost, not a quotient that leaves a crumb behind.
            self.pool = Lot(pool.quantity - quantity, ZERO, ZERO)
            self.taken = [pool]
            return pool.cost, pool.cost_value
        share = quantity / pool.quantity
        cost, cost_value = pool.cost * share, pool.cost_value * share
        self.pool = Lot(pool.quantity - quantity, pool.cost - cost, pool.cost_value - cost_value, pool.acquired)
        self.taken = [Lot(quantity, cost, cost_value, pool.acquired)]
        return cost, cost_value


class FifoLots:
    """First in, first out: a decrease takes the oldest lots' units at their own cost."""

    def __init__(self) -> None:
        self.queue: deque[Lot] = deque()
        self.taken: list[Lot] = []  # what the last `remove` took, lot by lot, for a report of the sale

    @property
    def lots(self) -> list[Lot]:
        return list(self.queue)

    @property
    def kept(self) -> list[Lot]:
        return list(self.queue)

    def restore(self, kept: list[Lot]) -> None:
        self.queue = deque(kept)

    def add(self, lot: Lot) -> None:
        self.queue.append(lot)

    def scale(self, factor: Decimal) -> None:
        self.queue = deque(lot.scaled(factor) for lot in self.queue)

    def remove(self, quantity: Decimal) -> tuple[Decimal, Decimal]:
        cost = cost_value = ZERO
        left = quantity
        self.taken = []
        while left > 0 and self.queue:
            lot = self.queue[0]
            if left >= lot.quantity:
                self.queue.popleft()
                self.taken.append(lot)
                cost, cost_value, left = cost + lot.cost, cost_value + lot.cost_value, left - lot.quantity
                continue
            share = left / lot.quantity
            taken, taken_value = lot.cost * share, lot.cost_value * share
            self.queue[0] = Lot(lot.quantity - left, lot.cost - taken, lot.cost_value - taken_value, lot.acquired)
            self.taken.append(Lot(left, taken, taken_value, lot.acquired))
            cost, cost_value, left = cost + taken, cost_value + taken_value, ZERO
        # Units beyond those held (which the services' rule forbids) leave at no cost rather than crash a report.
        return cost, cost_value


@dataclass
class Holding:
    """One asset in one portfolio after the fold: units, their cost, and the gain realized to date, in the asset's
    currency and in the valuation currency. `missing` lists the rates the fold needed and could not find: the
    valuation-currency figures are then incomplete and a valuation leaves the holding out of its totals."""

    portfolio_id: int
    asset_id: int
    currency: str
    book: AverageCost | FifoLots
    quantity: Decimal = ZERO
    realized: Decimal = ZERO
    realized_value: Decimal = ZERO
    missing: list[MissingRate] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # When a list (holdings.realized asks for it): each sell as it was folded, with the lots it took.
    sales: list["Sale"] | None = None

    @property
    def cost(self) -> Decimal:
        return sum((lot.cost for lot in self.book.lots), ZERO)

    @property
    def cost_value(self) -> Decimal:
        return sum((lot.cost_value for lot in self.book.lots), ZERO)

    def apply(self, event: Event, *, rates: Rates, currency: str) -> None:
        if event.kind == SPLIT:
            # No rate: a split moves no money. Quantities scale; costs stay.
            if event.ratio is None:  # pragma: no cover - load.py always gives one
                raise ValueError(f"Split event #{event.id} has no ratio.")
            new, old = event.ratio
            factor = new / old
            self.book.scale(factor)
            self.quantity *= factor
            return
        rate = self._rate(rates, currency, event.date)
        if event.kind in (AllocationKind.BUY, AllocationKind.TRANSFER_IN):
            price = event.price
            if event.kind == AllocationKind.TRANSFER_IN and price == 0:
                price = self._close_for_transfer(event)
            cost = event.quantity * price + event.fees + event.taxes
            self.book.add(Lot(event.quantity, cost, cost * rate, event.date))
            self.quantity += event.quantity
        elif event.kind == AllocationKind.SELL:
            cost, cost_value = self.book.remove(event.quantity)
            proceeds = event.quantity * event.price - event.fees - event.taxes
            self.realized += proceeds - cost
            # The gain in the valuation currency counts the rate's move since purchase: proceeds at the sell
            # day's rate, cost at each lot's own.
            self.realized_value += proceeds * rate - cost_value
            self.quantity -= event.quantity
            if self.sales is not None:
                self.sales.append(Sale(event, proceeds, cost, proceeds * rate, cost_value, rate, self.book.taken))
        elif event.kind == AllocationKind.TRANSFER_OUT:
            # The units leave at their cost: nothing is sold, so nothing is realized (fees of a transfer move no
            # cash and are not counted).
            self.book.remove(event.quantity)
            self.quantity -= event.quantity
        else:  # pragma: no cover - a kind without a handler is a programming error
            raise ValueError(f"No rule to fold a {event.kind!r} event.")

    def _rate(self, rates: Rates, currency: str, on: datetime.date) -> Decimal:
        try:
            return rates.rate(self.currency, currency, on).rate
        except MissingRate as missing:
            self.missing.append(missing)
            return ZERO

    def state(self) -> dict[str, Any]:
        """Everything the fold carries for this holding, as JSON (decimals as strings): what
        `holdings.valuation.snapshot` stores so that a read needs no fold. `Holding.from_state` gives it back
        equal. A field added to the fold's state must be added here and there (a test compares the fields)."""
        return {
            "currency": self.currency,
            "lots": [
                [str(lot.quantity), str(lot.cost), str(lot.cost_value), lot.acquired and lot.acquired.isoformat()]
                for lot in self.book.kept
            ],
            "quantity": str(self.quantity),
            "realized": str(self.realized),
            "realized_value": str(self.realized_value),
            "missing": [[each.base, each.quote, each.on.isoformat()] for each in self.missing],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_state(cls, portfolio_id: int, asset_id: int, method: str, state: dict[str, Any]) -> "Holding":
        book = _book(method)
        # Put back as they were, not added up again (a sum would round them to the default context's digits).
        book.restore(
            [
                Lot(Decimal(q), Decimal(cost), Decimal(value), acquired and datetime.date.fromisoformat(acquired))
                for q, cost, value, acquired in state["lots"]
            ]
        )
        missing, warnings = cls.notes_from_state(state)
        return cls(
            portfolio_id,
            asset_id,
            state["currency"],
            book,
            quantity=Decimal(state["quantity"]),
            realized=Decimal(state["realized"]),
            realized_value=Decimal(state["realized_value"]),
            missing=missing,
            warnings=warnings,
        )

    @staticmethod
    def notes_from_state(state: dict[str, Any]) -> tuple[list[MissingRate], list[str]]:
        """The missing rates and warnings of a stored state."""
        missing = [MissingRate(base, quote, datetime.date.fromisoformat(on)) for base, quote, on in state["missing"]]
        return missing, list(state["warnings"])

    def _close_for_transfer(self, event: Event) -> Decimal:
        if event.close_on_day is None:
            self.warnings.append(
                f"Transfer in #{event.id} on {event.date} was recorded at price 0 and no close was found on or "
                "before that day: its units came in at no cost."
            )
            return ZERO
        return event.close_on_day


@dataclass(frozen=True)
class Sale:
    """One sell as the fold applied it: proceeds (net of fees) and cost in the asset's currency and in the valuation
    currency (proceeds at the sale day's `rate`, cost at each lot's own), and the lots (or pool share) it took."""

    event: Event
    proceeds: Decimal
    cost: Decimal
    proceeds_value: Decimal
    cost_value: Decimal
    rate: Decimal
    lots: list[Lot]


def fold(
    events: Iterable[Event], *, method: str, rates: Rates, currency: str, with_sales: bool = False
) -> dict[tuple[int, int], Holding]:
    """Each (portfolio id, asset id)'s holding after its events, applied in date and same-day order; cost by
    `method` (AVERAGE or FIFO), valuation-currency figures in `currency`; `with_sales` keeps each sell's detail
    (`Holding.sales`)."""
    if method not in COST_METHODS:
        raise ValueError(f"Unknown cost method {method!r}.")
    holdings: dict[tuple[int, int], Holding] = {}
    with localcontext() as context:
        context.prec = PRECISION
        for event in sorted(events, key=lambda e: (e.portfolio_id, e.asset_id, *e.order)):
            key = (event.portfolio_id, event.asset_id)
            holding = holdings.get(key)
            if holding is None:
                holding = holdings[key] = Holding(event.portfolio_id, event.asset_id, event.currency, _book(method))
                if with_sales:
                    holding.sales = []
            holding.apply(event, rates=rates, currency=currency)
    return holdings


def _book(method: str) -> AverageCost | FifoLots:
    return AverageCost() if method == AVERAGE else FifoLots()


# The Holding fields `Holding.state` carries (portfolio and asset are the snapshot row's keys, the book its lots;
# `sales` is a report's detail, kept only by a fold asked for it, never by a snapshot's: holdings.realized folds).
STATE_FIELDS = frozenset(f.name for f in fields(Holding)) - {"portfolio_id", "asset_id", "book", "sales"} | {"lots"}
# The Lot fields each of `Holding.state`'s lots carries, in order.
LOT_FIELDS = ("quantity", "cost", "cost_value", "acquired")
