"""Signing in with a Supabase access token: the token is verified against the configured Supabase project's
keys, its user must be linked to one of ours by an administrator (accounts.services.identities), and the
sign-in then goes the way of a password login (accounts.services.login.first_factor_passed): the two-factor
challenge when the user has it on, else a new session with our own tokens.

The token is checked with PyJWT: its signature (RS256/ES256 against the project's JWKS, fetched with a timeout
and cached; HS256 only against a configured SUPABASE_JWT_SECRET; never `none`), `exp`, `iat`/`nbf` with a small
leeway, `iss` (`{SUPABASE_URL}/auth/v1`), `aud` and `sub` (a UUID). The token itself is never logged nor stored.
"""

import functools
import logging
import uuid
from typing import Any

import jwt
from django.conf import settings

from accounts.models import ExternalIdentity, User

from .events import ClientInfo, Kind, security_event_record
from .identities import SUPABASE
from .login import LoginFailed, LoginResult, first_factor_passed, lockout_check

logger = logging.getLogger(__name__)

ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256"})
INVALID_TOKEN = "The Supabase access token is invalid or has expired."
NOT_LINKED = "This Supabase user may not sign in here: an administrator must link it to an active staff account first."
NOT_CONFIGURED = "Supabase sign-in is not configured."
UNAVAILABLE = "Supabase's signing keys cannot be fetched right now; try again later."


class SupabaseNotConfigured(Exception):
    def __init__(self) -> None:
        super().__init__(NOT_CONFIGURED)


class SupabaseUnavailable(Exception):
    """The project's JWKS endpoint did not answer with keys: the token can be neither accepted nor refused."""

    def __init__(self) -> None:
        super().__init__(UNAVAILABLE)


class _Refused(Exception):
    """The token failed verification; the message (for the audit trail) says why, never what the token is."""


def supabase_configured() -> bool:
    return bool(settings.SUPABASE_URL)


def supabase_issuer() -> str:
    return f"{settings.SUPABASE_URL}/auth/v1"


def supabase_jwks_url() -> str:
    return settings.SUPABASE_JWKS_URL or f"{supabase_issuer()}/.well-known/jwks.json"


@functools.lru_cache(maxsize=8)
def _jwks_client(url: str, timeout: float, lifespan: int) -> jwt.PyJWKClient:
    """One client per JWKS address and process: it keeps the key set for `lifespan` seconds."""
    return jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=lifespan, timeout=timeout)


def _unavailable(error: Exception) -> SupabaseUnavailable:
    logger.warning("Supabase JWKS at %s unusable: %s", supabase_jwks_url(), error)
    return SupabaseUnavailable()


def _signing_key(header: dict[str, Any], algorithm: str) -> Any:
    if algorithm in ASYMMETRIC_ALGORITHMS:
        client = _jwks_client(supabase_jwks_url(), settings.SUPABASE_JWKS_TIMEOUT, settings.SUPABASE_JWKS_CACHE_SECONDS)
        try:
            client.get_signing_keys()  # the key set (cached, or fetched now): unreachable or empty is an outage
        except (jwt.PyJWTError, ValueError) as error:  # ValueError: not JSON (PyJWT lets the decoder's error out)
            raise _unavailable(error) from None
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise _Refused("no key id")
        try:
            key = client.get_signing_key(kid)  # an unknown kid makes it read the key set again (keys rotate)
        except jwt.PyJWKClientConnectionError as error:
            raise _unavailable(error) from None
        except ValueError as error:
            raise _unavailable(error) from None
        except jwt.PyJWTError:
            raise _Refused("unknown signing key") from None
        if key.algorithm_name != algorithm:
            raise _Refused("algorithm does not match the key")
        return key
    if algorithm == "HS256" and settings.SUPABASE_JWT_SECRET:
        return settings.SUPABASE_JWT_SECRET
    raise _Refused(f"algorithm {algorithm!r} not accepted")


def supabase_token_verify(*, token: str) -> uuid.UUID:
    """The Supabase user id (`sub`) of a genuine, current token of the configured project.

    SupabaseNotConfigured, SupabaseUnavailable (the keys cannot be fetched), or _Refused (with the reason).
    """
    if not supabase_configured():
        raise SupabaseNotConfigured()
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _Refused("malformed token") from None
    algorithm = header.get("alg")
    if not isinstance(algorithm, str):
        raise _Refused("no algorithm")
    key = _signing_key(header, algorithm)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=settings.SUPABASE_AUDIENCE,
            issuer=supabase_issuer(),
            leeway=settings.SUPABASE_LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise _Refused("expired") from None
    except jwt.InvalidAudienceError:
        raise _Refused("wrong audience") from None
    except jwt.InvalidIssuerError:
        raise _Refused("wrong issuer") from None
    except jwt.InvalidSignatureError:
        raise _Refused("bad signature") from None
    except jwt.PyJWTError as error:
        raise _Refused(f"invalid: {type(error).__name__}") from None
    try:
        return uuid.UUID(str(claims["sub"]))
    except ValueError:
        raise _Refused("subject is not a UUID") from None


def supabase_login(*, access_token: str, client: ClientInfo) -> LoginResult:
    """Signs in the user linked to the token's Supabase user: the two-factor challenge or a new API session.

    LoginFailed (401) for a refused token, and alike (one message) for a Supabase user not linked here or
    linked to an inactive or non-staff user; LockedOut while the user's address is locked after failures;
    SupabaseNotConfigured; SupabaseUnavailable.
    """
    try:
        subject = supabase_token_verify(token=access_token)
    except _Refused as refused:
        security_event_record(kind=Kind.LOGIN_FAILED, client=client, detail=f"supabase: {refused}")
        raise LoginFailed(INVALID_TOKEN) from None
    identity = ExternalIdentity.objects.select_related("user").filter(provider=SUPABASE, subject=str(subject)).first()
    user: User | None = identity.user if identity is not None else None
    if user is None or not user.is_active or not user.is_staff:
        reason = "not linked" if user is None else ("inactive" if not user.is_active else "not staff")
        security_event_record(kind=Kind.LOGIN_FAILED, client=client, user=user, detail=f"supabase {subject}: {reason}")
        raise LoginFailed(NOT_LINKED)
    lockout_check(email=user.email)
    return first_factor_passed(user=user, client=client, method="supabase")
