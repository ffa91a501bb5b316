"""A user's roles and permissions, cached across requests (accounts.grants), and every change to who holds what
taking effect on the next request."""

from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.db.models.signals import post_migrate

from accounts.models import User
from accounts.roles import Role, role_names
from accounts.tests.factories import AdvisorFactory, UserFactory
from clients.scope import ClientScope

pytestmark = pytest.mark.django_db

VIEW_CLIENT = "clients.view_client"


def next_request(user: User) -> User:
    """The user as the next request loads them: a new object, with nothing cached on it."""
    return User.objects.get(pk=user.pk)


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Any) -> Any:
    """Runs a change as a committed transaction would: the grants' version is bumped on commit."""

    def run(change: Any) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            change()

    return run


def test_the_next_request_reads_roles_and_permissions_from_the_cache(django_assert_num_queries: Any) -> None:
    advisor = AdvisorFactory()
    assert next_request(advisor).has_perm(VIEW_CLIENT)

    user = next_request(advisor)
    with django_assert_num_queries(0):
        assert user.has_perm(VIEW_CLIENT)
        assert role_names(user) == {Role.ADVISORS}


def test_joining_a_group_grants_its_permissions_and_role_on_the_next_request(committed: Any) -> None:
    user = UserFactory(is_staff=True)
    assert not next_request(user).has_perm(VIEW_CLIENT)

    committed(lambda: user.groups.add(Group.objects.get(name=Role.ADVISORS)))

    fresh = next_request(user)
    assert fresh.has_perm(VIEW_CLIENT)
    assert ClientScope.of(fresh).advisor_id == user.pk


def test_leaving_a_group_revokes_its_permissions_and_role_on_the_next_request(committed: Any) -> None:
    advisor = AdvisorFactory()
    assert next_request(advisor).has_perm(VIEW_CLIENT)

    committed(lambda: advisor.groups.remove(Group.objects.get(name=Role.ADVISORS)))

    assert not next_request(advisor).has_perm(VIEW_CLIENT)
    assert role_names(next_request(advisor)) == frozenset()


def test_a_permission_taken_from_a_group_is_refused_on_the_next_request(committed: Any) -> None:
    advisor = AdvisorFactory()
    assert next_request(advisor).has_perm(VIEW_CLIENT)
    permission = Permission.objects.get(content_type__app_label="clients", codename="view_client")

    committed(lambda: Group.objects.get(name=Role.ADVISORS).permissions.remove(permission))

    assert not next_request(advisor).has_perm(VIEW_CLIENT)


def test_a_permission_given_to_the_user_is_granted_on_the_next_request(committed: Any) -> None:
    user = UserFactory(is_staff=True)
    assert not next_request(user).has_perm(VIEW_CLIENT)
    permission = Permission.objects.get(content_type__app_label="clients", codename="view_client")

    committed(lambda: user.user_permissions.add(permission))

    assert next_request(user).has_perm(VIEW_CLIENT)


def test_renaming_a_group_changes_the_role_on_the_next_request(committed: Any) -> None:
    advisor = AdvisorFactory()
    assert ClientScope.of(next_request(advisor)).advisor_id == advisor.pk
    group = Group.objects.get(name=Role.ADVISORS)
    group.name = "Former advisors"

    committed(group.save)

    scope = ClientScope.of(next_request(advisor))
    assert (scope.sees_all, scope.advisor_id) == (False, None)


def test_deleting_a_group_revokes_what_it_granted_on_the_next_request(committed: Any) -> None:
    user = UserFactory(is_staff=True)
    group = Group.objects.create(name="Temporary")
    group.permissions.add(Permission.objects.get(content_type__app_label="clients", codename="view_client"))
    user.groups.add(group)
    assert next_request(user).has_perm(VIEW_CLIENT)

    committed(group.delete)

    assert not next_request(user).has_perm(VIEW_CLIENT)


def test_a_change_holds_for_the_rest_of_its_own_transaction(django_capture_on_commit_callbacks: Any) -> None:
    advisor = AdvisorFactory()
    assert next_request(advisor).has_perm(VIEW_CLIENT)

    with django_capture_on_commit_callbacks(execute=False):  # not committed yet
        advisor.groups.remove(Group.objects.get(name=Role.ADVISORS))
        assert not next_request(advisor).has_perm(VIEW_CLIENT)


def test_a_migrate_run_looks_every_users_grants_up_again(committed: Any) -> None:
    advisor = AdvisorFactory()
    assert next_request(advisor).has_perm(VIEW_CLIENT)
    permission = Permission.objects.get(content_type__app_label="clients", codename="view_client")
    # As a data migration would: through the relation's table, which sends no signal.
    Group.permissions.through.objects.filter(permission=permission).delete()
    assert next_request(advisor).has_perm(VIEW_CLIENT)  # still the cached grants

    accounts = apps.get_app_config("accounts")
    committed(
        lambda: post_migrate.send(
            sender=accounts, app_config=accounts, verbosity=0, interactive=False, using="default", apps=apps, plan=[]
        )
    )

    assert not next_request(advisor).has_perm(VIEW_CLIENT)


def test_a_deactivated_user_has_no_permissions_whatever_is_cached() -> None:
    advisor = AdvisorFactory()
    assert next_request(advisor).has_perm(VIEW_CLIENT)

    User.objects.filter(pk=advisor.pk).update(is_active=False)

    assert not next_request(advisor).has_perm(VIEW_CLIENT)


def test_another_user_joining_a_group_leaves_this_users_cached_grants_in_place(
    committed: Any, django_assert_num_queries: Any
) -> None:
    advisor = AdvisorFactory()
    assert next_request(advisor).has_perm(VIEW_CLIENT)

    committed(lambda: UserFactory().groups.add(Group.objects.get(name=Role.ADVISORS)))

    user = next_request(advisor)
    with django_assert_num_queries(0):
        assert user.has_perm(VIEW_CLIENT)


def test_users_added_from_the_groups_side_are_granted_on_the_next_request(committed: Any) -> None:
    user = UserFactory(is_staff=True)
    assert not next_request(user).has_perm(VIEW_CLIENT)

    committed(lambda: Group.objects.get(name=Role.ADVISORS).user_set.add(user))

    assert next_request(user).has_perm(VIEW_CLIENT)
