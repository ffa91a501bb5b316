"""Structured logs: JSON lines with the request id (followed into jobs), user id and route; never a secret."""

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from django.core import mail
from rest_framework.test import APIClient

from accounts.tests.factories import PASSWORD, UserFactory, access_token_for
from portfolio_site import logs

pytestmark = pytest.mark.django_db


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """What the configured console handler (settings.LOGGING: its filters, its JSON formatter) writes, with every
    logger at DEBUG for the test."""
    handler = next(
        h for h in logging.getLogger().handlers if any(isinstance(f, logs.RedactingFilter) for f in h.filters)
    )
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    root = logging.getLogger()
    # Swapped, not setStream(): that flushes the old stream, which pytest's output capture may have closed.
    previous_stream, previous_level = handler.stream, root.level
    handler.stream = buffer
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.setLevel(previous_level)
        handler.stream = previous_stream


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_every_line_is_json_with_the_request_id_user_id_and_route(log_output: io.StringIO) -> None:
    user = UserFactory(is_superuser=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(user)}")
    response = client.get("/api/v1/clients/999999/", HTTP_X_REQUEST_ID="trace-0123456789")

    assert response.status_code == 404
    assert response["X-Request-ID"] == "trace-0123456789"
    not_found = next(line for line in lines(log_output) if line["message"].startswith("Not Found"))
    assert not_found["request_id"] == "trace-0123456789"
    assert not_found["user_id"] == str(user.pk)
    assert not_found["route"].startswith("GET api/v1/clients/")
    assert {"time", "level", "logger"} <= not_found.keys()


def test_a_request_without_a_usable_request_id_gets_a_new_one(client: Any) -> None:
    first = client.get("/health/live", HTTP_X_REQUEST_ID="bad id\nInjected: 1")["X-Request-ID"]
    second = client.get("/health/live")["X-Request-ID"]
    assert len(first) == 32
    assert "\n" not in first
    assert first != second


def test_the_request_id_follows_the_request_into_the_job_it_enqueued(django_capture_on_commit_callbacks) -> None:
    from portfolio_site.jobs.models import JobRun

    UserFactory(email="anna@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        APIClient().post(
            "/api/v1/auth/password-reset/", {"email": "anna@example.com"}, HTTP_X_REQUEST_ID="reset-request-42"
        )
    run = JobRun.objects.get(task="accounts.send_email")
    assert run.request_id == "reset-request-42"


@pytest.mark.parametrize(
    "message",
    [
        "login with password=hunter2-very-secret",
        'body {"password": "hunter2-very-secret", "email": "a@b.c"}',
        "Authorization: Bearer hunter2-very-secret",
        "reset link http://x/reset-password?uid=MQ&token=hunter2-very-secret",
        "payload {'context': {'code': 'hunter2-very-secret'}}",
        "otp_secret=hunter2-very-secret",
    ],
)
def test_secrets_in_key_value_form_are_masked(log_output: io.StringIO, message: str) -> None:
    logging.getLogger("test").warning(message)
    assert "hunter2-very-secret" not in log_output.getvalue()
    assert "[redacted]" in log_output.getvalue()


def test_registered_secrets_json_web_tokens_arguments_extras_and_tracebacks_are_masked(
    log_output: io.StringIO,
) -> None:
    token = access_token_for(UserFactory())
    logs.secret("493817")
    logger = logging.getLogger("test")
    logger.info("a code %s and a token %s", "493817", token)
    logger.info("extras", extra={"data": {"kwargs": "{'code': '493817'}"}})
    try:
        raise ValueError("the code was 493817")
    except ValueError:
        logger.exception("failed")
    output = log_output.getvalue()
    assert "493817" not in output
    assert token not in output
    assert output.count("[redacted]") >= 4


def test_login_otp_reset_and_totp_flows_log_no_secret(
    log_output: io.StringIO, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": dict.fromkeys(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "1000/min"),
    }
    user = UserFactory(email="anna@example.com")
    api = APIClient()
    used: list[str] = [PASSWORD, "wrong-password-never-logged"]

    def post(url: str, data: dict[str, Any], client: APIClient = api) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url, data, REMOTE_ADDR="203.0.113.5")

    # Password login, right and wrong.
    assert post("/api/v1/auth/login/", {"email": user.email, "password": "wrong-password-never-logged"}).status_code
    tokens = post("/api/v1/auth/login/", {"email": user.email, "password": PASSWORD}).json()
    used += [tokens["access"], tokens["refresh"]]
    # A login code by email, a wrong one then the right one.
    post("/api/v1/auth/otp/request/", {"email": user.email})
    code = next(word for word in mail.outbox[-1].body.split() if word.isdigit() and len(word) == 6)
    used.append(code)
    post("/api/v1/auth/otp/login/", {"email": user.email, "code": f"{(int(code) + 1) % 10**6:06d}"})
    assert post("/api/v1/auth/otp/login/", {"email": user.email, "code": code}).status_code == 200
    # A password reset.
    post("/api/v1/auth/password-reset/", {"email": user.email})
    link = next(word for word in mail.outbox[-1].body.split() if "reset-password?" in word)
    params = dict(part.split("=", 1) for part in link.split("?", 1)[1].split("&"))
    used += [params["token"], "brand-new-Passphrase-42"]
    reset = {**params, "new_password": "brand-new-Passphrase-42"}
    assert post("/api/v1/auth/password-reset/confirm/", reset).status_code == 200
    # TOTP: enrol, confirm, log in with a challenge and a code.
    signed_in = APIClient()
    signed_in.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(user)}")
    secret = post("/api/v1/auth/2fa/totp/enrol/", {}, signed_in).json()["secret"]
    totp = pyotp.TOTP(secret)
    first = totp.at(time.time(), counter_offset=-1)
    recovery = post("/api/v1/auth/2fa/totp/confirm/", {"code": first}, signed_in).json()["recovery_codes"]
    used += [secret, first, *recovery]
    challenge = post("/api/v1/auth/login/", {"email": user.email, "password": "brand-new-Passphrase-42"}).json()
    now = totp.now()
    used.append(now)
    assert post("/api/v1/auth/2fa/verify/", {"challenge": challenge["challenge"], "code": now}).status_code == 200

    output = log_output.getvalue()
    assert "Unauthorized: /api/v1/auth/login/" in output  # the flows did log
    leaked = [value for value in used if value in output]
    assert leaked == []
