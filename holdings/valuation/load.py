"""What a valuation reads, each in one query whatever the number of movements, assets or days."""

import datetime
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Case, F, OuterRef, QuerySet, Subquery, Value, When

from portfolio_site.money import quantity_field

from ..models import Allocation, Asset, Price
from .fold import SPLIT, ZERO, Event


def events(*, portfolio_ids: Collection[int], as_of: datetime.date) -> list[Event]:
    """The portfolios' movements up to the end of `as_of`, each with its asset's currency and, for a transfer in
    recorded at price 0, the asset's latest close on or before its day (a correlated subquery, not a query per
    transfer)."""
    close_on_day = (
        Price.objects.filter(asset_id=OuterRef("asset_id"), date__lte=OuterRef("date"))
        .order_by("-date")
        .values("close")[:1]
    )
    rows = (
        Allocation.objects.filter(portfolio_id__in=portfolio_ids, date__lte=as_of)
        .annotate(
            close_on_day=Case(
                When(kind=Allocation.Kind.TRANSFER_IN, price=0, then=Subquery(close_on_day)),
                default=Value(None),
                output_field=quantity_field(),
            )
        )
        .order_by("date", "id")
        .values_list(
            "id",
            "portfolio_id",
            "asset_id",
            "asset__currency",
            "kind",
            "date",
            "quantity",
            "price",
            "fees",
            "close_on_day",
            "taxes",
        )
    )
    return [Event(*row) for row in rows] + split_events(portfolio_ids=portfolio_ids, as_of=as_of)


def split_events(*, portfolio_ids: Collection[int], as_of: datetime.date) -> list[Event]:
    """A SPLIT event per split of an asset up to `as_of` and per portfolio with a movement in the asset before the
    split's day (one query: the splits joined to those movements): a portfolio that first bought on or after the
    split's day bought new units and has nothing to scale."""
    rows = (
        Allocation.objects.filter(
            portfolio_id__in=portfolio_ids, asset__splits__date__gt=F("date"), asset__splits__date__lte=as_of
        )
        .order_by()
        .values_list(
            "portfolio_id",
            "asset_id",
            "asset__currency",
            "asset__splits__id",
            "asset__splits__date",
            "asset__splits__new_units",
            "asset__splits__old_units",
        )
        .distinct()
    )
    return [
        Event(split_id, portfolio_id, asset_id, currency, SPLIT, day, ZERO, ZERO, ZERO, ratio=(new, old))
        for portfolio_id, asset_id, currency, split_id, day, new, old in rows
    ]


@dataclass(frozen=True)
class AssetQuote:
    """An asset as a valuation shows it, with its latest close on or before the valuation day (None if none)."""

    id: int
    ticker: str
    name: str
    currency: str
    close: Decimal | None
    date: datetime.date | None


def quotes(*, asset_ids: Collection[int] | QuerySet[Any], as_of: datetime.date) -> dict[int, AssetQuote]:
    """Each asset (ids, or a query of them: a long list of ids costs more to send than to look up) with its
    latest close on or before `as_of`: one query (two correlated subqueries on the (asset, date) unique index),
    not one per asset."""
    if isinstance(asset_ids, Collection) and not asset_ids:
        return {}
    latest = Price.objects.filter(asset_id=OuterRef("pk"), date__lte=as_of).order_by("-date")
    rows = (
        Asset.objects.filter(pk__in=asset_ids)
        .order_by()
        .annotate(close=Subquery(latest.values("close")[:1]), close_date=Subquery(latest.values("date")[:1]))
        .values_list("id", "ticker", "name", "currency", "close", "close_date")
    )
    return {row[0]: AssetQuote(*row) for row in rows}
