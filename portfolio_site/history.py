"""Change history: who changed a record, when, through which door, and what (django-simple-history underneath).

    TrackedHistory      (portfolio_site.historical) the `HistoricalRecords` every tracked model declares: a
                        historical table per model with the door beside simple-history's user, date and type. This
                        module defines no model, so `manage.py` can bind its door before Django is set up.
    Door                admin, api, command or job: the way in. Bound once per door, never guessed per write:
                        HistoryMiddleware (a request under the admin or the API), `manage.py` (a command), the
                        jobs' base task (a job). The innermost binding wins, so a job run in-process after a
                        request's commit is a job, and a request served by `manage.py runserver` is a request.
    acting()            binds a door and, where the door knows it, the acting user (a job's requester, an import's
                        user); a request's user is read from the request itself when the write happens, so a JWT
                        authenticated by DRF after the middleware ran is the one recorded.
    suppressed()        no per-row history inside it: a bulk import is recorded once, by its ImportBatch (which
                        carries the door and the user), and each row it wrote points at the batch.

The context lives in contextvars, as the log context does (portfolio_site.logs): threads started for an import's
pipeline share nothing with other requests, and a binding ends with its `with` block.
"""

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.http import HttpRequest, HttpResponse


class Door(models.TextChoices):
    ADMIN = "admin", "Admin"
    API = "api", "API"
    COMMAND = "command", "Command"
    JOB = "job", "Job"


@dataclass(frozen=True)
class _Binding:
    door: str = ""
    user_id: int | None = None
    request: HttpRequest | None = None
    suppressed: bool = False


# The default is frozen (a dataclass nothing can change), so sharing it is safe.
_binding: contextvars.ContextVar[_Binding] = contextvars.ContextVar("history_binding", default=_Binding())  # noqa: B039


@contextmanager
def acting(door: str, *, user: Any = None, request: HttpRequest | None = None) -> Iterator[None]:
    """Changes made inside are recorded as made through `door`, by `user` (a user, its id, or None: unknown)."""
    user_id = getattr(user, "pk", user)
    token = _binding.set(
        _Binding(
            door=door,
            user_id=user_id if isinstance(user_id, int) else None,
            request=request,
            suppressed=_binding.get().suppressed,
        )
    )
    try:
        yield
    finally:
        _binding.reset(token)


def bind_for_process(door: str) -> None:
    """The door of a whole process (`manage.py`): there is no block to leave, the process ends instead."""
    _binding.set(_Binding(door=door))


@contextmanager
def suppressed() -> Iterator[None]:
    """No historical row for anything saved or deleted inside (a bulk import: its batch is the record)."""
    current = _binding.get()
    token = _binding.set(_Binding(door=current.door, user_id=current.user_id, request=current.request, suppressed=True))
    try:
        yield
    finally:
        _binding.reset(token)


def current_door() -> str:
    """The door of the change being made now; "" outside every door (a test calling a service directly)."""
    return _binding.get().door


def is_suppressed() -> bool:
    return _binding.get().suppressed


def history_user(instance: Any = None, request: Any = None, **kwargs: Any) -> Any:
    """simple-history's `get_user`: the bound user (a job's, an import's), else the request's authenticated user.

    Read when the row is written, not when the request came in: DRF authenticates a JWT inside the view and sets
    the user on the Django request then, so `request.user` is right by the time a service saves.
    """
    binding = _binding.get()
    if binding.request is not None:
        user = getattr(binding.request, "user", None)
        return user if getattr(user, "is_authenticated", False) and getattr(user, "pk", None) else None
    if binding.user_id is not None:
        from django.contrib.auth import get_user_model  # the user model is loaded once apps are ready

        return get_user_model()(pk=binding.user_id)
    return None


# The URL prefixes of the two web doors (portfolio_site.urls); anything else (health checks) writes nothing tracked.
DOOR_PREFIXES = (("/admin/", Door.ADMIN), ("/api/", Door.API))


def _door_of(request: HttpRequest) -> str:
    return next((door for prefix, door in DOOR_PREFIXES if request.path_info.startswith(prefix)), "")


class HistoryMiddleware:
    """Binds the door of a request under the admin or the API, with the request for its user (read lazily)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        door = _door_of(request)
        if not door:
            return self.get_response(request)
        with acting(door, request=request):
            return self.get_response(request)
