import datetime
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import LoginSession, SecurityEvent, TOTPDevice, User
from accounts.tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db
LOGIN = "/api/v1/auth/login/"
Kind = SecurityEvent.Kind


def login(email: str, password: str = PASSWORD, ip: str = "203.0.113.7", agent: str = "Firefox/140") -> Any:
    return APIClient().post(LOGIN, {"email": email, "password": password}, REMOTE_ADDR=ip, HTTP_USER_AGENT=agent)


@pytest.fixture
def anna() -> User:
    return UserFactory(email="anna@example.com")


def test_login_opens_a_session_and_returns_its_tokens(anna: User) -> None:
    response = login("ANNA@example.com")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"access", "refresh", "session", "access_expires_at", "refresh_expires_at"}
    session = LoginSession.objects.get(pk=body["session"])
    assert (session.user, session.ip, session.user_agent, session.is_active) == (
        anna,
        "203.0.113.7",
        "Firefox/140",
        True,
    )
    anna.refresh_from_db()
    assert anna.last_login_ip == "203.0.113.7"
    assert SecurityEvent.objects.filter(kind=Kind.LOGIN_SUCCEEDED, user=anna, ip="203.0.113.7").exists()


def test_token_endpoint_is_the_same_login(anna: User) -> None:
    response = APIClient().post("/api/v1/auth/token/", {"email": anna.email, "password": PASSWORD})
    assert response.status_code == 200
    assert LoginSession.objects.filter(pk=response.json()["session"]).exists()


def test_wrong_password_unknown_email_and_inactive_account_fail_alike(anna: User) -> None:
    UserFactory(email="gone@example.com", is_active=False)
    answers = [login("anna@example.com", "wrong"), login("nobody@example.com"), login("gone@example.com")]
    assert {a.status_code for a in answers} == {401}
    assert len({a.content for a in answers}) == 1
    assert not LoginSession.objects.exists()


def test_failed_logins_are_audited_without_the_password(anna: User) -> None:
    login("anna@example.com", "Tr0ub4dor&3")
    login("stranger@example.com", "Tr0ub4dor&3")
    known, unknown = (
        SecurityEvent.objects.get(kind=Kind.LOGIN_FAILED, user=anna),
        SecurityEvent.objects.get(kind=Kind.LOGIN_FAILED, user=None),
    )
    assert unknown.email == "stranger@example.com"
    for event in (known, unknown):
        assert "Tr0ub4dor" not in f"{event.detail}{event.email}{event.user_agent}"


@override_settings(LOCKOUT_THRESHOLD=3, LOCKOUT_MINUTES=15)
def test_repeated_failures_lock_the_account_with_429_and_retry_after(anna: User) -> None:
    for _ in range(3):
        assert login("anna@example.com", "wrong").status_code == 401
    locked = login("anna@example.com")  # even the right password waits
    assert locked.status_code == 429
    assert 0 < int(locked["Retry-After"]) <= 15 * 60
    assert SecurityEvent.objects.filter(kind=Kind.LOCKOUT, user=anna).count() == 1
    assert login("other@example.com", "wrong").status_code == 401  # other addresses are not affected


@override_settings(LOCKOUT_THRESHOLD=3, LOCKOUT_MINUTES=15)
def test_an_unknown_address_locks_exactly_like_a_real_one() -> None:
    for _ in range(3):
        login("nobody@example.com", "wrong")
    assert login("nobody@example.com").status_code == 429


@override_settings(LOCKOUT_THRESHOLD=3, LOCKOUT_MINUTES=15)
def test_the_lock_lifts_after_the_lockout_period(anna: User) -> None:
    start = datetime.datetime.now(datetime.UTC)
    with time_machine.travel(start, tick=False):
        for _ in range(3):
            login("anna@example.com", "wrong")
        assert login("anna@example.com").status_code == 429
    with time_machine.travel(start + datetime.timedelta(minutes=16), tick=False):
        assert login("anna@example.com").status_code == 200


@override_settings(LOCKOUT_THRESHOLD=3)
def test_a_successful_login_clears_earlier_failures(anna: User) -> None:
    login("anna@example.com", "wrong")
    login("anna@example.com", "wrong")
    assert login("anna@example.com").status_code == 200
    login("anna@example.com", "wrong")
    login("anna@example.com", "wrong")
    assert login("anna@example.com").status_code == 200


def test_login_is_throttled_per_address_with_retry_after(anna: User, monkeypatch: pytest.MonkeyPatch) -> None:
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(
        SimpleRateThrottle,
        "THROTTLE_RATES",
        {"login_ip": "100/min", "login_account": "2/min", "email_ip": "100/min", "email_account": "100/min"},
    )
    assert login("anna@example.com", ip="198.51.100.1").status_code == 200
    assert login("anna@example.com", ip="198.51.100.2").status_code == 200
    throttled = login("anna@example.com", ip="198.51.100.3")
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0


def test_login_is_throttled_per_ip(anna: User, monkeypatch: pytest.MonkeyPatch) -> None:
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(
        SimpleRateThrottle,
        "THROTTLE_RATES",
        {"login_ip": "2/min", "login_account": "100/min", "email_ip": "100/min", "email_account": "100/min"},
    )
    login("a@example.com", "x")
    login("b@example.com", "x")
    assert login("anna@example.com").status_code == 429
    assert login("anna@example.com", ip="198.51.100.9").status_code == 200


def test_login_from_a_new_ip_sends_an_alert_after_the_first_login(
    anna: User, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        login("anna@example.com", ip="203.0.113.7")  # the very first login alerts no one
    assert mail.outbox == []
    with django_capture_on_commit_callbacks(execute=True):
        login("anna@example.com", ip="203.0.113.7")
    assert mail.outbox == []
    with django_capture_on_commit_callbacks(execute=True):
        login("anna@example.com", ip="198.51.100.20", agent="Unknown Browser/1.0")
    assert len(mail.outbox) == 1
    alert = mail.outbox[0]
    assert alert.to == ["anna@example.com"]
    assert "198.51.100.20" in alert.body
    assert "Unknown Browser/1.0" in alert.body
    assert SecurityEvent.objects.filter(kind=Kind.NEW_IP_LOGIN, user=anna, ip="198.51.100.20").exists()


def test_a_mail_failure_never_fails_the_login(
    anna: User, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    login("anna@example.com", ip="203.0.113.7")

    def broken(**kwargs: Any) -> None:
        raise ConnectionRefusedError("SMTP is down")

    monkeypatch.setattr("accounts.emails.send_templated", broken)
    with django_capture_on_commit_callbacks(execute=True):
        response = login("anna@example.com", ip="198.51.100.20")
    assert response.status_code == 200


def test_with_two_factor_on_a_password_login_returns_a_challenge_not_tokens(anna: User) -> None:
    TOTPDevice.objects.create(user=anna, encrypted_secret="unused-here", confirmed_at="2026-01-01T00:00:00Z")
    response = login("anna@example.com")
    assert response.status_code == 200
    body = response.json()
    assert body["two_factor_required"] is True
    assert "access" not in body
    assert body["challenge"]
    assert not LoginSession.objects.exists()
