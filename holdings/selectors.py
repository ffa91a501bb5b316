from decimal import Decimal

from portfolio_site.money import ExactSum, to_quantity

from .models import Allocation, signed_quantity


def position(*, client_id: int, asset_id: int) -> Decimal:
    """Units of an asset the client holds: the signed sum of the client's allocations in it."""
    total = Allocation.objects.filter(client_id=client_id, asset_id=asset_id).aggregate(q=ExactSum(signed_quantity()))[
        "q"
    ]
    return to_quantity(total if total is not None else Decimal("0"))


def client_positions(*, client_id: int) -> dict[int, Decimal]:
    """Asset id to units held, for the assets the client holds or has held."""
    rows = (
        Allocation.objects.filter(client_id=client_id)
        .values("asset_id")
        .annotate(q=ExactSum(signed_quantity()))
        .order_by("asset_id")
    )
    return {row["asset_id"]: to_quantity(row["q"]) for row in rows}
