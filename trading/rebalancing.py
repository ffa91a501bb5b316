"""Model portfolios and rebalancing: the proposal's arithmetic, and the services around it.

The arithmetic (`propose`, `drift`) is pure: plain values in, plain values out, no database, so each rule can be
checked by hand. The services gather what it needs (positions, free units and cash, the latest prices and rates),
fingerprint it (`basis`), store the proposal, and accept it into draft orders through `trading.services`.

The rules (README, "Model portfolios and rebalancing"):
- V, the portfolio's value, is its positions and cash (every currency) in its base currency at the latest price and
  rate. An asset's weight is its value over V, in percent; its target is its model weight (0 when the model does not
  hold it).
- An asset within the drift band (|weight - target| <= band, in percentage points) is left alone.
- Sells first, toward target, never more than the free units (units on hold belong to open orders); an asset the
  model does not hold is sold whole. Their proceeds fund the buys.
- Buys next, largest shortfall first, each paid from free cash in the asset's own currency (no FX trade is
  proposed: a buy that only other currencies could pay is skipped with a warning naming what it needs), never taking
  the cash below zero in that currency nor the total cash below the model's cash target. A buy the cash cannot fully
  fund is reduced, and the proposal says so.
- Quantities are rounded toward zero to a whole number of the asset's lots (`lot_step`); no order worth less than
  the model's minimum trade is proposed.
"""

import datetime
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from clients.models import Portfolio
from clients.services import portfolio_lock
from holdings.fx import MissingRate, RateBook
from holdings.models import Asset
from holdings.selectors import latest_prices, portfolio_positions, positions_of, units_free
from ledger.selectors import balances_of, cash_free, portfolio_balances
from portfolio_site.errors import ConflictError
from portfolio_site.historical import bulk_create_tracked
from portfolio_site.money import QUANTITY_QUANTUM, present_amount, to_quantity

from .brokers import BrokerError
from .models import BrokerConnection, ModelAssignment, ModelPortfolio, ModelWeight, Order, RebalanceProposal

HUNDRED = Decimal(100)
WEIGHT_QUANTUM = Decimal("0.0001")  # weights are shown in percent to four places, as models store them

# --- the arithmetic ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Holding:
    """One asset of the portfolio or of its model: units held and free to sell, its latest price (asset currency) and
    the rate from its currency to the base currency."""

    asset_id: int
    label: str
    currency: str
    units: Decimal
    free_units: Decimal
    price: Decimal
    rate: Decimal
    lot_size: Decimal = Decimal(1)

    @property
    def unit_value(self) -> Decimal:
        """One unit's value in the base currency."""
        return self.price * self.rate


@dataclass(frozen=True)
class Targets:
    """A model portfolio as the arithmetic needs it: percent weights by asset id, and its cash and trading rules."""

    weights: dict[int, Decimal]
    cash_weight: Decimal
    drift_band: Decimal
    minimum_trade: Decimal = Decimal(0)
    fractional: bool = False

    @classmethod
    def of(cls, model: ModelPortfolio, weights: Iterable[ModelWeight]) -> "Targets":
        return cls(
            weights={weight.asset_id: weight.weight for weight in weights},
            cash_weight=model.cash_weight,
            drift_band=model.drift_band,
            minimum_trade=model.minimum_trade,
            fractional=model.fractional,
        )


@dataclass(frozen=True)
class ProposedOrder:
    asset_id: int
    label: str
    side: str
    quantity: Decimal
    price: Decimal
    currency: str
    rate: Decimal
    value: Decimal  # asset currency
    value_base: Decimal
    weight_before: Decimal
    weight_after: Decimal
    target: Decimal


