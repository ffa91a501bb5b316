"""How splits scale units, for every reader that sums allocations' quantities.

A split is never written into the allocations: a movement's quantity stays in the units of its own day, and a
split recorded on day s turns every `old` units held before s into `new` units from the start of s on (movements
dated s are already in new units). The units held at the end of day d are therefore

    sum over movements up to d of  quantity x (product of new/old over the splits after the movement's day, up to d)

Summing that in SQL needs no product aggregate: each movement's quantity is multiplied by its day's *scale*

    K(day) = (product of `old` over the asset's splits on or before day) x (product of `new` over those after it)

a positive constant per asset and period (no division, so exact in numeric), and the sum divided by K(d) once:
`scaled sum / K(d)` is the units held at the end of d. A scaled sum has the sign of the units, so a check for a
negative position (`holdings.selectors.units_shortfalls`) needs no division at all. With no split recorded for the
assets read, every expression here is the plain signed quantity: the queries are those of a project without
splits.
"""

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

from django.db import models
from django.db.models import Case, Expression, ExpressionWrapper, QuerySet, Value, When

from portfolio_site.money import QUANTITY_DIGITS, to_quantity

from .models import Split, signed_quantity

ONE = Decimal(1)
# Scales are products of ratios: wide enough for any realistic chain of splits on one asset.
SCALE_DIGITS = 2 * QUANTITY_DIGITS + 20


@dataclass(frozen=True)
class Step:
    date: datetime.date
    new: Decimal
    old: Decimal


class SplitBook:
    """The splits of a set of assets, by asset in date order."""

    def __init__(self, steps: dict[int, list[Step]]) -> None:
        self.steps = {asset_id: sorted(found, key=lambda step: step.date) for asset_id, found in steps.items()}

    @classmethod
    def of(cls, asset_ids: "Iterable[int] | QuerySet[Any] | None" = None) -> "SplitBook":
        """One query: the splits of `asset_ids` (ids, or a subquery of them; of every asset when None)."""
        splits = Split.objects.all()
        if isinstance(asset_ids, QuerySet):
            splits = splits.filter(asset_id__in=asset_ids)
        elif asset_ids is not None:
            splits = splits.filter(asset_id__in=sorted(set(asset_ids)))
        steps: dict[int, list[Step]] = {}
        for asset_id, day, new, old in splits.order_by("asset_id", "date").values_list(
            "asset_id", "date", "new_units", "old_units"
        ):
            steps.setdefault(asset_id, []).append(Step(day, new, old))
        return cls(steps)

    def __bool__(self) -> bool:
        return bool(self.steps)

    def scale(self, asset_id: int, day: datetime.date) -> Decimal:
        """K(day) for the asset (see the module's docstring); 1 for an asset without splits."""
        with localcontext() as context:
            context.prec = SCALE_DIGITS
            scale = ONE
            for step in self.steps.get(asset_id, ()):
                scale *= step.old if step.date <= day else step.new
            return scale

    def factor(self, asset_id: int, *, after: datetime.date, through: datetime.date) -> Decimal:
        """What one unit held at the end of `after` has become at the end of `through`."""
        with localcontext() as context:
            context.prec = SCALE_DIGITS
            return self.scale(asset_id, after) / self.scale(asset_id, through)

    def units(self, asset_id: int, scaled: Decimal, day: datetime.date) -> Decimal:
        """A scaled sum as the units held at the end of `day`, rounded to the quantity's places."""
        if asset_id not in self.steps:
            return to_quantity(scaled)
        with localcontext() as context:
            context.prec = SCALE_DIGITS
            return to_quantity(scaled / self.scale(asset_id, day))

    def periods(self) -> list[tuple[int, datetime.date, datetime.date, Decimal]]:
        """(asset id, first day, day after the last, K) of every period between an asset's splits: K as a table."""
        found = []
        for asset_id, steps in self.steps.items():
            bounds = [datetime.date.min, *(step.date for step in steps), datetime.date.max]
            for period in range(len(steps) + 1):
                found.append((asset_id, bounds[period], bounds[period + 1], self._value(asset_id, period).value))
        return found

    def scale_expression(self, *, asset: str = "asset_id", date: str = "date") -> Expression | None:
        """K of each row's asset and day as SQL (None when no asset has a split): one CASE, its branches per asset
        in date order, so the first that matches is the row's period."""
        whens: list[When] = []
        for asset_id, steps in self.steps.items():
            for index, step in enumerate(steps):
                whens.append(When(**{asset: asset_id, f"{date}__lt": step.date}, then=self._value(asset_id, index)))
            whens.append(When(**{asset: asset_id}, then=self._value(asset_id, len(steps))))
        if not whens:
            return None
        return Case(*whens, default=Value(ONE, output_field=_scale_field()), output_field=_scale_field())

    def _value(self, asset_id: int, period: int) -> Value:
        """K of the period before the asset's `period`-th split (after the last when `period` is their number)."""
        with localcontext() as context:
            context.prec = SCALE_DIGITS
            scale = ONE
            for index, step in enumerate(self.steps[asset_id]):
                scale *= step.old if index < period else step.new
        return Value(scale, output_field=_scale_field())


def _scale_field() -> models.DecimalField:
    return models.DecimalField(max_digits=SCALE_DIGITS, decimal_places=QUANTITY_DIGITS)


def scaled_signed_quantity(book: SplitBook) -> Expression:
    """An allocation's signed quantity times its day's scale: what `ExactSum` adds to count splits. The plain signed
    quantity when `book` holds no split."""
    scale = book.scale_expression()
    if scale is None:
        return signed_quantity()
    return ExpressionWrapper(signed_quantity() * scale, output_field=_scale_field())
