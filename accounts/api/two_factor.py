"""Email one-time login codes, TOTP two-factor authentication and recovery codes."""

from typing import Any

from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import tasks
from accounts.services import otp as otp_service
from accounts.services import two_factor as two_factor_service
from accounts.throttles import AUTH_THROTTLES
from portfolio_site.api.schema import ErrorDetailSerializer
from portfolio_site.jobs.base import enqueue

from .auth import LOGIN_RESPONSES, PublicAuthView
from .common import TokenPairSerializer, client_info, login_refusals, login_response

TOO_MANY = OpenApiResponse(
    ErrorDetailSerializer,
    description="Too many requests, or too many failed attempts for this address: the Retry-After header says "
    "how many seconds to wait.",
)
CODE_REQUEST_ANSWER = "If the address belongs to an active account, a login code is on its way to it."


# --- Login by emailed code -----------------------------------------------------------------------


class LoginCodeRequestSerializer(serializers.Serializer):
    email = serializers.EmailField()


class LoginCodeRequestedSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="The same answer whether or not the address has an account.")


class LoginCodeLoginSerializer(serializers.Serializer):
    email = serializers.EmailField()
    code = serializers.CharField(max_length=16, help_text="The 6-digit code from the email.")


class LoginCodeRequestView(PublicAuthView):
    """Email a one-time login code (6 digits, valid a few minutes, one use). The answer never tells whether the
    address has an account."""

    throttle_classes = AUTH_THROTTLES
    throttle_scope = "email"

    @extend_schema(
        request=LoginCodeRequestSerializer,
        responses={202: LoginCodeRequestedSerializer, 429: TOO_MANY},
    )
    def post(self, request: Request) -> Response:
        serializer = LoginCodeRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # Looked up by a worker: the answer and its timing are the same whether or not the address has an account.
        client = client_info(request)
        enqueue(
            tasks.login_code_request,
            email=serializer.validated_data["email"],
            ip=client.ip,
            user_agent=client.user_agent,
        )
        body = LoginCodeRequestedSerializer({"detail": CODE_REQUEST_ANSWER}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


class LoginCodeLoginView(PublicAuthView):
    """Log in with an emailed code instead of the password: tokens for a new session, or a two-factor
    challenge. A wrong or expired code, an unknown address and an inactive account fail alike."""

    throttle_classes = AUTH_THROTTLES
    throttle_scope = "login"

    @extend_schema(request=LoginCodeLoginSerializer, responses={**LOGIN_RESPONSES, 429: TOO_MANY})
    def post(self, request: Request) -> Response:
        serializer = LoginCodeLoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with login_refusals():
            result = otp_service.login_code_login(**serializer.validated_data, client=client_info(request))
        return login_response(request, result)


# --- The caller's authenticator ------------------------------------------------------------------


class TwoFactorStatusSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(help_text="A confirmed authenticator is required at login.")
    recovery_codes_left = serializers.IntegerField(help_text="Unused recovery codes (0 when two-factor is off).")


class TOTPEnrolmentSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="The base32 secret, for typing into the authenticator app.")
    provisioning_uri = serializers.CharField(help_text="The same secret as an otpauth:// URI, for a QR code.")


class TOTPCodeSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=16, help_text="The 6-digit code the authenticator app shows now.")


class RecoveryCodesSerializer(serializers.Serializer):
    recovery_codes = serializers.ListField(
        child=serializers.CharField(),
        help_text="One-time codes that stand in for the authenticator. Shown this once only: keep them safe.",
    )


class TOTPDisableSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=64, help_text="A current authenticator code or an unused recovery code.")


class TwoFactorView(APIView):
    permission_classes = [permissions.IsAuthenticated]


class TwoFactorStatusView(TwoFactorView):
    """Whether the caller has two-factor authentication on, and how many recovery codes remain."""

    @extend_schema(responses={200: TwoFactorStatusSerializer})
    def get(self, request: Request) -> Response:
        state = two_factor_service.two_factor_status(user=request.user)  # type: ignore[arg-type]
        return Response(TwoFactorStatusSerializer(state).data)


