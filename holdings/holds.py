"""Unit holds: units of an asset in a portfolio set aside under an opaque reference its holder chose ("order:42");
holdings knows nothing of what they are for. The rule is `holdings.selectors.units_shortfalls`'s: from today on a
portfolio's units of an asset stay at or above its holds of it; `holdings.selectors.units_free` is what that rule
leaves to sell, move out or hold. Every write locks the hold's portfolio first, as every movement does."""

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from clients.models import Portfolio
from clients.services import CLOSED, portfolio_lock
from portfolio_site.errors import ConflictError, InsufficientUnits

from .models import Asset, UnitHold
from .selectors import unit_hold_quantity, units_free, units_on_hold

HOLD_TAKEN = "Reference {reference!r} already holds units."
NO_HOLD = "No units are on hold under reference {reference!r}."


def _unit_hold_check(*, portfolio: Portfolio, asset: Asset, needed: Decimal, reference: str) -> None:
    """InsufficientUnits unless the portfolio's free units of the asset cover `needed` more on hold. Inside the
    portfolio's lock."""
    available = units_free(portfolio_id=portfolio.pk, asset_id=asset.pk)
    if needed <= available:
        return
    on_hold = units_on_hold(portfolio_id=portfolio.pk).get(asset.pk, Decimal("0"))
    raise InsufficientUnits(
        f"Not enough units of {asset} in {portfolio}: the hold {reference} needs {needed - available} more than the "
        f"{available} available ({on_hold} on hold).",
        asset=asset,
        needed=needed,
        available=available,
        field="quantity",
    )


def _positive_quantity(quantity: Decimal, *, zero_allowed: bool = False) -> None:
    if (
        not isinstance(quantity, Decimal)
        or not quantity.is_finite()
        or quantity < 0
        or (quantity == 0 and not zero_allowed)
    ):
        raise ValidationError({"quantity": "A hold's quantity must be greater than zero."})


@transaction.atomic
def unit_hold_place(*, actor: Any, portfolio_id: int, asset_id: int, quantity: Decimal, reference: str) -> UnitHold:
    """Puts `quantity` units (today's) of an asset on hold in a portfolio under `reference` (unique across holds).

    InsufficientUnits (a ConflictError naming what is missing) when the portfolio's free units of the asset
    (`holdings.selectors.units_free`) are fewer than `quantity`; ConflictError when `reference` already holds units
    or the portfolio is closed; ValidationError for a quantity that is not positive or an unknown asset."""
    _positive_quantity(quantity)
    portfolio = portfolio_lock(actor=actor, portfolio_id=portfolio_id)
    asset = Asset.objects.filter(pk=asset_id).first()
    if asset is None:
        raise ValidationError({"asset": "Unknown asset."})
    if UnitHold.objects.filter(reference=reference).exists():
        raise ConflictError(HOLD_TAKEN.format(reference=reference), field="reference")
    hold = UnitHold(
        client_id=portfolio.client_id,
        portfolio=portfolio,
        asset=asset,
        quantity=quantity,
        as_of=timezone.localdate(),
        reference=reference,
    )
    hold.full_clean()
    _unit_hold_check(portfolio=portfolio, asset=asset, needed=hold.quantity, reference=reference)
    try:
        with transaction.atomic():  # another portfolio's writer may take the reference meanwhile
            hold.save()
    except IntegrityError:
        raise ConflictError(HOLD_TAKEN.format(reference=reference), field="reference") from None
    return hold


def _locked_hold(*, actor: Any, reference: str) -> UnitHold | None:
    """The hold under `reference`, its portfolio locked first (None if there is none once the lock is held)."""
    portfolio_id = UnitHold.objects.filter(reference=reference).values_list("portfolio_id", flat=True).first()
    if portfolio_id is None:
        return None
    portfolio = portfolio_lock(actor=actor, portfolio_id=portfolio_id, for_movement=False)
    hold = UnitHold.objects.select_related("asset").filter(reference=reference, portfolio_id=portfolio_id).first()
    if hold is not None:
        hold.portfolio = portfolio
    return hold


@transaction.atomic
def unit_hold_resize(*, actor: Any, reference: str, quantity: Decimal) -> UnitHold | None:
    """Changes the units on hold under `reference` to `quantity`, in today's units (0 releases it: None). Growing is
    checked as placing is (InsufficientUnits for the growth); shrinking always succeeds. ConflictError when nothing
    is on hold under `reference`."""
    _positive_quantity(quantity, zero_allowed=True)
    hold = _locked_hold(actor=actor, reference=reference)
    if hold is None:
        raise ConflictError(NO_HOLD.format(reference=reference), field="reference")
    if quantity == 0:
        hold.delete()
        return None
    growth = quantity - unit_hold_quantity(reference=reference)
    if growth > 0:
        if not hold.portfolio.is_open:
            raise ConflictError(CLOSED.format(portfolio=hold.portfolio), field="portfolio")
        _unit_hold_check(portfolio=hold.portfolio, asset=hold.asset, needed=growth, reference=reference)
    hold.quantity = quantity
    hold.as_of = timezone.localdate()
    hold.full_clean()
    hold.save()
    return hold


@transaction.atomic
def unit_hold_release(*, actor: Any, reference: str) -> bool:
    """Takes the units under `reference` off hold: whether there were any (releasing twice is harmless)."""
    hold = _locked_hold(actor=actor, reference=reference)
    if hold is None:
        return False
    hold.delete()
    return True
