import datetime
from typing import Any

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import AccessToken

from accounts.authentication import ACCESS_COOKIE, REFRESH_COOKIE
from accounts.models import LoginSession, SecurityEvent, User
from accounts.tests.factories import PASSWORD, SuperuserFactory, UserFactory
from portfolio_site.testing import REDIS_DOWN

pytestmark = pytest.mark.django_db
ME = "/api/v1/auth/me/"
REFRESH = "/api/v1/auth/token/refresh/"


@pytest.fixture
def anna() -> User:
    return UserFactory(email="anna@example.com")


def log_in(user: User, agent: str = "Firefox/140") -> dict[str, Any]:
    response = APIClient().post(
        "/api/v1/auth/login/", {"email": user.email, "password": PASSWORD}, HTTP_USER_AGENT=agent
    )
    assert response.status_code == 200, response.content
    return response.json()


def bearer(tokens: dict[str, Any]) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    return client


def refresh(raw: str) -> Any:
    return APIClient().post(REFRESH, {"refresh": raw})


def test_refresh_rotates_the_refresh_token_and_blacklists_the_used_one(anna: User) -> None:
    tokens = log_in(anna)
    response = refresh(tokens["refresh"])
    assert response.status_code == 200
    new = response.json()
    assert new["refresh"] != tokens["refresh"]
    assert new["session"] == tokens["session"]
    assert BlacklistedToken.objects.filter(token__token=tokens["refresh"]).exists()
    assert not BlacklistedToken.objects.filter(token__token=new["refresh"]).exists()
    assert bearer(new).get(ME).status_code == 200


def test_reusing_a_rotated_refresh_token_revokes_the_whole_session_at_once(anna: User) -> None:
    tokens = log_in(anna)
    fresh = refresh(tokens["refresh"]).json()
    stolen = refresh(tokens["refresh"])
    assert stolen.status_code == 401
    assert "used twice" in stolen.json()["detail"]
    session = LoginSession.objects.get(pk=tokens["session"])
    assert session.end_reason == LoginSession.EndReason.TOKEN_REUSE
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.TOKEN_REUSE, session=session).exists()
    assert refresh(fresh["refresh"]).status_code == 401  # the legitimate holder is out too
    assert bearer(fresh).get(ME).status_code == 401


@override_settings(SESSION_IDLE_MINUTES=30)
def test_refresh_after_the_inactivity_timeout_fails_with_the_reason(anna: User) -> None:
    start = datetime.datetime.now(datetime.UTC)
    with time_machine.travel(start, tick=False):
        tokens = log_in(anna)
    with time_machine.travel(start + datetime.timedelta(minutes=31), tick=False):
        response = refresh(tokens["refresh"])
    assert response.status_code == 401
    assert "inactivity" in response.json()["detail"]
    assert LoginSession.objects.get(pk=tokens["session"]).end_reason == LoginSession.EndReason.IDLE


@override_settings(SESSION_IDLE_MINUTES=30, SESSION_ABSOLUTE_HOURS=1)
def test_an_active_session_still_ends_at_its_absolute_lifetime(anna: User) -> None:
    start = datetime.datetime.now(datetime.UTC)
    with time_machine.travel(start, tick=False):
        tokens = log_in(anna)
    for minutes in (20, 40):
        with time_machine.travel(start + datetime.timedelta(minutes=minutes), tick=False):
            tokens = refresh(tokens["refresh"]).json()
    access_expiry = datetime.datetime.fromisoformat(tokens["access_expires_at"])
    assert access_expiry <= start + datetime.timedelta(hours=1, seconds=1)  # no token outlives its session
    with time_machine.travel(start + datetime.timedelta(minutes=61), tick=False):
        response = refresh(tokens["refresh"])
    assert response.status_code == 401
    assert "maximum lifetime" in response.json()["detail"]


def test_a_forged_or_access_token_is_not_a_refresh_token(anna: User) -> None:
    tokens = log_in(anna)
    assert refresh(tokens["access"]).status_code == 401
    assert refresh(tokens["refresh"][:-4] + "AAAA").status_code == 401
    assert APIClient().post(REFRESH, {}).status_code == 400


def test_logout_ends_the_current_session_and_its_access_token_at_once(anna: User) -> None:
    first, second = log_in(anna, "Phone"), log_in(anna, "Laptop")
    assert bearer(first).post("/api/v1/auth/logout/").status_code == 204
    assert bearer(first).get(ME).status_code == 401
    assert bearer(second).get(ME).status_code == 200
    assert refresh(first["refresh"]).status_code == 401
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.LOGOUT, user=anna).exists()


def test_logout_all_ends_every_session_of_the_caller_only(anna: User) -> None:
    first, second = log_in(anna), log_in(anna)
    other = log_in(UserFactory())
    assert bearer(first).post("/api/v1/auth/logout-all/").status_code == 204
    assert bearer(second).get(ME).status_code == 401
    assert bearer(other).get(ME).status_code == 200


def test_sessions_list_shows_the_callers_sessions_and_marks_the_current_one(anna: User) -> None:
    phone, laptop = log_in(anna, "Phone"), log_in(anna, "Laptop")
    log_in(UserFactory())
    rows = bearer(laptop).get("/api/v1/auth/sessions/").json()["results"]
    assert {row["id"]: row["current"] for row in rows} == {phone["session"]: False, laptop["session"]: True}
    assert {row["user_agent"] for row in rows} == {"Phone", "Laptop"}


