from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet

from accounts.roles import is_advisor, sees_all_clients
from portfolio_site.cache import invalidate_namespace

from .models import Client

CACHE_NAMESPACE = "clients"
NOT_YOURS = "You may only act on clients you are allowed to see."


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


def _names_only_themselves(actor: Any) -> bool:
    """Whether the actor may name no member of staff but themselves (as a client's advisor, or in a filter).

    Only those who see every client may name other staff; anyone else learns nothing of who else works here.
    """
    return not sees_all_clients(actor)


def staff_nameable_by(actor: Any) -> QuerySet[Any]:
    """The users this actor may name: the choices of an `?advisor=` filter (inactive users included, so that
    Operations can find a departed advisor's clients). Any other id reads as "does not exist"."""
    users = get_user_model().objects.all()
    if not _names_only_themselves(actor):
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
    if _names_only_themselves(actor) and advisor.pk != actor.pk:
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
) -> Client:
    if not sees_all_clients(actor) and not is_advisor(actor):
        raise PermissionDenied(NOT_YOURS)
    if advisor is None and is_advisor(actor):
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
    """Deletes a client with no history; one with allocations or transactions is protected (409)."""
    locked = client_lock(actor=actor, client_id=client.pk)
    locked.delete()
    invalidate_namespace(CACHE_NAMESPACE)
