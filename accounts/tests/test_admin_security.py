"""The security admin: login sessions (Operations may revoke them, Auditors only look) and the audit trail."""

import datetime
from typing import Any
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import LoginSession, SecurityEvent, User
from accounts.services.events import ClientInfo, security_event_record
from accounts.tests.factories import PASSWORD, UserFactory, access_token_for
from portfolio_site.testing import admin_messages, changelist_ids, page_queries

pytestmark = pytest.mark.django_db
Kind = SecurityEvent.Kind
EndReason = LoginSession.EndReason
SESSIONS = "admin:accounts_loginsession_changelist"
EVENTS = "admin:accounts_securityevent_changelist"
STRONG = "a-long-and-unusual-passphrase-42"


def make_sessions(count: int, user: User | None = None, **fields: Any) -> list[LoginSession]:
    """Sessions of `user`, or each of a user of its own (so that a missing select_related would show)."""
    now = timezone.now()
    return [
        LoginSession.objects.create(
            user=user or UserFactory(),
            ip=f"192.0.2.{n % 250 + 1}",
            user_agent="Firefox/140",
            expires_at=now + datetime.timedelta(hours=12),
            refresh_jti=f"jti-{n}",
            **fields,
        )
        for n in range(count)
    ]


def make_events(count: int) -> None:
    for n in range(count):
        user = UserFactory() if n % 2 else None
        security_event_record(
            kind=Kind.LOGIN_FAILED, client=ClientInfo(ip="203.0.113.5"), user=user, email="stranger@example.com"
        )


def _action_names(response: Any) -> set[str]:
    form = response.context["action_form"]  # None when no action is available at all
    return set() if form is None else {name for name, _ in form.fields["action"].choices if name}


def _revoke(client: Any, sessions: list[LoginSession]) -> Any:
    data = {"action": "revoke_sessions", "_selected_action": [str(session.pk) for session in sessions]}
    return client.post(reverse(SESSIONS), data, REMOTE_ADDR="10.0.0.8", HTTP_USER_AGENT="AdminBrowser/1")


# --- Login sessions ------------------------------------------------------------------------------------


def test_session_changelist_loads_with_the_same_query_count_for_5_and_50_rows(client, superuser, count_queries):
    client.force_login(superuser)
    url = reverse(SESSIONS)
    make_sessions(5)
    page_queries(client, count_queries, url)  # warm up per-process caches (content types, ...)
    few = page_queries(client, count_queries, url)

    make_sessions(45)
    many = page_queries(client, count_queries, url)

    assert len(client.get(url).context["cl"].result_list) == 51  # and the admin's own session
    assert few == many


def test_session_changelist_filters_by_end_reason_and_revoked_and_searches_email_and_ip(client, superuser):
    anna = UserFactory(email="anna@example.com")
    (open_session,) = make_sessions(1, anna)
    (logged_out,) = make_sessions(1, revoked_at=timezone.now(), end_reason=EndReason.LOGOUT)
    (revoked,) = make_sessions(1, revoked_at=timezone.now(), end_reason=EndReason.REVOKED)
    LoginSession.objects.filter(pk=revoked.pk).update(ip="198.51.100.77")
    client.force_login(superuser)
    url = reverse(SESSIONS)

    assert changelist_ids(client.get(url, {"end_reason": EndReason.LOGOUT})) == {logged_out.pk}
    assert changelist_ids(client.get(url, {"revoked": "yes"})) == {logged_out.pk, revoked.pk}
    own_session = superuser.login_sessions.get().pk  # the admin's own, opened by logging in
    assert changelist_ids(client.get(url, {"revoked": "no"})) == {open_session.pk, own_session}
    assert changelist_ids(client.get(url, {"q": "anna@"})) == {open_session.pk}
    assert changelist_ids(client.get(url, {"q": "198.51.100.77"})) == {revoked.pk}


@pytest.mark.parametrize("role", ["superuser", "operations", "auditor"])
def test_session_admin_is_read_only_for_everyone(client, request, role):
    client.force_login(request.getfixturevalue(role))
    (session,) = make_sessions(1)

    listed = client.get(reverse(SESSIONS))
    assert listed.status_code == 200
    assert listed.context["has_add_permission"] is False
    assert "delete_selected" not in _action_names(listed)
    assert client.get(reverse("admin:accounts_loginsession_add")).status_code == 403
    change_url = reverse("admin:accounts_loginsession_change", args=[session.pk])
    shown = client.get(change_url)
    assert shown.status_code == 200
    assert "jti-0" not in shown.content.decode()  # the live refresh token's id is not shown
    assert client.post(change_url, {"end_reason": EndReason.REVOKED}).status_code == 403
    assert client.post(reverse("admin:accounts_loginsession_delete", args=[session.pk])).status_code == 403
    session.refresh_from_db()
    assert session.is_active


