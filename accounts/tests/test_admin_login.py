"""The admin site's door logs in through the same rules as the API: throttles, lockout, audit, two-factor,
and a `LoginSession` that the Django session lives and dies with."""

import datetime
import time
from typing import Any

import pyotp
import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import LoginSession, SecurityEvent, User
from accounts.services.events import ClientInfo
from accounts.services.two_factor import totp_confirm, totp_enrol
from accounts.tests.factories import PASSWORD, SuperuserFactory, UserFactory, access_token_for
from accounts.web import LOGIN_SESSION_KEY
from portfolio_site.testing import admin_messages

pytestmark = pytest.mark.django_db
LOGIN = reverse("admin:login")
TWO_FACTOR = reverse("admin:login_two_factor")
INDEX = reverse("admin:index")
ME = "/api/v1/auth/me/"
Kind = SecurityEvent.Kind
Channel = LoginSession.Channel


@pytest.fixture
def anna() -> User:
    return UserFactory(email="anna@example.com", is_staff=True)


def admin_login(
    email: str, password: str = PASSWORD, *, ip: str = "203.0.113.7", client: Client | None = None, **extra: Any
) -> tuple[Client, Any]:
    client = client or Client(REMOTE_ADDR=ip, HTTP_USER_AGENT="Firefox/140")
    response = client.post(LOGIN, {"username": email, "password": password, **extra})
    return client, response


def logged_in_admin(user: User) -> Client:
    client, response = admin_login(user.email)
    assert response.status_code == 302, response.content
    assert response["Location"] == INDEX
    return client


def enable_two_factor(user: User) -> tuple[pyotp.TOTP, list[str]]:
    totp = pyotp.TOTP(totp_enrol(user=user).secret)
    return totp, totp_confirm(user=user, code=totp.at(time.time(), counter_offset=-1), client=ClientInfo())


def test_a_password_login_opens_an_admin_login_session_bound_to_the_django_session(anna: User) -> None:
    client = logged_in_admin(anna)
    session = LoginSession.objects.get(user=anna)
    assert (session.channel, session.ip, session.user_agent, session.is_active) == (
        Channel.ADMIN,
        "203.0.113.7",
        "Firefox/140",
        True,
    )
    assert client.session[LOGIN_SESSION_KEY] == str(session.pk)
    assert client.get(INDEX).status_code == 200
    assert SecurityEvent.objects.filter(kind=Kind.LOGIN_SUCCEEDED, user=anna, session=session).exists()


def test_a_wrong_admin_password_is_refused_audited_and_counted_toward_the_lockout(anna: User, settings: Any) -> None:
    settings.LOCKOUT_THRESHOLD = 3
    for _ in range(3):
        _, refused = admin_login(anna.email, "wrong")
        assert refused.status_code == 401
        assert "Unable to log in" in refused.content.decode()
    assert SecurityEvent.objects.filter(kind=Kind.LOGIN_FAILED, user=anna).count() == 3
    assert SecurityEvent.objects.filter(kind=Kind.LOCKOUT, user=anna).exists()

    _, locked = admin_login(anna.email)  # the right password, too late
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) > 0
    assert not LoginSession.objects.exists()


def test_the_admin_and_the_api_share_one_lockout(anna: User, settings: Any) -> None:
    settings.LOCKOUT_THRESHOLD = 2
    admin_login(anna.email, "wrong")
    APIClient().post("/api/v1/auth/login/", {"email": anna.email, "password": "wrong"})
    api_answer = APIClient().post("/api/v1/auth/login/", {"email": anna.email, "password": PASSWORD})
    assert api_answer.status_code == 429
    assert admin_login(anna.email)[1].status_code == 429


