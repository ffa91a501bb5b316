import datetime
import logging
import re
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.test import override_settings
from django.utils.crypto import salted_hmac
from rest_framework.test import APIClient

from accounts.models import EmailLoginCode, LoginSession, SecurityEvent, TOTPDevice, User
from accounts.services.otp import CODE_SALT, login_code_hash
from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db
REQUEST = "/api/v1/auth/otp/request/"
LOGIN = "/api/v1/auth/otp/login/"
PASSWORD_LOGIN = "/api/v1/auth/login/"
Kind = SecurityEvent.Kind
ALL_RATES_HIGH = {"login_ip": "100/min", "login_account": "100/min", "email_ip": "100/min", "email_account": "100/min"}


@pytest.fixture
def anna() -> User:
    return UserFactory(email="anna@example.com")


@pytest.fixture
def request_code(django_capture_on_commit_callbacks: Any) -> Any:
    """Asks for a code as the API does, running the after-commit email; returns the response."""

    def run(email: str, ip: str = "203.0.113.7") -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return APIClient().post(REQUEST, {"email": email}, REMOTE_ADDR=ip)

    return run


def emailed_code() -> str:
    match = re.search(r"^\s+(\d{6})$", mail.outbox[-1].body, flags=re.MULTILINE)
    assert match, mail.outbox[-1].body
    return match.group(1)


def code_login(email: str, code: str, ip: str = "203.0.113.7") -> Any:
    return APIClient().post(LOGIN, {"email": email, "code": code}, REMOTE_ADDR=ip)


def a_wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def test_requested_code_is_emailed_and_logs_in_with_tokens(anna: User, request_code: Any) -> None:
    response = request_code("Anna@Example.com")
    assert response.status_code == 202
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["anna@example.com"]
    code = emailed_code()
    assert code not in message.subject
    login = code_login("ANNA@example.com", code)
    assert login.status_code == 200, login.content
    assert LoginSession.objects.filter(pk=login.json()["session"], user=anna).exists()
    assert SecurityEvent.objects.filter(kind=Kind.OTP_REQUESTED, user=anna).count() == 1
    assert SecurityEvent.objects.filter(kind=Kind.OTP_USED, user=anna).count() == 1
    assert SecurityEvent.objects.get(kind=Kind.LOGIN_SUCCEEDED, user=anna).detail == "method: email_code"


def test_a_code_works_once_only(anna: User, request_code: Any) -> None:
    request_code("anna@example.com")
    code = emailed_code()
    assert code_login("anna@example.com", code).status_code == 200
    assert code_login("anna@example.com", code).status_code == 401
    assert LoginSession.objects.count() == 1


def test_a_code_is_six_random_digits_stored_only_as_a_keyed_hash_bound_to_its_user(
    anna: User, request_code: Any
) -> None:
    request_code("anna@example.com")
    code = emailed_code()
    assert re.fullmatch(r"\d{6}", code)
    stored = EmailLoginCode.objects.get(user=anna)
    assert code not in stored.code_hash
    assert stored.code_hash == salted_hmac(CODE_SALT, f"{anna.pk}:{code}", algorithm="sha256").hexdigest()
    assert login_code_hash(user_pk=anna.pk + 1, code=code) != stored.code_hash


def test_request_answers_alike_for_unknown_and_inactive_addresses(anna: User, request_code: Any) -> None:
    UserFactory(email="gone@example.com", is_active=False)
    known, unknown, inactive = (
        request_code("anna@example.com"),
        request_code("nobody@example.com"),
        request_code("gone@example.com"),
    )
    assert {answer.status_code for answer in (known, unknown, inactive)} == {202}
    assert known.content == unknown.content == inactive.content
    assert [message.to for message in mail.outbox] == [["anna@example.com"]]
    assert EmailLoginCode.objects.filter(user__email="gone@example.com").count() == 0
    assert list(SecurityEvent.objects.values_list("kind", "user__email")) == [(Kind.OTP_REQUESTED, "anna@example.com")]


def test_request_refuses_a_malformed_address_with_400() -> None:
    response = APIClient().post(REQUEST, {"email": "not-an-address"})
    assert response.status_code == 400
    assert "email" in response.json()


@override_settings(LOGIN_CODE_MINUTES=5)
def test_a_code_expires_after_login_code_minutes(anna: User, request_code: Any) -> None:
    start = datetime.datetime.now(datetime.UTC)
    with time_machine.travel(start, tick=False):
        request_code("anna@example.com")
    with time_machine.travel(start + datetime.timedelta(minutes=5, seconds=1), tick=False):
        assert code_login("anna@example.com", emailed_code()).status_code == 401
    with time_machine.travel(start, tick=False):
        request_code("anna@example.com")
    with time_machine.travel(start + datetime.timedelta(minutes=4, seconds=59), tick=False):
        assert code_login("anna@example.com", emailed_code()).status_code == 200


def test_a_new_code_kills_the_older_unused_one(anna: User, request_code: Any) -> None:
    request_code("anna@example.com")
    first = emailed_code()
    request_code("anna@example.com")
    second = emailed_code()
    if first != second:  # one chance in a million that the two draws agree
        assert code_login("anna@example.com", first).status_code == 401
    assert code_login("anna@example.com", second).status_code == 200
    assert EmailLoginCode.objects.filter(user=anna).count() == 1


@override_settings(LOGIN_CODE_MAX_ATTEMPTS=3, LOCKOUT_THRESHOLD=100)
def test_a_code_dies_after_the_maximum_number_of_wrong_attempts(anna: User, request_code: Any) -> None:
    request_code("anna@example.com")
    code = emailed_code()
    for _ in range(3):
        assert code_login("anna@example.com", a_wrong(code)).status_code == 401
    assert EmailLoginCode.objects.get(user=anna).attempts == 3
    assert code_login("anna@example.com", code).status_code == 401
    assert not LoginSession.objects.exists()


