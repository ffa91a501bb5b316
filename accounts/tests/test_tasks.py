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