class TOTPEnrolView(TwoFactorView):
    """Start enrolling an authenticator app: a new secret, awaiting confirmation with a first code. Replaces an
    unconfirmed enrolment; refused with 409 while two-factor is on."""

    @extend_schema(request=None, responses={200: TOTPEnrolmentSerializer})
    def post(self, request: Request) -> Response:
        enrolment = two_factor_service.totp_enrol(user=request.user)  # type: ignore[arg-type]
        return Response(TOTPEnrolmentSerializer(enrolment).data)


class TOTPConfirmView(TwoFactorView):
    """Turn two-factor on with a first code from the app; answers with the recovery codes, shown this once.
    409 when no enrolment awaits confirmation."""

    throttle_classes = AUTH_THROTTLES
    throttle_scope = "login"

    @extend_schema(request=TOTPCodeSerializer, responses={200: RecoveryCodesSerializer, 429: TOO_MANY})
    def post(self, request: Request) -> Response:
        serializer = TOTPCodeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        codes = two_factor_service.totp_confirm(
            user=request.user,  # type: ignore[arg-type]
            code=serializer.validated_data["code"],
            client=client_info(request),
        )
        return Response(RecoveryCodesSerializer({"recovery_codes": codes}).data)


class TOTPDisableView(TwoFactorView):
    """Turn two-factor off, proven with a current code or a recovery code; the recovery codes go too.
    409 when two-factor is not on; a wrong code (400) counts toward the lockout of the caller's address."""

    throttle_classes = AUTH_THROTTLES
    throttle_scope = "login"

    @extend_schema(request=TOTPDisableSerializer, responses={204: None, 429: TOO_MANY})
    def post(self, request: Request) -> Response:
        serializer = TOTPDisableSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with login_refusals():
            two_factor_service.totp_disable(
                user=request.user,  # type: ignore[arg-type]
                code=serializer.validated_data["code"],
                client=client_info(request),
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- The login's second step ----------------------------------------------------------------------


class TwoFactorVerifySerializer(serializers.Serializer):
    challenge = serializers.CharField(help_text="The challenge the login answered with.")
    code = serializers.CharField(required=False, max_length=16, help_text="The authenticator's current code.")
    recovery_code = serializers.CharField(
        required=False, max_length=64, help_text="Instead of `code`: an unused recovery code (each works once)."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if bool(attrs.get("code")) == bool(attrs.get("recovery_code")):
            raise serializers.ValidationError("Give either `code` or `recovery_code`.")
        return attrs


class TwoFactorVerifyView(PublicAuthView):
    """Answer a login's two-factor challenge with an authenticator code or a recovery code: tokens for a new
    session. A wrong code counts toward the lockout of the user's address."""

    throttle_classes = AUTH_THROTTLES
    throttle_scope = "login"

    @extend_schema(request=TwoFactorVerifySerializer, responses={200: TokenPairSerializer, 429: TOO_MANY})
    def post(self, request: Request) -> Response:
        serializer = TwoFactorVerifySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with login_refusals():
            result = two_factor_service.two_factor_verify(**serializer.validated_data, client=client_info(request))
        return login_response(request, result)


urlpatterns = [
    path("otp/request/", LoginCodeRequestView.as_view(), name="otp-request"),
    path("otp/login/", LoginCodeLoginView.as_view(), name="otp-login"),
    path("2fa/", TwoFactorStatusView.as_view(), name="two-factor"),
    path("2fa/totp/enrol/", TOTPEnrolView.as_view(), name="totp-enrol"),
    path("2fa/totp/confirm/", TOTPConfirmView.as_view(), name="totp-confirm"),
    path("2fa/totp/disable/", TOTPDisableView.as_view(), name="totp-disable"),
    path("2fa/verify/", TwoFactorVerifyView.as_view(), name="two-factor-verify"),
]
