"""Signing in through an OpenID Connect provider: the authorization code flow with PKCE (S256), state and nonce,
for the admin site (a browser redirected back to /admin/oidc/<name>/callback/) and the API (a front end that
sends the code it was given to POST /api/v1/auth/oidc/<name>/token/).

Both doors go the same way:
1. `oidc_authorization_start` stores what the callback will need (a hash of the state, the nonce, the PKCE
   verifier, the redirect URI) in an `OIDCAuthorization` row and gives the provider's authorization URL;
2. `oidc_login` spends that row (deleting it: a state works once), exchanges the code at the provider's token
   endpoint (with the verifier), verifies the ID token against the provider's JWKS, finds (or links, or creates)
   the user, syncs their roles from a claim, and goes the way of a password login
   (accounts.services.login.first_factor_passed): the two-factor challenge when the user has it on, unless the
   provider's `amr` shows a multi-factor sign-in that configuration trusts.

Authlib does the protocol (the authorization URL, PKCE, the token request, the ID token's claims rules) and
joserfc the signature. Discovery documents and key sets are fetched on first use with a timeout and kept for
OIDC_CACHE_SECONDS in the process; a provider that cannot be reached is `OIDCUnavailable` (a 503 at the API).
Neither the code nor any token is ever logged or stored; refusals are audited with their precise reason.
"""

import base64
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oidc.core import CodeIDToken
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.utils import timezone
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
    MissingKeyError,
)
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry, extract_compact

from accounts.models import ExternalIdentity, IdentityLinkBlock, LoginSession, OIDCAuthorization, User
from accounts.oidc_config import OIDCProvider, oidc_providers, split_list
from portfolio_site.cache import invalidate_namespace

from .events import ClientInfo, Kind, security_event_record
from .login import LoginFailed, LoginResult, first_factor_passed, lockout_check
from .users import CACHE_NAMESPACE, user_create

logger = logging.getLogger(__name__)
Channel = LoginSession.Channel

# Public-key signatures only. An HS* ID token is signed with the client secret, which we share with the provider:
# refusing them all is simpler and safer than trusting the provider's list to say when they are meant.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# When a client may try again after a provider could not be reached (discovery and keys are fetched again then).
UNAVAILABLE_RETRY_SECONDS = 30

NOT_CONFIGURED = "No OpenID Connect provider of that name is configured."
UNAVAILABLE = "The identity provider cannot be reached right now; try again later."
REFUSED = "The sign-in through the identity provider could not be verified; start again."
NO_ACCOUNT = "No account here for this sign-in; an administrator must create or link it."
EMAIL_NOT_VERIFIED = (
    "The identity provider has not verified this account's email address; an administrator must link it."
)
NOT_ALLOWED = "This account may not sign in here."
REDIRECT_URI_NOT_ALLOWED = "This redirect URI is not one this provider's API sign-in may use."


class OIDCNotConfigured(Exception):
    def __init__(self) -> None:
        super().__init__(NOT_CONFIGURED)


class OIDCUnavailable(Exception):
    """The provider's discovery document, keys or token endpoint did not answer usably: nothing can be decided."""

    def __init__(self) -> None:
        super().__init__(UNAVAILABLE)
        self.retry_after = UNAVAILABLE_RETRY_SECONDS


class RedirectURINotAllowed(Exception):
    def __init__(self) -> None:
        super().__init__(REDIRECT_URI_NOT_ALLOWED)


