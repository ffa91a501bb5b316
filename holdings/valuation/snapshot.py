"""Position snapshots (holdings.PositionSnapshot): the fold's state after all of a portfolio's movements, kept so
that a valuation as of a day on or after the last movement reads each holding in one query instead of folding
every movement again.

A snapshot is current while its `data_version` is the portfolio's: every write that can change a fold (movements,
prices of what the portfolio holds, rates) bumps the portfolio's through `clients.services.portfolios_history_changed`.
A reader that finds none current refolds the portfolio's movements (all of them: the fold is the one of
`holdings.valuation.fold`, not restated here) and stores the result for the readers after it. A valuation as of a
day before the last movement, and a portfolio whose snapshot a write made stale meanwhile, are folded as before.
"""

import datetime
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Case, F, JSONField, Max, OuterRef, QuerySet, Subquery, Value, When

from ledger.models import Transaction, effective_date, signed_amount
from portfolio_site.money import ExactSum, to_amount

from ..fx import MissingRate, RateBook
from ..models import Allocation, Asset, PositionSnapshot, PositionState, Price
from . import load
from .fold import Holding, fold


@dataclass(slots=True)
class StoredHolding:
    """A holding as its snapshot row gives it to a valuation: the figures of the fold's `Holding` (`cost` and
    `cost_value` as its properties sum its lots), without the book of lots a read does not need."""

    portfolio_id: int
    asset_id: int
    currency: str
    quantity: Decimal
    cost: Decimal
    cost_value: Decimal
    realized: Decimal
    realized_value: Decimal
    missing: list[MissingRate]
    warnings: list[str]


def current(*, portfolio_ids: Collection[int], cost_method: str, currency: str) -> dict[int, PositionSnapshot]:
    """{portfolio id: snapshot} of the portfolios whose snapshot is current (one query)."""
    rows = PositionSnapshot.objects.filter(
        portfolio_id__in=portfolio_ids,
        cost_method=cost_method,
        currency=currency,
        data_version=F("portfolio__data_version"),
    ).only("pk", "portfolio_id", "last_movement", "cash", "cash_through")
    return {snapshot.portfolio_id: snapshot for snapshot in rows}


@dataclass
class Read:
    """What `holdings_as_of` found: the holdings read from snapshots, their assets' quotes as of the day (or the
    query of the assets' ids when a stored close is not that day's), each served portfolio's cash when its stored
    balances are that day's, and the portfolios the caller must fold."""

    holdings: list["StoredHolding"]
    assets: QuerySet[Any]
    to_fold: list[int]
    quotes: dict[int, load.AssetQuote] | None = None
    cash: dict[int, dict[str, Decimal]] = field(default_factory=dict)


def holdings_as_of(*, portfolio_ids: Collection[int], cost_method: str, currency: str, as_of: datetime.date) -> Read:
    """The holdings of the portfolios whose current snapshot holds every movement up to `as_of` (refreshing the
    stale ones first when that would make them so), and the ids of the others, which the caller folds. Two
    queries when the snapshots are current: the snapshots (with their cash), then their holdings joined to their
    assets (with the closes stored)."""
    found = current(portfolio_ids=portfolio_ids, cost_method=cost_method, currency=currency)
    stale = [pk for pk in portfolio_ids if pk not in found]
    if stale:
        # A snapshot holds every movement: one with movements after `as_of` would not serve this read, and a
        # refresh for it would be a fold spent for nothing (the next read as of a later day refreshes it).
        later = set(
            Allocation.objects.filter(portfolio_id__in=stale, date__gt=as_of)
            .order_by()
            .values_list("portfolio_id", flat=True)
            .distinct()
        )
        if refresh := [pk for pk in stale if pk not in later]:
            from ..services import position_snapshots_refresh  # the services read this module

            position_snapshots_refresh(portfolio_ids=refresh, cost_method=cost_method, currency=currency)
            found = current(portfolio_ids=portfolio_ids, cost_method=cost_method, currency=currency)
    usable = {
        snapshot.pk: snapshot
        for snapshot in found.values()
        if snapshot.last_movement is None or snapshot.last_movement <= as_of
    }
    states = PositionState.objects.filter(snapshot_id__in=list(usable))
    # The figures as text, decoded here; the state (JSON) only of the rows that list missing rates or warnings.
    rows = states.annotate(
        notes=Case(When(noted=True, then=F("state")), default=Value(None), output_field=JSONField())
    ).values_list(
        "snapshot_id",
        "asset_id",
        "units",
        "cost",
        "cost_value",
        "realized",
        "realized_value",
        "notes",
        "close",
        "close_date",
        "asset__ticker",
        "asset__name",
        "asset__currency",
    )
    holdings: list[StoredHolding] = []
    quotes: dict[int, load.AssetQuote] | None = {}
    for (
        pk,
        asset_id,
        units,
        cost,
        cost_value,
        realized,
        realized_value,
        notes,
        close,
        close_date,
        ticker,
        name,
        asset_currency,
    ) in rows:
        holdings.append(
            StoredHolding(
                usable[pk].portfolio_id,
                asset_id,
                asset_currency,  # the fold's: an asset's currency is fixed once it has a movement
                Decimal(units),
                Decimal(cost),
                Decimal(cost_value),
                Decimal(realized),
                Decimal(realized_value),
                *(Holding.notes_from_state(notes) if notes is not None else ([], [])),
            )
        )
        if quotes is not None:
            if close_date is not None and close_date > as_of:
                quotes = None  # a close after the day: the latest on or before it is read as before
            else:
                quotes[asset_id] = load.AssetQuote(asset_id, ticker, name, asset_currency, close, close_date)
    cash = {
        snapshot.portfolio_id: {code: Decimal(amount) for code, amount in snapshot.cash.items()}
        for snapshot in usable.values()
        if snapshot.cash_through is None or snapshot.cash_through <= as_of
    }
    served = {snapshot.portfolio_id for snapshot in usable.values()}
    to_fold = [pk for pk in portfolio_ids if pk not in served]
    return Read(holdings, states.values("asset_id"), to_fold, quotes, cash)


