"""Posting, transferring and reversing cash. Every write locks the portfolios it moves cash in first (in
primary-key order), writes, then checks the rule on what it wrote: a portfolio's cash per currency is never
negative at the end of any day, from the day the movement takes effect on. Cash is per portfolio, and one
portfolio never funds another without an explicit transfer. A reversal takes effect at the date of what it
reverses (see `ledger.models.effective_date`)."""

import datetime
from collections.abc import Collection
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.db import transaction as db_transaction
from django.utils import timezone

from clients.models import Portfolio
from clients.services import CLOSED, portfolio_lock, portfolios_history_changed, portfolios_lock
from portfolio_site.errors import ConflictError, InsufficientCash
from portfolio_site.imports.models import ImportBatch
from portfolio_site.money import Shortfall

from .models import CashHold, Transaction
from .selectors import cash_free, cash_on_hold, cash_shortfall

Kind = Transaction.Kind
DIRECT_KINDS_ONLY = (
    "Only deposits, withdrawals, interest, fees, taxes and tax refunds are posted directly; trades settle "
    "themselves, transfers move between portfolios and dividends are recorded as dividends."
)


def outflow_label(*, kind: str, amount: Decimal, currency: str) -> str:
    """How a refusal names the movement that takes the cash out ("buy settlement of 500.0000 EUR")."""
    return f"{Kind(kind).label.lower()} of {amount} {currency}"


def overdraft_message(*, portfolio: Portfolio, currency: str, what: str, shortfall: Shortfall) -> str:
    """The words of an overdraft refusal, shared with the bulk imports so that every door says the same. When cash
    is on hold that day, what the movement would leave is what is free (the cash less the holds)."""
    if shortfall.held:
        return (
            f"Insufficient cash in {portfolio.name}: the {what} would leave {shortfall.balance} {currency} available "
            f"at the end of {shortfall.day} ({shortfall.held} {currency} on hold)."
        )
    return (
        f"Insufficient cash in {portfolio.name}: the {what} would leave {shortfall.balance} {currency} at the "
        f"end of {shortfall.day}."
    )


def overdraft_check(*, portfolio: Portfolio, currency: str, since: datetime.date, what: str) -> None:
    """Refuses (ConflictError, rolled back with the write) a state where the portfolio's cash in `currency`
    closes any day from `since` on below zero, or any day from today on below its holds in `currency`. Called after
    the write, inside its transaction and lock."""
    shortfall = cash_shortfall(portfolio_id=portfolio.pk, currency=currency, since=since)
    if shortfall is not None:
        raise ConflictError(
            overdraft_message(portfolio=portfolio, currency=currency, what=what, shortfall=shortfall), field="amount"
        )


def _actor_user(actor: Any) -> Any:
    return actor if getattr(actor, "pk", None) else None


def _post(
    *,
    actor: Any,
    portfolio: Portfolio,
    kind: str,
    amount: Decimal,
    currency: str,
    date: datetime.date,
    notes: str = "",
    reference: str | None = None,
    counterpart: Transaction | None = None,
    import_batch: ImportBatch | None = None,
    overdraft_allowed: bool = False,
) -> tuple[Transaction, bool]:
    """Posts into a portfolio the caller has locked; the existing posting if the reference was used for it.
    `overdraft_allowed` skips the cash check (a broker's fill only: see `settlement_post`)."""
    reference = reference or None
    if reference is not None:
        existing = Transaction.objects.filter(portfolio=portfolio, reference=reference).first()
        if existing is not None:
            same = (existing.kind, existing.amount, existing.currency, existing.date) == (kind, amount, currency, date)
            if not same:
                raise ConflictError(
                    f"Reference {reference!r} was already posted in this portfolio with different details.",
                    field="reference",
                )
            return existing, False
    tx = Transaction(
        client_id=portfolio.client_id,
        portfolio=portfolio,
        kind=kind,
        amount=amount,
        currency=currency,
        date=date,
        notes=notes,
        reference=reference,
        counterpart=counterpart,
        created_by=_actor_user(actor),
        import_batch=import_batch,
    )
    tx.full_clean()
    tx.save()
    portfolios_history_changed(portfolios=[portfolio.pk], since=tx.date)
    if kind in Transaction.OUTFLOWS and not overdraft_allowed:
        what = outflow_label(kind=tx.kind, amount=tx.amount, currency=tx.currency)
        overdraft_check(portfolio=portfolio, currency=tx.currency, since=tx.date, what=what)
    return tx, True


