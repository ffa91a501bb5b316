"""CommandLineActor is a complete actor: every role, permission and visibility check reads it without relying on
which condition is asked first."""

import pytest
from django.db.models import Q

from accounts.roles import is_advisor, role_names
from clients.models import Client, Portfolio
from clients.scope import ClientScope
from clients.services import staff_nameable_by
from clients.tests.factories import ClientFactory
from portfolio_site.imports.formats import FORMATS, import_permission_check
from portfolio_site.imports.run import CommandLineActor

pytestmark = pytest.mark.django_db


def test_command_line_actor_has_no_roles_and_is_no_advisor():
    actor = CommandLineActor()

    # is_advisor reads the groups without asking is_superuser first: it must not fail.
    assert role_names(actor) == frozenset()
    assert is_advisor(actor) is False
    assert ClientScope.of(actor).sees_all is True


def test_command_line_actor_sees_every_client_and_portfolio():
    clients = ClientFactory.create_batch(2)
    actor = CommandLineActor()

    assert set(Client.objects.visible_to(actor)) == set(clients)
    assert Portfolio.objects.visible_to(actor).count() == 2
    scope = ClientScope.of(actor)
    assert all(scope.allows(client) for client in clients)
    assert scope.filter() == Q()
    assert scope.cache_key == "all"


def test_command_line_actor_holds_every_permission_any_door_asks_for():
    actor = CommandLineActor()

    assert actor.has_perm("ledger.add_transaction")
    assert actor.has_perms(["clients.add_client", "clients.change_client"])
    assert actor.has_module_perms("holdings")
    for kind in FORMATS:
        import_permission_check(actor=actor, kind=kind)  # raises if any permission were missing


def test_command_line_actor_is_no_user_of_the_database(superuser):
    actor = CommandLineActor()

    assert actor.pk is None
    assert actor.is_authenticated
    assert actor.is_active
    assert not actor.is_anonymous
    assert list(actor.groups.all()) == []
    assert list(actor.user_permissions.all()) == []
    # Who it may name as a client's advisor: anyone, as Operations may.
    assert superuser in staff_nameable_by(actor)
