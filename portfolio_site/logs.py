"""Structured logs: who and what a log line is about (request id, user id, route, task), and no secret in any line.

    RequestContextMiddleware  gives each request an id (the caller's X-Request-ID when it is a plain token, else a
                              new one), answers with it, and keeps the request at hand for the filter below.
    ContextFilter             adds request_id, user_id, route and task to every record (empty when unknown).
    RedactingFilter           masks, in the message, its arguments and the traceback: every value registered as a
                              secret in this context (`secret(code)`: login codes, reset links, TOTP seeds), JSON
                              web tokens, and the value of any `password=` / `"token": "..."`-like pair.
    bind_job_context()        what a job carries over from the request that enqueued it (portfolio_site.jobs).

The context lives in contextvars, so that threads and the after-commit callbacks of one request share it and two
requests never do.
"""

import contextvars
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse
from django.utils.functional import empty

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
MASK = "[redacted]"

_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar("log_request", default=None)
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("log_request_id", default="")
_user_id: contextvars.ContextVar[str] = contextvars.ContextVar("log_user_id", default="")
_task: contextvars.ContextVar[str] = contextvars.ContextVar("log_task", default="")
_secrets: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("log_secrets", default=frozenset())

# Keys whose value is a secret wherever it is logged: `password=x`, `token: x`, `"otp_code": "x"`, `secret=x`.
_SECRET_KEYS = (
    r"[\w-]*(?:password|passwd|pwd|token|secret|api[_-]?key|authorization|cookie|otp|totp)[\w-]*"
    r"|(?:login_|recovery_|one_time_|email_)?code|uid"
)
_PAIR = re.compile(
    rf"(?P<key>[\"']?\b(?:{_SECRET_KEYS})\b[\"']?\s*[:=]\s*)(?P<quote>[\"']?)"
    # not a value masked already (a registered secret), else "[redacted]" would gain a stray "]"
    r"(?!\[redacted\])(?P<value>(?:Bearer\s+)?[^\s\"',;&}\]]+)",
    re.IGNORECASE,
)
_JWT = re.compile(r"\beyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]{5,}")


def current_request_id() -> str:
    return _request_id.get()


def current_user_id() -> str:
    return _user_id.get() or _request_user_id(_request.get())


def secret(value: str) -> str:
    """Registers a value as a secret for the rest of this request or job: no log line will show it. Returns it."""
    if value:
        _secrets.set(_secrets.get() | {value})
    return value


def redact(text: str) -> str:
    for value in sorted(_secrets.get(), key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _JWT.sub(MASK, text)
    return _PAIR.sub(lambda m: f"{m['key']}{m['quote']}{MASK}", text)


def _request_user_id(request: HttpRequest | None) -> str:
    """The user's id once authentication has run; never triggers it (a log call must not query the database)."""
    if request is None:
        return ""
    user = request.__dict__.get("user")
    if user is None or getattr(user, "_wrapped", None) is empty:
        return ""
    return str(user.pk) if getattr(user, "is_authenticated", False) and user.pk is not None else ""


def _route(request: HttpRequest | None) -> str:
    if request is None:
        return ""
    match = getattr(request, "resolver_match", None)
    return f"{request.method} {match.route if match is not None and match.route else request.path}"


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request = _request.get()
        record.request_id = getattr(record, "request_id", "") or _request_id.get()
        record.user_id = getattr(record, "user_id", "") or current_user_id()
        record.route = getattr(record, "route", "") or _route(request)
        record.task = getattr(record, "task", "") or _task.get()
        return True


class RedactingFilter(logging.Filter):
    """Rewrites the record with its message already formatted and masked (so no formatter sees the raw arguments),
    and the traceback formatted and masked too."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: log what there is rather than lose the line
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        if record.exc_info:
            record.exc_text = redact(self._formatter.formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRIBUTES:
                setattr(record, key, _redact_value(value))
        return True


def _redact_value(value: Any) -> Any:
    """Extra fields of a record (Celery logs its jobs' arguments in `data`, Django a 5xx's `request`), to any depth.

    Numbers, booleans and None stay as they are; any other object becomes its masked repr(), since a formatter would
    print that repr() anyway. A request is shown by its method and path only: its query string and body (an OAuth
    code and state, a form's fields) are the caller's to send, not ours to log.
    """
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(key): _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item) for item in value]
    if isinstance(value, HttpRequest):
        return redact(f"<{type(value).__name__}: {value.method} {value.path}>")
    return redact(repr(value))


_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = given if _VALID_REQUEST_ID.match(given) else uuid.uuid4().hex
        # Not reset on the way out: Django logs a 4xx/5xx ("Not Found: /x") after every middleware has returned.
        # `request_finished` clears them (below); the next request on this thread sets its own anyway.
        _request.set(request)
        _request_id.set(request_id)
        _user_id.set("")
        _secrets.set(frozenset())
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


def clear_request_context(**kwargs: Any) -> None:
    _request.set(None)
    _request_id.set("")
    _user_id.set("")
    _secrets.set(frozenset())


request_finished.connect(clear_request_context, dispatch_uid="portfolio_site.logs.clear_request_context")


@contextmanager
def bind_job_context(*, task: str, request_id: str = "", user_id: str = "") -> Iterator[None]:
    """The log context of one job run: its task name, and the request id and user of whoever enqueued it."""
    values: list[tuple[contextvars.ContextVar[Any], Any]] = [
        (_task, task),
        (_request_id, request_id or _request_id.get() or uuid.uuid4().hex),
        (_user_id, user_id or current_user_id()),
        (_secrets, _secrets.get()),
    ]
    tokens = [(var, var.set(value)) for var, value in values]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
