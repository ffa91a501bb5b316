"""What the accounts endpoints share: the caller's client info, token responses (body or cookies) and
how a refused login step answers."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.middleware.csrf import get_token
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import ACCESS_COOKIE, REFRESH_COOKIE
from accounts.services.login import LockedOut, LoginFailed, LoginResult
from accounts.services.sessions import TokenPair
from accounts.web import client_info

__all__ = ["client_info"]


@contextmanager
def login_refusals() -> Iterator[None]:
    """The API's answer to a refused login step: 429 with Retry-After when locked out, else 401."""
    try:
        yield
    except LockedOut as error:
        raise exceptions.Throttled(wait=error.retry_after, detail=str(error)) from None
    except LoginFailed as error:
        raise exceptions.AuthenticationFailed(str(error)) from None


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField(required=False, help_text="Absent in cookie mode (the token is in a cookie).")
    refresh = serializers.CharField(required=False, help_text="Absent in cookie mode (the token is in a cookie).")
    session = serializers.UUIDField(help_text="Id of the login session these tokens belong to.")
    access_expires_at = serializers.DateTimeField()
    refresh_expires_at = serializers.DateTimeField()


class TwoFactorChallengeSerializer(serializers.Serializer):
    two_factor_required = serializers.BooleanField()
    challenge = serializers.CharField(help_text="Send it with a code to /api/v1/auth/2fa/verify/ within 5 minutes.")
    methods = serializers.ListField(child=serializers.CharField())


def token_response(request: Request, pair: TokenPair, status_code: int = status.HTTP_200_OK) -> Response:
    body = {
        "access": pair.access,
        "refresh": pair.refresh,
        "session": pair.session_id,
        "access_expires_at": pair.access_expires_at,
        "refresh_expires_at": pair.refresh_expires_at,
    }
    if not settings.AUTH_COOKIE_MODE:
        return Response(TokenPairSerializer(body).data, status=status_code)
    del body["access"], body["refresh"]
    response = Response(TokenPairSerializer(body).data, status=status_code)
    cookie = {"httponly": True, "secure": settings.AUTH_COOKIE_SECURE, "samesite": settings.AUTH_COOKIE_SAMESITE}
    response.set_cookie(ACCESS_COOKIE, pair.access, expires=pair.access_expires_at, path="/", **cookie)
    response.set_cookie(REFRESH_COOKIE, pair.refresh, expires=pair.refresh_expires_at, path="/api/v1/auth/", **cookie)
    get_token(request)  # a CSRF cookie for the front end to echo on unsafe requests
    return response


def login_response(request: Request, result: LoginResult) -> Response:
    if result.tokens is not None:
        return token_response(request, result.tokens)
    body = {"two_factor_required": True, "challenge": result.challenge, "methods": ["totp", "recovery_code"]}
    return Response(TwoFactorChallengeSerializer(body).data, status=status.HTTP_200_OK)


def clear_token_cookies(response: Response) -> Response:
    if settings.AUTH_COOKIE_MODE:
        response.delete_cookie(ACCESS_COOKIE, path="/", samesite=settings.AUTH_COOKIE_SAMESITE)
        response.delete_cookie(REFRESH_COOKIE, path="/api/v1/auth/", samesite=settings.AUTH_COOKIE_SAMESITE)
    return response
