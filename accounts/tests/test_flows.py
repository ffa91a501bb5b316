"""Account flows by email: verifying the address, resetting a forgotten password, changing a known one."""

import datetime
import json
import re
from collections.abc import Callable
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.conf import settings
from django.core import mail, signing
from django.core.exceptions import ValidationError
from django.test import Client as DjangoClient
from django.test import override_settings
from django.utils import timezone
from openapi_core import OpenAPI
from openapi_core.contrib.django import DjangoOpenAPIRequest, DjangoOpenAPIResponse
from rest_framework.test import APIClient

from accounts import services
from accounts.models import LoginSession, SecurityEvent, User
from accounts.services import flows
from accounts.services.events import ClientInfo
from accounts.tests.factories import PASSWORD, UserFactory, access_token_for

pytestmark = pytest.mark.django_db
Kind = SecurityEvent.Kind
STRONG = "a-long-and-unusual-passphrase-42"
VERIFY_REQUEST = "/api/v1/auth/verify-email/request/"
VERIFY_CONFIRM = "/api/v1/auth/verify-email/confirm/"
RESET = "/api/v1/auth/password-reset/"
RESET_CONFIRM = "/api/v1/auth/password-reset/confirm/"
CHANGE = "/api/v1/auth/password/change/"
ME = "/api/v1/auth/me/"