class _Refused(Exception):
    """A refused sign-in: `reason` goes to the audit trail (never a token or code), `message` to the caller."""

    def __init__(self, reason: str, message: str = REFUSED, user: User | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message
        self.user = user


@dataclass(frozen=True)
class AuthorizationStart:
    url: str
    state: str


def oidc_provider(name: str) -> OIDCProvider:
    """The configured provider of that name; OIDCNotConfigured otherwise."""
    provider = oidc_providers().get(name)
    if provider is None:
        raise OIDCNotConfigured()
    return provider


# --- The provider's documents, fetched on first use and kept a while ------------------------------------------


@dataclass(frozen=True)
class _Cached:
    value: dict[str, Any]
    until: float


_documents: dict[str, _Cached] = {}
_documents_lock = threading.Lock()


def oidc_caches_clear() -> None:
    """Forgets every discovery document and key set (tests; a process otherwise refreshes them as they age)."""
    with _documents_lock:
        _documents.clear()


def _fetch_json(url: str) -> dict[str, Any]:
    try:
        response = requests.get(url, timeout=settings.OIDC_HTTP_TIMEOUT, headers={"Accept": "application/json"})
        response.raise_for_status()
        data = response.json()
    except (requests.RequestException, ValueError) as error:  # ValueError: not JSON
        logger.warning("OpenID Connect: %s unusable: %s", url, error)
        raise OIDCUnavailable() from None
    if not isinstance(data, dict):
        logger.warning("OpenID Connect: %s did not answer with a JSON object", url)
        raise OIDCUnavailable()
    return data


def _cached(key: str, fetch: Callable[[], dict[str, Any]], *, force: bool = False) -> dict[str, Any]:
    now = time.monotonic()
    with _documents_lock:
        entry = _documents.get(key)
    if entry is not None and entry.until > now and not force:
        return entry.value
    value = fetch()  # outside the lock: a slow provider must not hold up sign-ins at the others
    with _documents_lock:
        _documents[key] = _Cached(value=value, until=now + settings.OIDC_CACHE_SECONDS)
    return value


def _metadata(provider: OIDCProvider) -> dict[str, Any]:
    """The provider's discovery document, checked: its issuer must be the configured one, exactly (OpenID Connect
    Discovery 1.0, section 4.3), or a document served elsewhere could name someone else's endpoints."""

    def fetch() -> dict[str, Any]:
        document = _fetch_json(provider.discovery_url)
        if document.get("issuer") != provider.issuer:
            logger.error(
                "OpenID Connect provider %s: the discovery document's issuer %r is not the configured %r",
                provider.name,
                document.get("issuer"),
                provider.issuer,
            )
            raise OIDCUnavailable()
        for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(field), str):
                logger.error("OpenID Connect provider %s: the discovery document has no %s", provider.name, field)
                raise OIDCUnavailable()
        algorithms = document.get("id_token_signing_alg_values_supported")
        if algorithms is not None and not (
            isinstance(algorithms, list) and all(isinstance(alg, str) for alg in algorithms)
        ):
            logger.error(
                "OpenID Connect provider %s: id_token_signing_alg_values_supported is not a list of names",
                provider.name,
            )
            raise OIDCUnavailable()
        return document

    # Keyed by the issuer too: the document was checked against it.
    return _cached(f"{provider.discovery_url} {provider.issuer}", fetch)


