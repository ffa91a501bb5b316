from decimal import Decimal

from portfolio_site.money import ExactSum, to_quantity

from .models import Allocation, signed_quantity


def position(*, portfolio_id: int, asset_id: int) -> Decimal:
    """Units of an asset a portfolio holds: the signed sum of the portfolio's allocations in it."""
    total = Allocation.objects.filter(portfolio_id=portfolio_id, asset_id=asset_id).aggregate(
        q=ExactSum(signed_quantity())
    )["q"]
    return to_quantity(total if total is not None else Decimal("0"))


def _positions(**scope: int) -> dict[int, Decimal]:
    rows = (
        Allocation.objects.filter(**scope)
        .values("asset_id")
        .annotate(q=ExactSum(signed_quantity()))
        .order_by("asset_id")
    )
    return {row["asset_id"]: to_quantity(row["q"]) for row in rows}


def client_positions(*, client_id: int) -> dict[int, Decimal]:
    """Asset id to units held by the client as a whole (its portfolios together), for the assets it holds or
    has held."""
    return _positions(client_id=client_id)


def portfolio_positions(*, portfolio_id: int) -> dict[int, Decimal]:
    """Asset id to units held in one portfolio, for the assets it holds or has held."""
    return _positions(portfolio_id=portfolio_id)
