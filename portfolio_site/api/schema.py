"""The schema class: drf-spectacular's, plus the error responses the exception handler really sends.

drf-spectacular documents only the success response. Every operation can also answer 401 (missing or bad
credentials); most 403 (role or visibility); those that read input 400 (`{"field": ["message"]}`, see
`exception_handler`); those with an id in the path, and paginated lists (`?page=` past the end), 404; and
every write 409 (a domain conflict, a protected row or a database constraint). An operation whose view method is
`idempotent` (portfolio_site.idempotency) also takes the optional `Idempotency-Key` header and may answer 422. An
operation with throttles (the login and email-sending doors, accounts.throttles; the image describer's) may answer
429, and every documented 429 carries the `Retry-After` header (seconds to wait).
"""

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework_simplejwt.views import TokenVerifyView, TokenViewBase

from portfolio_site.idempotency import api as idempotency

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOO_MANY_DESCRIPTION = "Too many requests (or failed attempts): the Retry-After header says how many seconds to wait."
RETRY_AFTER_HEADER = {
    "schema": {"type": "integer", "minimum": 0},
    "description": "Seconds to wait before trying again.",
}


class ErrorDetailSerializer(serializers.Serializer):
    """An error that concerns the request as a whole."""

    detail = serializers.CharField()


VALIDATION_ERROR = ResolvedComponent(
    name="ValidationError",
    type=ResolvedComponent.SCHEMA,
    object="ValidationError",
    schema={
        "type": "object",
        "description": "Messages per field (`non_field_errors` for the object as a whole, `detail` when the body "
        'cannot be read), e.g. `{"email": ["Enter a valid email address."]}`.',
        "additionalProperties": {
            "oneOf": [
                {"type": "array", "items": {"type": "string"}},
                {"type": "string"},
                {"type": "object", "description": "Messages of a nested object or list, by key or index."},
            ]
        },
    },
)


class AutoSchema(SpectacularAutoSchema):
    def _is_idempotent(self) -> bool:
        """Whether the view method behind this operation honours `Idempotency-Key` (`action` names it on a viewset)."""
        name = getattr(self.view, "action", None) or self.method.lower()
        return idempotency.is_idempotent(getattr(self.view, name, None))

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        if self._is_idempotent():
            parameters += [idempotency.HEADER_PARAMETER, idempotency.REPLAYED_PARAMETER]
        return parameters

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if isinstance(self.view, TokenVerifyView) and "content" not in responses.get("200", {}):
            # SimpleJWT answers a valid token with an empty JSON object, not with an empty body.
            empty = {"type": "object", "maxProperties": 0, "description": "Empty: the token is valid."}
            responses["200"] = self._get_response_for_code(
                OpenApiResponse(empty, description="The token is valid."), "200", direction=direction
            )
        for code, (serializer, description) in self._error_responses().items():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(serializer, description=description), code, direction=direction
                )
        if "429" in responses:
            responses["429"].setdefault("headers", {})["Retry-After"] = RETRY_AFTER_HEADER
        return responses

    def _is_throttled(self) -> bool:
        """Whether DRF runs throttles on this operation (a viewset action's own `throttle_classes` included)."""
        get_throttles = getattr(self.view, "get_throttles", None)
        return bool(get_throttles and get_throttles())

    def _error_responses(self) -> dict[str, tuple[Any, str]]:
        self.registry.register_on_missing(VALIDATION_ERROR)
        is_token_view = isinstance(self.view, TokenViewBase)
        has_id = "{id}" in self.path or "{pk}" in self.path
        is_list = self.method == "GET" and self._is_list_view()
        errors: dict[str, tuple[Any, str]] = {}
        if self.method in {"POST", "PUT", "PATCH"} or is_list:
            errors["400"] = (VALIDATION_ERROR.ref, "Invalid input: messages per field.")
        errors["401"] = (ErrorDetailSerializer, "Missing, expired or invalid credentials.")
        if not is_token_view:
            errors["403"] = (ErrorDetailSerializer, "The caller's role or visibility does not allow this.")
        if has_id or is_list:
            errors["404"] = (ErrorDetailSerializer, "No such object among those the caller may see, or no such page.")
        if self.method in WRITE_METHODS and not is_token_view:
            errors["409"] = (
                ErrorDetailSerializer,
                "The request conflicts with the current state: a business rule (not enough cash or units, already "
                "reversed), a record still referenced by others, or a uniqueness rule.",
            )
        if self._is_idempotent():
            errors["422"] = (ErrorDetailSerializer, idempotency.REUSED_DESCRIPTION)
        # A view that cannot give some of the usual answers (a public one: no 401 nor 403; nothing to conflict
        # with: no 409) names those it gives, and only they are added.
        given = getattr(self.view, "schema_error_codes", None)
        if given is not None:
            errors = {code: error for code, error in errors.items() if code in given}
        if self._is_throttled():
            errors["429"] = (ErrorDetailSerializer, TOO_MANY_DESCRIPTION)
        return errors