def _leg_post(
    *,
    actor: Any,
    portfolio_id: int,
    kind: str,
    amount: Decimal,
    currency: str,
    date: datetime.date,
    notes: str,
    import_batch: ImportBatch | None,
    overdraft_allowed: bool = False,
) -> Transaction:
    """A cash leg another record owns (a trade's settlement, a dividend's cash), posted in its locked portfolio
    under the same cash rule as every posting (unless `overdraft_allowed`: a broker's fill only, which is posted in a
    portfolio closed meanwhile too, because it happened at the broker)."""
    portfolio = portfolio_lock(actor=actor, portfolio_id=portfolio_id, for_movement=not overdraft_allowed)
    tx, _ = _post(
        actor=actor,
        portfolio=portfolio,
        kind=kind,
        amount=amount,
        currency=currency,
        date=date,
        notes=notes,
        import_batch=import_batch,
        overdraft_allowed=overdraft_allowed,
    )
    return tx


def _leg_reverse(
    *, actor: Any, transaction: Transaction, kinds: Collection[str], refusal: str, notes: str
) -> Transaction:
    """Cancels a cash leg its owner changed or deleted; a leg of another kind is refused with `refusal`."""
    if transaction.kind not in kinds:
        raise ValidationError(refusal)
    portfolio_lock(actor=actor, portfolio_id=transaction.portfolio_id)
    return _reverse(actor=actor, original=transaction, notes=notes)


@db_transaction.atomic
def transaction_post(
    *,
    actor: Any,
    portfolio_id: int,
    kind: str,
    amount: Decimal,
    currency: str,
    date: datetime.date,
    notes: str = "",
    reference: str | None = None,
) -> tuple[Transaction, bool]:
    """Posts a deposit, withdrawal, interest, fee, tax or tax refund in a portfolio; returns the transaction and
    whether it is new.

    Posting again with a reference already used in the portfolio for the same movement returns the first
    posting.
    """
    if kind not in Transaction.DIRECT:
        raise ValidationError({"kind": DIRECT_KINDS_ONLY})
    portfolio = portfolio_lock(actor=actor, portfolio_id=portfolio_id)
    return _post(
        actor=actor,
        portfolio=portfolio,
        kind=kind,
        amount=amount,
        currency=currency,
        date=date,
        notes=notes,
        reference=reference,
    )


@db_transaction.atomic
def settlement_post(
    *,
    actor: Any,
    portfolio_id: int,
    kind: str,
    amount: Decimal,
    currency: str,
    date: datetime.date,
    notes: str = "",
    import_batch: ImportBatch | None = None,
    overdraft_allowed: bool = False,
) -> Transaction:
    """Posts the cash leg of a trade in its portfolio: a buy takes cash out, a sell brings it in.

    `overdraft_allowed` is for a broker's fill only: the trade happened whatever our books say, so the buy is
    posted even if it leaves the portfolio short of cash or eats into its holds (the cash check is skipped,
    everything else is the same). The caller then reads the shortfall with `ledger.selectors.cash_shortfall`."""
    if kind not in Transaction.SETTLEMENTS:
        raise ValidationError({"kind": "A settlement is a buy or a sell."})
    return _leg_post(
        actor=actor,
        portfolio_id=portfolio_id,
        kind=kind,
        amount=amount,
        currency=currency,
        date=date,
        notes=notes,
        import_batch=import_batch,
        overdraft_allowed=overdraft_allowed,
    )


@db_transaction.atomic
def cash_transfer(
    *,
    actor: Any,
    from_portfolio_id: int,
    to_portfolio_id: int,
    amount: Decimal,
    currency: str,
    date: datetime.date,
    notes: str = "",
) -> tuple[Transaction, Transaction]:
    """Moves cash between two portfolios of one client: the outgoing and the incoming leg, posted together.

    ValidationError if the portfolios are the same or belong to different clients (money leaving a client is a
    withdrawal); ConflictError if the source lacks the cash or either portfolio is closed.
    """
    if from_portfolio_id == to_portfolio_id:
        raise ValidationError({"to_portfolio": "A transfer moves cash to another portfolio."})
    locked = portfolios_lock(actor=actor, portfolio_ids={from_portfolio_id, to_portfolio_id})
    source, target = locked[from_portfolio_id], locked[to_portfolio_id]
    if source.client_id != target.client_id:
        raise ValidationError({"to_portfolio": "Cash moves between portfolios of the same client only."})
    notes = notes or f"Transfer from {source.name} to {target.name}"
    out, _ = _post(
        actor=actor, portfolio=source, kind=Kind.TRANSFER_OUT, amount=amount, currency=currency, date=date, notes=notes
    )
    into, _ = _post(
        actor=actor,
        portfolio=target,
        kind=Kind.TRANSFER_IN,
        amount=amount,
        currency=currency,
        date=date,
        notes=notes,
        counterpart=out,
    )
    return out, into