def test_the_admin_login_is_throttled_per_ip_like_the_api(anna: User, monkeypatch: pytest.MonkeyPatch) -> None:
    from rest_framework.throttling import SimpleRateThrottle

    rates = {"login_ip": "2/min", "login_account": "100/min", "email_ip": "100/min", "email_account": "100/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    admin_login("a@example.com", "x")
    admin_login("b@example.com", "x")
    _, throttled = admin_login(anna.email)
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert admin_login(anna.email, ip="198.51.100.9")[1].status_code == 302


def test_a_user_who_is_not_staff_cannot_log_in_to_the_admin_and_gets_the_usual_answer(anna: User) -> None:
    UserFactory(email="clerk@example.com", is_staff=False)
    _, not_staff = admin_login("clerk@example.com")
    _, wrong = admin_login(anna.email, "wrong")
    assert not_staff.status_code == wrong.status_code == 401
    assert not LoginSession.objects.exists()


def test_a_login_from_a_new_ip_alerts_the_user_whatever_the_door(
    anna: User, django_capture_on_commit_callbacks: Any
) -> None:
    logged_in_admin(anna)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        admin_login(anna.email, ip="198.51.100.200")
    assert [message.to for message in mail.outbox] == [[anna.email]]
    assert SecurityEvent.objects.filter(kind=Kind.NEW_IP_LOGIN, user=anna, ip="198.51.100.200").exists()


def test_with_two_factor_on_a_password_alone_does_not_open_the_admin(anna: User) -> None:
    enable_two_factor(anna)
    client, response = admin_login(anna.email)
    assert response.status_code == 302
    assert response["Location"] == TWO_FACTOR
    assert client.get(INDEX).status_code == 302  # still asked to log in
    assert not LoginSession.objects.exists()
    assert "authenticator" in client.get(TWO_FACTOR).content.decode()


def test_the_second_step_accepts_a_current_totp_code_once(anna: User) -> None:
    totp, _ = enable_two_factor(anna)
    client, _ = admin_login(anna.email, next="/admin/accounts/user/")
    done = client.post(TWO_FACTOR, {"code": totp.now()})
    assert done.status_code == 302
    assert done["Location"] == "/admin/accounts/user/"
    assert client.get(INDEX).status_code == 200
    assert LoginSession.objects.get(user=anna).channel == Channel.ADMIN

    # The same code again, in a new login: the time step is spent.
    other, _ = admin_login(anna.email)
    assert other.post(TWO_FACTOR, {"code": totp.now()}).status_code == 401


def test_the_second_step_accepts_a_recovery_code(anna: User) -> None:
    _, codes = enable_two_factor(anna)
    client, _ = admin_login(anna.email)
    assert client.post(TWO_FACTOR, {"code": codes[0]}).status_code == 302
    assert client.get(INDEX).status_code == 200
    assert SecurityEvent.objects.filter(kind=Kind.RECOVERY_CODE_USED, user=anna).exists()


def test_a_wrong_second_factor_is_refused_audited_and_locks_out(anna: User, settings: Any) -> None:
    settings.LOCKOUT_THRESHOLD = 2
    enable_two_factor(anna)
    client, _ = admin_login(anna.email)
    assert client.post(TWO_FACTOR, {"code": "000000"}).status_code == 401
    assert SecurityEvent.objects.filter(kind=Kind.TWO_FACTOR_FAILED, user=anna).count() == 1
    locked = client.post(TWO_FACTOR, {"code": "000000"})
    assert locked.status_code in {401, 429}
    assert client.post(TWO_FACTOR, {"code": "000000"}).status_code == 429
    assert not LoginSession.objects.exists()


def test_the_second_step_without_a_password_step_goes_back_to_the_login(anna: User) -> None:
    response = Client().post(TWO_FACTOR, {"code": "123456"})
    assert response.status_code == 302
    assert response["Location"] == LOGIN


def test_an_expired_challenge_sends_the_user_back_to_the_password(anna: User, settings: Any) -> None:
    totp, _ = enable_two_factor(anna)
    client, _ = admin_login(anna.email)
    with time_machine.travel(timezone.now() + datetime.timedelta(seconds=settings.TWO_FACTOR_CHALLENGE_SECONDS + 5)):
        response = client.post(TWO_FACTOR, {"code": totp.now()})
    assert response.status_code == 302
    assert response["Location"] == LOGIN
    assert not LoginSession.objects.exists()


def test_the_admin_login_redirects_only_to_this_site(anna: User) -> None:
    _, response = admin_login(anna.email, next="https://evil.example.com/")
    assert response["Location"] == INDEX


def test_logging_out_of_the_admin_ends_its_login_session(anna: User) -> None:
    client = logged_in_admin(anna)
    assert client.post(reverse("admin:logout")).status_code == 200
    session = LoginSession.objects.get(user=anna)
    assert session.end_reason == LoginSession.EndReason.LOGOUT
    assert SecurityEvent.objects.filter(kind=Kind.LOGOUT, user=anna, session=session).exists()


def test_admin_sessions_are_listed_in_the_api_and_revocable_by_the_user(anna: User) -> None:
    admin = logged_in_admin(anna)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(anna)}")
    listed = api.get("/api/v1/auth/sessions/", {"channel": "admin"}).json()["results"]
    assert [row["channel"] for row in listed] == ["admin"]
    assert listed[0]["end_reason"] is None

    assert api.post(f"/api/v1/auth/sessions/{listed[0]['id']}/revoke/").status_code == 204
    ended = admin.get(INDEX)
    assert ended.status_code == 302
    assert ended["Location"].startswith(LOGIN)
    assert LOGIN_SESSION_KEY not in admin.session