@dataclass
class Proposal:
    total_value: Decimal
    cash_before: Decimal  # base currency, every currency converted
    cash_after: Decimal
    cash_target: Decimal
    orders: list[ProposedOrder] = field(default_factory=list)
    weights_before: dict[int, Decimal] = field(default_factory=dict)
    weights_after: dict[int, Decimal] = field(default_factory=dict)
    cash_weight_before: Decimal = Decimal(0)
    cash_weight_after: Decimal = Decimal(0)
    cash_by_currency_after: dict[str, Decimal] = field(default_factory=dict)
    free_cash_after: dict[str, Decimal] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def lot_step(lot_size: Decimal, *, fractional: bool) -> Decimal:
    """The step an order's quantity is a whole multiple of. Always a whole number of lots, except that a fractional
    model may trade fractions of an asset whose lot is one unit or more (as brokers sell fractional shares), down to
    the project's quantity precision. An asset whose lot is already a fraction of a unit (crypto) keeps its lot."""
    if fractional and lot_size >= 1:
        return QUANTITY_QUANTUM
    return lot_size


def round_to_step(quantity: Decimal, step: Decimal) -> Decimal:
    """`quantity` (not negative) rounded toward zero to a whole number of steps."""
    if quantity <= 0:
        return Decimal(0)
    return to_quantity((quantity / step).to_integral_value(rounding=ROUND_FLOOR) * step)


def _weight(value: Decimal, total: Decimal) -> Decimal:
    return value / total * HUNDRED


def _cash_base(cash: dict[str, Decimal], rates: dict[str, Decimal]) -> Decimal:
    return sum((amount * rates[currency] for currency, amount in cash.items()), Decimal(0))