def bearer(user: User) -> APIClient:
    """A client carrying a real access token, of a session opened for the user as a login would."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(user)}")
    return client


def link_of(message: Any) -> tuple[str, dict[str, str]]:
    """The one link in an email: its address without the query, and its query parameters."""
    (url,) = re.findall(r"https?://\S+", message.body)
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}", {k: v[0] for k, v in parse_qs(parts.query).items()}


@pytest.fixture
def send_now(django_capture_on_commit_callbacks: Any) -> Callable[[Callable[[], Any]], Any]:
    """Runs a request and the callbacks its commit schedules (where the emails leave)."""

    def run(call: Callable[[], Any]) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return call()

    return run


@pytest.fixture
def anna() -> User:
    return UserFactory(email="anna@example.com", full_name="Anna Berg", is_verified=False)


def _request_verification(user: User, send_now: Any) -> dict[str, str]:
    response = send_now(lambda: bearer(user).post(VERIFY_REQUEST))
    assert response.status_code == 202, response.content
    return link_of(mail.outbox[-1])[1]


def _request_reset(email: str, send_now: Any) -> Any:
    return send_now(lambda: APIClient().post(RESET, {"email": email}, REMOTE_ADDR="198.51.100.4"))


def _reset_link(user: User, send_now: Any) -> dict[str, str]:
    assert _request_reset(user.email, send_now).status_code == 202
    return link_of(mail.outbox[-1])[1]


def _sessions_of(user: User) -> Any:
    return LoginSession.objects.filter(user=user)


# --- Email verification --------------------------------------------------------------------------------


def test_verification_request_emails_the_caller_a_link_to_the_front_end(anna: User, send_now: Any) -> None:
    response = send_now(lambda: bearer(anna).post(VERIFY_REQUEST))

    assert response.status_code == 202, response.content
    assert "anna@example.com" in response.json()["detail"]
    (message,) = mail.outbox
    assert message.to == ["anna@example.com"]
    assert message.subject == "Confirm your email address for the back-office"
    address, params = link_of(message)
    assert address == f"{settings.PUBLIC_BASE_URL}/verify-email"
    assert set(params) == {"token"}
    assert "&amp;" not in message.body


def test_verification_email_leaves_only_when_the_request_commits(anna: User) -> None:
    assert bearer(anna).post(VERIFY_REQUEST).status_code == 202

    assert mail.outbox == []  # the test's transaction never commits


def test_verification_request_needs_a_logged_in_caller() -> None:
    assert APIClient().post(VERIFY_REQUEST).status_code == 401


def test_verification_request_for_an_already_verified_address_is_refused_with_409(send_now: Any) -> None:
    verified = UserFactory(is_verified=True)

    response = send_now(lambda: bearer(verified).post(VERIFY_REQUEST))

    assert response.status_code == 409
    assert "detail" in response.json()
    assert mail.outbox == []


def test_verification_link_verifies_the_address_without_a_login_and_is_audited(anna: User, send_now: Any) -> None:
    token = _request_verification(anna, send_now)["token"]

    response = APIClient().post(VERIFY_CONFIRM, {"token": token}, REMOTE_ADDR="198.51.100.9")

    assert response.status_code == 200, response.content
    anna.refresh_from_db()
    assert anna.is_verified
    event = SecurityEvent.objects.get(kind=Kind.EMAIL_VERIFIED)
    assert (event.user, event.ip) == (anna, "198.51.100.9")
    assert token not in f"{event.detail}{event.email}{event.user_agent}"


def test_verification_link_used_twice_verifies_once_and_audits_once(anna: User, send_now: Any) -> None:
    token = _request_verification(anna, send_now)["token"]

    assert APIClient().post(VERIFY_CONFIRM, {"token": token}).status_code == 200
    assert APIClient().post(VERIFY_CONFIRM, {"token": token}).status_code == 200

    assert SecurityEvent.objects.filter(kind=Kind.EMAIL_VERIFIED).count() == 1


@override_settings(EMAIL_VERIFICATION_MAX_AGE_HOURS=2)
def test_verification_link_expires_after_email_verification_max_age_hours(anna: User, send_now: Any) -> None:
    sent_at = timezone.now()
    with time_machine.travel(sent_at, tick=False):
        token = _request_verification(anna, send_now)["token"]

    with time_machine.travel(sent_at + datetime.timedelta(hours=2, seconds=1), tick=False):
        expired = APIClient().post(VERIFY_CONFIRM, {"token": token})
    assert expired.status_code == 400
    assert list(expired.json()) == ["token"]
    anna.refresh_from_db()
    assert not anna.is_verified

    with time_machine.travel(sent_at + datetime.timedelta(hours=1, minutes=59), tick=False):
        assert APIClient().post(VERIFY_CONFIRM, {"token": token}).status_code == 200


def test_verification_link_is_void_once_the_address_changes(anna: User, send_now: Any) -> None:
    token = _request_verification(anna, send_now)["token"]
    services.user_update(user=anna, email="anna.berg@example.com")

    response = APIClient().post(VERIFY_CONFIRM, {"token": token})

    assert response.status_code == 400
    assert "token" in response.json()
    anna.refresh_from_db()
    assert not anna.is_verified


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda token, user: token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), id="tampered"),
        pytest.param(
            lambda token, user: signing.dumps({"uid": user.pk, "email": user.email}, salt="another.purpose"),
            id="signed-for-another-purpose",
        ),
        pytest.param(
            lambda token, user: signing.dumps({"uid": user.pk, "email": user.email}, key="not-our-secret-key" * 3),
            id="signed-with-another-key",
        ),
        pytest.param(lambda token, user: "garbage", id="garbage"),
    ],
)
def test_forged_verification_tokens_are_refused_with_400(anna: User, send_now: Any, forge: Any) -> None:
    token = _request_verification(anna, send_now)["token"]

    response = APIClient().post(VERIFY_CONFIRM, {"token": forge(token, anna)})

    assert response.status_code == 400
    assert list(response.json()) == ["token"]
    anna.refresh_from_db()
    assert not anna.is_verified


# --- Password reset ------------------------------------------------------------------------------------


def test_password_reset_emails_an_active_user_a_link_and_records_the_request(anna: User, send_now: Any) -> None:
    response = _request_reset("ANNA@example.com", send_now)

    assert response.status_code == 202, response.content
    (message,) = mail.outbox
    assert message.to == ["anna@example.com"]
    assert message.subject == "Reset your back-office password"
    address, params = link_of(message)
    assert address == f"{settings.PUBLIC_BASE_URL}/reset-password"
    assert set(params) == {"uid", "token"}
    event = SecurityEvent.objects.get(kind=Kind.PASSWORD_RESET_REQUESTED)
    assert (event.user, event.ip) == (anna, "198.51.100.4")
    assert params["token"] not in f"{event.detail}{event.email}{event.user_agent}"


def test_password_reset_answers_unknown_and_inactive_addresses_exactly_like_a_known_one(
    anna: User, send_now: Any
) -> None:
    UserFactory(email="gone@example.com", is_active=False)

    answers = [
        _request_reset(email, send_now) for email in ("anna@example.com", "nobody@example.com", "gone@example.com")
    ]

    assert {answer.status_code for answer in answers} == {202}
    assert len({answer.content for answer in answers}) == 1
    assert [message.to for message in mail.outbox] == [["anna@example.com"]]
    assert list(SecurityEvent.objects.values_list("kind", "user__email")) == [
        (Kind.PASSWORD_RESET_REQUESTED, "anna@example.com")
    ]


def test_password_reset_request_is_throttled_per_address_with_429(anna: User) -> None:
    # REST_FRAMEWORK's email_account rate: 5 an hour per address, whatever the caller's IP.
    answers = [
        APIClient().post(RESET, {"email": "anna@example.com"}, REMOTE_ADDR=f"198.51.100.{n}").status_code
        for n in range(6)
    ]

    assert answers == [202] * 5 + [429]


@pytest.mark.usefixtures("jobs_as_on_a_worker")
def test_a_mail_outage_is_retried_by_the_job_and_never_fails_the_reset_request(
    anna: User, send_now: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from portfolio_site.jobs.models import JobRun

    with mock.patch("accounts.emails.send_mail", side_effect=ConnectionRefusedError("SMTP is down")):
        response = _request_reset("anna@example.com", send_now)

    assert response.status_code == 202
    run = JobRun.objects.get(task="accounts.send_email")
    assert (run.outcome, run.retries, run.error) == ("failed", 5, "ConnectionRefusedError: SMTP is down")
    assert run.arguments["context"] == "[redacted]"
    assert "Job accounts.send_email failed" in caplog.text
    assert SecurityEvent.objects.filter(kind=Kind.PASSWORD_RESET_REQUESTED, user=anna).exists()


def test_password_reset_link_sets_the_password_and_ends_every_session(anna: User, send_now: Any) -> None:
    phone, laptop = bearer(anna), bearer(anna)
    params = _reset_link(anna, send_now)

    response = APIClient().post(RESET_CONFIRM, {**params, "new_password": STRONG}, REMOTE_ADDR="198.51.100.7")

    assert response.status_code == 200, response.content
    anna.refresh_from_db()
    assert anna.check_password(STRONG)
    assert not anna.check_password(PASSWORD)
    assert set(_sessions_of(anna).values_list("end_reason", flat=True)) == {LoginSession.EndReason.PASSWORD_CHANGED}
    assert phone.get(ME).status_code == 401
    assert laptop.get(ME).status_code == 401
    event = SecurityEvent.objects.get(kind=Kind.PASSWORD_RESET)
    assert (event.user, event.ip) == (anna, "198.51.100.7")
    login = APIClient().post("/api/v1/auth/login/", {"email": anna.email, "password": STRONG})
    assert login.status_code == 200


def test_password_reset_link_works_only_once(anna: User, send_now: Any) -> None:
    params = _reset_link(anna, send_now)
    assert APIClient().post(RESET_CONFIRM, {**params, "new_password": STRONG}).status_code == 200

    again = APIClient().post(RESET_CONFIRM, {**params, "new_password": "another-long-passphrase-43"})

    assert again.status_code == 400
    assert list(again.json()) == ["token"]
    anna.refresh_from_db()
    assert anna.check_password(STRONG)


@override_settings(PASSWORD_RESET_TIMEOUT=600)
def test_password_reset_link_expires_after_password_reset_timeout(anna: User, send_now: Any) -> None:
    sent_at = timezone.now()
    with time_machine.travel(sent_at, tick=False):
        params = _reset_link(anna, send_now)

    with time_machine.travel(sent_at + datetime.timedelta(seconds=601), tick=False):
        expired = APIClient().post(RESET_CONFIRM, {**params, "new_password": STRONG})
    assert expired.status_code == 400
    assert "token" in expired.json()

    with time_machine.travel(sent_at + datetime.timedelta(seconds=599), tick=False):
        assert APIClient().post(RESET_CONFIRM, {**params, "new_password": STRONG}).status_code == 200


def test_password_reset_applies_the_password_validators_and_keeps_the_link_usable(anna: User, send_now: Any) -> None:
    session = bearer(anna)
    params = _reset_link(anna, send_now)

    weak = APIClient().post(RESET_CONFIRM, {**params, "new_password": "anna@example.com"})

    assert weak.status_code == 400
    assert list(weak.json()) == ["new_password"]
    anna.refresh_from_db()
    assert anna.check_password(PASSWORD)
    assert session.get(ME).status_code == 200
    assert APIClient().post(RESET_CONFIRM, {**params, "new_password": STRONG}).status_code == 200


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda params, other: {**params, "uid": "!!not-base64!!"}, id="bad-uid"),
        pytest.param(lambda params, other: {**params, "uid": "MTIzNDU2Nzg5"}, id="no-such-user"),
        pytest.param(lambda params, other: {**params, "uid": other}, id="another-users-uid"),
        pytest.param(lambda params, other: {**params, "token": "abc-0123456789abcdef"}, id="forged-token"),
    ],
)
def test_password_reset_refuses_a_forged_link_with_400(anna: User, send_now: Any, tamper: Any) -> None:
    bob = UserFactory(email="bob@example.com")
    other_uid = _reset_link(bob, send_now)["uid"]
    params = _reset_link(anna, send_now)

    response = APIClient().post(RESET_CONFIRM, {**tamper(params, other_uid), "new_password": STRONG})

    assert response.status_code == 400
    assert list(response.json()) == ["token"]
    for user in (anna, bob):
        user.refresh_from_db()
        assert user.check_password(PASSWORD)


def test_password_reset_link_of_a_user_deactivated_since_is_refused(anna: User, send_now: Any) -> None:
    params = _reset_link(anna, send_now)
    services.user_update(user=anna, is_active=False)

    assert APIClient().post(RESET_CONFIRM, {**params, "new_password": STRONG}).status_code == 400


# --- Password change -----------------------------------------------------------------------------------


def test_password_change_ends_every_session_including_the_current_one(anna: User) -> None:
    current, other = bearer(anna), bearer(anna)

    response = current.post(CHANGE, {"old_password": PASSWORD, "new_password": STRONG}, REMOTE_ADDR="198.51.100.3")

    assert response.status_code == 200, response.content
    assert "log in again" in response.json()["detail"].lower()
    anna.refresh_from_db()
    assert anna.check_password(STRONG)
    assert current.get(ME).status_code == 401
    assert other.get(ME).status_code == 401
    assert not _sessions_of(anna).filter(revoked_at__isnull=True).exists()
    event = SecurityEvent.objects.get(kind=Kind.PASSWORD_CHANGED)
    assert (event.user, event.ip) == (anna, "198.51.100.3")


def test_password_change_with_a_wrong_old_password_is_refused_with_400(anna: User) -> None:
    client = bearer(anna)

    response = client.post(CHANGE, {"old_password": "not-my-password", "new_password": STRONG})

    assert response.status_code == 400
    assert list(response.json()) == ["old_password"]
    anna.refresh_from_db()
    assert anna.check_password(PASSWORD)
    assert client.get(ME).status_code == 200
    assert not SecurityEvent.objects.filter(kind=Kind.PASSWORD_CHANGED).exists()


@pytest.mark.parametrize("weak", ["short", "12345678901234", "password1234", "anna@example.com"])
def test_password_change_applies_the_password_validators(anna: User, weak: str) -> None:
    client = bearer(anna)

    response = client.post(CHANGE, {"old_password": PASSWORD, "new_password": weak})

    assert response.status_code == 400
    assert list(response.json()) == ["new_password"]
    anna.refresh_from_db()
    assert anna.check_password(PASSWORD)
    assert client.get(ME).status_code == 200


def test_password_change_needs_a_logged_in_caller() -> None:
    assert APIClient().post(CHANGE, {"old_password": PASSWORD, "new_password": STRONG}).status_code == 401


@override_settings(AUTH_COOKIE_MODE=True)
def test_password_change_in_cookie_mode_clears_the_token_cookies(anna: User) -> None:
    client = bearer(anna)

    response = client.post(CHANGE, {"old_password": PASSWORD, "new_password": STRONG})

    assert response.status_code == 200
    assert response.cookies["access_token"].value == ""
    assert response.cookies["refresh_token"].value == ""


# --- The services, called directly ---------------------------------------------------------------------


def test_password_change_service_reports_weak_passwords_under_new_password(anna: User) -> None:
    with pytest.raises(ValidationError) as refused:
        flows.password_change(user=anna, old_password=PASSWORD, new_password="short", client=ClientInfo())

    assert set(refused.value.message_dict) == {"new_password"}


# --- The schema tells the truth about these endpoints --------------------------------------------------


@pytest.fixture(scope="module")
def openapi(django_db_blocker: Any) -> OpenAPI:
    with django_db_blocker.unblock():
        response = DjangoClient().get("/api/schema/?format=json")
    return OpenAPI.from_dict(json.loads(response.content))


class _Request(DjangoOpenAPIRequest):
    def __init__(self, request: Any, body: bytes) -> None:
        super().__init__(request)
        self._sent_body = body

    @property
    def body(self) -> bytes:
        return self._sent_body


def _checked(openapi: OpenAPI, client: Any, path: str, data: dict[str, Any], expect: int) -> Any:
    body = json.dumps(data).encode()
    response = client.post(path, body, content_type="application/json")
    assert response.status_code == expect, response.content
    request = _Request(response.wsgi_request, body)
    if expect < 400:
        openapi.validate_request(request)
    openapi.validate_response(request, DjangoOpenAPIResponse(response))
    return response.json()


def test_flow_endpoints_answer_as_the_schema_describes(openapi: OpenAPI, anna: User, send_now: Any) -> None:
    def run(path: str, data: dict[str, Any], expect: int, client: Any = None) -> Any:
        return send_now(lambda: _checked(openapi, client or APIClient(), path, data, expect))

    run(VERIFY_REQUEST, {}, 401)
    run(VERIFY_REQUEST, {}, 202, bearer(anna))
    token = link_of(mail.outbox[-1])[1]["token"]
    assert "token" in run(VERIFY_CONFIRM, {"token": "forged"}, 400)
    run(VERIFY_CONFIRM, {"token": token}, 200)
    run(VERIFY_REQUEST, {}, 409, bearer(User.objects.get(pk=anna.pk)))
    run(RESET, {"email": "nobody@example.com"}, 202)
    assert "email" in run(RESET, {"email": "not an address"}, 400)
    params = run(RESET, {"email": anna.email}, 202) and link_of(mail.outbox[-1])[1]
    assert "new_password" in run(RESET_CONFIRM, {**params, "new_password": "short"}, 400)
    run(RESET_CONFIRM, {**params, "new_password": STRONG}, 200)
    assert "token" in run(RESET_CONFIRM, {**params, "new_password": STRONG}, 400)
    assert "old_password" in run(CHANGE, {"old_password": "wrong", "new_password": PASSWORD}, 400, bearer(anna))
    run(CHANGE, {"old_password": STRONG, "new_password": PASSWORD}, 200, bearer(anna))
    run(CHANGE, {"old_password": PASSWORD, "new_password": STRONG}, 401)