def test_a_user_revokes_another_of_their_sessions_but_not_someone_elses(anna: User) -> None:
    phone, laptop = log_in(anna, "Phone"), log_in(anna, "Laptop")
    stranger = log_in(UserFactory())
    assert bearer(laptop).post(f"/api/v1/auth/sessions/{phone['session']}/revoke/").status_code == 204
    assert bearer(phone).get(ME).status_code == 401
    assert bearer(laptop).post(f"/api/v1/auth/sessions/{stranger['session']}/revoke/").status_code == 404
    assert bearer(stranger).get(ME).status_code == 200


def test_checking_an_access_token_asks_the_cache_not_the_database(anna: User) -> None:
    client = bearer(log_in(anna))
    client.get(ME)  # the first request caches the session's state
    with CaptureQueriesContext(connection) as queries:
        assert client.get(ME).status_code == 200
    assert not [q for q in queries.captured_queries if "accounts_loginsession" in q["sql"]]


def test_a_revoked_session_is_refused_even_when_the_cache_has_forgotten_it(anna: User) -> None:
    tokens = log_in(anna)
    assert bearer(tokens).post("/api/v1/auth/logout/").status_code == 204
    cache.clear()
    assert bearer(tokens).get(ME).status_code == 401


def test_with_redis_down_sessions_are_still_checked_against_the_database(anna: User, settings: Any) -> None:
    live, ended = log_in(anna), log_in(anna)
    LoginSession.objects.filter(pk=ended["session"]).update(revoked_at="2026-01-01T00:00:00Z", end_reason="revoked")
    settings.CACHES = REDIS_DOWN
    assert bearer(live).get(ME).status_code == 200
    assert bearer(ended).get(ME).status_code == 401


def test_a_token_without_a_session_is_refused(anna: User) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(anna)}")
    response = client.get(ME)
    assert response.status_code == 401
    assert "no session" in response.json()["detail"]


def test_verify_accepts_a_live_token_and_refuses_one_whose_session_ended(anna: User) -> None:
    tokens = log_in(anna)
    assert APIClient().post("/api/v1/auth/token/verify/", {"token": tokens["access"]}).status_code == 200
    bearer(tokens).post("/api/v1/auth/logout/")
    assert APIClient().post("/api/v1/auth/token/verify/", {"token": tokens["access"]}).status_code == 401


def test_an_administrator_setting_a_password_ends_the_users_sessions(anna: User, api: Any) -> None:
    tokens = log_in(anna)
    response = api(SuperuserFactory()).patch(f"/api/v1/users/{anna.pk}/", {"password": "a-brand-new-passphrase-9"})
    assert response.status_code == 200
    assert bearer(tokens).get(ME).status_code == 401
    assert LoginSession.objects.get(pk=tokens["session"]).end_reason == LoginSession.EndReason.PASSWORD_CHANGED


def test_deactivating_a_user_ends_their_sessions(anna: User, api: Any) -> None:
    tokens = log_in(anna)
    assert api(SuperuserFactory()).patch(f"/api/v1/users/{anna.pk}/", {"is_active": False}).status_code == 200
    assert bearer(tokens).get(ME).status_code == 401
    assert LoginSession.objects.get(pk=tokens["session"]).end_reason == LoginSession.EndReason.USER_DEACTIVATED


def test_activity_is_recorded_at_most_once_a_minute(anna: User) -> None:
    tokens = log_in(anna)
    session = LoginSession.objects.get(pk=tokens["session"])
    start = session.last_seen_at
    with time_machine.travel(start + datetime.timedelta(seconds=90), tick=False):
        bearer(tokens).get(ME)
        seen = LoginSession.objects.get(pk=session.pk).last_seen_at
        bearer(tokens).get(ME)
        assert LoginSession.objects.get(pk=session.pk).last_seen_at == seen
    assert seen > start


# --- Cookie mode ---------------------------------------------------------------------------------


@override_settings(AUTH_COOKIE_MODE=True)
def test_cookie_mode_puts_the_tokens_in_httponly_secure_samesite_cookies(anna: User) -> None:
    client = APIClient()
    response = client.post("/api/v1/auth/login/", {"email": anna.email, "password": PASSWORD})
    assert response.status_code == 200
    assert "access" not in response.json()
    assert "refresh" not in response.json()
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        cookie = response.cookies[name]
        assert cookie["httponly"]
        assert cookie["secure"]
        assert cookie["samesite"] == "Strict"
    assert response.cookies[REFRESH_COOKIE]["path"] == "/api/v1/auth/"
    assert client.get(ME).status_code == 200


@override_settings(AUTH_COOKIE_MODE=True)
def test_cookie_mode_requires_the_csrf_token_on_unsafe_requests(anna: User) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.post("/api/v1/auth/login/", {"email": anna.email, "password": PASSWORD})
    csrf = client.cookies["csrftoken"].value
    assert client.post("/api/v1/auth/logout/").status_code == 403
    assert client.post(REFRESH, {}, HTTP_X_CSRFTOKEN=csrf).status_code == 200
    response = client.post("/api/v1/auth/logout/", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 204
    assert response.cookies[ACCESS_COOKIE].value == ""
    assert client.get(ME).status_code == 401


def test_manage_py_changepassword_ends_the_users_sessions(anna: User, monkeypatch: pytest.MonkeyPatch) -> None:
    from io import StringIO

    from django.core.management import call_command

    tokens = log_in(anna)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "a-brand-new-passphrase-9")
    out = StringIO()
    call_command("changepassword", "anna@example.com", stdout=out)
    assert "Ended 1 open session(s)." in out.getvalue()
    assert bearer(tokens).get(ME).status_code == 401
    anna.refresh_from_db()
    assert anna.check_password("a-brand-new-passphrase-9")
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.PASSWORD_CHANGED, user=anna).exists()