def _reverse(*, actor: Any, original: Transaction, notes: str) -> Transaction:
    """Posts the reversal of a transaction whose portfolio the caller has locked."""
    original = Transaction.objects.select_related("portfolio").get(pk=original.pk)
    if original.reverses_id is not None:
        raise ConflictError("A reversal cannot itself be reversed; post a new transaction instead.")
    if Transaction.objects.filter(reverses=original).exists():
        raise ConflictError("This transaction has already been reversed.")
    reversal = Transaction(
        client_id=original.client_id,
        portfolio_id=original.portfolio_id,
        kind=original.kind,
        amount=original.amount,
        currency=original.currency,
        date=timezone.localdate(),
        notes=notes or f"Reversal of transaction {original.pk}",
        created_by=_actor_user(actor),
        reverses=original,
    )
    reversal.full_clean()
    reversal.save()
    portfolios_history_changed(portfolios=[original.portfolio_id], since=original.date)
    if original.kind in Transaction.INFLOWS:  # undoing an inflow takes the cash out from the original's date
        what = f"reversal of {original.amount} {original.currency}"
        overdraft_check(portfolio=original.portfolio, currency=original.currency, since=original.date, what=what)
    return reversal


def _transfer_legs(tx: Transaction) -> tuple[Transaction, Transaction]:
    """The outgoing and incoming legs of the transfer `tx` is a leg of."""
    if tx.kind == Kind.TRANSFER_IN:
        assert tx.counterpart_id is not None  # held by ledger_transaction_transfer_in_has_counterpart
        return Transaction.objects.get(pk=tx.counterpart_id), tx
    return tx, Transaction.objects.get(counterpart=tx)


@db_transaction.atomic
def transaction_reverse(*, actor: Any, transaction: Transaction, notes: str = "") -> Transaction:
    """Cancels a directly posted movement (deposit, withdrawal, interest, fee, tax, tax refund) by posting its
    reversal; the original stays as it was. Reversing either leg of a transfer reverses both (the incoming leg's
    reversal first, so the cash goes back before it is taken); the answer is the reversal of the leg asked for."""
    if transaction.kind in Transaction.SETTLEMENTS:
        raise ConflictError("This transaction settles a trade; change or delete the trade instead.")
    if transaction.kind in Transaction.DIVIDENDS:
        raise ConflictError("This transaction is a dividend's cash; change or delete the dividend instead.")
    if transaction.reverses_id is None and transaction.kind in Transaction.TRANSFERS:
        out, into = _transfer_legs(transaction)
        portfolios_lock(actor=actor, portfolio_ids={out.portfolio_id, into.portfolio_id})
        into_reversal = _reverse(actor=actor, original=into, notes=notes)
        out_reversal = _reverse(actor=actor, original=out, notes=notes)
        return into_reversal if transaction.pk == into.pk else out_reversal
    portfolio_lock(actor=actor, portfolio_id=transaction.portfolio_id)
    return _reverse(actor=actor, original=transaction, notes=notes)


@db_transaction.atomic
def settlement_reverse(*, actor: Any, transaction: Transaction, notes: str = "") -> Transaction:
    """Cancels a trade's cash leg (the trade was changed or deleted)."""
    return _leg_reverse(
        actor=actor,
        transaction=transaction,
        kinds=Transaction.SETTLEMENTS,
        refusal="Only a trade's settlement is reversed through its trade.",
        notes=notes,
    )


@db_transaction.atomic
def dividend_cash_post(
    *,
    actor: Any,
    portfolio_id: int,
    amount: Decimal,
    currency: str,
    date: datetime.date,
    notes: str = "",
    import_batch: ImportBatch | None = None,
) -> Transaction:
    """Posts a dividend's net cash in its portfolio on its pay date. Only the dividend's own service calls this,
    and the dividend points at what it returns, as a trade points at its settlement."""
    return _leg_post(
        actor=actor,
        portfolio_id=portfolio_id,
        kind=Kind.DIVIDEND,
        amount=amount,
        currency=currency,
        date=date,
        notes=notes,
        import_batch=import_batch,
    )


@db_transaction.atomic
def dividend_cash_reverse(*, actor: Any, transaction: Transaction, notes: str = "") -> Transaction:
    """Cancels a dividend's cash (the dividend was changed or deleted)."""
    return _leg_reverse(
        actor=actor,
        transaction=transaction,
        kinds=Transaction.DIVIDENDS,
        refusal="Only a dividend's cash is reversed through its dividend.",
        notes=notes,
    )


