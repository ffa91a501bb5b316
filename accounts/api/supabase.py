"""Sign-in with a Supabase access token: the same answers as a password login (tokens or the two-factor
challenge), through the same service path, throttles and audit trail."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.services import supabase as supabase_service
from accounts.throttles import AUTH_THROTTLES
from portfolio_site import logs
from portfolio_site.api.exceptions import Unavailable
from portfolio_site.api.schema import ErrorDetailSerializer

from .auth import LOGIN_RESPONSES, PublicAuthView
from .common import client_info, login_refusals, login_response
from .two_factor import TOO_MANY


class SupabaseTokenSerializer(serializers.Serializer):
    access_token = serializers.CharField(
        max_length=16384, trim_whitespace=True, help_text="A Supabase access token (a JWT) of the configured project."
    )


# When a client may try again after Supabase's keys could not be fetched (their cache is retried as often).
KEYS_UNAVAILABLE_RETRY_SECONDS = 30


class KeysUnavailable(Unavailable):
    default_detail = supabase_service.UNAVAILABLE
    default_code = "supabase_unavailable"
    wait = KEYS_UNAVAILABLE_RETRY_SECONDS


class SupabaseTokenView(PublicAuthView):
    """Exchange a Supabase access token for our tokens: a new session, or a two-factor challenge.

    The Supabase user must have been linked to an active staff account by an administrator. The answer is the
    same as a password login's.
    """

    throttle_classes = AUTH_THROTTLES
    throttle_scope = "login"
    schema_error_codes = frozenset({"400"})  # and the 401, 404, 429 and 503 below; nothing here answers 403 or 409

    @extend_schema(
        request=SupabaseTokenSerializer,
        responses={
            **LOGIN_RESPONSES,
            401: OpenApiResponse(
                ErrorDetailSerializer,
                description="The token is invalid or expired, or its Supabase user is not linked to an active "
                "staff account here.",
            ),
            404: OpenApiResponse(ErrorDetailSerializer, description=supabase_service.NOT_CONFIGURED),
            429: TOO_MANY,
            503: OpenApiResponse(
                ErrorDetailSerializer,
                description=f"{supabase_service.UNAVAILABLE} (`Retry-After` says when).",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        if not supabase_service.supabase_configured():
            raise exceptions.NotFound(supabase_service.NOT_CONFIGURED)
        serializer = SupabaseTokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = logs.secret(serializer.validated_data["access_token"])
        try:
            with login_refusals():
                result = supabase_service.supabase_login(access_token=token, client=client_info(request))
        except supabase_service.SupabaseNotConfigured:
            raise exceptions.NotFound(supabase_service.NOT_CONFIGURED) from None
        except supabase_service.SupabaseUnavailable:
            raise KeysUnavailable() from None
        return login_response(request, result)
