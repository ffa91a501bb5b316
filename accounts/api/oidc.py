"""Sign-in through an OpenID Connect provider, for API clients (a front end): list the providers, start a sign-in
(`authorize/`: the URL to send the browser to), and finish it with the code the provider returned (`token/`: the
same answers as a password login, through the same service path, throttles and audit trail)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import LoginSession
from accounts.oidc_config import OIDCProvider, oidc_providers
from accounts.services import oidc as oidc_service
from accounts.throttles import AUTH_THROTTLES
from portfolio_site import logs
from portfolio_site.api.exceptions import Unavailable
from portfolio_site.api.schema import ErrorDetailSerializer

from .auth import LOGIN_RESPONSES, PublicAuthView
from .common import client_info, login_refusals, login_response
from .two_factor import TOO_MANY

NOT_FOUND = OpenApiResponse(ErrorDetailSerializer, description=oidc_service.NOT_CONFIGURED)
UNAVAILABLE = OpenApiResponse(
    ErrorDetailSerializer, description=f"{oidc_service.UNAVAILABLE} (`Retry-After` says when)."
)


class ProviderUnavailable(Unavailable):
    default_detail = oidc_service.UNAVAILABLE
    default_code = "identity_provider_unavailable"


class ProviderSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The provider's name in the sign-in URLs.")
    # The serializer's metaclass takes declared fields out of the class, so this does not replace Field.label.
    label = serializers.CharField(  # type: ignore[assignment]
        help_text="What a sign-in button should say: “Sign in with <label>”."
    )


class AuthorizeSerializer(serializers.Serializer):
    redirect_uri = serializers.CharField(
        max_length=2048, help_text="Where the provider sends the browser back with the code: one of the allowed URIs."
    )
    code_challenge = serializers.RegexField(
        r"^[A-Za-z0-9_-]{43}$",
        help_text="PKCE (RFC 7636), S256 only: BASE64URL(SHA-256(code_verifier)) without padding, 43 characters. "
        "Keep the verifier in the front end and send it to `token/`: a code and state without it are refused.",
        error_messages={"invalid": "An S256 code challenge: 43 base64url characters."},
    )


class AuthorizationSerializer(serializers.Serializer):
    authorization_url = serializers.CharField(help_text="Send the browser here.")
    state = serializers.CharField(help_text="Check it against the one the provider returns, then send both back.")


class OIDCTokenSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=4096, help_text="The code the provider returned.")
    state = serializers.CharField(max_length=256, help_text="The state `authorize/` returned.")
    code_verifier = serializers.RegexField(
        r"^[A-Za-z0-9._~-]{43,128}$",
        help_text="The PKCE verifier whose S256 challenge was sent to `authorize/` (43 to 128 characters of "
        "A-Z a-z 0-9 - . _ ~).",
        error_messages={"invalid": "A PKCE code verifier: 43 to 128 characters of A-Z a-z 0-9 - . _ ~."},
    )


class _ProviderView(PublicAuthView):
    throttle_classes = AUTH_THROTTLES
    throttle_scope = "login"

    @staticmethod
    def provider(name: str) -> OIDCProvider:
        try:
            return oidc_service.oidc_provider(name)
        except oidc_service.OIDCNotConfigured:
            raise exceptions.NotFound(oidc_service.NOT_CONFIGURED) from None

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, oidc_service.OIDCUnavailable):
            exc = ProviderUnavailable(wait=exc.retry_after)
        return super().handle_exception(exc)


class OIDCProvidersView(PublicAuthView):
    """The configured OpenID Connect providers, for a front end to draw its sign-in buttons."""

    schema_error_codes: frozenset[str] = frozenset()  # it reads nothing and refuses no one

    @extend_schema(responses={200: ProviderSerializer(many=True)})
    def get(self, request: Request) -> Response:
        providers = [{"name": p.name, "label": p.label} for p in oidc_providers().values()]
        return Response(ProviderSerializer(providers, many=True).data)


class OIDCAuthorizeView(_ProviderView):
    """Start a sign-in through the provider: the URL to send the browser to, and its state (valid once, for 10
    minutes). `redirect_uri` must be one of the provider's allowed API redirect URIs, exactly."""

    schema_error_codes = frozenset({"400"})  # and the 404, 429 and 503 below; nobody to refuse, nothing to conflict

    @extend_schema(
        request=AuthorizeSerializer,
        responses={200: AuthorizationSerializer, 404: NOT_FOUND, 429: TOO_MANY, 503: UNAVAILABLE},
    )
    def post(self, request: Request, name: str) -> Response:
        provider = self.provider(name)
        serializer = AuthorizeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            start = oidc_service.oidc_authorization_start(
                provider=provider,
                redirect_uri=serializer.validated_data["redirect_uri"],
                channel=LoginSession.Channel.API,
                code_challenge=serializer.validated_data["code_challenge"],
            )
        except oidc_service.RedirectURINotAllowed as error:
            raise serializers.ValidationError({"redirect_uri": [str(error)]}) from None
        return Response(AuthorizationSerializer({"authorization_url": start.url, "state": start.state}).data)


class OIDCTokenView(_ProviderView):
    """Finish a sign-in with the code and state the provider returned: tokens for a new session, or a two-factor
    challenge, as a password login answers."""

    schema_error_codes = frozenset({"400"})  # and the 401, 404, 429 and 503 below; nothing here answers 403 or 409

    @extend_schema(
        request=OIDCTokenSerializer,
        responses={
            **LOGIN_RESPONSES,
            401: OpenApiResponse(
                ErrorDetailSerializer,
                description="The state is unknown, used or expired, the code verifier does not match the code "
                "challenge, the code or the ID token is refused, or no active staff account here matches the "
                "provider's account.",
            ),
            404: NOT_FOUND,
            429: TOO_MANY,
            503: UNAVAILABLE,
        },
    )
    def post(self, request: Request, name: str) -> Response:
        provider = self.provider(name)
        serializer = OIDCTokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with login_refusals():
            result = oidc_service.oidc_login(
                provider=provider,
                code=logs.secret(serializer.validated_data["code"]),
                state=logs.secret(serializer.validated_data["state"]),
                client=client_info(request),
                channel=LoginSession.Channel.API,
                code_verifier=logs.secret(serializer.validated_data["code_verifier"]),
            )
        return login_response(request, result)