@override_settings(LOGIN_CODE_MAX_ATTEMPTS=3, LOCKOUT_THRESHOLD=100)
def test_the_right_code_still_works_on_the_last_allowed_attempt(anna: User, request_code: Any) -> None:
    request_code("anna@example.com")
    code = emailed_code()
    for _ in range(2):
        code_login("anna@example.com", a_wrong(code))
    assert code_login("anna@example.com", code).status_code == 200


def test_wrong_code_unknown_address_and_inactive_account_fail_alike_with_401(anna: User, request_code: Any) -> None:
    inactive = UserFactory(email="gone@example.com")
    request_code("gone@example.com")
    gone_code = emailed_code()
    inactive.is_active = False
    inactive.save()
    request_code("anna@example.com")
    answers = [
        code_login("anna@example.com", a_wrong(emailed_code())),
        code_login("nobody@example.com", "123456"),
        code_login("gone@example.com", gone_code),
    ]
    assert {answer.status_code for answer in answers} == {401}
    assert len({answer.content for answer in answers}) == 1
    assert not LoginSession.objects.exists()
    failed = SecurityEvent.objects.filter(kind=Kind.OTP_FAILED)
    assert failed.count() == 3
    assert failed.get(user=None).email == "nobody@example.com"


def test_no_code_is_ever_stored_in_security_events(anna: User, request_code: Any) -> None:
    request_code("anna@example.com")
    code = emailed_code()
    code_login("anna@example.com", a_wrong(code))
    code_login("anna@example.com", code)
    for event in SecurityEvent.objects.all():
        recorded = f"{event.detail}{event.email}{event.user_agent}"
        assert code not in recorded
        assert a_wrong(code) not in recorded


@override_settings(LOCKOUT_THRESHOLD=3, LOCKOUT_MINUTES=15)
def test_failures_count_toward_the_lockout_with_429_and_retry_after(anna: User, request_code: Any) -> None:
    request_code("anna@example.com")
    code = emailed_code()
    for _ in range(3):
        assert code_login("anna@example.com", a_wrong(code)).status_code == 401
    locked = code_login("anna@example.com", code)  # even the right code waits
    assert locked.status_code == 429
    assert 0 < int(locked["Retry-After"]) <= 15 * 60
    assert SecurityEvent.objects.filter(kind=Kind.LOCKOUT, user=anna).count() == 1
    # One lockout per address, whichever way in: the password login waits too.
    password = APIClient().post(PASSWORD_LOGIN, {"email": "anna@example.com", "password": "anything"})
    assert password.status_code == 429


@override_settings(LOCKOUT_THRESHOLD=3)
def test_an_unknown_address_locks_exactly_like_a_real_one() -> None:
    for _ in range(3):
        assert code_login("nobody@example.com", "123456").status_code == 401
    assert code_login("nobody@example.com", "123456").status_code == 429


def test_with_two_factor_on_a_code_login_returns_a_challenge_not_tokens(anna: User, request_code: Any) -> None:
    TOTPDevice.objects.create(user=anna, encrypted_secret="unused-here", confirmed_at="2026-01-01T00:00:00Z")
    request_code("anna@example.com")
    response = code_login("anna@example.com", emailed_code())
    assert response.status_code == 200
    body = response.json()
    assert body["two_factor_required"] is True
    assert "access" not in body
    assert not LoginSession.objects.exists()


@pytest.mark.usefixtures("jobs_as_on_a_worker")
def test_a_mail_failure_is_logged_and_never_fails_the_request(
    anna: User, request_code: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from portfolio_site.jobs.models import JobRun

    def broken(**kwargs: Any) -> None:
        raise ConnectionRefusedError("SMTP is down")

    monkeypatch.setattr("accounts.emails.send_templated", broken)
    with caplog.at_level(logging.ERROR, logger="portfolio_site.jobs.base"):
        response = request_code("anna@example.com")
    assert response.status_code == 202
    assert any("Job accounts.send_email failed" in record.getMessage() for record in caplog.records)
    assert JobRun.objects.get(task="accounts.send_email").outcome == JobRun.Outcome.FAILED


def test_the_email_leaves_only_after_the_commit(anna: User, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert APIClient().post(REQUEST, {"email": "anna@example.com"}).status_code == 202
    assert mail.outbox == []
    assert len(callbacks) == 1


def test_code_requests_are_throttled_per_address_with_429(
    anna: User, request_code: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**ALL_RATES_HIGH, "email_account": "2/hour"})
    assert request_code("anna@example.com", ip="198.51.100.1").status_code == 202
    assert request_code("ANNA@example.com", ip="198.51.100.2").status_code == 202
    throttled = request_code("anna@example.com", ip="198.51.100.3")
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert len(mail.outbox) == 2
    assert request_code("other@example.com", ip="198.51.100.3").status_code == 202


def test_code_requests_are_throttled_per_ip_whatever_the_address(
    request_code: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**ALL_RATES_HIGH, "email_ip": "2/hour"})
    request_code("a@example.com")
    request_code("b@example.com")
    assert request_code("c@example.com").status_code == 429
    assert request_code("c@example.com", ip="198.51.100.9").status_code == 202


def test_code_logins_are_throttled_per_address_with_429(anna: User, monkeypatch: pytest.MonkeyPatch) -> None:
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**ALL_RATES_HIGH, "login_account": "2/min"})
    code_login("anna@example.com", "000000", ip="198.51.100.1")
    code_login("anna@example.com", "000000", ip="198.51.100.2")
    throttled = code_login("anna@example.com", "000000", ip="198.51.100.3")
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
