import datetime
from decimal import Decimal

from portfolio_site.money import ExactSum, Shortfall, first_shortfall, to_quantity

from .models import Allocation, signed_quantity


def position(*, portfolio_id: int, asset_id: int, as_of: datetime.date | None = None) -> Decimal:
    """Units of an asset a portfolio holds at the end of `as_of` (now when None): the signed sum of the
    portfolio's allocations in it, by trade date."""
    allocations = Allocation.objects.filter(portfolio_id=portfolio_id, asset_id=asset_id)
    if as_of is not None:
        allocations = allocations.filter(date__lte=as_of)
    total = allocations.aggregate(q=ExactSum(signed_quantity()))["q"]
    return to_quantity(total if total is not None else Decimal("0"))


def units_shortfall(*, portfolio_id: int, asset_id: int, since: datetime.date) -> Shortfall | None:
    """The first day from `since` on at whose end the portfolio holds a negative number of units, if any: the
    same rule as cash (ledger.selectors.cash_shortfall), by trade date, set-based."""
    allocations = Allocation.objects.filter(portfolio_id=portfolio_id, asset_id=asset_id)
    opening = allocations.filter(date__lt=since).aggregate(q=ExactSum(signed_quantity()))["q"]
    daily = (
        allocations.filter(date__gte=since).values("date").annotate(net=ExactSum(signed_quantity())).order_by("date")
    )
    return first_shortfall(
        to_quantity(opening if opening is not None else Decimal("0")),
        ((row["date"], to_quantity(row["net"])) for row in daily),
    )


def _positions(as_of: datetime.date | None = None, **scope: int) -> dict[int, Decimal]:
    allocations = Allocation.objects.filter(**scope)
    if as_of is not None:
        allocations = allocations.filter(date__lte=as_of)
    rows = allocations.values("asset_id").annotate(q=ExactSum(signed_quantity())).order_by("asset_id")
    return {row["asset_id"]: to_quantity(row["q"]) for row in rows}


def client_positions(*, client_id: int, as_of: datetime.date | None = None) -> dict[int, Decimal]:
    """Asset id to units held by the client as a whole (its portfolios together) at the end of `as_of`, for the
    assets it holds or has held."""
    return _positions(as_of, client_id=client_id)


def portfolio_positions(*, portfolio_id: int, as_of: datetime.date | None = None) -> dict[int, Decimal]:
    """Asset id to units held in one portfolio at the end of `as_of`, for the assets it holds or has held."""
    return _positions(as_of, portfolio_id=portfolio_id)
