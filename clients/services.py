import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import DateField, F, QuerySet, Value
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from portfolio_site.cache import invalidate_namespace
from portfolio_site.errors import ConflictError
from portfolio_site.imports.models import ImportBatch

from .models import Client, Portfolio
from .scope import ClientScope

CACHE_NAMESPACE = "clients"
NOT_YOURS = "You may only act on clients you are allowed to see."
CLOSED = "The portfolio {portfolio} is closed: it accepts no new movements."


def client_lock(*, actor: Any, client_id: int) -> Client:
    """Lock a client's row for the rest of the transaction, refusing one the actor may not see.

    Every write that moves a client's cash or securities takes this lock first, so two writers on one
    client queue up instead of both passing a balance check.
    """
    try:
        return Client.objects.visible_to(actor).select_for_update().get(pk=client_id)
    except Client.DoesNotExist:
        raise PermissionDenied(NOT_YOURS) from None


def clients_lock(*, actor: Any, client_ids: set[int]) -> dict[int, Client]:
    """Lock several clients in primary-key order (one order for every writer means no deadlock)."""
    return {pk: client_lock(actor=actor, client_id=pk) for pk in sorted(client_ids)}


def portfolio_lock(*, actor: Any, portfolio_id: int, for_movement: bool = True) -> Portfolio:
    """Lock a portfolio's row for the rest of the transaction, refusing one the actor may not see.

    Every write that moves a portfolio's cash or securities takes this lock first, so two writers on one
    portfolio queue up instead of both passing a balance check; `for_movement` refuses a closed portfolio.
    """
    try:
        portfolio = Portfolio.objects.visible_to(actor).select_for_update().get(pk=portfolio_id)
    except Portfolio.DoesNotExist:
        raise PermissionDenied(NOT_YOURS) from None
    if for_movement and not portfolio.is_open:
        raise ConflictError(CLOSED.format(portfolio=portfolio), field="portfolio")
    return portfolio


def portfolios_lock(*, actor: Any, portfolio_ids: set[int], for_movement: bool = True) -> dict[int, Portfolio]:
    """Lock several portfolios in primary-key order (one order for every writer means no deadlock), refusing them
    as `portfolio_lock` refuses each (checked in that order too). One query whatever their number: PostgreSQL
    locks the rows as the sorted result yields them, so the order is the same as one `portfolio_lock` at a time.
    """
    found = Portfolio.objects.visible_to(actor).select_for_update().filter(pk__in=portfolio_ids).order_by("pk")
    locked = {portfolio.pk: portfolio for portfolio in found}
    for pk in sorted(portfolio_ids):
        portfolio = locked.get(pk)
        if portfolio is None:
            raise PermissionDenied(NOT_YOURS)
        if for_movement and not portfolio.is_open:
            raise ConflictError(CLOSED.format(portfolio=portfolio), field="portfolio")
    return {pk: locked[pk] for pk in sorted(portfolio_ids)}


def portfolios_history_changed(*, portfolios: Any, since: datetime.date) -> int:
    """Records that the history of `portfolios` (ids, a queryset or a subquery of ids) changed from `since` on:
    a new data version (caches keyed by it miss) and the earliest stale day of their derived daily figures.
    Called inside the write's transaction, by every write to a portfolio's movements, prices or rates; one
    UPDATE whatever the number of portfolios. How many were marked."""
    return Portfolio.objects.filter(pk__in=portfolios).update(
        data_version=F("data_version") + 1,
        history_changed_from=Least(
            Coalesce(F("history_changed_from"), Value(since, output_field=DateField())),
            Value(since, output_field=DateField()),
        ),
    )


def client_single_portfolio(*, client: Client) -> Portfolio:
    """The portfolio a write naming only its client means: the client's only one. ValidationError (on
    `portfolio`) when the client has several, or none, so that the caller names one."""
    portfolios = list(client.portfolios.order_by("pk")[:2])
    if len(portfolios) == 1:
        return portfolios[0]
    if not portfolios:
        raise ValidationError({"portfolio": f"{client} has no portfolio: create one first."})
    raise ValidationError({"portfolio": f"{client} has several portfolios: name one."})


def staff_nameable_by(actor: Any) -> QuerySet[Any]:
    """The users this actor may name: the choices of an `?advisor=` filter (inactive users included, so that
    Operations can find a departed advisor's clients). Any other id reads as "does not exist"."""
    users = get_user_model().objects.all()
    if not ClientScope.of(actor).names_only_themselves:
        return users
    pk = getattr(actor, "pk", None)
    return users.filter(pk=pk) if pk is not None else users.none()


def advisor_choices(actor: Any) -> QuerySet[Any]:
    """The users this actor may give a client as its advisor: what `client_advisor_check` accepts, as the
    choices of the API's advisor field (and its browsable form)."""
    return staff_nameable_by(actor).filter(is_active=True)


