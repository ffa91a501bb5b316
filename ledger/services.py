"""Posting and reversing cash. Every write locks the client's row first, then checks the balance."""

import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction as db_transaction
from django.utils import timezone

from clients.services import client_lock
from portfolio_site.errors import ConflictError

from .models import Transaction
from .selectors import cash_available

Kind = Transaction.Kind


def _refuse_overdraft(*, client_id: int, currency: str, outflow: Decimal, what: str) -> None:
    available = cash_available(client_id=client_id, currency=currency)
    if outflow > available:
        raise ConflictError(
            f"Insufficient cash: the {what} needs {outflow} {currency} but only {available} {currency} is available.",
            field="amount",
        )


def _post(
    *,
    actor: Any,
    client_id: int,
    kind: str,
    amount: Decimal,
    currency: str,
    date: datetime.date,
    notes: str = "",
    reference: str | None = None,
) -> tuple[Transaction, bool]:
    client_lock(actor=actor, client_id=client_id)
    reference = reference or None
    if reference is not None:
        existing = Transaction.objects.filter(client_id=client_id, reference=reference).first()
        if existing is not None:
            same = (existing.kind, existing.amount, existing.currency, existing.date) == (kind, amount, currency, date)
            if not same:
                raise ConflictError(
                    f"Reference {reference!r} was already posted for this client with different details.",
                    field="reference",
                )
            return existing, False
    tx = Transaction(
        client_id=client_id,
        kind=kind,
        amount=amount,
        currency=currency,
        date=date,
        notes=notes,
        reference=reference,
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    tx.full_clean()
    if kind in Transaction.OUTFLOWS:
        _refuse_overdraft(
            client_id=client_id, currency=tx.currency, outflow=tx.amount, what=tx.get_kind_display().lower()
        )
    tx.save()
    return tx, True


@db_transaction.atomic
def transaction_post(
    *,
    actor: Any,
    client_id: int,
    kind: str,
    amount: Decimal,
    currency: str,
    date: datetime.date,
    notes: str = "",
    reference: str | None = None,
) -> tuple[Transaction, bool]:
    """Posts a deposit or withdrawal; returns the transaction and whether it is new.

    Posting again with a reference already used for the same movement returns the first posting.
    """
    if kind not in Transaction.CASH_MOVEMENTS:
        raise ValidationError({"kind": "Only deposits and withdrawals are posted directly; trades settle themselves."})
    return _post(
        actor=actor,
        client_id=client_id,
        kind=kind,
        amount=amount,
        currency=currency,
        date=date,
        notes=notes,
        reference=reference,
    )


@db_transaction.atomic
def settlement_post(
    *, actor: Any, client_id: int, kind: str, amount: Decimal, currency: str, date: datetime.date, notes: str = ""
) -> Transaction:
    """Posts the cash leg of a trade: a buy takes cash out, a sell brings it in."""
    if kind not in Transaction.SETTLEMENTS:
        raise ValidationError({"kind": "A settlement is a buy or a sell."})
    tx, _ = _post(actor=actor, client_id=client_id, kind=kind, amount=amount, currency=currency, date=date, notes=notes)
    return tx


def _reverse(*, actor: Any, original: Transaction, notes: str) -> Transaction:
    client_lock(actor=actor, client_id=original.client_id)
    original = Transaction.objects.get(pk=original.pk)
    if original.reverses_id is not None:
        raise ConflictError("A reversal cannot itself be reversed; post a new transaction instead.")
    if Transaction.objects.filter(reverses=original).exists():
        raise ConflictError("This transaction has already been reversed.")
    if original.kind in Transaction.INFLOWS:
        _refuse_overdraft(
            client_id=original.client_id, currency=original.currency, outflow=original.amount, what="reversal"
        )
    reversal = Transaction(
        client_id=original.client_id,
        kind=original.kind,
        amount=original.amount,
        currency=original.currency,
        date=timezone.localdate(),
        notes=notes or f"Reversal of transaction {original.pk}",
        created_by=actor if getattr(actor, "pk", None) else None,
        reverses=original,
    )
    reversal.full_clean()
    reversal.save()
    return reversal


@db_transaction.atomic
def transaction_reverse(*, actor: Any, transaction: Transaction, notes: str = "") -> Transaction:
    """Cancels a deposit or withdrawal by posting its reversal; the original stays as it was."""
    if transaction.kind in Transaction.SETTLEMENTS:
        raise ConflictError("This transaction settles a trade; change or delete the trade instead.")
    return _reverse(actor=actor, original=transaction, notes=notes)


@db_transaction.atomic
def settlement_reverse(*, actor: Any, transaction: Transaction, notes: str = "") -> Transaction:
    """Cancels a trade's cash leg (the trade was changed or deleted)."""
    if transaction.kind not in Transaction.SETTLEMENTS:
        raise ValidationError("Only a trade's settlement is reversed through its trade.")
    return _reverse(actor=actor, original=transaction, notes=notes)
