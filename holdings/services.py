"""Writes on assets, prices and allocations. A buy or sell settles in cash through the ledger's service."""

import datetime
from decimal import Decimal, localcontext
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from clients.models import Client
from clients.services import clients_lock
from ledger.services import settlement_post, settlement_reverse
from portfolio_site.cache import invalidate_namespace
from portfolio_site.errors import ConflictError
from portfolio_site.money import AMOUNT_DIGITS, AMOUNT_PLACES, QUANTITY_DIGITS, to_amount, validate_storable

from .models import Allocation, Asset, Price
from .selectors import position

ASSETS_CACHE = "assets"
PRICES_CACHE = "prices"


# --- Assets and prices -------------------------------------------------------------------------


@transaction.atomic
def asset_create(
    *, ticker: str, name: str, currency: str, exchange: str = "", asset_type: str = "equity", isin: str = ""
) -> Asset:
    asset = Asset(ticker=ticker, name=name, currency=currency, exchange=exchange, asset_type=asset_type, isin=isin)
    asset.full_clean()
    asset.save()
    invalidate_namespace(ASSETS_CACHE)
    return asset


@transaction.atomic
def asset_update(*, asset: Asset, **fields: Any) -> Asset:
    if "currency" in fields and fields["currency"] != asset.currency and asset.allocations.exists():
        raise ConflictError("The currency of an asset that has allocations cannot change.", field="currency")
    for name, value in fields.items():
        setattr(asset, name, value)
    asset.full_clean()
    asset.save()
    invalidate_namespace(ASSETS_CACHE)
    invalidate_namespace(PRICES_CACHE)
    return asset


@transaction.atomic
def asset_delete(*, asset: Asset) -> None:
    """Deletes an asset and its prices; one that any allocation uses is protected (409)."""
    asset.delete()
    invalidate_namespace(ASSETS_CACHE)
    invalidate_namespace(PRICES_CACHE)


@transaction.atomic
def price_create(*, asset: Asset, date: datetime.date, close: Decimal) -> Price:
    price = Price(asset=asset, date=date, close=close)
    price.full_clean()
    price.save()
    invalidate_namespace(PRICES_CACHE)
    return price


@transaction.atomic
def price_update(*, price: Price, **fields: Any) -> Price:
    for name, value in fields.items():
        setattr(price, name, value)
    price.full_clean()
    price.save()
    invalidate_namespace(PRICES_CACHE)
    return price


@transaction.atomic
def price_delete(*, price: Price) -> None:
    price.delete()
    invalidate_namespace(PRICES_CACHE)


# --- Allocations ------------------------------------------------------------------------------


def settlement_amount(*, kind: str, quantity: Decimal, price: Decimal, fees: Decimal) -> Decimal:
    """Cash a trade moves: what a buy costs (gross plus fees) or what a sell brings (gross less fees).

    Exact whatever the size of quantity and price (Python's default 28 digits would round, then fail to
    quantize); a result the ledger cannot hold is refused.
    """
    with localcontext() as context:
        context.prec = 2 * QUANTITY_DIGITS + 2
        gross = quantity * price
        amount = to_amount(gross + fees if kind == Allocation.Kind.BUY else gross - fees)
    if abs(amount) >= Decimal(10) ** (AMOUNT_DIGITS - AMOUNT_PLACES):
        raise ValidationError({"quantity": f"The trade's cash amount ({amount}) is larger than the ledger can hold."})
    try:
        validate_storable(amount)
    except ValidationError as error:
        raise ValidationError({"quantity": f"The trade's cash amount: {error.messages[0]}"}) from None
    return amount


def _settle(*, actor: Any, allocation: Allocation) -> None:
    if allocation.kind not in Allocation.TRADES:
        allocation.settlement = None
        return
    amount = settlement_amount(
        kind=allocation.kind, quantity=allocation.quantity, price=allocation.price, fees=allocation.fees
    )
    if amount <= 0:
        raise ValidationError(
            {
                "price": "A buy or sell must move cash (quantity x price, fees included, must be positive); "
                "use transfer_in or transfer_out to move securities without cash."
            }
        )
    allocation.settlement = settlement_post(
        actor=actor,
        client_id=allocation.client_id,
        kind=allocation.kind,
        amount=amount,
        currency=allocation.asset.currency,
        date=allocation.date,
        notes=f"Settlement of {allocation.get_kind_display().lower()} {allocation.quantity} {allocation.asset}",
    )


def _refuse_short_position(*, client: Client, asset: Asset) -> None:
    held = position(client_id=client.pk, asset_id=asset.pk)
    if held < 0:
        raise ConflictError(
            f"Not enough units of {asset} for {client}: the change would leave a position of {held}; "
            "a sell or transfer out cannot exceed the quantity held.",
            field="quantity",
        )


def _validated(allocation: Allocation) -> Allocation:
    allocation.full_clean(exclude=["settlement"])
    return allocation


@transaction.atomic
def allocation_create(
    *,
    actor: Any,
    client: Client,
    asset: Asset,
    kind: str,
    quantity: Decimal,
    price: Decimal,
    date: datetime.date,
    fees: Decimal = Decimal("0"),
    notes: str = "",
    import_key: str | None = None,
) -> Allocation:
    """Records a movement; `import_key` is for imports (see holdings.importers), unique per client."""
    clients_lock(actor=actor, client_ids={client.pk})
    allocation = _validated(
        Allocation(
            client=client,
            asset=asset,
            kind=kind,
            quantity=quantity,
            price=price,
            fees=fees,
            date=date,
            notes=notes,
            import_key=import_key,
        )
    )
    _settle(actor=actor, allocation=allocation)
    allocation.save()
    _refuse_short_position(client=client, asset=asset)
    return allocation


SETTLEMENT_FIELDS = frozenset({"client", "asset", "kind", "quantity", "price", "fees", "date"})


@transaction.atomic
def allocation_update(*, actor: Any, allocation: Allocation, **fields: Any) -> Allocation:
    """Changes a movement; a trade's old settlement is reversed and a new one posted (the ledger is never edited)."""
    before = Allocation.objects.select_related("client", "asset", "settlement").get(pk=allocation.pk)
    new_client = fields.get("client", before.client)
    clients_lock(actor=actor, client_ids={before.client_id, new_client.pk})
    for name, value in fields.items():
        setattr(allocation, name, value)
    _validated(allocation)
    resettle = any(getattr(before, name) != getattr(allocation, name) for name in SETTLEMENT_FIELDS & fields.keys())
    if resettle:
        old = before.settlement
        # Take the step that brings cash in first, so that the check on the step that takes it out
        # sees the final balance: reversing a sell takes cash out, reversing a buy brings it in.
        if old is not None and old.kind == Allocation.Kind.SELL:
            _settle(actor=actor, allocation=allocation)
            settlement_reverse(actor=actor, transaction=old)
        else:
            if old is not None:
                settlement_reverse(actor=actor, transaction=old)
            _settle(actor=actor, allocation=allocation)
    allocation.save()
    _refuse_short_position(client=before.client, asset=before.asset)
    _refuse_short_position(client=allocation.client, asset=allocation.asset)
    return allocation


@transaction.atomic
def allocation_delete(*, actor: Any, allocation: Allocation) -> None:
    """Deletes a movement and reverses its settlement."""
    before = Allocation.objects.select_related("client", "asset", "settlement").get(pk=allocation.pk)
    clients_lock(actor=actor, client_ids={before.client_id})
    before.delete()
    if before.settlement is not None:
        settlement_reverse(actor=actor, transaction=before.settlement)
    _refuse_short_position(client=before.client, asset=before.asset)