def _key_set(metadata: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
    """The provider's JWKS, checked to be one: `keys` a list of JSON objects (a key we cannot use is left to the
    import to skip or refuse; a document of another shape is the provider's fault, not the signer's)."""

    def fetch() -> dict[str, Any]:
        document = _fetch_json(metadata["jwks_uri"])
        keys = document.get("keys")
        if not isinstance(keys, list) or not all(isinstance(key, dict) for key in keys):
            logger.error("OpenID Connect: the key set at %s is not a list of keys", metadata["jwks_uri"])
            raise OIDCUnavailable()
        return document

    return _cached(metadata["jwks_uri"], fetch, force=force)


def _oauth_session(provider: OIDCProvider, redirect_uri: str) -> OAuth2Session:
    return OAuth2Session(
        client_id=provider.client_id,
        client_secret=provider.client_secret or None,
        # A client without a secret is a public client: PKCE alone protects its code.
        token_endpoint_auth_method="client_secret_basic" if provider.client_secret else "none",
        scope=" ".join(provider.scopes),
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )


def _state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


# --- Step 1: to the provider ---------------------------------------------------------------------------------


def pkce_s256(code_verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier (RFC 7636, section 4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def oidc_authorization_start(
    *, provider: OIDCProvider, redirect_uri: str, channel: str, code_challenge: str = ""
) -> AuthorizationStart:
    """The provider's authorization URL for a new sign-in, and its state (which the caller hands back with the code).

    The API's redirect URI must be one of the provider's OIDC_<NAME>_API_REDIRECT_URIS, exactly
    (RedirectURINotAllowed otherwise): the provider sends the code there. The admin's is its own callback.

    PKCE: at the API the client makes the verifier and sends its S256 `code_challenge` (required), which goes into
    the URL and is stored; the client proves it holds the verifier at `token/`. The admin door makes and keeps the
    verifier itself (its sign-in is bound to the browser's session). OIDCUnavailable when the discovery document
    cannot be read.
    """
    if channel == Channel.API and redirect_uri not in provider.api_redirect_uris:
        raise RedirectURINotAllowed()
    if (channel == Channel.API) != bool(code_challenge):
        raise ValueError("An API sign-in takes the client's code challenge; the admin's makes its own verifier.")
    metadata = _metadata(provider)
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    session = _oauth_session(provider, redirect_uri)
    if code_challenge:
        code_verifier = ""
        url, _ = session.create_authorization_url(
            metadata["authorization_endpoint"],
            state=state,
            nonce=nonce,
            code_challenge=code_challenge,
            code_challenge_method="S256",
        )
    else:
        code_verifier = secrets.token_urlsafe(64)  # 86 characters: RFC 7636 asks for 43 to 128
        url, _ = session.create_authorization_url(
            metadata["authorization_endpoint"], state=state, nonce=nonce, code_verifier=code_verifier
        )
    OIDCAuthorization.objects.create(
        state_hash=_state_hash(state),
        provider=provider.name,
        channel=channel,
        nonce=nonce,
        code_verifier=code_verifier,
        code_challenge=code_challenge,
        redirect_uri=redirect_uri,
        expires_at=timezone.now() + timedelta(seconds=settings.OIDC_AUTHORIZATION_SECONDS),
    )
    return AuthorizationStart(url=url, state=state)


# --- Step 2: back from the provider ---------------------------------------------------------------------------


def _authorization_take(*, provider: OIDCProvider, state: str, channel: str) -> OIDCAuthorization:
    """Spends the sign-in the state belongs to. Deleting the row is what spends it, outside any transaction that a
    later refusal would roll back: of two requests with the same state only one deletes it."""
    authorization = OIDCAuthorization.objects.filter(state_hash=_state_hash(state)).first()
    if authorization is None:
        raise _Refused("unknown or used state")
    deleted, _ = OIDCAuthorization.objects.filter(pk=authorization.pk).delete()
    if not deleted:
        raise _Refused("state used concurrently")
    if authorization.provider != provider.name:
        raise _Refused(f"state of another provider ({authorization.provider})")
    if authorization.channel != channel:
        raise _Refused(f"state of another door ({authorization.channel})")
    if authorization.expires_at <= timezone.now():
        raise _Refused("state expired")
    return authorization


def _code_verifier(*, authorization: OIDCAuthorization, code_verifier: str) -> str:
    """The verifier to send with the code: the one we kept (admin), or the client's once it matches the challenge
    we stored (API), checked before the provider is asked so a stolen code and state alone get nothing."""
    if not authorization.code_challenge:
        return authorization.code_verifier
    if not code_verifier or not secrets.compare_digest(pkce_s256(code_verifier), authorization.code_challenge):
        raise _Refused("code_verifier does not match the code_challenge")
    return code_verifier


def _code_exchange(
    *, provider: OIDCProvider, token_endpoint: str, code: str, authorization: OIDCAuthorization, code_verifier: str
) -> Any:
    """The provider's token response for the code (the one HTTP call of the exchange, sent with the PKCE verifier
    and the redirect URI the code was issued for)."""
    session = _oauth_session(provider, authorization.redirect_uri)
    try:
        return session.fetch_token(
            token_endpoint,
            code=code,
            code_verifier=code_verifier,
            timeout=settings.OIDC_HTTP_TIMEOUT,
        )
    except OAuthError as error:
        raise _Refused(f"code refused by the provider ({error.error})") from None
    except (requests.RequestException, ValueError) as error:
        logger.warning("OpenID Connect provider %s: token endpoint unusable: %s", provider.name, error)
        raise OIDCUnavailable() from None
    finally:
        session.close()


def _unverified_header(token: str) -> dict[str, Any]:
    """The token's protected header, read before its signature is checked (to pick the key and the algorithm)."""
    try:
        return dict(extract_compact(token.encode()).headers())
    except (JoseError, ValueError):
        raise _Refused("malformed ID token") from None


def _algorithms(metadata: dict[str, Any]) -> list[str]:
    # "RS256" when the document lists none: OpenID Connect Discovery 1.0 requires providers to support it.
    advertised = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    return [alg for alg in advertised if alg in ASYMMETRIC_ALGORITHMS]


def _id_token_claims(*, provider: OIDCProvider, metadata: dict[str, Any], token: Any, nonce: str) -> dict[str, Any]:
    """The ID token's claims once its signature (a key of the provider's JWKS, an algorithm it advertises, never
    `none` nor HS*) and its claims (`iss`, `aud` and `azp`, `exp` and `iat` with OIDC_LEEWAY_SECONDS, `nonce`,
    `at_hash`) are checked; _Refused with the reason otherwise."""
    id_token = token.get("id_token") if isinstance(token, dict) else None
    if not isinstance(id_token, str):
        raise _Refused("no ID token in the token response")
    algorithms = _algorithms(metadata)
    header = _unverified_header(id_token)
    if header.get("alg") not in algorithms:
        raise _Refused(f"algorithm {header.get('alg')!r} not accepted")
    kid = header.get("kid")
    keys = _key_set(metadata)
    refetched = False
    if kid is not None and not any(key.get("kid") == kid for key in keys["keys"]):
        keys, refetched = _key_set(metadata, force=True), True  # an unknown key id: the keys may have rotated
    # Header parameters we do not know are allowed (providers add their own), as Authlib's own client does.
    registry = JWSRegistry(algorithms=algorithms, strict_check_header=False)
    while True:
        try:
            key_set = KeySet.import_key_set(keys)  # type: ignore[arg-type]  # a JSON document, checked as imported
            decoded = jwt.decode(id_token, key_set, algorithms=algorithms, registry=registry)
            break
        except (MissingKeyError, InvalidKeyIdError):
            # No key of our copy fits (a token without `kid`, or a set without its key type): read the set again,
            # once. A bad signature does not: a forged token must not make us fetch the keys each time.
            if refetched:
                raise _Refused("no matching signing key") from None
            keys, refetched = _key_set(metadata, force=True), True
        except BadSignatureError:
            raise _Refused("bad ID token signature") from None
        except (JoseError, ValueError) as error:
            raise _Refused(f"invalid ID token ({type(error).__name__})") from None
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        {"iss": {"essential": True, "value": provider.issuer}, "aud": {"essential": True, "value": provider.client_id}},
        {"nonce": nonce, "client_id": provider.client_id, "access_token": token.get("access_token")},
    )
    try:
        claims.validate(leeway=settings.OIDC_LEEWAY_SECONDS)
    except ExpiredTokenError:
        raise _Refused("ID token expired") from None
    except (InvalidClaimError, MissingClaimError) as error:
        raise _Refused(f"ID token claim refused: {error.description}") from None
    except JoseError as error:
        raise _Refused(f"ID token refused ({type(error).__name__})") from None
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise _Refused("ID token without a subject")
    return dict(claims)


# --- Who signs in -------------------------------------------------------------------------------------------


def _link(*, provider: OIDCProvider, user: User, subject: str, client: ClientInfo, how: str) -> None:
    if ExternalIdentity.objects.filter(provider=provider.identity_provider, user=user).exists():
        # The user is linked to another account at this provider: an email match must not add a second one.
        raise _Refused(f"{subject}: {user.email} is linked to another account there", NO_ACCOUNT, user)
    identity = ExternalIdentity(
        provider=provider.identity_provider, subject=subject, issuer=provider.issuer, user=user, linked_by=None
    )
    identity.full_clean()
    identity.save()
    security_event_record(
        kind=Kind.IDENTITY_LINKED,
        client=client,
        user=user,
        detail=f"{provider.identity_provider}:{subject} {how} at {provider.identity_provider}",
    )


def _full_name(claims: dict[str, Any]) -> str:
    parts = [claims.get("given_name"), claims.get("family_name")]
    name = " ".join(part for part in parts if isinstance(part, str) and part)
    if not name and isinstance(claims.get("name"), str):
        name = claims["name"]
    return name.strip()[:150]


def _user_for(*, provider: OIDCProvider, claims: dict[str, Any], client: ClientInfo) -> User:
    """(1) the user linked to this provider account; else, with an email the provider says it verified, (2) the
    one user with that address, linked now, or (3) a new staff user if the provider may create them."""
    subject = claims["sub"]
    identity = (
        ExternalIdentity.objects.select_related("user")
        .filter(provider=provider.identity_provider, subject=subject)
        .first()
    )
    if identity is not None:
        if identity.issuer != provider.issuer:
            # Made for another issuer (OIDC_<NAME>_ISSUER re-pointed, e.g. at another tenant): there the same `sub`
            # may be someone else. An administrator links the account again for the new issuer.
            raise _Refused(f"{subject}: linked for another issuer ({identity.issuer or 'none'})", NO_ACCOUNT)
        return identity.user
    email = claims.get("email")
    # `True` itself: some providers send the string "false", which is truthy.
    if claims.get("email_verified") is not True or not isinstance(email, str) or not email:
        raise _Refused(f"{subject}: email not verified", EMAIL_NOT_VERIFIED)
    if not provider.link_by_email and not provider.create_users:
        raise _Refused(f"{subject}: not linked (linking by email is off)", NO_ACCOUNT)
    if not email.isascii():
        # Case-insensitive matching of non-ASCII addresses is where look-alikes hide: PostgreSQL's UPPER() turns a
        # dotless i (U+0131) into "I", so "adm\u0131n@..." would find "admin@...". An administrator links those.
        raise _Refused(f"{subject}: {email!r} is not an ASCII address", NO_ACCOUNT)
    if not provider.email_domain_allowed(email):
        raise _Refused(f"{subject}: {email} is outside the provider's email domains", NO_ACCOUNT)
    wanted = email.lower()
    # LOWER() in the database finds the one user it can be (emails are unique by LOWER()), the exact comparison in
    # Python decides.
    matches = [
        user
        for user in User.objects.annotate(email_lower=Lower("email")).filter(email_lower=wanted)[:1]
        if user.email.isascii() and user.email.lower() == wanted
    ]
    if matches:
        if not provider.link_by_email:
            raise _Refused(f"{subject}: {email} is an existing user's address (linking by email is off)", NO_ACCOUNT)
        if IdentityLinkBlock.objects.filter(provider=provider.identity_provider, user=matches[0]).exists():
            # An administrator unlinked this user from this provider: only an administrator links them again.
            raise _Refused(f"{subject}: {email} was unlinked by an administrator, who must link it", NO_ACCOUNT)
        if matches[0].is_superuser:
            # A provider asserting an administrator's address must not become that administrator.
            raise _Refused(f"{subject}: {email} is a superuser's address, linked by an administrator only", NO_ACCOUNT)
        _link(provider=provider, user=matches[0], subject=subject, client=client, how="by email_verified")
        return matches[0]
    if not provider.create_users:
        raise _Refused(f"{subject}: no account for {email}", NO_ACCOUNT)
    user = user_create(email=email, password=None, full_name=_full_name(claims), is_staff=True, is_verified=True)
    _link(provider=provider, user=user, subject=subject, client=client, how="created")
    return user


def _claim_values(value: Any) -> set[str]:
    """A roles claim as a set: a JSON list, or one string of values separated by spaces or commas."""
    if isinstance(value, str):
        return set(split_list(value))
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str)}
    return set()


