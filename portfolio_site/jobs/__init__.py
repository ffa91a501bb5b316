"""The job plumbing every app's tasks.py stands on (Celery): one way to write a job.

    from portfolio_site.jobs.base import enqueue, job

    @job(secret_arguments={"context"})          # a Celery task on the JobTask base
    def send_account_email(*, user_id: int, template: str, context: dict) -> None:
        ...                                     # thin: call a service; idempotent

    enqueue(send_account_email, user_id=user.pk, template="login_code", context={...})

`enqueue` sends the job only once the surrounding transaction commits (nothing is sent for a rolled-back write,
and the worker never reads a row that is not committed yet), with the request id and the user that asked in its
headers. A job
- is idempotent: it may run twice (a worker lost mid-job, a retry), and the second run changes nothing;
- retries transient failures (a lost database or broker connection, a mail server or a market data source that
  does not answer: `TransientError` and the errors in `TRANSIENT_ERRORS`) with exponential backoff and jitter,
  up to `max_retries`; any other error fails it at once;
- leaves a `JobRun` (task, arguments with the secret ones masked, who asked, started, finished, outcome, error,
  retries), which staff read in the admin (Jobs > Job runs).
Keyword arguments only, JSON values only (ids, not model instances): a worker on another machine reads them.

The names live in `.base`, not here: this package is an installed app, imported before models may be.
"""