@pytest.mark.parametrize("role", ["advisor", "nobody"])
def test_session_and_event_admins_are_forbidden_to_advisors_and_users_in_no_group(client, request, role):
    client.force_login(request.getfixturevalue(role))

    assert client.get(reverse(SESSIONS)).status_code == 403
    assert client.get(reverse(EVENTS)).status_code == 403


@pytest.mark.parametrize("role", ["operations", "superuser"])
def test_permitted_staff_revoke_selected_sessions_and_the_revocation_is_audited(client, request, role):
    actor = request.getfixturevalue(role)
    anna = UserFactory(email="anna@example.com")
    token = access_token_for(anna)
    first, second = make_sessions(2, anna)
    (ended,) = make_sessions(1, anna, revoked_at=timezone.now(), end_reason=EndReason.LOGOUT)
    client.force_login(actor)

    assert "revoke_sessions" in _action_names(client.get(reverse(SESSIONS)))
    response = _revoke(client, [first, second, ended])

    assert response.status_code == 302
    assert admin_messages(response) == ["Revoked 2 session(s). 1 had already ended."]
    for session in (first, second):
        session.refresh_from_db()
        assert (session.end_reason, session.is_active) == (EndReason.REVOKED, False)
    ended.refresh_from_db()
    assert ended.end_reason == EndReason.LOGOUT
    assert LoginSession.objects.filter(user=anna, revoked_at__isnull=True).count() == 1  # the token's session
    events = SecurityEvent.objects.filter(kind=Kind.SESSION_REVOKED, user=anna)
    assert {(e.session_id, e.ip, e.user_agent, e.detail) for e in events} == {
        (s.pk, "10.0.0.8", "AdminBrowser/1", f"by {actor.email}") for s in (first, second)
    }
    client.logout()
    assert client.get("/api/v1/auth/me/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200  # not selected


def test_a_revoked_session_stops_authenticating_at_once(client, operations):
    anna = UserFactory()
    token = access_token_for(anna)
    session = LoginSession.objects.get(user=anna)
    api = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert client.get("/api/v1/auth/me/", **api).status_code == 200
    client.force_login(operations)

    _revoke(client, [session])

    client.logout()
    assert client.get("/api/v1/auth/me/", **api).status_code == 401


def test_auditors_see_sessions_but_are_not_offered_the_revoke_action_and_cannot_post_it(client, auditor):
    (session,) = make_sessions(1)
    client.force_login(auditor)

    listed = client.get(reverse(SESSIONS))
    assert listed.status_code == 200
    assert "revoke_sessions" not in _action_names(listed)

    with mock.patch("accounts.admin.session_revoke") as revoke:
        _revoke(client, [session])

    revoke.assert_not_called()
    session.refresh_from_db()
    assert session.is_active
    assert not SecurityEvent.objects.filter(kind=Kind.SESSION_REVOKED).exists()


# --- Security events -----------------------------------------------------------------------------------


def test_event_changelist_loads_with_the_same_query_count_for_5_and_50_rows(client, superuser, count_queries):
    client.force_login(superuser)
    url = reverse(EVENTS)
    make_events(5)
    page_queries(client, count_queries, url)
    few = page_queries(client, count_queries, url)

    make_events(45)
    many = page_queries(client, count_queries, url)

    assert len(client.get(url).context["cl"].result_list) == 50
    assert few == many


def test_event_changelist_filters_by_kind_and_searches_user_email_given_email_and_ip(client, auditor):
    anna = UserFactory(email="anna@example.com")
    verified = security_event_record(kind=Kind.EMAIL_VERIFIED, client=ClientInfo(ip="192.0.2.1"), user=anna)
    failed = security_event_record(
        kind=Kind.LOGIN_FAILED, client=ClientInfo(ip="198.51.100.20"), email="mallory@example.net"
    )
    client.force_login(auditor)
    url = reverse(EVENTS)

    assert changelist_ids(client.get(url, {"kind": Kind.EMAIL_VERIFIED})) == {verified.pk}
    assert changelist_ids(client.get(url, {"q": "anna@example"})) == {verified.pk}
    assert changelist_ids(client.get(url, {"q": "mallory"})) == {failed.pk}
    assert changelist_ids(client.get(url, {"q": "198.51.100.20"})) == {failed.pk}
    today = timezone.now()
    dated = {"created_at__year": today.year, "created_at__month": today.month, "created_at__day": today.day}
    assert changelist_ids(client.get(url, dated)) == {verified.pk, failed.pk}


@pytest.mark.parametrize("role", ["superuser", "operations", "auditor"])
def test_event_admin_is_read_only_for_everyone(client, request, role):
    event = security_event_record(kind=Kind.LOGIN_FAILED, client=ClientInfo(), email="x@example.com")
    client.force_login(request.getfixturevalue(role))

    listed = client.get(reverse(EVENTS))
    assert listed.status_code == 200
    assert listed.context["has_add_permission"] is False
    assert "delete_selected" not in _action_names(listed)
    assert client.get(reverse("admin:accounts_securityevent_add")).status_code == 403
    change_url = reverse("admin:accounts_securityevent_change", args=[event.pk])
    assert client.get(change_url).status_code == 200
    assert client.post(change_url, {"kind": Kind.LOGIN_SUCCEEDED, "detail": "edited"}).status_code == 403
    assert client.post(reverse("admin:accounts_securityevent_delete", args=[event.pk])).status_code == 403
    event.refresh_from_db()
    assert (event.kind, event.detail) == (Kind.LOGIN_FAILED, "")


# --- A user's sessions and password in the users admin -------------------------------------------------


def test_user_change_page_shows_the_latest_20_sessions_read_only(client, superuser):
    anna = UserFactory()
    sessions = make_sessions(25, anna)
    for age, session in enumerate(sessions):
        LoginSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - datetime.timedelta(hours=age))
    client.force_login(superuser)

    response = client.get(reverse("admin:accounts_user_change", args=[anna.pk]))

    assert response.status_code == 200
    # The sessions inline (the external identities inline comes first).
    (inline,) = [i for i in response.context["inline_admin_formsets"] if i.formset.model is LoginSession]
    shown = {form.original.pk for form in inline}
    assert shown == {session.pk for session in sessions[:20]}
    assert not inline.has_add_permission
    assert not inline.has_change_permission
    assert not inline.has_delete_permission