def _roles_sync(*, provider: OIDCProvider, user: User, claims: dict[str, Any], client: ClientInfo) -> None:
    """The user's roles among those the provider's ROLE_MAP names become exactly those its claim maps to (none
    when the claim is absent); other roles, and superuser status, are ours alone and left as they are."""
    if not provider.roles_claim:
        return
    values = _claim_values(claims.get(provider.roles_claim))
    wanted = {role for claim_value, role in provider.role_map if claim_value in values}
    held = set(user.groups.filter(name__in=provider.mapped_roles).values_list("name", flat=True))
    if wanted == held:
        return
    removed, added = held - wanted, wanted - held
    if removed:
        user.groups.remove(*Group.objects.filter(name__in=removed))
    if added:
        user.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in sorted(added)))
    # After the commit: a request reading the cache in between would otherwise cache the old roles again.
    transaction.on_commit(lambda: invalidate_namespace(CACHE_NAMESPACE))
    changes = [f"+{name}" for name in sorted(added)] + [f"-{name}" for name in sorted(removed)]
    security_event_record(
        kind=Kind.ROLES_SYNCED, client=client, user=user, detail=f"{provider.identity_provider}: {' '.join(changes)}"
    )


def _second_factor_by(provider: OIDCProvider, claims: dict[str, Any]) -> str:
    """ "amr trusted: <values>" when the ID token says the provider did a multi-factor sign-in that configuration
    trusts (OIDC_<NAME>_TRUST_AMR), else ""."""
    amr = claims.get("amr")
    if not provider.trust_amr or not isinstance(amr, list):
        return ""
    trusted = sorted(provider.trust_amr.intersection(value for value in amr if isinstance(value, str)))
    return f"amr trusted: {', '.join(trusted)}" if trusted else ""