def propose(
    *,
    holdings: list[Holding],
    cash: dict[str, Decimal],
    free_cash: dict[str, Decimal],
    rates: dict[str, Decimal],
    targets: Targets,
    base_currency: str,
    buy_buffer: Decimal = Decimal(0),
    buy_fees: Callable[[Decimal, Decimal], Decimal] | None = None,
) -> Proposal:
    """The orders that bring the portfolio back to `targets` (see the module's rules). `cash` is the balance per
    currency (the valuation), `free_cash` what of it is not on hold (what buys may spend), `rates` each cash
    currency's rate to the base currency. Every asset of the model must be among `holdings` (with 0 units when not
    held).

    A buy is sized so that its order can be submitted: the hold a market buy places is its units at the price plus
    `buy_buffer` (a fraction: TRADING_MARKET_ORDER_BUFFER), plus the broker's fees (`buy_fees(quantity, price)`),
    and that must fit in the free cash."""
    by_id = {holding.asset_id: holding for holding in sorted(holdings, key=lambda h: h.asset_id)}
    # A sell may bring cash in a currency the portfolio held none of: its rate is the asset's.
    rates = {**{h.currency: h.rate for h in by_id.values()}, **rates}
    total = sum((h.units * h.unit_value for h in by_id.values()), Decimal(0)) + _cash_base(cash, rates)
    cash_before = _cash_base(cash, rates)
    proposal = Proposal(
        total_value=total,
        cash_before=cash_before,
        cash_after=cash_before,
        cash_target=targets.cash_weight * total / HUNDRED,
    )
    if total <= 0:
        proposal.warnings.append("The portfolio is worth nothing (or less): there is nothing to rebalance.")
        proposal.cash_by_currency_after = dict(cash)
        proposal.free_cash_after = dict(free_cash)
        return proposal

    units_after = {asset_id: h.units for asset_id, h in by_id.items()}
    cash_after = dict(cash)
    free_after = dict(free_cash)
    before = {asset_id: _weight(h.units * h.unit_value, total) for asset_id, h in by_id.items()}
    proposal.weights_before = before
    band = targets.drift_band

    def record(holding: Holding, side: str, quantity: Decimal, *, held: Decimal | None = None) -> None:
        """`held`: what a buy's hold takes from the free cash (more than its value: the buffer and the fees)."""
        value = quantity * holding.price
        sign = -1 if side == Order.Side.SELL else 1
        units_after[holding.asset_id] += sign * quantity
        cash_after[holding.currency] = cash_after.get(holding.currency, Decimal(0)) - sign * value
        free_after[holding.currency] = free_after.get(holding.currency, Decimal(0)) - sign * (held or value)
        proposal.orders.append(
            ProposedOrder(
                asset_id=holding.asset_id,
                label=holding.label,
                side=side,
                quantity=quantity,
                price=holding.price,
                currency=holding.currency,
                rate=holding.rate,
                value=value,
                value_base=value * holding.rate,
                weight_before=before[holding.asset_id],
                weight_after=_weight(units_after[holding.asset_id] * holding.unit_value, total),
                target=targets.weights.get(holding.asset_id, Decimal(0)),
            )
        )

    def too_small(holding: Holding, side: str, quantity: Decimal) -> bool:
        value_base = quantity * holding.unit_value
        if value_base >= targets.minimum_trade:
            return False
        proposal.warnings.append(
            f"{holding.label}: a {side} of {quantity.normalize():f} units is worth "
            f"{present_amount(value_base, base_currency)} {base_currency}, below the minimum trade of "
            f"{present_amount(targets.minimum_trade, base_currency)} {base_currency}: not proposed."
        )
        return True

    # Sells first: their proceeds fund the buys.
    for asset_id, holding in by_id.items():
        target = targets.weights.get(asset_id, Decimal(0))
        if before[asset_id] - target <= band:
            continue
        free = max(holding.free_units, Decimal(0))
        if target == 0 and free == holding.units:
            quantity = free  # out of the model: the whole position goes, lot or not
        else:
            # Straight from units and values, not through the rounded percentages (which lose a lot at the floor).
            wanted = (holding.units - target * total / (HUNDRED * holding.unit_value)).quantize(QUANTITY_QUANTUM)
            if wanted > free:
                proposal.warnings.append(
                    f"{holding.label}: only {free.normalize():f} units are free to sell (the rest are on hold "
                    f"for open orders); the sell is reduced."
                )
            quantity = round_to_step(min(wanted, free), lot_step(holding.lot_size, fractional=targets.fractional))
        if quantity <= 0 or too_small(holding, Order.Side.SELL, quantity):
            continue
        record(holding, Order.Side.SELL, quantity)

    # Buys next, the largest shortfall first (then by asset id, so the same inputs always give the same proposal).
    spent: dict[str, Decimal] = {}  # by the buys, of the free cash there was before any sale
    short = [
        (targets.weights.get(asset_id, Decimal(0)) - before[asset_id], asset_id)
        for asset_id in by_id
        if targets.weights.get(asset_id, Decimal(0)) - before[asset_id] > band
    ]
    for _, asset_id in sorted(short, key=lambda item: (-item[0], item[1])):
        holding = by_id[asset_id]
        target = targets.weights.get(asset_id, Decimal(0))
        wanted = (target * total / (HUNDRED * holding.unit_value) - holding.units).quantize(QUANTITY_QUANTUM)
        step = lot_step(holding.lot_size, fractional=targets.fractional)
        own = max(free_after.get(holding.currency, Decimal(0)), Decimal(0))
        hold_price = holding.price * (1 + buy_buffer)
        # The fees of the whole wanted buy: no less than those of a smaller one, so the reserve always suffices.
        fees = buy_fees(round_to_step(wanted, step), hold_price) if buy_fees else Decimal(0)
        above_target = _cash_base(cash_after, rates) - proposal.cash_target
        affordable = min(
            max(own - fees, Decimal(0)) / hold_price,
            max(above_target - fees * holding.rate, Decimal(0)) / holding.unit_value,
        )
        quantity = round_to_step(min(wanted, affordable), step)
        needed = present_amount(round_to_step(wanted, step) * holding.price, holding.currency)
        if own <= 0 and any(amount > 0 for currency, amount in free_after.items() if currency != holding.currency):
            proposal.warnings.append(
                f"{holding.label}: needs {needed} {holding.currency} and the portfolio holds no free "
                f"{holding.currency}; FX conversion is not proposed."
            )
            continue
        if quantity <= 0:
            proposal.warnings.append(
                f"{holding.label}: needs {needed} {holding.currency}; the cash left above the cash target cannot "
                "fund a single lot: not proposed."
            )
            continue
        if too_small(holding, Order.Side.BUY, quantity):
            continue
        if affordable < wanted:
            proposal.warnings.append(
                f"{holding.label}: the buy is reduced to {quantity.normalize():f} units "
                f"({present_amount(quantity * holding.price, holding.currency)} {holding.currency} of {needed} "
                f"{holding.currency} needed): the cash cannot fund more without going below zero in "
                f"{holding.currency} or below the cash target."
            )
        held = quantity * hold_price + fees
        if held > max(
            free_cash.get(holding.currency, Decimal(0)) - spent.get(holding.currency, Decimal(0)), Decimal(0)
        ):
            proposal.warnings.append(
                f"{holding.label}: the buy is paid from the proceeds of this proposal's sells: submit it once they "
                "have filled."
            )
        spent[holding.currency] = spent.get(holding.currency, Decimal(0)) + held
        record(holding, Order.Side.BUY, quantity, held=held)

    proposal.weights_after = {
        asset_id: _weight(units_after[asset_id] * h.unit_value, total) for asset_id, h in by_id.items()
    }
    proposal.cash_after = _cash_base(cash_after, rates)
    proposal.cash_weight_before = _weight(cash_before, total)
    proposal.cash_weight_after = _weight(proposal.cash_after, total)
    proposal.cash_by_currency_after = cash_after
    proposal.free_cash_after = free_after
    return proposal


