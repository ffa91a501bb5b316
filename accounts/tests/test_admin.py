"""The users admin: administrators manage staff; Operations and Auditors may look; advisors and others may not."""

from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from accounts import services
from accounts.models import User
from accounts.roles import Role
from accounts.tests.factories import PASSWORD, AdvisorFactory, UserFactory
from portfolio_site.testing import page_queries

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:accounts_user_changelist"


def _change_form(user: User, **fields: Any) -> dict[str, Any]:
    data = {
        "email": user.email,
        "full_name": user.full_name,
        "is_active": "on" if user.is_active else "",
        "is_verified": "on" if user.is_verified else "",
        "is_staff": "on" if user.is_staff else "",
        "is_superuser": "on" if user.is_superuser else "",
        "groups": [group.pk for group in user.groups.all()],
        "user_permissions": [],
        # The read-only sessions inline's management form, as the browser sends it.
        "login_sessions-TOTAL_FORMS": "0",
        "login_sessions-INITIAL_FORMS": "0",
        # The external identities inline's (no row added).
        "external_identities-TOTAL_FORMS": "0",
        "external_identities-INITIAL_FORMS": "0",
    }
    return {name: value for name, value in (data | fields).items() if value != ""}


def test_user_changelist_loads_with_the_same_query_count_for_5_and_50_rows(client, superuser, count_queries):
    client.force_login(superuser)
    url = reverse(CHANGELIST)
    AdvisorFactory.create_batch(2)
    UserFactory.create_batch(2)
    page_queries(client, count_queries, url)  # warm up per-process caches (content types, ...)
    few = page_queries(client, count_queries, url)

    AdvisorFactory.create_batch(25)
    UserFactory.create_batch(20)
    many = page_queries(client, count_queries, url)

    assert len(client.get(url).context["cl"].result_list) == 50
    assert few == many


@pytest.mark.parametrize("role", ["operations", "auditor"])
def test_user_changelist_is_visible_to_operations_and_auditors_but_read_only(client, request, role):
    viewer = request.getfixturevalue(role)
    client.force_login(viewer)

    response = client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    assert response.context["has_add_permission"] is False
    assert client.get(reverse("admin:accounts_user_add")).status_code == 403


@pytest.mark.parametrize("role", ["advisor", "nobody"])
def test_user_changelist_is_forbidden_to_advisors_and_users_in_no_group(client, request, role):
    client.force_login(request.getfixturevalue(role))

    assert client.get(reverse(CHANGELIST)).status_code == 403


def test_user_changelist_search_finds_by_email(client, superuser):
    wanted = UserFactory(email="needle@example.com")
    UserFactory(email="hay@example.com")
    client.force_login(superuser)

    response = client.get(reverse(CHANGELIST), {"q": "needle"})

    assert [user.pk for user in response.context["cl"].result_list] == [wanted.pk]


def test_adding_a_user_in_the_admin_goes_through_user_create(client, superuser):
    client.force_login(superuser)
    data = {
        "email": "New.Person@Example.com",
        "full_name": "New Person",
        "usable_password": "true",
        "password1": PASSWORD,
        "password2": PASSWORD,
    }

    with mock.patch.object(services, "user_create", wraps=services.user_create) as create:
        response = client.post(reverse("admin:accounts_user_add"), data)

    assert response.status_code == 302
    create.assert_called_once()
    user = User.objects.get(email="new.person@example.com")
    assert user.check_password(PASSWORD)
    assert response["Location"] == reverse("admin:accounts_user_change", args=[user.pk])


def test_adding_a_user_without_a_usable_password_in_the_admin(client, superuser):
    client.force_login(superuser)

    response = client.post(
        reverse("admin:accounts_user_add"), {"email": "sso@example.com", "full_name": "", "usable_password": "false"}
    )

    assert response.status_code == 302
    assert not User.objects.get(email="sso@example.com").has_usable_password()


def test_adding_a_user_with_a_weak_password_is_refused_by_the_form(client, superuser):
    client.force_login(superuser)
    data = {"email": "weak@example.com", "usable_password": "true", "password1": "password", "password2": "password"}

    response = client.post(reverse("admin:accounts_user_add"), data)

    assert response.status_code == 200
    assert "password2" in response.context["adminform"].form.errors
    assert not User.objects.filter(email="weak@example.com").exists()


