"""The accounts app's jobs: the nightly clean-up, and emails sent by the worker rather than in the request."""

import datetime
from typing import Any

import pytest
import time_machine
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.models import EmailLoginCode, LoginSession, SecurityCounter
from accounts.services.events import ClientInfo
from accounts.services.sessions import session_start
from accounts.tasks import purge_ended_security_records
from accounts.tests.factories import UserFactory
from portfolio_site.jobs.models import JobRun

pytestmark = pytest.mark.django_db

CLIENT = ClientInfo(ip="127.0.0.1", user_agent="pytest")


def _code(user: Any, *, used: bool, expires_in: datetime.timedelta) -> EmailLoginCode:
    now = timezone.now()
    return EmailLoginCode.objects.create(
        user=user,
        code_hash=f"hash-{EmailLoginCode.objects.count()}",
        created_at=now - datetime.timedelta(minutes=10),
        expires_at=now + expires_in,
        used_at=now if used else None,
    )


def test_the_nightly_clean_up_deletes_what_has_ended_keeps_what_is_live_and_changes_nothing_when_run_again(
    settings: Any,
) -> None:
    settings.SECURITY_RECORDS_RETENTION_DAYS = 30
    user = UserFactory()
    with time_machine.travel(timezone.now() - datetime.timedelta(days=40)):
        old_session, old_tokens = session_start(user=user, client=CLIENT)
    assert old_tokens is not None
    BlacklistedToken.objects.create(token=OutstandingToken.objects.get(user=user))
    live_session, _ = session_start(user=user, client=CLIENT)
    used = _code(user, used=True, expires_in=datetime.timedelta(minutes=5))
    expired = _code(user, used=False, expires_in=datetime.timedelta(minutes=-1))
    live = _code(user, used=False, expires_in=datetime.timedelta(minutes=5))
    SecurityCounter.objects.create(key="ended", count=3, window_ends_at=timezone.now() - datetime.timedelta(hours=1))

    first = purge_ended_security_records.apply().get()

    assert first["login_sessions"] == 1
    assert first["login_codes"] == 2
    assert first["expired_tokens"] == 1
    assert first["security_counters"] == 1
    assert set(LoginSession.objects.values_list("pk", flat=True)) == {live_session.pk}
    assert old_session.pk != live_session.pk
    assert set(EmailLoginCode.objects.values_list("pk", flat=True)) == {live.pk}
    assert {used.pk, expired.pk}.isdisjoint(EmailLoginCode.objects.values_list("pk", flat=True))
    assert not BlacklistedToken.objects.exists()
    assert OutstandingToken.objects.filter(user=user).count() == 1  # the live session's

    second = purge_ended_security_records.apply().get()

    assert set(second.values()) == {0}
    assert JobRun.objects.filter(task="accounts.purge_ended_security_records", outcome="succeeded").count() == 2


# --- Account emails leave from the worker -----------------------------------------------------------------------


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The broker: `send_email` jobs are queued here instead of run, as they are when a worker is configured."""
    from accounts.tasks import send_email

    jobs: list[dict[str, Any]] = []
    monkeypatch.setattr(send_email, "apply_async", lambda **options: jobs.append(options))
    return jobs


@pytest.mark.parametrize(
    ("url", "template"),
    [("/api/v1/auth/otp/request/", "login_code"), ("/api/v1/auth/password-reset/", "password_reset")],
)
def test_the_answer_is_the_same_for_a_known_and_an_unknown_address_and_no_mail_leaves_in_the_request(
    url: str, template: str, queued: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    from django.core import mail
    from rest_framework.test import APIClient

    from accounts.tasks import send_email

    anna = UserFactory(email="anna@example.com")
    answers = []
    for email in ["anna@example.com", "nobody@example.com"]:
        with django_capture_on_commit_callbacks(execute=True):
            response = APIClient().post(url, {"email": email}, REMOTE_ADDR="203.0.113.9")
        answers.append((response.status_code, response.json()))

    assert answers[0] == answers[1]
    assert answers[0][0] == 202
    assert mail.outbox == []  # nothing was sent while the request ran ...
    assert len(queued) == 1  # ... one job was queued, for the known address only
    kwargs = queued[0]["kwargs"]
    assert (kwargs["user_id"], kwargs["template"]) == (anna.pk, template)
    assert "redacted" in queued[0]["kwargsrepr"]  # what Celery's logs show of the arguments

    send_email.apply(kwargs=kwargs)  # the worker's turn

    assert [message.to for message in mail.outbox] == [["anna@example.com"]]


def test_an_email_job_for_a_user_deactivated_since_sends_nothing() -> None:
    from django.core import mail

    from accounts.tasks import send_email

    user = UserFactory(is_active=False)
    assert send_email.apply(kwargs={"user_id": user.pk, "template": "login_code", "context": {}}).get() is False
    assert mail.outbox == []


@pytest.mark.parametrize("url", ["/api/v1/auth/otp/request/", "/api/v1/auth/password-reset/"])
def test_the_request_does_the_same_work_for_a_known_and_an_unknown_address(
    url: str, django_capture_on_commit_callbacks: Any, count_queries: Any
) -> None:
    """The address is looked up by the worker: the request's queries and the jobs it leaves do not depend on it."""
    from rest_framework.test import APIClient

    UserFactory(email="anna@example.com")
    work = []
    for email in ["anna@example.com", "nobody@example.com"]:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            queries = count_queries(lambda e=email: APIClient().post(url, {"email": e}, REMOTE_ADDR="203.0.113.9"))
        work.append((queries, len(callbacks)))
    assert work[0] == work[1]
    assert work[0][1] == 1  # one job to send, nothing else