def drift(*, values: dict[int, Decimal], cash_value: Decimal, weights: dict[int, Decimal]) -> Decimal | None:
    """The largest absolute distance (percentage points) of an asset's weight from its target, for the assets held
    (by value in the base currency) and those of the model; None for a portfolio worth nothing."""
    total = sum(values.values(), Decimal(0)) + cash_value
    if total <= 0:
        return None
    assets = set(values) | set(weights)
    if not assets:
        return Decimal(0)
    return max(
        abs(_weight(values.get(asset_id, Decimal(0)), total) - weights.get(asset_id, Decimal(0))) for asset_id in assets
    )


# --- what a proposal is computed from --------------------------------------------------------------------------


@dataclass
class Inputs:
    """Everything a portfolio's proposal is computed from, read in one place so that the proposal and its
    fingerprint (`basis`) are made of the same values."""

    portfolio: Portfolio
    model: ModelPortfolio
    targets: Targets
    holdings: list[Holding]
    cash: dict[str, Decimal]
    free_cash: dict[str, Decimal]
    rates: dict[str, Any]  # currency: holdings.fx.Rate to the base currency
    prices: dict[int, tuple[Decimal, datetime.date]]

    @property
    def basis(self) -> str:
        """A SHA-256 of the values: equal fingerprints, equal inputs (units, free units, cash, free cash, prices and
        their dates, rates and their dates, lot sizes, the model's weights and rules)."""
        facts = {
            "base": self.portfolio.base_currency,
            "model": [
                self.model.pk,
                str(self.targets.cash_weight),
                str(self.targets.drift_band),
                str(self.targets.minimum_trade),
                self.targets.fractional,
                sorted((asset_id, str(weight)) for asset_id, weight in self.targets.weights.items()),
            ],
            "holdings": [
                [
                    h.asset_id,
                    str(h.units),
                    str(h.free_units),
                    str(h.price),
                    str(self.prices[h.asset_id][1]),
                    str(h.lot_size),
                ]
                for h in sorted(self.holdings, key=lambda h: h.asset_id)
            ],
            "cash": sorted((currency, str(amount)) for currency, amount in self.cash.items()),
            "free_cash": sorted((currency, str(amount)) for currency, amount in self.free_cash.items()),
            "rates": sorted((currency, str(rate.rate), str(rate.date)) for currency, rate in self.rates.items()),
        }
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


NOT_FOLLOWING = "Portfolio {portfolio} follows no model portfolio: assign one first."


def _model_of(portfolio: Portfolio) -> ModelPortfolio:
    assignment = ModelAssignment.objects.select_related("model").filter(portfolio_id=portfolio.pk).first()
    if assignment is None:
        raise ConflictError(NOT_FOLLOWING.format(portfolio=portfolio), field="portfolio")
    return assignment.model