def test_logout_all_from_the_api_ends_the_admin_session_too(anna: User) -> None:
    admin = logged_in_admin(anna)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(anna)}")
    assert api.post("/api/v1/auth/logout-all/").status_code == 204
    assert admin.get(INDEX).status_code == 302


def test_staff_revoking_an_admin_session_ends_it_at_once(anna: User) -> None:
    admin = logged_in_admin(anna)
    boss = logged_in_admin(SuperuserFactory())
    session = LoginSession.objects.get(user=anna)
    changelist = reverse("admin:accounts_loginsession_changelist")
    boss.post(changelist, {"action": "revoke_sessions", "_selected_action": [session.pk]})
    assert admin.get(INDEX).status_code == 302
    assert "The session was revoked." in admin_messages(admin.get(LOGIN))


def test_deactivating_a_user_ends_their_admin_session(anna: User) -> None:
    admin = logged_in_admin(anna)
    from accounts.services import user_update

    user_update(user=anna, is_active=False)
    assert admin.get(INDEX).status_code == 302


def test_changing_ones_own_password_in_the_admin_goes_through_the_service(anna: User) -> None:
    admin = logged_in_admin(anna)
    new = "a-much-longer-new-passphrase"
    response = admin.post(
        reverse("admin:password_change"),
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert response.status_code == 302
    assert SecurityEvent.objects.filter(kind=Kind.PASSWORD_CHANGED, user=anna).exists()
    assert LoginSession.objects.get(user=anna).end_reason == LoginSession.EndReason.PASSWORD_CHANGED
    assert admin.get(INDEX).status_code == 302  # every session ended, this one too
    assert admin_login(anna.email, new)[1].status_code == 302


def test_an_idle_admin_session_ends_after_the_idle_limit(anna: User, settings: Any) -> None:
    admin = logged_in_admin(anna)
    later = timezone.now() + datetime.timedelta(minutes=settings.SESSION_IDLE_MINUTES + 1)
    with time_machine.travel(later):
        from django.core.cache import cache

        cache.clear()  # the cached "active" answer lives a minute; the limit is checked when it is asked again
        assert admin.get(INDEX).status_code == 302
    assert LoginSession.objects.get(user=anna).end_reason == LoginSession.EndReason.IDLE


def test_an_admin_session_ends_at_its_absolute_limit_even_when_active(anna: User, settings: Any) -> None:
    settings.SESSION_COOKIE_AGE *= 2  # the Django session would end at the same moment; here it is our limit
    admin = logged_in_admin(anna)
    start = timezone.now()
    step = datetime.timedelta(minutes=settings.SESSION_IDLE_MINUTES - 1)
    moment = start
    with time_machine.travel(start, tick=False) as clock:
        while moment < start + datetime.timedelta(hours=settings.SESSION_ABSOLUTE_HOURS):
            moment += step
            clock.move_to(moment)
            from django.core.cache import cache

            cache.clear()
            admin.get(INDEX)
    assert LoginSession.objects.get(user=anna).end_reason == LoginSession.EndReason.EXPIRED


def test_a_django_session_without_a_login_session_is_ended(anna: User) -> None:
    stale = Client()
    Client.force_login(stale, anna)  # Django's own login, as sessions made before this change were
    assert stale.get(INDEX).status_code == 302


# --- The API and the admin's session ------------------------------------------------------------


def test_the_api_accepts_the_admins_session_while_its_login_session_is_live(anna: User) -> None:
    admin = logged_in_admin(anna)
    assert admin.get(ME).status_code == 200
    LoginSession.objects.filter(user=anna).update(revoked_at=timezone.now(), end_reason="revoked")
    from django.core.cache import cache

    cache.clear()
    assert admin.get(ME).status_code in {401, 403}


def test_the_api_requires_the_csrf_token_for_unsafe_requests_with_the_admins_session(anna: User) -> None:
    admin = Client(enforce_csrf_checks=True)
    page = admin.get(LOGIN)
    token = page.cookies["csrftoken"].value
    response = admin.post(LOGIN, {"username": anna.email, "password": PASSWORD, "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert admin.post("/api/v1/auth/logout-all/").status_code == 403
    token = admin.cookies["csrftoken"].value
    assert admin.post("/api/v1/auth/logout-all/", HTTP_X_CSRFTOKEN=token).status_code == 204
    assert LoginSession.objects.get(user=anna).end_reason == LoginSession.EndReason.LOGOUT


def test_logging_out_through_the_browsable_api_ends_the_admin_session(anna: User) -> None:
    admin = logged_in_admin(anna)
    assert admin.post("/api/v1/auth/logout/").status_code == 204
    assert LoginSession.objects.get(user=anna).end_reason == LoginSession.EndReason.LOGOUT
    assert admin.get(INDEX).status_code == 302
