from typing import Any

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from accounts.models import User
from accounts.roles import Role
from accounts.tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db
STRONG = "a-long-and-unusual-passphrase-42"


def test_first_registration_creates_an_administrator_without_authentication() -> None:
    response = APIClient().post(
        "/api/v1/auth/register/", {"email": "Founder@Example.com", "password": STRONG, "full_name": "Founder"}
    )
    assert response.status_code == 201, response.content
    assert response.json()["email"] == "founder@example.com"
    user = User.objects.get()
    assert user.is_superuser
    assert user.is_staff
    assert user.check_password(STRONG)


def test_registration_after_the_first_user_needs_an_administrator(advisor: Any, superuser: Any, api: Any) -> None:
    body = {"email": "new@example.com", "password": STRONG}
    assert APIClient().post("/api/v1/auth/register/", body).status_code == 401
    assert api(advisor).post("/api/v1/auth/register/", body).status_code == 403
    response = api(superuser).post("/api/v1/auth/register/", body)
    assert response.status_code == 201
    assert not User.objects.get(email="new@example.com").is_superuser


def test_registration_refuses_a_weak_password_and_a_taken_email(superuser: Any, api: Any) -> None:
    weak = api(superuser).post("/api/v1/auth/register/", {"email": "new@example.com", "password": "password"})
    assert weak.status_code == 400
    assert "password" in weak.json()
    taken = api(superuser).post("/api/v1/auth/register/", {"email": superuser.email.upper(), "password": STRONG})
    assert taken.status_code == 400
    assert "email" in taken.json()


def test_token_is_issued_for_email_and_password_and_opens_me() -> None:
    user = UserFactory(email="anna@example.com", roles=[Role.ADVISORS])
    response = APIClient().post("/api/v1/auth/token/", {"email": "ANNA@example.com", "password": PASSWORD})
    assert response.status_code == 200, response.content
    tokens = response.json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    me = client.get("/api/v1/auth/me/")
    assert me.status_code == 200
    assert (me.json()["id"], me.json()["roles"]) == (user.pk, ["Advisors"])
    assert APIClient().post("/api/v1/auth/token/verify/", {"token": tokens["access"]}).status_code == 200
    refreshed = APIClient().post("/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]})
    assert refreshed.status_code == 200
    assert "access" in refreshed.json()


def test_wrong_password_gets_no_token() -> None:
    UserFactory(email="anna@example.com")
    response = APIClient().post("/api/v1/auth/token/", {"email": "anna@example.com", "password": "wrong"})
    assert response.status_code == 401


def test_me_needs_authentication() -> None:
    assert APIClient().get("/api/v1/auth/me/").status_code == 401


@pytest.mark.parametrize("role_user", ["advisor", "operations", "auditor", "nobody"])
def test_users_endpoint_is_for_administrators_only(role_user: str, request: Any, api: Any) -> None:
    client = api(request.getfixturevalue(role_user))
    assert client.get("/api/v1/users/").status_code == 403
    assert client.post("/api/v1/users/", {"email": "x@example.com"}).status_code == 403


def test_administrator_creates_a_user_with_roles_and_a_validated_password(superuser: Any, api: Any) -> None:
    response = api(superuser).post(
        "/api/v1/users/",
        {"email": "Ben@Example.com", "full_name": "Ben", "password": STRONG, "groups": ["Advisors"], "is_staff": True},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert "password" not in body
    assert (body["email"], body["groups"]) == ("ben@example.com", ["Advisors"])
    assert User.objects.get(email="ben@example.com").check_password(STRONG)
    weak = api(superuser).post("/api/v1/users/", {"email": "c@example.com", "password": "123"})
    assert weak.status_code == 400
    assert "password" in weak.json()


def test_administrator_deactivates_a_user_and_users_are_never_deleted(superuser: Any, advisor: Any, api: Any) -> None:
    client = api(superuser)
    response = client.patch(f"/api/v1/users/{advisor.pk}/", {"is_active": False})
    assert response.status_code == 200
    advisor.refresh_from_db()
    assert not advisor.is_active
    assert client.delete(f"/api/v1/users/{advisor.pk}/").status_code == 405


def test_administrator_changes_roles_and_password(superuser: Any, advisor: Any, api: Any) -> None:
    response = api(superuser).patch(
        f"/api/v1/users/{advisor.pk}/", {"groups": ["Operations", "Auditors"], "password": STRONG}, format="json"
    )
    assert response.status_code == 200, response.content
    advisor.refresh_from_db()
    assert set(advisor.groups.values_list("name", flat=True)) == {"Operations", "Auditors"}
    assert advisor.check_password(STRONG)


def test_users_filter_by_group_search_and_active(superuser: Any, advisor: Any, operations: Any, api: Any) -> None:
    UserFactory(email="zed@example.com", full_name="Zed Unique", is_active=False)
    client = api(superuser)

    def emails(query: str) -> set[str]:
        return {row["email"] for row in client.get(f"/api/v1/users/?{query}").json()["results"]}

    assert emails("group=Advisors") == {advisor.email}
    assert emails("search=unique") == {"zed@example.com"}
    assert "zed@example.com" not in emails("is_active=true")


def test_users_list_query_count_does_not_grow_with_rows(superuser: Any, api: Any, assert_list_queries_constant) -> None:
    advisors = Group.objects.get(name="Advisors")
    assert_list_queries_constant(
        api(superuser), "/api/v1/users/", lambda n: [UserFactory().groups.add(advisors) for _ in range(n)]
    )


def test_changing_a_users_email_through_the_api_clears_is_verified(superuser: Any, api: Any) -> None:
    user = UserFactory(email="old@example.com", is_verified=True)

    response = api(superuser).patch(f"/api/v1/users/{user.pk}/", {"email": "new@example.com"}, format="json")

    assert response.status_code == 200, response.content
    user.refresh_from_db()
    assert (user.email, user.is_verified) == ("new@example.com", False)


def test_saving_a_user_with_the_same_email_keeps_is_verified(superuser: Any, api: Any) -> None:
    user = UserFactory(email="same@example.com", is_verified=True)

    response = api(superuser).patch(f"/api/v1/users/{user.pk}/", {"email": "Same@Example.com"}, format="json")

    assert response.status_code == 200, response.content
    user.refresh_from_db()
    assert user.is_verified