def client_advisor_check(*, actor: Any, advisor: Any) -> None:
    """The advisor a client may be given by this actor: an active user, and the actor themselves unless the
    actor sees every client."""
    if advisor is None:
        raise ValidationError({"advisor": "A client needs a responsible advisor."})
    if not advisor.is_active:
        raise ValidationError({"advisor": "The advisor's account is not active."})
    if ClientScope.of(actor).names_only_themselves and advisor.pk != actor.pk:
        raise PermissionDenied("An advisor may only take on clients for themselves.")


@transaction.atomic
def client_create(
    *,
    actor: Any,
    name: str,
    email: str,
    base_currency: str,
    advisor: Any = None,
    phone: str = "",
    is_active: bool = True,
    notes: str = "",
    portfolios: list[dict[str, Any]] | None = None,
) -> Client:
    """A new client, with one portfolio "Main" in its base currency unless `portfolios` lists others (each
    the keyword arguments of `portfolio_create`; an empty list opens none)."""
    scope = ClientScope.of(actor)
    if not scope.may_hold_clients:
        raise PermissionDenied(NOT_YOURS)
    if advisor is None and scope.advisor_id is not None:
        advisor = actor
    client_advisor_check(actor=actor, advisor=advisor)
    client = Client(
        name=name,
        email=email,
        base_currency=base_currency,
        advisor=advisor,
        phone=phone,
        is_active=is_active,
        notes=notes,
    )
    client.full_clean()
    client.save()
    for fields in [{"name": Portfolio.DEFAULT_NAME}] if portfolios is None else portfolios:
        portfolio_create(actor=actor, client=client, **fields)
    invalidate_namespace(CACHE_NAMESPACE)
    return client


@transaction.atomic
def client_update(*, actor: Any, client: Client, **fields: Any) -> Client:
    locked = client_lock(actor=actor, client_id=client.pk)
    for name, value in fields.items():
        setattr(locked, name, value)
    if "advisor" in fields:
        client_advisor_check(actor=actor, advisor=locked.advisor)
    locked.full_clean()
    locked.save()
    invalidate_namespace(CACHE_NAMESPACE)
    return locked


@transaction.atomic
def client_delete(*, actor: Any, client: Client) -> None:
    """Deletes a client with no history, and its empty portfolios; one with allocations or transactions is
    protected (409)."""
    locked = client_lock(actor=actor, client_id=client.pk)
    locked.delete()
    invalidate_namespace(CACHE_NAMESPACE)


# --- Portfolios --------------------------------------------------------------------------------


@transaction.atomic
def portfolio_create(
    *,
    actor: Any,
    client: Client,
    name: str = Portfolio.DEFAULT_NAME,
    kind: str = Portfolio.Kind.OTHER,
    custodian: str = "",
    account_number: str = "",
    base_currency: str | None = None,
    opened_on: datetime.date | None = None,
    closed_on: datetime.date | None = None,
    notes: str = "",
    import_batch: ImportBatch | None = None,
) -> Portfolio:
    """Opens a portfolio for a client the actor may see; in the client's base currency unless told, from today
    unless told. `import_batch`: the import creating it, if one is (provenance)."""
    locked = client_lock(actor=actor, client_id=client.pk)
    portfolio = Portfolio(
        client=locked,
        name=name,
        kind=kind,
        custodian=custodian,
        account_number=account_number,
        base_currency=base_currency or locked.base_currency,
        opened_on=opened_on or timezone.localdate(),
        closed_on=closed_on,
        notes=notes,
        import_batch=import_batch,
    )
    portfolio.full_clean()
    portfolio.save()
    invalidate_namespace(CACHE_NAMESPACE)
    return portfolio


@transaction.atomic
def portfolio_update(*, actor: Any, portfolio: Portfolio, **fields: Any) -> Portfolio:
    """Changes a portfolio (closing it is setting `closed_on`). Its client never changes: its movements are
    the client's."""
    locked = portfolio_lock(actor=actor, portfolio_id=portfolio.pk, for_movement=False)
    client = fields.pop("client", locked.client)
    if client.pk != locked.client_id:
        raise ValidationError({"client": "A portfolio stays with its client; open a new one for the other client."})
    base_currency = locked.base_currency
    for name, value in fields.items():
        setattr(locked, name, value)
    locked.full_clean()
    locked.save()
    if locked.base_currency != base_currency:
        # Every derived figure is in the base currency: the whole history is to be converted again.
        portfolios_history_changed(portfolios=[locked.pk], since=datetime.date.min)
    invalidate_namespace(CACHE_NAMESPACE)
    return locked


@transaction.atomic
def portfolio_delete(*, actor: Any, portfolio: Portfolio) -> None:
    """Deletes a portfolio that never held anything; one with movements is protected (409)."""
    locked = portfolio_lock(actor=actor, portfolio_id=portfolio.pk, for_movement=False)
    locked.delete()
    invalidate_namespace(CACHE_NAMESPACE)