# --- Cash holds ------------------------------------------------------------------------------------
# Cash set aside under an opaque reference its holder chose ("order:42"): the ledger knows nothing of what it is
# for. The rule is `ledger.selectors.cash_shortfalls`'s: from today on a portfolio's cash per currency stays at or
# above its holds; `cash_free` is what that rule leaves to take out or hold.

HOLD_TAKEN = "Reference {reference!r} already holds cash."
NO_HOLD = "No cash is on hold under reference {reference!r}."


def _cash_hold_check(*, portfolio: Portfolio, currency: str, needed: Decimal, reference: str) -> None:
    """InsufficientCash unless the portfolio's free cash in `currency` covers `needed` more on hold. Inside the
    portfolio's lock."""
    available = cash_free(portfolio_id=portfolio.pk, currency=currency)
    if needed <= available:
        return
    on_hold = cash_on_hold(portfolio_id=portfolio.pk).get(currency, Decimal("0.0000"))
    raise InsufficientCash(
        f"Insufficient cash in {portfolio.name}: the hold {reference} needs {needed - available} {currency} more "
        f"than the {available} {currency} available ({on_hold} {currency} on hold).",
        currency=currency,
        needed=needed,
        available=available,
        field="amount",
    )


def _positive_amount(amount: Decimal, *, zero_allowed: bool = False) -> None:
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0 or (amount == 0 and not zero_allowed):
        raise ValidationError({"amount": "A hold's amount must be greater than zero."})


@db_transaction.atomic
def cash_hold_place(*, actor: Any, portfolio_id: int, currency: str, amount: Decimal, reference: str) -> CashHold:
    """Puts `amount` of `currency` on hold in a portfolio under `reference` (unique across holds).

    InsufficientCash (a ConflictError naming what is missing) when the portfolio's free cash in that currency
    (`ledger.selectors.cash_free`) is less than `amount`; ConflictError when `reference` already holds cash or the
    portfolio is closed; ValidationError for an amount that is not positive or a currency that is not ISO 4217."""
    _positive_amount(amount)
    portfolio = portfolio_lock(actor=actor, portfolio_id=portfolio_id)
    if CashHold.objects.filter(reference=reference).exists():
        raise ConflictError(HOLD_TAKEN.format(reference=reference), field="reference")
    hold = CashHold(
        client_id=portfolio.client_id, portfolio=portfolio, currency=currency, amount=amount, reference=reference
    )
    hold.full_clean()
    _cash_hold_check(portfolio=portfolio, currency=hold.currency, needed=hold.amount, reference=reference)
    try:
        with db_transaction.atomic():  # another portfolio's writer may take the reference meanwhile
            hold.save()
    except IntegrityError:
        raise ConflictError(HOLD_TAKEN.format(reference=reference), field="reference") from None
    return hold


def _locked_hold(*, actor: Any, reference: str) -> CashHold | None:
    """The hold under `reference`, its portfolio locked first (None if there is none once the lock is held)."""
    portfolio_id = CashHold.objects.filter(reference=reference).values_list("portfolio_id", flat=True).first()
    if portfolio_id is None:
        return None
    portfolio = portfolio_lock(actor=actor, portfolio_id=portfolio_id, for_movement=False)
    hold = CashHold.objects.filter(reference=reference, portfolio_id=portfolio_id).first()
    if hold is not None:
        hold.portfolio = portfolio
    return hold


@db_transaction.atomic
def cash_hold_resize(*, actor: Any, reference: str, amount: Decimal) -> CashHold | None:
    """Changes the amount on hold under `reference` to `amount` (0 releases it: None). Growing is checked as placing
    is (InsufficientCash for the growth); shrinking always succeeds. ConflictError when nothing is on hold under
    `reference`."""
    _positive_amount(amount, zero_allowed=True)
    hold = _locked_hold(actor=actor, reference=reference)
    if hold is None:
        raise ConflictError(NO_HOLD.format(reference=reference), field="reference")
    if amount == 0:
        hold.delete()
        return None
    growth = amount - hold.amount
    if growth > 0:
        if not hold.portfolio.is_open:
            raise ConflictError(CLOSED.format(portfolio=hold.portfolio), field="portfolio")
        _cash_hold_check(portfolio=hold.portfolio, currency=hold.currency, needed=growth, reference=reference)
    hold.amount = amount
    hold.full_clean()
    hold.save()
    return hold


@db_transaction.atomic
def cash_hold_release(*, actor: Any, reference: str) -> bool:
    """Takes the cash under `reference` off hold: whether there was any (releasing twice is harmless)."""
    hold = _locked_hold(actor=actor, reference=reference)
    if hold is None:
        return False
    hold.delete()
    return True