@transaction.atomic
def _sign_in(*, provider: OIDCProvider, claims: dict[str, Any], client: ClientInfo, channel: str) -> LoginResult:
    try:
        user = _user_for(provider=provider, claims=claims, client=client)
    except (ValidationError, IntegrityError) as error:
        # The provider's data does not fit (a subject longer than we store, an address we cannot take), or another
        # sign-in of the same account linked it a moment ago: a refusal to audit, not a server error. Leaving
        # this atomic block on the exception rolls back whatever was half done.
        raise _Refused(f"{claims['sub'][:64]}: account data refused ({type(error).__name__})") from None
    if not user.is_active or not user.is_staff:
        # Both doors are for staff, as with Supabase: the provider's accounts are the firm's staff.
        reason = "inactive" if not user.is_active else "not staff"
        raise _Refused(f"{claims['sub']}: {reason}", NOT_ALLOWED, user)
    lockout_check(email=user.email)
    _roles_sync(provider=provider, user=user, claims=claims, client=client)
    return first_factor_passed(
        user=user,
        client=client,
        method=provider.identity_provider,
        channel=channel,
        second_factor_by=_second_factor_by(provider, claims),
    )


def oidc_login(
    *, provider: OIDCProvider, code: str, state: str, client: ClientInfo, channel: str, code_verifier: str = ""
) -> LoginResult:
    """Finishes a sign-in the state started at this door: the two-factor challenge, or a new session (with its
    tokens for the API).

    `code_verifier` is the API client's PKCE verifier (the admin door's is kept with the state).

    LoginFailed (one message per kind of refusal, the precise reason audited) for an unknown, spent, expired or
    foreign state, a verifier that does not match the challenge, a refused code, an ID token that fails any check,
    or no user to sign in (or provider data that does not fit); LockedOut while the user's address is locked after
    failures; OIDCUnavailable when the provider cannot be reached or its documents are malformed.
    """
    try:
        authorization = _authorization_take(provider=provider, state=state, channel=channel)
        verifier = _code_verifier(authorization=authorization, code_verifier=code_verifier)
        metadata = _metadata(provider)
        token = _code_exchange(
            provider=provider,
            token_endpoint=metadata["token_endpoint"],
            code=code,
            authorization=authorization,
            code_verifier=verifier,
        )
        claims = _id_token_claims(provider=provider, metadata=metadata, token=token, nonce=authorization.nonce)
        return _sign_in(provider=provider, claims=claims, client=client, channel=channel)
    except _Refused as refused:
        security_event_record(
            kind=Kind.LOGIN_FAILED,
            client=client,
            user=refused.user,
            detail=f"{provider.identity_provider}: {refused.reason}",
        )
        raise LoginFailed(refused.message) from None
