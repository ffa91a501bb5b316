"""Writes on dividends (the services of holdings.Dividend; a module of its own so that holdings.services does not
grow into a dump of every corporate action).

A dividend's cash goes through the ledger's service, in the same transaction and under the same portfolio lock as
the dividend: recording one posts its net cash as a `dividend` transaction on the pay date; changing one reverses
that cash and posts it anew; deleting one reverses it. Entitlement is decided by the ex-date: the units held at the
close of the day before (by trade date, as every position); none means no dividend.
"""

import datetime
from decimal import Decimal, localcontext
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from clients.models import Portfolio
from clients.services import portfolio_lock, portfolios_history_changed, portfolios_lock
from ledger.services import dividend_cash_post, dividend_cash_reverse
from portfolio_site.errors import ConflictError
from portfolio_site.imports.models import ImportBatch
from portfolio_site.money import QUANTITY_DIGITS, to_amount

from .models import Asset, Dividend
from .selectors import position

ONE_DAY = datetime.timedelta(days=1)
# What the cash depends on: a change to any of them reverses the cash and posts it anew.
CASH_FIELDS = frozenset(
    {"portfolio", "asset", "ex_date", "pay_date", "currency", "gross", "amount_per_unit", "withholding_tax"}
)
GROSS_OR_PER_UNIT = "Give either the gross amount or the amount per unit (times the units held), not both."


def entitled_units(*, portfolio: Portfolio, asset: Asset, ex_date: datetime.date) -> Decimal:
    """The units held at the close before the ex-date; ValidationError on `ex_date` when there are none."""
    units = position(portfolio_id=portfolio.pk, asset_id=asset.pk, as_of=ex_date - ONE_DAY)
    if units <= 0:
        raise ValidationError(
            {
                "ex_date": f"{portfolio.name} held no units of {asset} at the close before the ex-date "
                f"({ex_date - ONE_DAY}): it is not entitled to this dividend."
            }
        )
    return units


def dividend_gross(*, units: Decimal, gross: Decimal | None, amount_per_unit: Decimal | None) -> Decimal:
    """The gross amount: as given, or the amount per unit times the units held, half-even to the amount's places."""
    if (gross is None) == (amount_per_unit is None):
        raise ValidationError({"gross": GROSS_OR_PER_UNIT, "amount_per_unit": GROSS_OR_PER_UNIT})
    if gross is not None:
        return gross
    assert amount_per_unit is not None
    with localcontext() as context:
        context.prec = 2 * QUANTITY_DIGITS + 2
        return to_amount(units * amount_per_unit)


def _complete(dividend: Dividend) -> Dividend:
    """Fills in what is derived (units, gross, currency by default the asset's) and checks the row as the database
    would, before any cash moves."""
    dividend.units = entitled_units(portfolio=dividend.portfolio, asset=dividend.asset, ex_date=dividend.ex_date)
    gross = None if dividend.amount_per_unit is not None else dividend.gross
    dividend.gross = dividend_gross(units=dividend.units, gross=gross, amount_per_unit=dividend.amount_per_unit)
    dividend.currency = dividend.currency or dividend.asset.currency
    dividend.full_clean(exclude=["cash"])
    return dividend


def _post_cash(*, actor: Any, dividend: Dividend) -> None:
    dividend.cash = dividend_cash_post(
        actor=actor,
        portfolio_id=dividend.portfolio_id,
        amount=dividend.net,
        currency=dividend.currency,
        date=dividend.pay_date,
        notes=f"Dividend of {dividend.asset}, ex-date {dividend.ex_date}",
        import_batch=dividend.import_batch,
    )