def _rates_to(base: str, currencies: Iterable[str], on: datetime.date) -> dict[str, Any]:
    """The latest rate of each currency to `base` on or before `on`; 409 naming the currency when there is none."""
    wanted = sorted(set(currencies))
    book = RateBook([*wanted, base], until=on, latest_only=True)
    rates = {}
    for currency in wanted:
        try:
            rates[currency] = book.rate(currency, base, on)
        except MissingRate:
            raise ConflictError(
                f"No {currency}/{base} exchange rate has been recorded: a proposal in {base} cannot value the "
                f"portfolio's {currency}. Record a rate first.",
                field="portfolio",
            ) from None
    return rates


def proposal_inputs(*, portfolio: Portfolio) -> Inputs:
    """What the portfolio's proposal is computed from. ConflictError (409) when the portfolio follows no model, has
    orders not yet ended, or an asset it holds or its model holds has no price (or a price of 0), or a currency no
    rate to the base currency."""
    model = _model_of(portfolio)
    pending = Order.objects.filter(portfolio_id=portfolio.pk, status__in=Order.CANCELLABLE).count()
    if pending:
        # Its drafts and open orders will change what it holds: a proposal that ignored them would trade the same
        # drift twice (an accepted proposal's drafts included), one that guessed their fills could be wrong.
        raise ConflictError(
            f"Portfolio {portfolio} has {pending} order(s) not yet ended (drafts or open at the broker): submit and "
            "let them fill, or cancel them, before proposing a rebalance.",
            field="portfolio",
        )
    weights = list(ModelWeight.objects.filter(model=model).select_related("asset"))
    targets = Targets.of(model, weights)
    positions = {asset_id: units for asset_id, units in portfolio_positions(portfolio_id=portfolio.pk).items() if units}
    asset_ids = sorted(set(positions) | set(targets.weights))
    assets = Asset.objects.in_bulk(asset_ids)
    prices: dict[int, tuple[Decimal, datetime.date]] = {}
    for row in latest_prices(asset_ids=asset_ids):
        if not row["price_close"]:
            # No price, or a close of 0 (a delisted asset): nothing can be bought or sold at it.
            raise ConflictError(
                f"{assets[row['pk']]} has no price above zero: the portfolio cannot be valued and traded without one. "
                "Record a price first.",
                field="portfolio",
            )
        prices[row["pk"]] = (Decimal(row["price_close"]), row["price_date"])
    balances = portfolio_balances(portfolio_id=portfolio.pk)
    currencies = {*balances, *(asset.currency for asset in assets.values())}
    rates = _rates_to(portfolio.base_currency, currencies, timezone.localdate())
    free_units = {asset_id: units_free(portfolio_id=portfolio.pk, asset_id=asset_id) for asset_id in positions}
    holdings = [
        Holding(
            asset_id=asset_id,
            label=str(assets[asset_id]),
            currency=assets[asset_id].currency,
            units=positions.get(asset_id, Decimal(0)),
            free_units=free_units.get(asset_id, Decimal(0)),
            price=prices[asset_id][0],
            rate=rates[assets[asset_id].currency].rate,
            lot_size=assets[asset_id].lot_size,
        )
        for asset_id in asset_ids
    ]
    free_cash = {currency: cash_free(portfolio_id=portfolio.pk, currency=currency) for currency in balances}
    return Inputs(
        portfolio=portfolio,
        model=model,
        targets=targets,
        holdings=holdings,
        cash=balances,
        free_cash=free_cash,
        rates=rates,
        prices=prices,
    )


def _text(value: Decimal) -> str:
    return f"{value.normalize():f}" if value else "0"


def _weight_text(value: Decimal) -> str:
    return _text(value.quantize(WEIGHT_QUANTUM))


