"""JobTask (the Celery base every job uses), `job` (its decorator) and `enqueue` (after the commit)."""

import logging
import smtplib
import socket
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from celery import Task, shared_task
from celery.exceptions import Retry
from django.contrib.auth import get_user_model
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from portfolio_site import history, logs

from .models import JobRun

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

HEADER_REQUEST_ID = "portfolio_request_id"
HEADER_REQUESTED_BY = "portfolio_requested_by"


class TransientError(Exception):
    """A failure worth retrying later (a source that did not answer, a service that is busy): raise it from a job."""


# Errors that say "not now" rather than "never": the database or the broker went away, a mail server or a remote
# source did not answer in time.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
    socket.timeout,
    smtplib.SMTPServerDisconnected,
    smtplib.SMTPConnectError,
)


def masked_arguments(arguments: Mapping[str, Any], secret: frozenset[str]) -> dict[str, Any]:
    """The arguments as a JobRun records them: the secret ones (and any whose name says secret) masked."""
    masked: dict[str, Any] = {}
    for name, value in arguments.items():
        if name in secret or logs.redact(f"{name}=x") != f"{name}=x":
            masked[name] = logs.MASK
        elif isinstance(value, str):
            masked[name] = logs.redact(value)
        else:
            masked[name] = value
    return masked


def _header(request: Any, name: str) -> str:
    """A custom header of the running job: an attribute of the request on a worker, in `headers` when eager."""
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return str(value or "")


class JobTask(Task):
    """Records each run as a JobRun, logs with the enqueuing request's id, retries transient errors with backoff."""

    abstract = True
    autoretry_for = TRANSIENT_ERRORS
    retry_backoff = 5  # seconds before the first retry, doubling each time, with jitter
    retry_backoff_max = 600
    retry_jitter = True
    max_retries = 5
    # Argument names whose values a JobRun (and the logs) must not show.
    secret_arguments: frozenset[str] = frozenset()
    # Frequent bookkeeping jobs (the heartbeat) leave no JobRun: they would bury the useful ones.
    record_runs = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        context = logs.bind_job_context(
            task=self.name,
            request_id=_header(request, HEADER_REQUEST_ID),
            user_id=_header(request, HEADER_REQUESTED_BY),
        )
        requested_by = _header(request, HEADER_REQUESTED_BY)
        # What the job changes is recorded as changed by a job, for whoever asked for it (if anyone did).
        acting = history.acting(history.Door.JOB, user=int(requested_by) if requested_by.isdigit() else None)
        with context, acting:
            for name in self.secret_arguments:
                _register_secrets(kwargs.get(name))
            if self.record_runs and self._already_succeeded():
                # The same message delivered again (a worker lost after the job, before its acknowledgement):
                # its work is done. Jobs are idempotent anyway; this spares them the second run.
                logger.info("Job %s already succeeded; not run again", self.name)
                return None
            run = self._run_started(kwargs) if self.record_runs else None
            try:
                result = super().__call__(*args, **kwargs)
            except Retry as retry:
                self._run_ended(run, JobRun.Outcome.RETRYING, error=retry.exc)
                logger.warning("Job %s will retry: %s", self.name, retry.exc)
                raise
            except Exception as error:
                self._run_ended(run, JobRun.Outcome.FAILED, error=error)
                logger.exception("Job %s failed", self.name)
                raise
            self._run_ended(run, JobRun.Outcome.SUCCEEDED)
            return result

    def _already_succeeded(self) -> bool:
        job_id = self.request.id
        return bool(job_id) and JobRun.objects.filter(job_id=job_id, outcome=JobRun.Outcome.SUCCEEDED).exists()

    def _run_started(self, kwargs: Mapping[str, Any]) -> JobRun:
        request = self.request
        job_id = request.id or uuid.uuid4().hex
        requested_by = _header(request, HEADER_REQUESTED_BY)
        user_model = get_user_model()
        user_id = int(requested_by) if requested_by.isdigit() else None
        if user_id is not None and not user_model._default_manager.filter(pk=user_id).exists():
            user_id = None
        run, _ = JobRun.objects.update_or_create(
            job_id=job_id,
            create_defaults={
                "task": self.name,
                "arguments": masked_arguments(kwargs, self.secret_arguments),
                "requested_by_id": user_id,
                "request_id": logs.current_request_id()[:64],
                "started_at": timezone.now(),
                "retries": request.retries or 0,
                "worker": (request.hostname or "in-process")[:200],
            },
            defaults={
                "outcome": JobRun.Outcome.RUNNING,
                "retries": request.retries or 0,
                "worker": (request.hostname or "in-process")[:200],
            },
        )
        return run

    def _run_ended(self, run: JobRun | None, outcome: str, error: BaseException | None = None) -> None:
        if run is None:
            return
        run.outcome = outcome
        run.error = logs.redact(f"{type(error).__name__}: {error}") if error is not None else ""
        run.finished_at = None if outcome == JobRun.Outcome.RETRYING else timezone.now()
        try:
            run.save(update_fields=["outcome", "error", "finished_at"])
        except Exception:  # the database itself may be what failed; the job's own error is the one to raise
            logger.exception("Could not record the end of job %s", run.job_id)


def _register_secrets(value: Any) -> None:
    if isinstance(value, str):
        logs.secret(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            _register_secrets(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _register_secrets(item)


def job(*, secret_arguments: set[str] | frozenset[str] = frozenset(), **options: Any) -> Callable[[F], F]:
    """A Celery task on the JobTask base (options as `shared_task`'s: name, max_retries, record_runs, ...)."""

    def decorate(function: F) -> F:
        task = shared_task(base=JobTask, secret_arguments=frozenset(secret_arguments), **options)(function)
        return task  # type: ignore[no-any-return]

    return decorate


def enqueue(task: Any, /, *, requested_by: Any = None, countdown: float | None = None, **kwargs: Any) -> None:
    """Sends the job once the current transaction commits (at once outside one). Without a broker (a bare
    development machine) it then runs in this process. A broker that cannot be reached is logged, never raised:
    the write that asked for the job has committed, and its caller's answer must not change."""
    user_id = getattr(requested_by, "pk", requested_by) if requested_by is not None else logs.current_user_id()
    headers = {
        HEADER_REQUEST_ID: logs.current_request_id() or uuid.uuid4().hex,
        HEADER_REQUESTED_BY: str(user_id or ""),
    }

    # What Celery's own log lines and monitors show of the arguments ("Task ... received"): the masked ones.
    shown = repr(masked_arguments(kwargs, getattr(task, "secret_arguments", frozenset())))

    def send() -> None:
        try:
            task.apply_async(kwargs=kwargs, headers=headers, countdown=countdown, kwargsrepr=shown)
        except Exception:  # in-process (eager), the job's own failure lands here too: it is on its JobRun
            logger.exception("Could not enqueue job %s", task.name)

    transaction.on_commit(send)
