"""Account flows by email: verification, password reset, and password change."""

from django.urls import URLPattern, path
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import tasks
from accounts.models import User
from accounts.services import flows
from accounts.throttles import AUTH_THROTTLES
from portfolio_site.jobs.base import enqueue

from .auth import PublicAuthView
from .common import clear_token_cookies, client_info

RESET_REQUESTED = (
    "If an active account uses this address, a link to reset its password is on its way. It works once and expires."
)


class MessageSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What happened, in words for the user.")


def message(text: str, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(MessageSerializer({"detail": text}).data, status=status_code)


class VerifyEmailRequestView(APIView):
    """Email the caller a link that confirms their address; it expires after EMAIL_VERIFICATION_MAX_AGE_HOURS."""

    permission_classes = [permissions.IsAuthenticated]
    throttle_classes = AUTH_THROTTLES
    throttle_scope = "email"

    @extend_schema(request=None, responses={202: MessageSerializer})
    def post(self, request: Request) -> Response:
        user = request.user
        assert isinstance(user, User)
        flows.email_verification_send(user=user)
        return message(f"A verification link is on its way to {user.email}.", status.HTTP_202_ACCEPTED)


class VerifyEmailConfirmSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="The `token` of the link in the verification email.")


class VerifyEmailConfirmView(PublicAuthView):
    """Confirm an email address with the token of a verification link (no login needed)."""

    throttle_classes = AUTH_THROTTLES
    throttle_scope = "login"

    @extend_schema(request=VerifyEmailConfirmSerializer, responses={200: MessageSerializer})
    def post(self, request: Request) -> Response:
        serializer = VerifyEmailConfirmSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = flows.email_verify(**serializer.validated_data, client=client_info(request))
        return message(f"The email address {user.email} is verified.")


class PasswordResetSerializer(serializers.Serializer):
    email = serializers.EmailField()


class PasswordResetView(PublicAuthView):
    """Ask for a password reset link by email. The answer is the same whether or not the address has an account."""

    throttle_classes = AUTH_THROTTLES
    throttle_scope = "email"

    @extend_schema(request=PasswordResetSerializer, responses={202: MessageSerializer})
    def post(self, request: Request) -> Response:
        serializer = PasswordResetSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # Looked up by a worker: the answer and its timing are the same whether or not the address has an account.
        client = client_info(request)
        enqueue(
            tasks.password_reset_request,
            email=serializer.validated_data["email"],
            ip=client.ip,
            user_agent=client.user_agent,
        )
        return message(RESET_REQUESTED, status.HTTP_202_ACCEPTED)


class PasswordResetConfirmSerializer(serializers.Serializer):
    uid = serializers.CharField(help_text="The `uid` of the link in the reset email.")
    token = serializers.CharField(help_text="The `token` of the link in the reset email.")
    new_password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class PasswordResetConfirmView(PublicAuthView):
    """Set a new password with a reset link's uid and token. Every session of the user ends: log in again."""

    throttle_classes = AUTH_THROTTLES
    throttle_scope = "login"

    @extend_schema(request=PasswordResetConfirmSerializer, responses={200: MessageSerializer})
    def post(self, request: Request) -> Response:
        serializer = PasswordResetConfirmSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        flows.password_reset_confirm(**serializer.validated_data, client=client_info(request))
        return message("Your password was reset. Log in with the new password.")


class PasswordChangeSerializer(serializers.Serializer):
    old_password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
    new_password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class PasswordChangeView(APIView):
    """Change the caller's password. Every session ends, this one too: the caller logs in again."""

    permission_classes = [permissions.IsAuthenticated]
    throttle_classes = AUTH_THROTTLES
    throttle_scope = "login"

    @extend_schema(request=PasswordChangeSerializer, responses={200: MessageSerializer})
    def post(self, request: Request) -> Response:
        serializer = PasswordChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = request.user
        assert isinstance(user, User)
        flows.password_change(user=user, **serializer.validated_data, client=client_info(request))
        return clear_token_cookies(message("Your password was changed and every session ended. Log in again."))


urlpatterns: list[URLPattern] = [
    path("verify-email/request/", VerifyEmailRequestView.as_view(), name="verify-email-request"),
    path("verify-email/confirm/", VerifyEmailConfirmView.as_view(), name="verify-email-confirm"),
    path("password-reset/", PasswordResetView.as_view(), name="password-reset"),
    path("password-reset/confirm/", PasswordResetConfirmView.as_view(), name="password-reset-confirm"),
    path("password/change/", PasswordChangeView.as_view(), name="password-change"),
]
