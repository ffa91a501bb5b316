"""`Idempotency-Key` for the API's creating requests, with Stripe's semantics.

A request that carries the header runs in one database transaction with its key's row: the first request with a
key executes and its answer is kept (a 2xx, or a 409 refusal); a later one with the same key and the same request
(method, path and body) gets that answer again, with `Idempotent-Replayed: true`, and executes nothing; one with the
same key and another request is refused with 422. Concurrent requests with one key wait for the first to commit, then
replay it. Keys are per caller and expire after IDEMPOTENCY_KEY_TTL (24 hours). Without the header nothing changes.

Apply it with one line: `@idempotent` on a view's `create` or `post`, or `IdempotentCreateMixin` among a viewset's
bases (whether the viewset writes its own `create` or inherits DRF's). The schema (`portfolio_site.api.schema`)
then documents the header and the 422 on that operation.
"""

import functools
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

from django.db import transaction
from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from . import services
from .models import KEY_MAX_LENGTH

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Printable ASCII, space included (a UUID is the usual key); HTTP headers carry nothing else safely.
KEY_PATTERN = re.compile(rf"[\x20-\x7e]{{1,{KEY_MAX_LENGTH}}}")
MARKER = "idempotent"
# Set on the request while its key is held: a wrapped `create` that calls a wrapped `create` claims the key once.
CLAIMED = "_idempotency_key_claimed"

F = TypeVar("F", bound=Callable[..., Response])


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = (
        "This Idempotency-Key was used with a different request (another body or another endpoint); "
        "send a new key for a new request."
    )
    default_code = "idempotency_key_reused"


HEADER_PARAMETER = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    description=f"Optional, 1 to {KEY_MAX_LENGTH} printable ASCII characters (a UUID, say), unique per request you "
    "mean to make once. Sending the same key and body again (for 24 hours) returns the first answer (a success or a "
    f"409) without executing anything, with the header `{REPLAYED_HEADER}: true`; the same key with another body or "
    "endpoint is refused with 422. An answer of 400, 401, 403, 404, 429 or 5xx is not kept: fix the request and "
    "retry with the same key.",
)
REPLAYED_PARAMETER = OpenApiParameter(
    REPLAYED_HEADER,
    str,
    OpenApiParameter.HEADER,
    enum=["true"],
    response=[200, 201, 409],
    description=f"`true` when this answer is the one first given to a request with the same `{HEADER}`.",
)
REUSED_DESCRIPTION = f"The {HEADER} was used with a different request (another body or another endpoint)."


def is_idempotent(view_method: Any) -> bool:
    return bool(getattr(view_method, MARKER, False))


def _key(request: Request) -> str | None:
    """The header's value, validated: None when absent, a 400 in DRF's shape when malformed."""
    key = request.headers.get(HEADER)
    if key is not None and not KEY_PATTERN.fullmatch(key):
        raise exceptions.ValidationError(
            {HEADER: [f"Must be 1 to {KEY_MAX_LENGTH} printable ASCII characters."]}, code="invalid"
        )
    return key


def _canonical_body(data: Any) -> Any:
    if isinstance(data, QueryDict):  # a form or multipart body: every value of every field
        return dict(data.lists())
    return data


def _as_sent(response: Response) -> Any:
    """The body as JSON carries it (decimals and dates as strings): what is kept and replayed."""
    if response.data is None:
        return None
    return json.loads(JSONRenderer().render(response.data))


class _NotKept(Exception):
    """Ends the key's transaction with a rollback (its row and anything the request wrote) and carries the answer."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _replay(record: Any, fingerprint: str) -> Response:
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    return Response(record.response_body, status=record.response_status, headers={REPLAYED_HEADER: "true"})


def idempotent(view_method: F) -> F:
    """Honours `Idempotency-Key` on a view method (`create` of a viewset, `post` of an APIView); see the module."""
    if is_idempotent(view_method):
        return view_method

    @functools.wraps(view_method)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = _key(request)
        # Runs after authentication and the permission checks (DRF's `initial`), so the caller is known. Without a
        # caller there is nobody to keep a key for; inside a call already holding the key, nothing more to do.
        if key is None or not request.user.is_authenticated or getattr(request, CLAIMED, False):
            return view_method(view, request, *args, **kwargs)
        operation = f"{request.method} {request.path}"
        fingerprint = services.request_fingerprint(operation=operation, body=_canonical_body(request.data))
        try:
            with transaction.atomic():
                record, answered = services.idempotency_key_claim(
                    user=request.user, key=key, operation=operation, fingerprint=fingerprint
                )
                if answered:
                    return _replay(record, fingerprint)
                setattr(request, CLAIMED, True)
                try:
                    # A savepoint: a refusal the view raises (a 409 from a constraint, say) leaves the key's
                    # transaction usable to keep that answer.
                    with transaction.atomic():
                        response = view_method(view, request, *args, **kwargs)
                except Exception as exc:
                    # Into the answer DRF would give (re-raised when it has none: a 500 rolls everything back).
                    response = view.handle_exception(exc)
                finally:
                    setattr(request, CLAIMED, False)
                if not services.is_replayable(response.status_code):
                    raise _NotKept(response)
                services.idempotency_key_answer(
                    record=record, status_code=response.status_code, body=_as_sent(response)
                )
                return response
        except _NotKept as outcome:
            return outcome.response

    setattr(wrapper, MARKER, True)
    return cast(F, wrapper)


class IdempotentCreateMixin:
    """`Idempotency-Key` on the viewset's `create`, its own or the one it inherits (see `idempotent`)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        create = getattr(cls, "create", None)
        if create is not None and not is_idempotent(create):
            cls.create = idempotent(create)  # type: ignore[attr-defined]
