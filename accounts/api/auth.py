"""Login, token refresh and verification, logout, and the caller's own sessions."""

from typing import Any

from django.conf import settings
from django.contrib import auth
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import exceptions, mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from accounts.authentication import REFRESH_COOKIE, SessionJWTAuthentication, enforce_csrf
from accounts.models import LoginSession
from accounts.services import login as login_service
from accounts.services import sessions as session_service
from accounts.services.sessions import SESSION_CLAIM, SessionEnded
from accounts.throttles import AUTH_THROTTLES
from accounts.web import LOGIN_SESSION_KEY

from .common import (
    TokenPairSerializer,
    TwoFactorChallengeSerializer,
    clear_token_cookies,
    client_info,
    login_refusals,
    login_response,
    token_response,
)

LOGIN_RESPONSES = {
    200: PolymorphicProxySerializer(
        component_name="LoginResult",
        serializers=[TokenPairSerializer, TwoFactorChallengeSerializer],
        resource_type_field_name=None,
    ),
}


class PublicAuthView(APIView):
    """An endpoint called before the caller has a token: it authenticates no one, but still answers 401."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list[Any] = []

    def get_authenticate_header(self, request: Request) -> str:
        # Without it DRF turns a 401 into a 403 on views with no authentication classes.
        return 'Bearer realm="api"'


class LoginSerializer(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class LoginView(PublicAuthView):
    """Log in with email and password: tokens for a new session, or a two-factor challenge."""

    throttle_classes = AUTH_THROTTLES
    throttle_scope = "login"

    @extend_schema(request=LoginSerializer, responses=LOGIN_RESPONSES)
    def post(self, request: Request) -> Response:
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with login_refusals():
            result = login_service.password_login(**serializer.validated_data, client=client_info(request))
        return login_response(request, result)


class RefreshSerializer(serializers.Serializer):
    refresh = serializers.CharField(required=False, help_text="Not needed in cookie mode (read from the cookie).")


class RefreshView(PublicAuthView):
    """Exchange a refresh token for new tokens. Each refresh token works once: a reused one revokes the session."""

    throttle_classes = AUTH_THROTTLES
    throttle_scope = "login"

    @extend_schema(request=RefreshSerializer, responses={200: TokenPairSerializer})
    def post(self, request: Request) -> Response:
        serializer = RefreshSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        raw = serializer.validated_data.get("refresh")
        if raw is None and settings.AUTH_COOKIE_MODE and request.COOKIES.get(REFRESH_COOKIE):
            enforce_csrf(request)
            raw = request.COOKIES[REFRESH_COOKIE]
        if not raw:
            raise exceptions.ValidationError({"refresh": ["This field is required."]})
        try:
            pair = session_service.session_refresh(raw_refresh=raw, client=client_info(request))
        except SessionEnded as ended:
            raise exceptions.AuthenticationFailed(str(ended), code=f"session_{ended.reason}") from None
        return token_response(request, pair)


class VerifySerializer(serializers.Serializer):
    token = serializers.CharField()


class VerifyView(PublicAuthView):
    """Check that a token is genuine, unexpired and that its session is still open (200 with `{}`)."""

    @extend_schema(request=VerifySerializer, responses={200: OpenApiResponse(description="The token is valid.")})
    def post(self, request: Request) -> Response:
        serializer = VerifySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        authenticator = SessionJWTAuthentication()
        token = authenticator.get_validated_token(serializer.validated_data["token"].encode())
        try:
            session_service.session_check(
                session_id=token.get(SESSION_CLAIM), user_id=token.get(jwt_settings.USER_ID_CLAIM)
            )
        except SessionEnded as ended:
            raise exceptions.AuthenticationFailed(str(ended), code="session_ended") from None
        return Response({})


def current_session_id(request: Request) -> str | None:
    """The login session of the request: the token's, or the admin site's Django session's."""
    token = request.auth
    if token is not None and hasattr(token, "get"):
        return str(token.get(SESSION_CLAIM))
    session_id = request.session.get(LOGIN_SESSION_KEY) if hasattr(request, "session") else None
    return str(session_id) if session_id else None


class LogoutView(APIView):
    """End the session the request's token belongs to."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        session_id = current_session_id(request)
        session = LoginSession.objects.filter(pk=session_id, user=request.user).first() if session_id else None  # type: ignore[misc]
        if session is not None:
            session_service.session_revoke(
                session=session, client=client_info(request), reason=LoginSession.EndReason.LOGOUT
            )
        if request.auth is None:  # logged in through the admin site: its Django session ends too
            auth.logout(request._request)
        return clear_token_cookies(Response(status=status.HTTP_204_NO_CONTENT))


class LogoutAllView(APIView):
    """End every session of the caller, on every device."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        session_service.sessions_revoke_all(
            user=request.user,  # type: ignore[arg-type]
            client=client_info(request),
            reason=LoginSession.EndReason.LOGOUT,
        )
        return clear_token_cookies(Response(status=status.HTTP_204_NO_CONTENT))


class LoginSessionSerializer(serializers.ModelSerializer):
    current = serializers.SerializerMethodField(help_text="True for the session making this request.")
    is_active = serializers.BooleanField(read_only=True)
    end_reason = serializers.ChoiceField(
        choices=LoginSession.EndReason.choices,
        allow_null=True,
        read_only=True,
        help_text="Why the session ended; null while it is open.",
    )

    class Meta:
        model = LoginSession
        fields = [
            "id",
            "channel",
            "user_agent",
            "ip",
            "created_at",
            "last_seen_at",
            "expires_at",
            "is_active",
            "revoked_at",
            "end_reason",
            "current",
        ]
        read_only_fields = fields

    def get_current(self, session: LoginSession) -> bool:
        return str(session.pk) == self.context.get("current_session")

    def to_representation(self, instance: LoginSession) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["end_reason"] = instance.end_reason or None
        return data


class SessionViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The caller's own login sessions, newest first, the current one marked."""

    queryset = LoginSession.objects.none()  # for the schema; get_queryset() picks the caller's own
    serializer_class = LoginSessionSerializer
    permission_classes = [permissions.IsAuthenticated]
    filterset_fields = ["channel", "end_reason"]
    ordering_fields = ["created_at", "last_seen_at"]
    ordering = ["-created_at"]

    def get_queryset(self) -> QuerySet[LoginSession]:
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        return LoginSession.objects.filter(user=self.request.user)  # type: ignore[misc]

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "current_session": current_session_id(self.request)}

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        """End one of the caller's sessions (another device's, or this one)."""
        session_service.session_revoke(session=self.get_object(), client=client_info(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