def proposal_document(inputs: Inputs, proposal: Proposal) -> dict[str, Any]:
    """The proposal as stored and answered: JSON, decimals as strings; money in the base currency rounded to its
    minor unit (half-even, only here, when presenting), quantities and prices exact, weights in percent to 4 places."""
    base = inputs.portfolio.base_currency
    labels = {h.asset_id: h for h in inputs.holdings}

    def money(value: Decimal, currency: str) -> str:
        return f"{present_amount(value, currency):f}"

    return {
        "model": inputs.model.pk,
        "model_name": inputs.model.name,
        "base_currency": base,
        "total_value": money(proposal.total_value, base),
        "cash_before": money(proposal.cash_before, base),
        "cash_after": money(proposal.cash_after, base),
        "cash_target": money(proposal.cash_target, base),
        "cash_weight_before": _weight_text(proposal.cash_weight_before),
        "cash_weight_after": _weight_text(proposal.cash_weight_after),
        "cash_weight_target": _weight_text(inputs.targets.cash_weight),
        "drift_band": _weight_text(inputs.targets.drift_band),
        "orders": [
            {
                "asset": order.asset_id,
                "asset_label": order.label,
                "side": order.side,
                "quantity": _text(order.quantity),
                "price": _text(order.price),
                "price_date": inputs.prices[order.asset_id][1].isoformat(),
                "currency": order.currency,
                "value": money(order.value, order.currency),
                "fx_rate": _text(order.rate),
                "value_base": money(order.value_base, base),
                "weight_before": _weight_text(order.weight_before),
                "weight_after": _weight_text(order.weight_after),
                "weight_target": _weight_text(order.target),
            }
            for order in proposal.orders
        ],
        "weights": [
            {
                "asset": asset_id,
                "asset_label": labels[asset_id].label,
                "weight_before": _weight_text(proposal.weights_before.get(asset_id, Decimal(0))),
                "weight_after": _weight_text(proposal.weights_after.get(asset_id, Decimal(0))),
                "weight_target": _weight_text(inputs.targets.weights.get(asset_id, Decimal(0))),
            }
            for asset_id in sorted(labels)
        ],
        "cash": [
            {
                "currency": currency,
                "before": money(inputs.cash.get(currency, Decimal(0)), currency),
                "free_before": money(inputs.free_cash.get(currency, Decimal(0)), currency),
                "after": money(proposal.cash_by_currency_after.get(currency, Decimal(0)), currency),
            }
            for currency in sorted(set(inputs.cash) | set(proposal.cash_by_currency_after))
        ],
        "rates": [
            {
                "currency": currency,
                "to": base,
                "rate": _text(rate.rate),
                "date": rate.date.isoformat(),
                "via": rate.via or "",
            }
            for currency, rate in sorted(inputs.rates.items())
        ],
        "warnings": proposal.warnings,
    }


def compute(inputs: Inputs) -> Proposal:
    return propose(
        holdings=inputs.holdings,
        cash=inputs.cash,
        free_cash=inputs.free_cash,
        rates={currency: rate.rate for currency, rate in inputs.rates.items()},
        targets=inputs.targets,
        base_currency=inputs.portfolio.base_currency,
        buy_buffer=Decimal(settings.TRADING_MARKET_ORDER_BUFFER),
        buy_fees=_fee_estimate(inputs.portfolio),
    )


def _fee_estimate(portfolio: Portfolio) -> Callable[[Decimal, Decimal], Decimal] | None:
    """The broker's fee estimate for a buy, through the account the proposal's orders would go to (the portfolio's
    only one at an active connection); none when that is not known yet (the orders name a connection on accepting)."""
    from .connections import broker_for, order_account  # connections imports the models this module reads

    try:
        broker = broker_for(order_account(portfolio=portfolio, connection=None).connection)
    except (ValidationError, BrokerError):
        return None
    return lambda quantity, price: broker.estimate_fees(side=Order.Side.BUY, quantity=quantity, price=price)


# --- services --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightInput:
    asset: Asset
    weight: Decimal


@transaction.atomic
def model_portfolio_save(*, model: ModelPortfolio, weights: list[WeightInput] | None = None) -> ModelPortfolio:
    """Saves a model portfolio and, when `weights` are given, replaces its weights with them, all at once.
    ValidationError on `weights` unless the weights and the cash weight sum to exactly 100 (a rule across rows that
    a CHECK cannot hold: it lives here, in the one write of weights), or when an asset appears twice. Saving the
    model alone (weights None) checks its current weights against a changed cash weight."""
    model.full_clean()
    model.save()
    if weights is None:
        current = list(ModelWeight.objects.filter(model=model).values_list("weight", flat=True))
        _check_sum(model, current)
        return model
    seen: set[int] = set()
    for item in weights:
        if item.asset.pk in seen:
            raise ValidationError({"weights": f"{item.asset} has two weights: give each asset once."})
        seen.add(item.asset.pk)
    _check_sum(model, [item.weight for item in weights])
    ModelWeight.objects.filter(model=model).delete()
    rows = [ModelWeight(model=model, asset=item.asset, weight=item.weight) for item in weights]
    for row in rows:
        row.full_clean(exclude=["model"], validate_unique=False)
    bulk_create_tracked(ModelWeight, rows)
    return model