def test_changing_a_user_in_the_admin_goes_through_user_update_and_sets_groups(client, superuser):
    user = UserFactory(full_name="Old Name")
    advisors = Group.objects.get(name=Role.ADVISORS)
    client.force_login(superuser)

    with mock.patch.object(services, "user_update", wraps=services.user_update) as update:
        response = client.post(
            reverse("admin:accounts_user_change", args=[user.pk]),
            _change_form(user, full_name="New Name", groups=[advisors.pk]),
        )

    assert response.status_code == 302
    update.assert_called_once()
    user.refresh_from_db()
    assert user.full_name == "New Name"
    assert list(user.groups.all()) == [advisors]


def test_making_a_user_superuser_in_the_admin_also_makes_them_staff(client, superuser):
    user = UserFactory(is_staff=False)
    client.force_login(superuser)

    response = client.post(
        reverse("admin:accounts_user_change", args=[user.pk]), _change_form(user, is_superuser="on", is_staff="")
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert (user.is_superuser, user.is_staff) == (True, True)


def test_operations_cannot_save_a_user_change(client, operations):
    user = UserFactory(full_name="Unchanged")
    client.force_login(operations)

    response = client.post(
        reverse("admin:accounts_user_change", args=[user.pk]), _change_form(user, full_name="Changed")
    )

    assert response.status_code == 403
    user.refresh_from_db()
    assert user.full_name == "Unchanged"


def test_changing_a_users_email_in_the_admin_clears_is_verified(client, superuser):
    user = UserFactory(email="old@example.com", is_verified=True)
    client.force_login(superuser)

    response = client.post(
        reverse("admin:accounts_user_change", args=[user.pk]), _change_form(user, email="new@example.com")
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert (user.email, user.is_verified) == ("new@example.com", False)


# --- External identities (Supabase user ids), linked on the user's page ----------------------------------------

SUPABASE_ID = "8d0f5f7e-4a5b-4c1e-9b7a-2f1e3d4c5b6a"


def test_a_superuser_links_a_supabase_user_on_the_users_page_and_it_is_audited(client, superuser):
    from accounts.models import ExternalIdentity, SecurityEvent

    user = UserFactory()
    client.force_login(superuser)
    form = _change_form(
        user,
        **{
            "external_identities-TOTAL_FORMS": "1",
            "external_identities-0-provider": "supabase",
            "external_identities-0-subject": SUPABASE_ID.upper(),
        },
    )
    response = client.post(reverse("admin:accounts_user_change", args=[user.pk]), form)

    assert response.status_code == 302, response.content
    identity = ExternalIdentity.objects.get(user=user)
    assert (identity.subject, identity.linked_by) == (SUPABASE_ID, superuser)
    assert SecurityEvent.objects.filter(kind="identity_linked", user=user).exists()

    unlink = _change_form(
        user,
        **{
            "external_identities-TOTAL_FORMS": "1",
            "external_identities-INITIAL_FORMS": "1",
            "external_identities-0-id": str(identity.pk),
            "external_identities-0-user": str(user.pk),
            "external_identities-0-DELETE": "on",
        },
    )
    response = client.post(reverse("admin:accounts_user_change", args=[user.pk]), unlink)
    assert response.status_code == 302, response.content
    assert not ExternalIdentity.objects.exists()
    assert SecurityEvent.objects.filter(kind="identity_unlinked", user=user).exists()


def test_a_supabase_user_linked_elsewhere_is_refused_on_the_users_page(client, superuser):
    from accounts.models import ExternalIdentity

    ExternalIdentity.objects.create(provider="supabase", subject=SUPABASE_ID, user=UserFactory())
    user = UserFactory()
    client.force_login(superuser)
    form = _change_form(
        user,
        **{
            "external_identities-TOTAL_FORMS": "1",
            "external_identities-0-provider": "supabase",
            "external_identities-0-subject": SUPABASE_ID,
        },
    )
    response = client.post(reverse("admin:accounts_user_change", args=[user.pk]), form)
    assert response.status_code == 200
    assert b"already linked" in response.content
    assert not ExternalIdentity.objects.filter(user=user).exists()


def test_operations_do_not_see_nor_make_links(client, operations):
    client.force_login(operations)
    response = client.get(reverse("admin:accounts_user_change", args=[UserFactory().pk]))
    assert response.status_code in {200, 403}
    assert b"external_identities-TOTAL_FORMS" not in response.content