@transaction.atomic
def dividend_create(
    *,
    actor: Any,
    portfolio: Portfolio,
    asset: Asset,
    ex_date: datetime.date,
    pay_date: datetime.date,
    gross: Decimal | None = None,
    amount_per_unit: Decimal | None = None,
    withholding_tax: Decimal = Decimal("0"),
    currency: str = "",
    notes: str = "",
    import_batch: ImportBatch | None = None,
) -> Dividend:
    """Records a dividend and posts its net cash on the pay date. Either `gross` or `amount_per_unit` (times the
    units held at the close before the ex-date); `currency` defaults to the asset's. ValidationError when the
    portfolio held none of the asset then; ConflictError when the portfolio is closed."""
    if (gross is None) == (amount_per_unit is None):
        raise ValidationError({"gross": GROSS_OR_PER_UNIT, "amount_per_unit": GROSS_OR_PER_UNIT})
    locked = portfolio_lock(actor=actor, portfolio_id=portfolio.pk)
    dividend = _complete(
        Dividend(
            client_id=locked.client_id,
            portfolio=locked,
            asset=asset,
            ex_date=ex_date,
            pay_date=pay_date,
            gross=gross,
            amount_per_unit=amount_per_unit,
            withholding_tax=withholding_tax,
            currency=currency,
            notes=notes,
            import_batch=import_batch,
        )
    )
    _post_cash(actor=actor, dividend=dividend)
    dividend.save()
    portfolios_history_changed(portfolios=[locked.pk], since=dividend.pay_date)
    return dividend


@transaction.atomic
def dividend_update(*, actor: Any, dividend: Dividend, **fields: Any) -> Dividend:
    """Changes a dividend; when its cash changes, the old cash is reversed and the new posted (the ledger is never
    edited). Moving it to another portfolio keeps it with its client. Giving `gross` clears `amount_per_unit` and
    the other way round."""
    new_portfolio = fields.get("portfolio")
    seen = Dividend.objects.filter(pk=dividend.pk).values_list("portfolio_id", flat=True).first()
    if seen is None:
        raise ConflictError("This dividend no longer exists: it was deleted meanwhile.")
    portfolios_lock(actor=actor, portfolio_ids={seen, *([new_portfolio.pk] if new_portfolio else [])})
    before = Dividend.objects.select_related("portfolio", "asset", "cash").filter(pk=dividend.pk).first()
    if before is None or before.portfolio_id != seen:
        raise ConflictError("This dividend was changed or deleted meanwhile: reload it and try again.")
    fields.pop("client", None)
    if new_portfolio is not None and new_portfolio.client_id != before.client_id:
        raise ValidationError({"portfolio": "A dividend stays with its client; choose one of the client's portfolios."})
    if fields.get("gross") is not None:
        fields.setdefault("amount_per_unit", None)
    elif fields.get("amount_per_unit") is not None:
        fields["gross"] = None
    current = Dividend.objects.select_related("portfolio", "asset").get(pk=before.pk)
    for name, value in fields.items():
        setattr(current, name, value)
    _complete(current)
    changed = any(getattr(before, name) != getattr(current, name) for name in CASH_FIELDS)
    if changed:
        old = before.cash
        # The new cash comes in before the old goes out, so that the check on the reversal sees the final balance.
        _post_cash(actor=actor, dividend=current)
        current.save()
        dividend_cash_reverse(actor=actor, transaction=old)
    else:
        current.save()
    since = min(before.pay_date, current.pay_date)
    portfolios_history_changed(portfolios=[before.portfolio_id, current.portfolio_id], since=since)
    return current


@transaction.atomic
def dividend_delete(*, actor: Any, dividend: Dividend) -> None:
    """Deletes a dividend and reverses its cash; refused (409) when that cash has been spent since."""
    portfolio_lock(actor=actor, portfolio_id=dividend.portfolio_id)
    current = Dividend.objects.select_related("cash").filter(pk=dividend.pk).first()
    if current is None:
        raise ConflictError("This dividend no longer exists: it was deleted meanwhile.")
    current.delete()
    dividend_cash_reverse(actor=actor, transaction=current.cash)
    portfolios_history_changed(portfolios=[current.portfolio_id], since=current.pay_date)