def _check_sum(model: ModelPortfolio, weights: list[Decimal]) -> None:
    total = sum(weights, Decimal(0)) + model.cash_weight
    if total != HUNDRED:
        raise ValidationError(
            {
                "weights": f"The weights and the cash weight ({_text(model.cash_weight)}%) must sum to exactly 100%; "
                f"they sum to {_text(total)}%."
            }
        )


@transaction.atomic
def model_portfolio_delete(*, model: ModelPortfolio) -> None:
    """Deletes a model and its weights; one that a portfolio follows or a proposal names is protected (409): stop
    following it first. Proposals keep the model they were computed for."""
    model.delete()


@transaction.atomic
def model_assignment_save(*, actor: Any, assignment: ModelAssignment) -> ModelAssignment:
    """Makes (or changes) the model a portfolio follows. Refused (403) for a portfolio the actor may not see: the
    portfolio is locked through the one scope check inside the transaction. An assignment stays with the portfolio
    it was made for: another portfolio gets its own."""
    if assignment.pk is not None:
        stored = ModelAssignment.objects.filter(pk=assignment.pk).values_list("portfolio_id", flat=True).first()
        if stored is not None and stored != assignment.portfolio_id:
            raise ValidationError({"portfolio": "An assignment stays with its portfolio: add another."})
    portfolio = portfolio_lock(actor=actor, portfolio_id=assignment.portfolio_id, for_movement=False)
    assignment.portfolio = portfolio
    assignment.client_id = portfolio.client_id
    assignment.full_clean()
    assignment.save()
    return assignment


@transaction.atomic
def model_assignment_delete(*, actor: Any, assignment: ModelAssignment) -> None:
    portfolio_lock(actor=actor, portfolio_id=assignment.portfolio_id, for_movement=False)
    assignment.delete()


@transaction.atomic
def rebalance_proposal_create(*, actor: Any, portfolio: Portfolio) -> RebalanceProposal:
    """Computes and stores the portfolio's proposal. 409 for a closed portfolio, one following no model, or one
    whose assets or currencies lack a price or rate; 403 for a portfolio the actor may not see."""
    locked = portfolio_lock(actor=actor, portfolio_id=portfolio.pk)
    inputs = proposal_inputs(portfolio=locked)
    proposal = RebalanceProposal.objects.create(
        client_id=locked.client_id,
        portfolio=locked,
        model=inputs.model,
        created_by=actor if getattr(actor, "pk", None) else None,
        proposal=proposal_document(inputs, compute(inputs)),
        basis=inputs.basis,
    )
    return proposal


def max_age() -> datetime.timedelta:
    return datetime.timedelta(minutes=settings.TRADING_PROPOSAL_MAX_AGE_MINUTES)