def rebuild(*, versions: dict[int, int], cost_method: str, currency: str) -> None:
    """Folds all the movements of the portfolios of `versions` ({portfolio id: the data version read under its
    lock, before the movements}) and stores each one's snapshot in place. The caller holds the transaction and
    the portfolios' locks (`holdings.services.position_snapshots_refresh`)."""
    if not versions:
        return
    events = load.events(portfolio_ids=list(versions), as_of=datetime.date.max)
    rates = RateBook({currency, *(event.currency for event in events)}, until=datetime.date.max)
    folded = fold(events, method=cost_method, rates=rates, currency=currency)
    last: dict[int, datetime.date] = {}
    for event in events:
        last[event.portfolio_id] = max(event.date, last.get(event.portfolio_id, event.date))
    by_portfolio: dict[int, list[Holding]] = defaultdict(list)
    for (portfolio_id, _), holding in folded.items():
        by_portfolio[portfolio_id].append(holding)
    # Balances as the ledger's selectors give them (`ledger.selectors.portfolio_balances`: every transaction,
    # a reversal from its original's day, each currency's sum rounded by `to_amount`), and each held asset's
    # latest close: both are read under the same locks as the movements, and their writes bump the version too.
    cash: dict[int, dict[str, str]] = defaultdict(dict)
    cash_through: dict[int, datetime.date] = {}
    balances = (
        Transaction.objects.filter(portfolio_id__in=list(versions))
        .annotate(day=effective_date())
        .values("portfolio_id", "currency")
        .annotate(balance=ExactSum(signed_amount()), through=Max("day"))
        .order_by()
    )
    for row in balances:
        cash[row["portfolio_id"]][row["currency"]] = str(to_amount(row["balance"]))
        through = cash_through.get(row["portfolio_id"])
        cash_through[row["portfolio_id"]] = row["through"] if through is None else max(through, row["through"])
    latest = Price.objects.filter(asset_id=OuterRef("pk")).order_by("-date")
    closes = {
        asset_id: (close, day)
        for asset_id, close, day in Asset.objects.filter(pk__in={asset_id for _, asset_id in folded})
        .order_by()
        .annotate(close=Subquery(latest.values("close")[:1]), close_date=Subquery(latest.values("date")[:1]))
        .values_list("pk", "close", "close_date")
    }

    # Upserted in place, never deleted and created again: a reader that found a snapshot current a moment ago
    # reads its rows by the snapshot's id, and finds the old ones or the new ones, never none.
    upserted = PositionSnapshot.objects.bulk_create(
        [
            PositionSnapshot(
                portfolio_id=portfolio_id,
                cost_method=cost_method,
                currency=currency,
                data_version=version,
                last_movement=last.get(portfolio_id),
                cash=cash.get(portfolio_id, {}),
                cash_through=cash_through.get(portfolio_id),
            )
            for portfolio_id, version in versions.items()
        ],
        update_conflicts=True,
        unique_fields=["portfolio", "cost_method", "currency"],
        update_fields=["data_version", "last_movement", "cash", "cash_through"],
    )
    snapshots = {snapshot.portfolio_id: snapshot for snapshot in upserted}
    PositionState.objects.filter(snapshot__in=upserted).delete()
    PositionState.objects.bulk_create(
        [
            PositionState(
                snapshot=snapshots[portfolio_id],
                asset_id=holding.asset_id,
                quantity=holding.quantity,
                state=holding.state(),
                units=str(holding.quantity),
                cost=str(holding.cost),
                cost_value=str(holding.cost_value),
                realized=str(holding.realized),
                realized_value=str(holding.realized_value),
                noted=bool(holding.missing or holding.warnings),
                close=closes[holding.asset_id][0],
                close_date=closes[holding.asset_id][1],
            )
            for portfolio_id, holdings in by_portfolio.items()
            for holding in holdings
        ],
        batch_size=2000,
    )
