"""The one way to write a job: after the commit, retried when transient, recorded (secrets masked), scoped."""

import datetime
from typing import Any

import pytest
from django.db import OperationalError, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.tests.factories import UserFactory
from portfolio_site.jobs.base import TransientError, enqueue, job
from portfolio_site.jobs.models import JobRun
from portfolio_site.testing import changelist_ids, page_queries

pytestmark = pytest.mark.django_db

calls: list[dict[str, Any]] = []
failures_left = {"n": 0}


@job(name="jobs.tests.record", secret_arguments={"code"})
def record(*, label: str, code: str = "", token_hint: str = "") -> str:
    calls.append({"label": label, "code": code})
    return label


@job(name="jobs.tests.flaky", retry_backoff=False)
def flaky(*, fail: int) -> str:
    if failures_left["n"] > 0:
        failures_left["n"] -= 1
        raise TransientError("the source did not answer")
    return "done"


@job(name="jobs.tests.broken")
def broken() -> None:
    raise ValueError("a bug, not a hiccup")


@job(name="jobs.tests.db_gone", retry_backoff=False, max_retries=2)
def db_gone() -> None:
    raise OperationalError("server closed the connection unexpectedly")


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()
    failures_left["n"] = 0


def test_a_job_is_sent_only_when_the_transaction_commits(django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            enqueue(record, label="kept")
            assert calls == []  # not before the commit
        with transaction.atomic():
            enqueue(record, label="rolled back")
            transaction.set_rollback(True)
    assert [call["label"] for call in calls] == ["kept"]


def test_a_job_run_records_task_masked_arguments_requester_and_success(
    django_capture_on_commit_callbacks: Any,
) -> None:
    user = UserFactory()
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(record, requested_by=user, label="hello", code="493817", token_hint="abc")
    run = JobRun.objects.get()
    assert run.task == "jobs.tests.record"
    assert run.arguments == {"label": "hello", "code": "[redacted]", "token_hint": "[redacted]"}
    assert run.requested_by == user
    assert run.outcome == JobRun.Outcome.SUCCEEDED
    assert run.finished_at is not None
    assert run.finished_at >= run.started_at
    assert run.retries == 0
    assert run.error == ""
    assert run.request_id
    assert calls == [{"label": "hello", "code": "493817"}]  # the job itself gets the real value


@pytest.mark.usefixtures("jobs_as_on_a_worker")
def test_a_transient_failure_is_retried_and_the_run_counts_its_retries() -> None:
    failures_left["n"] = 2
    result = flaky.apply(kwargs={"fail": 2}, throw=False)
    assert result.get() == "done"
    run = JobRun.objects.get()
    assert run.outcome == JobRun.Outcome.SUCCEEDED
    assert run.retries == 2


@pytest.mark.usefixtures("jobs_as_on_a_worker")
def test_a_transient_failure_that_outlasts_the_retries_fails_the_run_with_its_error() -> None:
    result = db_gone.apply(throw=False)
    assert result.failed()
    run = JobRun.objects.get()
    assert run.outcome == JobRun.Outcome.FAILED
    assert run.retries == 2
    assert run.error == "OperationalError: server closed the connection unexpectedly"


def test_a_bug_fails_at_once_without_retrying() -> None:
    result = broken.apply(throw=False)
    assert result.failed()
    run = JobRun.objects.get()
    assert (run.outcome, run.retries, run.error) == (JobRun.Outcome.FAILED, 0, "ValueError: a bug, not a hiccup")


def test_a_job_delivered_again_after_it_succeeded_is_not_run_again() -> None:
    first = record.apply(kwargs={"label": "once"}, task_id="job-1")
    again = record.apply(kwargs={"label": "once"}, task_id="job-1")  # the broker redelivers the same message
    assert (first.get(), again.get()) == ("once", None)
    assert [call["label"] for call in calls] == ["once"]
    assert JobRun.objects.get(job_id="job-1").outcome == JobRun.Outcome.SUCCEEDED


def test_jobs_are_retried_with_exponential_backoff_by_default() -> None:
    assert record.retry_backoff
    assert record.retry_jitter
    assert record.max_retries == 5
    assert TransientError in record.autoretry_for
    assert OperationalError in record.autoretry_for


# --- The admin -------------------------------------------------------------------------------------------------


def make_runs(count: int, user: Any) -> list[JobRun]:
    now = timezone.now()
    return JobRun.objects.bulk_create(
        JobRun(
            task="holdings.daily_values_refresh",
            job_id=f"{user.pk}-{JobRun.objects.count()}-{n}",
            arguments={"portfolio_ids": [n]},
            requested_by=user,
            outcome=JobRun.Outcome.SUCCEEDED,
            started_at=now - datetime.timedelta(minutes=n),
            finished_at=now,
        )
        for n in range(count)
    )


def test_job_run_changelist_costs_the_same_queries_for_5_and_50_runs(client: Any, operations: Any, count_queries):
    client.force_login(operations)
    url = reverse("admin:jobs_jobrun_changelist")
    make_runs(5, operations)
    page_queries(client, count_queries, url)
    few = page_queries(client, count_queries, url)
    make_runs(45, operations)
    many = page_queries(client, count_queries, url)
    assert len(client.get(url).context["cl"].result_list) == 50
    assert few == many


def test_job_run_changelist_filters_by_outcome_and_task(client: Any, superuser: Any) -> None:
    runs = make_runs(3, superuser)
    JobRun.objects.filter(pk=runs[0].pk).update(outcome=JobRun.Outcome.FAILED, task="accounts.send_email")
    client.force_login(superuser)
    url = reverse("admin:jobs_jobrun_changelist")
    assert changelist_ids(client.get(url, {"outcome": "failed"})) == {runs[0].pk}
    assert changelist_ids(client.get(url, {"task": "holdings.daily_values_refresh"})) == {runs[1].pk, runs[2].pk}


def test_operations_and_auditors_see_every_run_an_advisor_only_their_own(
    operations: Any, auditor: Any, advisor: Any, other_advisor: Any
) -> None:
    mine, theirs = make_runs(1, advisor), make_runs(1, other_advisor)
    every = {run.pk for run in mine + theirs}
    assert set(JobRun.objects.visible_to(operations).values_list("pk", flat=True)) == every
    assert set(JobRun.objects.visible_to(auditor).values_list("pk", flat=True)) == every
    assert set(JobRun.objects.visible_to(advisor).values_list("pk", flat=True)) == {mine[0].pk}


def test_an_advisor_with_the_view_permission_still_lists_only_their_own_runs(client: Any, advisor: Any) -> None:
    from django.contrib.auth.models import Permission

    advisor.is_staff = True
    advisor.save()
    advisor.user_permissions.add(Permission.objects.get(codename="view_jobrun"))
    mine, theirs = make_runs(1, advisor), make_runs(1, UserFactory())
    client.force_login(advisor)
    response = client.get(reverse("admin:jobs_jobrun_changelist"))
    assert response.status_code == 200
    assert changelist_ids(response) == {mine[0].pk}
    assert client.get(reverse("admin:jobs_jobrun_change", args=[theirs[0].pk])).status_code in (302, 404)


def test_job_runs_are_read_only_in_the_admin(client: Any, superuser: Any) -> None:
    run = make_runs(1, superuser)[0]
    client.force_login(superuser)
    assert client.get(reverse("admin:jobs_jobrun_add")).status_code == 403
    assert client.post(reverse("admin:jobs_jobrun_delete", args=[run.pk]), {"post": "yes"}).status_code == 403
    assert JobRun.objects.filter(pk=run.pk).exists()


def test_the_database_refuses_a_run_that_finishes_before_it_starts() -> None:
    from portfolio_site.testing import refused_by

    now = timezone.now()
    with refused_by("jobs_jobrun_finishes_after_start"):
        JobRun.objects.create(task="x", job_id="x", started_at=now, finished_at=now - datetime.timedelta(seconds=1))


def test_the_nightly_purge_deletes_runs_finished_before_the_retention_and_nothing_when_run_again(
    settings: Any, superuser: Any
) -> None:
    from portfolio_site.jobs.tasks import purge_job_runs

    settings.JOBS_RUN_RETENTION_DAYS = 30
    old, recent, running = make_runs(3, superuser)
    long_ago = timezone.now() - datetime.timedelta(days=31)
    JobRun.objects.filter(pk=old.pk).update(started_at=long_ago, finished_at=long_ago)
    JobRun.objects.filter(pk=running.pk).update(started_at=long_ago, finished_at=None, outcome="retrying")

    assert purge_job_runs.apply().get() == 1
    remaining = set(JobRun.objects.filter(task="holdings.daily_values_refresh").values_list("pk", flat=True))
    assert remaining == {recent.pk, running.pk}
    assert purge_job_runs.apply().get() == 0