@transaction.atomic
def rebalance_proposal_accept(
    *, actor: Any, proposal: RebalanceProposal, connection: BrokerConnection | None = None
) -> RebalanceProposal:
    """Creates the proposal's orders as drafts (through `order_create`, so each is checked as any order is), all in
    one transaction, once. 409 when it was accepted already, is older than TRADING_PROPOSAL_MAX_AGE_MINUTES, or
    what it was computed from has changed since (positions, holds, cash, prices, rates, the model): propose again."""
    from .services import order_create  # services import the models this module reads; imported when used

    locked = portfolio_lock(actor=actor, portfolio_id=proposal.portfolio_id)
    current = RebalanceProposal.objects.select_for_update().get(pk=proposal.pk)
    if current.is_accepted:
        raise ConflictError(f"Proposal {current.pk} was accepted already: its orders exist.")
    if timezone.now() - current.created_at > max_age():
        raise ConflictError(
            f"Proposal {current.pk} is more than {settings.TRADING_PROPOSAL_MAX_AGE_MINUTES} minutes old: "
            "propose again."
        )
    inputs = proposal_inputs(portfolio=locked)
    if inputs.model.pk != current.model_id or inputs.basis != current.basis:
        raise ConflictError(
            f"The portfolio has changed since proposal {current.pk} was made (its positions, holds, cash, prices, "
            "rates or model): propose again."
        )
    assets = Asset.objects.in_bulk([order["asset"] for order in current.proposal["orders"]])
    orders = [
        order_create(
            actor=actor,
            portfolio=locked,
            asset=assets[order["asset"]],
            side=order["side"],
            quantity=Decimal(order["quantity"]),
            connection=connection,
            notes=f"Rebalancing proposal {current.pk} ({current.proposal['model_name']}).",
        )
        for order in current.proposal["orders"]
    ]
    current.accepted_at = timezone.now()
    current.accepted_by = actor if getattr(actor, "pk", None) else None
    current.full_clean()
    current.save(update_fields=["accepted_at", "accepted_by"])
    current.orders.set(orders)
    return current


# --- the drift report ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    """How far a followed portfolio is from its model: the largest absolute distance of an asset's weight from its
    target (percentage points), and whether that is outside the model's band. None (both) when it cannot be valued:
    `missing` names the prices or rates it lacks."""

    largest: Decimal | None
    outside_band: bool | None
    missing: tuple[str, ...] = ()


def drifts(assignments: list[ModelAssignment]) -> dict[int, Drift]:
    """Portfolio id to its drift, for the assignments given (their `model` and `portfolio` loaded), in a number of
    queries that does not grow with theirs: the positions, balances, weights, prices and rates of them all at once."""
    if not assignments:
        return {}
    portfolio_ids = [assignment.portfolio_id for assignment in assignments]
    model_ids = {assignment.model_id for assignment in assignments}
    weights: dict[int, dict[int, Decimal]] = {model_id: {} for model_id in model_ids}
    for model_id, asset_id, weight in ModelWeight.objects.filter(model_id__in=model_ids).values_list(
        "model_id", "asset_id", "weight"
    ):
        weights[model_id][asset_id] = weight
    positions = positions_of(portfolio_ids=portfolio_ids)
    balances = balances_of(portfolio_ids=portfolio_ids)
    asset_ids = {asset_id for held in positions.values() for asset_id in held} | {
        asset_id for model in weights.values() for asset_id in model
    }
    prices = {row["pk"]: row for row in latest_prices(asset_ids=asset_ids)}
    currencies = {row["currency"] for row in prices.values()} | {c for cash in balances.values() for c in cash}
    bases = {assignment.portfolio.base_currency for assignment in assignments}
    today = timezone.localdate()
    book = RateBook([*currencies, *bases], until=today, latest_only=True)
    found = {}
    for assignment in assignments:
        base = assignment.portfolio.base_currency
        missing: list[str] = []

        def rate(currency: str, base: str = base, missing: list[str] = missing) -> Decimal:
            try:
                return book.rate(currency, base, today).rate
            except MissingRate:
                missing.append(f"{currency}/{base} rate")
                return Decimal(0)

        values = {}
        for asset_id, units in positions.get(assignment.portfolio_id, {}).items():
            row = prices[asset_id]
            if not units:
                continue
            if row["price_close"] is None:
                missing.append(f"price of {row['ticker']}")
                continue
            values[asset_id] = units * Decimal(row["price_close"]) * rate(row["currency"])
        cash_value = sum(
            (amount * rate(currency) for currency, amount in balances.get(assignment.portfolio_id, {}).items()),
            Decimal(0),
        )
        if missing:
            found[assignment.portfolio_id] = Drift(None, None, tuple(sorted(set(missing))))
            continue
        largest = drift(values=values, cash_value=cash_value, weights=weights[assignment.model_id])
        outside = None if largest is None else largest > assignment.model.drift_band
        found[assignment.portfolio_id] = Drift(largest, outside)
    return found