def test_user_change_page_query_count_does_not_grow_with_the_users_sessions(client, superuser, count_queries):
    anna = UserFactory()
    url = reverse("admin:accounts_user_change", args=[anna.pk])
    client.force_login(superuser)
    make_sessions(5, anna)
    page_queries(client, count_queries, url)
    few = page_queries(client, count_queries, url)

    make_sessions(45, anna)

    assert page_queries(client, count_queries, url) == few


def test_user_add_page_has_no_sessions_inline(client, superuser):
    client.force_login(superuser)

    response = client.get(reverse("admin:accounts_user_add"))

    assert response.status_code == 200
    assert response.context["inline_admin_formsets"] == []


def test_password_change_in_the_admin_goes_through_user_set_password_and_ends_every_session(client, superuser):
    anna = UserFactory()
    token = access_token_for(anna)
    access_token_for(anna)
    client.force_login(superuser)

    with mock.patch.object(services, "user_set_password", wraps=services.user_set_password) as set_password:
        response = client.post(
            reverse("admin:auth_user_password_change", args=[anna.pk]),
            {"password1": STRONG, "password2": STRONG},
            REMOTE_ADDR="10.0.0.9",
        )

    assert response.status_code == 302, response.context and response.context["form"].errors
    set_password.assert_called_once()
    anna.refresh_from_db()
    assert anna.check_password(STRONG)
    assert set(LoginSession.objects.filter(user=anna).values_list("end_reason", flat=True)) == {
        EndReason.PASSWORD_CHANGED
    }
    event = SecurityEvent.objects.get(kind=Kind.PASSWORD_CHANGED, user=anna)
    assert event.ip == "10.0.0.9"
    client.logout()
    assert client.get("/api/v1/auth/me/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


def test_password_change_in_the_admin_applies_the_password_validators(client, superuser):
    anna = UserFactory()
    access_token_for(anna)
    client.force_login(superuser)

    response = client.post(
        reverse("admin:auth_user_password_change", args=[anna.pk]), {"password1": "short", "password2": "short"}
    )

    assert response.status_code == 200
    assert "password2" in response.context["form"].errors
    anna.refresh_from_db()
    assert anna.check_password(PASSWORD)
    assert LoginSession.objects.get(user=anna).is_active


def test_password_form_in_the_admin_does_not_offer_to_disable_password_login(client, superuser):
    anna = UserFactory()
    client.force_login(superuser)
    url = reverse("admin:auth_user_password_change", args=[anna.pk])

    assert "usable_password" not in client.get(url).context["form"].fields
    response = client.post(url, {"usable_password": "false", "unset-password": "1"})

    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    anna.refresh_from_db()
    assert anna.check_password(PASSWORD)


def test_operations_cannot_change_a_password_in_the_admin(client, operations):
    anna = UserFactory()
    client.force_login(operations)

    response = client.post(
        reverse("admin:auth_user_password_change", args=[anna.pk]), {"password1": STRONG, "password2": STRONG}
    )

    assert response.status_code == 403
    anna.refresh_from_db()
    assert anna.check_password(PASSWORD)
