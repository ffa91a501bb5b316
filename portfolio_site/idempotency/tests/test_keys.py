"""The keys themselves: one per caller and key, the fingerprint, the nightly purge and its schedule."""

import datetime

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from portfolio_site.idempotency.models import IdempotencyKey
from portfolio_site.idempotency.services import is_replayable, request_fingerprint
from portfolio_site.idempotency.tasks import purge_expired_keys
from portfolio_site.idempotency.tests.factories import IdempotencyKeyFactory
from portfolio_site.jobs.models import JobRun
from portfolio_site.testing import refused_by

pytestmark = pytest.mark.django_db


def test_the_database_refuses_a_second_row_for_one_users_key() -> None:
    first = IdempotencyKeyFactory()
    with refused_by("idempotency_key_unique_per_user"):
        IdempotencyKeyFactory(user=first.user, key=first.key)


def test_the_same_key_of_two_users_is_two_rows() -> None:
    first = IdempotencyKeyFactory()
    IdempotencyKeyFactory(key=first.key)
    assert IdempotencyKey.objects.filter(key=first.key).count() == 2


def test_the_fingerprint_ignores_the_order_of_the_bodys_keys_but_not_its_values_or_operation() -> None:
    operation = "POST /api/v1/transactions/"
    same = request_fingerprint(operation=operation, body={"amount": "1", "kind": "deposit"})
    assert same == request_fingerprint(operation=operation, body={"kind": "deposit", "amount": "1"})
    assert same != request_fingerprint(operation=operation, body={"kind": "deposit", "amount": "2"})
    assert same != request_fingerprint(operation="POST /api/v1/allocations/", body={"kind": "deposit", "amount": "1"})


@pytest.mark.parametrize("status_code", [200, 201, 204, 409])
def test_successes_and_conflicts_are_kept_for_replay(status_code: int) -> None:
    assert is_replayable(status_code)


@pytest.mark.parametrize("status_code", [400, 401, 403, 404, 422, 429, 500, 503])
def test_other_answers_are_not_kept_so_the_caller_may_retry(status_code: int) -> None:
    assert not is_replayable(status_code)


def test_the_purge_job_deletes_only_the_expired_keys(settings) -> None:
    settings.IDEMPOTENCY_KEY_TTL = datetime.timedelta(hours=24)
    now = timezone.now()
    expired = IdempotencyKeyFactory(created_at=now - datetime.timedelta(hours=24, minutes=1))
    live = IdempotencyKeyFactory(created_at=now - datetime.timedelta(hours=23, minutes=59))

    assert purge_expired_keys.apply().get() == 1
    assert list(IdempotencyKey.objects.values_list("pk", flat=True)) == [live.pk]
    assert not IdempotencyKey.objects.filter(pk=expired.pk).exists()
    assert purge_expired_keys.apply().get() == 0  # a second run deletes nothing
    assert JobRun.objects.filter(task="idempotency.purge_expired_keys", outcome="succeeded").count() == 2


def test_the_purge_job_runs_nightly_by_default() -> None:
    schedule = PeriodicTask.objects.get(task="idempotency.purge_expired_keys")
    assert (schedule.crontab.minute, schedule.crontab.hour, schedule.enabled) == ("0", "3", True)
