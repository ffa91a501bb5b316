"""Signing in through an OpenID Connect provider, at the API and the admin site, against oidc-provider-mock run on
loopback by these tests (a real provider: discovery, JWKS, authorization and token endpoints, signed ID tokens).

The mock does not check PKCE itself, so it is served behind a small WSGI layer that records what reaches the
authorization and token endpoints and refuses a token request whose `code_verifier` does not match the
`code_challenge` (S256) sent for its code, as a provider enforcing PKCE would.
"""

import base64
import dataclasses
import datetime
import hashlib
import io
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import oidc_provider_mock
import pytest
import requests
import werkzeug.serving
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings
from django.utils import timezone
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import EmailLoginCode, ExternalIdentity, LoginSession, OIDCAuthorization, SecurityEvent, User
from accounts.oidc_config import oidc_providers
from accounts.roles import Role
from accounts.services import oidc as oidc_service
from accounts.services.cleanup import security_records_purge
from accounts.services.events import ClientInfo
from accounts.services.login import INVALID_CREDENTIALS
from accounts.services.otp import login_code_hash
from accounts.services.sessions import session_revoke
from accounts.services.users import CACHE_NAMESPACE
from accounts.tests.factories import PASSWORD, SuperuserFactory, UserFactory
from accounts.tests.test_two_factor import enable_two_factor
from portfolio_site.tests.test_logs import log_output  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db
Kind = SecurityEvent.Kind
PROVIDERS = "/api/v1/auth/oidc/"
AUTHORIZE = "/api/v1/auth/oidc/mock/authorize/"
TOKEN = "/api/v1/auth/oidc/mock/token/"
APP_CALLBACK = "https://app.example/oidc/callback"
ADMIN_LOGIN = "/admin/oidc/mock/login/"
ADMIN_CALLBACK = "/admin/oidc/mock/callback/"


@dataclass
class Provider:
    """The mock provider on loopback, and what its PKCE layer saw."""

    issuer: str
    challenges: dict[str, str] = field(default_factory=dict)  # code -> code_challenge sent for it
    authorize_params: list[dict[str, str]] = field(default_factory=list)
    token_params: list[dict[str, str]] = field(default_factory=list)
    jwks_fetches: int = 0
    # Key sets to serve at /jwks before the provider's own, one per request (a provider rotating its keys).
    jwks_documents: list[dict[str, Any]] = field(default_factory=list)

    def user(self, sub: str, **claims: Any) -> None:
        """Sets the claims the provider asserts for `sub` (they go into its ID tokens)."""
        response = requests.put(f"{self.issuer}/users/{sub}", json=claims, timeout=5)
        assert response.status_code == 204, response.text

    def authorize(self, authorization_url: str, sub: str) -> dict[str, str]:
        """The user `sub` signs in at the provider: the query the provider sends the browser back with."""
        response = requests.post(authorization_url, data={"sub": sub}, allow_redirects=False, timeout=5)
        assert response.status_code == 302, response.text
        return {key: values[0] for key, values in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


# The API client's PKCE pair (a front end makes a new one per sign-in).
VERIFIER = "v" * 20 + "-._~" + "0123456789abcdefghijklmnop"
CHALLENGE = _s256(VERIFIER)
START = {"redirect_uri": APP_CALLBACK, "code_challenge": CHALLENGE}


def _pkce_layer(app: Any, provider: Provider) -> Callable[..., Iterable[bytes]]:
    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if path == "/oauth2/authorize" and environ["REQUEST_METHOD"] == "POST":
            params = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            provider.authorize_params.append(params)

            def remember_code(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
                location = dict(headers).get("Location", "")
                code = parse_qs(urlsplit(location).query).get("code", [""])[0]
                if code and params.get("code_challenge_method") == "S256":
                    provider.challenges[code] = params["code_challenge"]
                return start_response(status, headers, *args)

            return app(environ, remember_code)  # type: ignore[no-any-return]
        if path == "/jwks":
            provider.jwks_fetches += 1
            if provider.jwks_documents:
                start_response("200 OK", [("Content-Type", "application/json")])
                return [json.dumps(provider.jwks_documents.pop(0)).encode()]
        if path == "/oauth2/token":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            params = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            provider.token_params.append(params)
            challenge = provider.challenges.pop(params.get("code", ""), None)
            if challenge is None or _s256(params.get("code_verifier", "")) != challenge:
                start_response("400 Bad Request", [("Content-Type", "application/json")])
                return [b'{"error": "invalid_grant", "error_description": "PKCE verification failed"}']
            environ["wsgi.input"] = io.BytesIO(body)
        return app(environ, start_response)  # type: ignore[no-any-return]

    return middleware


@pytest.fixture(scope="module")
def provider_server() -> Iterator[Provider]:
    with pytest.MonkeyPatch.context() as patch:
        # The mock (an Authlib server) refuses plain HTTP otherwise; loopback needs no TLS.
        patch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
        provider = Provider(issuer="")
        app = oidc_provider_mock.app(require_nonce=True)
        server = werkzeug.serving.make_server("127.0.0.1", 0, _pkce_layer(app, provider), threaded=True)
        provider.issuer = f"http://127.0.0.1:{server.server_port}"
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        yield provider
        server.shutdown()
        server.server_close()


def mock_config(issuer: str, **changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "issuer": issuer,
        "client_id": "portfolio",
        "client_secret": "client-secret",
        "scopes": "openid email profile",
        "label": "Mock IdP",
        "create_users": False,
        "roles_claim": "",
        "role_map": {},
        "trust_amr": [],
        "api_redirect_uris": [APP_CALLBACK],
    }
    config.update(changes)
    return config


@pytest.fixture
def configure(provider_server: Provider) -> Iterator[Callable[..., None]]:
    """Configures the provider `mock` (the loopback one); `configure(create_users=True, ...)` changes it."""
    overrides: list[Any] = []

    def apply(**changes: Any) -> None:
        override = override_settings(
            OIDC_PROVIDERS={"mock": mock_config(**{"issuer": provider_server.issuer, **changes})}
        )
        override.enable()
        overrides.append(override)

    oidc_service.oidc_caches_clear()
    apply()
    yield apply
    for override in reversed(overrides):
        override.disable()
    oidc_service.oidc_caches_clear()


@pytest.fixture
def idp(provider_server: Provider, configure: Callable[..., None]) -> Provider:
    provider_server.authorize_params.clear()
    provider_server.token_params.clear()
    provider_server.jwks_documents.clear()
    provider_server.jwks_fetches = 0
    return provider_server


_subjects = iter(range(1, 1_000_000))


def new_subject() -> str:
    return f"subject-{next(_subjects)}-{time.monotonic_ns()}"


def api_sign_in(idp: Provider, sub: str, api: APIClient | None = None) -> Any:
    """authorize/ → the provider → token/: the token/ response."""
    api = api or APIClient()
    started = api.post(AUTHORIZE, START, format="json")
    assert started.status_code == 200, started.content
    back = idp.authorize(started.json()["authorization_url"], sub)
    assert back["state"] == started.json()["state"]
    return api.post(TOKEN, {"code": back["code"], "state": back["state"], "code_verifier": VERIFIER}, format="json")


def linked_user(idp: Provider, **factory: Any) -> tuple[User, str]:
    user = UserFactory(**factory)
    sub = new_subject()
    ExternalIdentity.objects.create(provider="oidc:mock", subject=sub, issuer=idp.issuer, user=user)
    idp.user(sub, email=user.email, email_verified=True)
    return user, sub


def failures(detail: str) -> list[SecurityEvent]:
    return list(SecurityEvent.objects.filter(kind=Kind.LOGIN_FAILED, detail__contains=detail))


# --- Configuration ---------------------------------------------------------------------------------------------


def test_a_provider_without_an_issuer_stops_start_up_naming_the_variable() -> None:
    with override_settings(OIDC_PROVIDERS={"corp": mock_config("")}), pytest.raises(ImproperlyConfigured) as error:
        oidc_providers()
    assert "OIDC_CORP_ISSUER" in str(error.value)


def test_a_role_map_to_an_unknown_role_stops_start_up_naming_the_variable() -> None:
    config = mock_config("https://idp.example", roles_claim="groups", role_map={"pf-admins": "Administrators"})
    with override_settings(OIDC_PROVIDERS={"corp": config}), pytest.raises(ImproperlyConfigured) as error:
        oidc_providers()
    assert "OIDC_CORP_ROLE_MAP" in str(error.value)
    assert "Administrators" in str(error.value)


def test_an_unknown_local_passwords_mode_stops_start_up() -> None:
    from accounts.oidc_config import configuration_check

    with override_settings(LOCAL_PASSWORDS="sometimes"), pytest.raises(ImproperlyConfigured):
        configuration_check()


def test_the_providers_are_listed_publicly_for_sign_in_buttons(configure: Callable[..., None]) -> None:
    response = APIClient().get(PROVIDERS)
    assert response.status_code == 200
    assert response.json() == [{"name": "mock", "label": "Mock IdP"}]


def test_an_unknown_provider_is_404_at_both_doors(configure: Callable[..., None]) -> None:
    api = APIClient()
    assert api.post("/api/v1/auth/oidc/nope/authorize/", START).status_code == 404
    assert (
        api.post("/api/v1/auth/oidc/nope/token/", {"code": "c", "state": "s", "code_verifier": VERIFIER}).status_code
        == 404
    )
    assert Client().get("/admin/oidc/nope/login/").status_code == 404
    assert Client().get("/admin/oidc/nope/callback/?code=c&state=s").status_code == 404


# --- The API flow ---------------------------------------------------------------------------------------------


def test_api_sign_in_hands_out_our_tokens_that_work_on_the_api(idp: Provider) -> None:
    user, sub = linked_user(idp)
    response = api_sign_in(idp, sub)
    assert response.status_code == 200, response.content
    me = APIClient(headers={"Authorization": f"Bearer {response.json()['access']}"}).get("/api/v1/auth/me/")
    assert me.status_code == 200
    assert me.json()["email"] == user.email
    session = LoginSession.objects.get(user=user)
    assert session.channel == LoginSession.Channel.API
    event = SecurityEvent.objects.get(kind=Kind.LOGIN_SUCCEEDED, user=user)
    assert event.detail == "method: oidc:mock"
    assert event.session == session


def test_the_authorization_url_carries_a_pkce_s256_challenge_and_the_token_request_its_verifier(
    idp: Provider,
) -> None:
    _, sub = linked_user(idp)
    assert api_sign_in(idp, sub).status_code == 200
    sent = idp.authorize_params[-1]
    assert sent["code_challenge_method"] == "S256"
    assert sent["code_challenge"] == CHALLENGE  # the client's: we never hold an API sign-in's verifier
    assert sent["nonce"]
    assert sent["state"]
    assert sent["scope"] == "openid email profile"
    assert idp.token_params[-1]["code_verifier"] == VERIFIER
    assert OIDCAuthorization.objects.count() == 0  # spent


def test_a_stolen_code_and_state_without_the_verifier_are_refused_before_the_provider_is_asked(
    idp: Provider,
) -> None:
    _, sub = linked_user(idp)
    started = APIClient().post(AUTHORIZE, START, format="json").json()
    assert OIDCAuthorization.objects.get().code_verifier == ""
    back = idp.authorize(started["authorization_url"], sub)
    thief = APIClient()
    wrong = "w" * 43
    response = thief.post(TOKEN, {"code": back["code"], "state": back["state"], "code_verifier": wrong}, format="json")
    assert response.status_code == 401
    assert idp.token_params == []  # the provider was not asked
    assert failures("code_verifier does not match the code_challenge")
    assert not OIDCAuthorization.objects.exists()  # the state is spent
    # The rightful client, too late: the state was spent by the refusal.
    assert APIClient().post(TOKEN, {**back, "code_verifier": VERIFIER}, format="json").status_code == 401
    assert not LoginSession.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"redirect_uri": APP_CALLBACK},
        {"redirect_uri": APP_CALLBACK, "code_challenge": CHALLENGE[:-1]},
        {"redirect_uri": APP_CALLBACK, "code_challenge": CHALLENGE + "A"},
        {"redirect_uri": APP_CALLBACK, "code_challenge": CHALLENGE[:-1] + "="},
    ],
    ids=["missing", "short", "long", "padded"],
)
def test_authorize_needs_an_s256_code_challenge(idp: Provider, body: dict[str, str]) -> None:
    response = APIClient().post(AUTHORIZE, body, format="json")
    assert response.status_code == 400
    assert "code_challenge" in response.json()
    assert not OIDCAuthorization.objects.exists()


@pytest.mark.parametrize("verifier", ["", "a" * 42, "a" * 129, "a" * 42 + "+", "a" * 42 + "é"])
def test_token_needs_a_well_formed_code_verifier(idp: Provider, verifier: str) -> None:
    body = {"code": "c", "state": "s", "code_verifier": verifier}
    response = APIClient().post(TOKEN, body, format="json")
    assert response.status_code == 400
    assert "code_verifier" in response.json()


def test_the_state_is_stored_only_as_its_hash_and_expires_in_ten_minutes(idp: Provider) -> None:
    started = APIClient().post(AUTHORIZE, START, format="json").json()
    row = OIDCAuthorization.objects.get()
    assert row.state_hash == hashlib.sha256(started["state"].encode()).hexdigest()
    assert started["state"] not in (row.state_hash, row.nonce, row.code_verifier)
    assert 590 <= (row.expires_at - row.created_at).total_seconds() <= 600
    assert row.redirect_uri == APP_CALLBACK
    assert row.channel == "api"


def test_a_redirect_uri_outside_the_allow_list_is_400_naming_the_field(idp: Provider) -> None:
    response = APIClient().post(AUTHORIZE, {**START, "redirect_uri": "https://evil.example/cb"}, format="json")
    assert response.status_code == 400
    assert "redirect_uri" in response.json()
    assert OIDCAuthorization.objects.count() == 0


def test_a_bad_body_is_400(idp: Provider) -> None:
    assert APIClient().post(AUTHORIZE, {}, format="json").status_code == 400
    assert APIClient().post(TOKEN, {"code": "c"}, format="json").status_code == 400


def test_a_state_works_once_the_second_use_is_401(idp: Provider) -> None:
    _, sub = linked_user(idp)
    api = APIClient()
    started = api.post(AUTHORIZE, START, format="json").json()
    back = idp.authorize(started["authorization_url"], sub)
    assert api.post(TOKEN, {**back, "code_verifier": VERIFIER}, format="json").status_code == 200
    replay = api.post(TOKEN, {**back, "code_verifier": VERIFIER}, format="json")
    assert replay.status_code == 401
    assert failures("oidc:mock: unknown or used state")


def test_an_unknown_state_is_401_and_audited(idp: Provider) -> None:
    response = APIClient().post(
        TOKEN, {"code": "whatever", "state": "never-issued", "code_verifier": VERIFIER}, format="json"
    )
    assert response.status_code == 401
    assert response.json()["detail"] == oidc_service.REFUSED
    assert failures("unknown or used state")


def test_a_state_of_another_provider_is_refused(idp: Provider, provider_server: Provider) -> None:
    _, sub = linked_user(idp)
    both = {"mock": mock_config(idp.issuer), "other": mock_config(idp.issuer, label="Other")}
    with override_settings(OIDC_PROVIDERS=both):
        api = APIClient()
        started = api.post(AUTHORIZE, START, format="json").json()
        back = idp.authorize(started["authorization_url"], sub)
        response = api.post("/api/v1/auth/oidc/other/token/", {**back, "code_verifier": VERIFIER}, format="json")
    assert response.status_code == 401
    assert failures("oidc:other: state of another provider (mock)")


def test_an_expired_state_is_refused(idp: Provider, time_machine: Any) -> None:
    _, sub = linked_user(idp)
    api = APIClient()
    started = api.post(AUTHORIZE, START, format="json").json()
    back = idp.authorize(started["authorization_url"], sub)
    OIDCAuthorization.objects.update(expires_at=OIDCAuthorization.objects.get().created_at)
    assert api.post(TOKEN, {**back, "code_verifier": VERIFIER}, format="json").status_code == 401
    assert failures("state expired")


def test_a_wrong_nonce_is_refused(idp: Provider) -> None:
    _, sub = linked_user(idp)
    api = APIClient()
    started = api.post(AUTHORIZE, START, format="json").json()
    back = idp.authorize(started["authorization_url"], sub)
    OIDCAuthorization.objects.update(nonce="not-the-nonce-the-provider-saw")
    response = api.post(TOKEN, {**back, "code_verifier": VERIFIER}, format="json")
    assert response.status_code == 401
    assert failures("claim refused")
    assert "nonce" in failures("claim refused")[0].detail
    assert not LoginSession.objects.exists()


def _tampering(monkeypatch: pytest.MonkeyPatch, change: Callable[[str], str]) -> None:
    """Changes the ID token in the provider's token response (the one HTTP call of the code exchange)."""
    exchange = oidc_service._code_exchange

    def tampered(**kwargs: Any) -> Any:
        token = exchange(**kwargs)
        token["id_token"] = change(token["id_token"])
        return token

    monkeypatch.setattr(oidc_service, "_code_exchange", tampered)


def _flip(segment: str) -> str:
    middle = len(segment) // 2
    return segment[:middle] + ("A" if segment[middle] != "A" else "B") + segment[middle + 1 :]


@pytest.mark.parametrize("part", [1, 2], ids=["payload", "signature"])
def test_a_tampered_id_token_is_refused(idp: Provider, monkeypatch: pytest.MonkeyPatch, part: int) -> None:
    _, sub = linked_user(idp)
    _tampering(
        monkeypatch, lambda token: ".".join(_flip(s) if i == part else s for i, s in enumerate(token.split(".")))
    )
    response = api_sign_in(idp, sub)
    assert response.status_code == 401
    assert failures("oidc:mock: bad ID token signature") or failures("oidc:mock: invalid ID token")
    assert not LoginSession.objects.exists()


def test_an_unsigned_id_token_is_refused(idp: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    def unsigned(token: str) -> str:
        header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
        return f"{header}.{token.split('.')[1]}."

    _, sub = linked_user(idp)
    _tampering(monkeypatch, unsigned)
    assert api_sign_in(idp, sub).status_code == 401
    assert failures("algorithm 'none' not accepted")


def test_an_hs256_id_token_signed_with_the_client_secret_is_refused(
    idp: Provider, configure: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The provider advertises HS256 and the token is signed with our real client secret: only our refusal of
    # HS* stops it (whoever else holds the secret could sign any ID token).
    secret = "the-client-secret-we-share-with-the-provider"
    configure(client_secret=secret)

    def with_secret(token: str) -> str:
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(secret))

    _serving(
        monkeypatch,
        "/.well-known/openid-configuration",
        lambda document: document.update(id_token_signing_alg_values_supported=["RS256", "HS256"]),
    )
    _, sub = linked_user(idp)
    _tampering(monkeypatch, with_secret)
    assert api_sign_in(idp, sub).status_code == 401
    assert failures("algorithm 'HS256' not accepted")


def test_an_expired_id_token_is_refused(idp: Provider) -> None:
    user = UserFactory()
    sub = new_subject()
    ExternalIdentity.objects.create(provider="oidc:mock", subject=sub, issuer=idp.issuer, user=user)
    long_ago = int(time.time()) - 7200
    # The provider's own claims go into its ID token: here an exp well past the leeway.
    idp.user(sub, email=user.email, email_verified=True, iat=long_ago, exp=long_ago + 600)
    response = api_sign_in(idp, sub)
    assert response.status_code == 401
    assert failures("ID token expired")


def test_an_id_token_past_its_exp_by_our_clock_is_refused(
    idp: Provider, monkeypatch: pytest.MonkeyPatch, time_machine: Any
) -> None:
    _, sub = linked_user(idp)
    exchange = oidc_service._code_exchange

    def then_later(**kwargs: Any) -> Any:
        token = exchange(**kwargs)
        # The mock's ID tokens live an hour: by the time we check this one, our clock is past that and the leeway.
        time_machine.move_to(timezone.now() + datetime.timedelta(hours=2))
        return token

    monkeypatch.setattr(oidc_service, "_code_exchange", then_later)
    assert api_sign_in(idp, sub).status_code == 401
    assert failures("ID token expired")


def test_an_id_token_issued_to_another_client_is_refused(idp: Provider, configure: Callable[..., None]) -> None:
    _, sub = linked_user(idp)
    configure(client_id="someone-else")  # the code is issued to another client, and exchanged by it...
    api = APIClient()
    started = api.post(AUTHORIZE, START, format="json").json()
    back = idp.authorize(started["authorization_url"], sub)
    configure(client_id="portfolio")  # ...and the ID token it gets (aud: someone-else) is checked as ours
    with pytest.MonkeyPatch.context() as patch:
        exchange = oidc_service._code_exchange

        def as_someone_else(*, provider: Any, **kwargs: Any) -> Any:
            return exchange(provider=dataclasses.replace(provider, client_id="someone-else"), **kwargs)

        patch.setattr(oidc_service, "_code_exchange", as_someone_else)
        assert api.post(TOKEN, {**back, "code_verifier": VERIFIER}, format="json").status_code == 401
    refused = failures("claim refused")
    assert len(refused) == 1
    assert "aud" in refused[0].detail


def test_a_discovery_document_naming_another_issuer_is_unavailable(
    idp: Provider, configure: Callable[..., None]
) -> None:
    configure(issuer=f"{idp.issuer}/")  # not exactly the issuer the document states
    response = APIClient().post(AUTHORIZE, START, format="json")
    assert response.status_code == 503


def test_keys_not_in_our_copy_make_the_key_set_be_fetched_again(idp: Provider) -> None:
    _, sub = linked_user(idp)
    assert api_sign_in(idp, sub).status_code == 200
    # The cached key set is one without the provider's current key: as if the provider had rotated since.
    for url, entry in list(oidc_service._documents.items()):
        if url.endswith("/jwks"):
            oidc_service._documents[url] = oidc_service._Cached(value={"keys": []}, until=entry.until)
    assert api_sign_in(idp, sub).status_code == 200


def _signed_with_key_id(monkeypatch: pytest.MonkeyPatch) -> RSAKey:
    """The provider signs its ID tokens with a new key named "new-key" (returned, private)."""
    new_key = RSAKey.generate_key(2048, parameters={"kid": "new-key"}, private=True)

    def resigned(token: str) -> str:
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        return jwt.encode({"alg": "RS256", "kid": "new-key"}, claims, new_key)

    _tampering(monkeypatch, resigned)
    return new_key


def test_a_token_signed_with_a_key_id_not_in_our_copy_makes_us_fetch_the_keys_once_more(
    idp: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_key = _signed_with_key_id(monkeypatch)
    old_key = RSAKey.generate_key(2048, parameters={"kid": "old-key"})
    # The provider rotates between our first fetch and the sign-in: the old set, then the new one.
    idp.jwks_documents.extend([{"keys": [old_key.as_dict(private=False)]}, {"keys": [new_key.as_dict(private=False)]}])
    _, sub = linked_user(idp)
    assert api_sign_in(idp, sub).status_code == 200
    assert idp.jwks_fetches == 2  # the old set, then again for the unknown kid
    assert api_sign_in(idp, sub).status_code == 200
    assert idp.jwks_fetches == 2  # the new set is kept


def test_a_key_id_still_unknown_after_fetching_again_is_refused_and_fetched_once(
    idp: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    _signed_with_key_id(monkeypatch)
    old_key = RSAKey.generate_key(2048, parameters={"kid": "old-key"}).as_dict(private=False)
    idp.jwks_documents.extend([{"keys": [old_key]}, {"keys": [old_key]}])
    _, sub = linked_user(idp)
    assert api_sign_in(idp, sub).status_code == 401
    assert idp.jwks_fetches == 2
    assert failures("no matching signing key")


# --- Who signs in ---------------------------------------------------------------------------------------------


def test_an_unknown_user_is_refused_when_creation_is_off(idp: Provider) -> None:
    sub = new_subject()
    idp.user(sub, email="newcomer@corp.example", email_verified=True)
    response = api_sign_in(idp, sub)
    assert response.status_code == 401
    assert response.json()["detail"] == oidc_service.NO_ACCOUNT
    assert not User.objects.filter(email="newcomer@corp.example").exists()
    assert failures(f"oidc:mock: {sub}: no account for newcomer@corp.example")


def test_an_unknown_user_is_created_as_staff_and_linked_when_creation_is_on(
    idp: Provider, configure: Callable[..., None]
) -> None:
    configure(create_users=True)
    sub = new_subject()
    idp.user(sub, email="newcomer@corp.example", email_verified=True, given_name="Nina", family_name="Berg")
    assert api_sign_in(idp, sub).status_code == 200
    user = User.objects.get(email="newcomer@corp.example")
    assert user.is_staff
    assert user.is_active
    assert not user.is_superuser
    assert not user.has_usable_password()
    assert user.full_name == "Nina Berg"
    identity = ExternalIdentity.objects.get(user=user)
    assert (identity.provider, identity.subject, identity.linked_by) == ("oidc:mock", sub, None)
    assert SecurityEvent.objects.filter(kind=Kind.IDENTITY_LINKED, user=user, detail__contains="created").exists()


def test_creating_a_user_needs_a_verified_email_too(idp: Provider, configure: Callable[..., None]) -> None:
    configure(create_users=True)
    sub = new_subject()
    idp.user(sub, email="newcomer@corp.example", email_verified=False)
    assert api_sign_in(idp, sub).status_code == 401
    assert not User.objects.filter(email="newcomer@corp.example").exists()


def test_a_verified_email_links_the_one_user_with_that_address(idp: Provider) -> None:
    user = UserFactory(email="anna@corp.example")
    sub = new_subject()
    idp.user(sub, email="Anna@Corp.example", email_verified=True)
    assert api_sign_in(idp, sub).status_code == 200
    identity = ExternalIdentity.objects.get(provider="oidc:mock", subject=sub)
    assert identity.user == user
    assert identity.linked_by is None
    event = SecurityEvent.objects.get(kind=Kind.IDENTITY_LINKED, user=user)
    assert event.detail.endswith("by email_verified at oidc:mock")


@pytest.mark.parametrize("verified", [False, "true", None], ids=["false", "the-string-true", "absent"])
def test_an_unverified_email_is_refused_and_links_nothing(idp: Provider, verified: Any) -> None:
    UserFactory(email="anna@corp.example")
    sub = new_subject()
    claims: dict[str, Any] = {"email": "anna@corp.example"}
    if verified is not None:
        claims["email_verified"] = verified
    idp.user(sub, **claims)
    response = api_sign_in(idp, sub)
    assert response.status_code == 401
    assert response.json()["detail"] == oidc_service.EMAIL_NOT_VERIFIED
    assert not ExternalIdentity.objects.exists()
    assert failures("email not verified")


def test_an_existing_link_wins_over_the_email(idp: Provider) -> None:
    linked = UserFactory(email="linked@corp.example")
    UserFactory(email="other@corp.example")
    sub = new_subject()
    ExternalIdentity.objects.create(provider="oidc:mock", subject=sub, issuer=idp.issuer, user=linked)
    idp.user(sub, email="other@corp.example", email_verified=True)
    token = api_sign_in(idp, sub).json()["access"]
    me = APIClient(headers={"Authorization": f"Bearer {token}"}).get("/api/v1/auth/me/")
    assert me.json()["email"] == "linked@corp.example"


@pytest.mark.parametrize("change", [{"is_active": False}, {"is_staff": False}], ids=["inactive", "not-staff"])
def test_an_inactive_or_non_staff_user_is_refused(idp: Provider, change: dict[str, bool]) -> None:
    _, sub = linked_user(idp, **change)
    response = api_sign_in(idp, sub)
    assert response.status_code == 401
    assert response.json()["detail"] == oidc_service.NOT_ALLOWED


# --- Roles ----------------------------------------------------------------------------------------------------

ROLE_MAP = {"pf-advisors": Role.ADVISORS.value, "pf-ops": Role.OPERATIONS.value}


def _roles(user: User) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


def test_roles_follow_the_claim_at_every_sign_in_and_a_removed_one_is_removed(
    idp: Provider, configure: Callable[..., None]
) -> None:
    configure(roles_claim="groups", role_map=ROLE_MAP)
    user, sub = linked_user(idp)
    user.groups.add(Group.objects.get_or_create(name=Role.AUDITORS.value)[0])  # not in the map: left alone
    idp.user(sub, email=user.email, email_verified=True, groups=["pf-advisors", "pf-ops", "unmapped"])
    assert api_sign_in(idp, sub).status_code == 200
    assert _roles(user) == {Role.ADVISORS.value, Role.OPERATIONS.value, Role.AUDITORS.value}
    event = SecurityEvent.objects.get(kind=Kind.ROLES_SYNCED, user=user)
    assert event.detail == "oidc:mock: +Advisors +Operations"

    idp.user(sub, email=user.email, email_verified=True, groups="pf-advisors")  # a string claim
    assert api_sign_in(idp, sub).status_code == 200
    assert _roles(user) == {Role.ADVISORS.value, Role.AUDITORS.value}

    idp.user(sub, email=user.email, email_verified=True)  # no claim: no mapped roles
    assert api_sign_in(idp, sub).status_code == 200
    assert _roles(user) == {Role.AUDITORS.value}
    assert SecurityEvent.objects.filter(kind=Kind.ROLES_SYNCED, user=user).count() == 3


def test_role_sync_clears_the_cached_users_only_once_committed(
    idp: Provider,
    configure: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    configure(roles_claim="groups", role_map=ROLE_MAP)
    user, sub = linked_user(idp)
    idp.user(sub, email=user.email, email_verified=True, groups=["pf-advisors"])
    cleared: list[str] = []
    monkeypatch.setattr(oidc_service, "invalidate_namespace", cleared.append)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert api_sign_in(idp, sub).status_code == 200
    assert cleared == []  # not before the commit: a reader in between would cache the old roles again
    for callback in callbacks:
        callback()
    assert cleared == [CACHE_NAMESPACE]


def test_role_sync_never_grants_superuser(idp: Provider, configure: Callable[..., None]) -> None:
    configure(roles_claim="groups", role_map=ROLE_MAP)
    user, sub = linked_user(idp)
    idp.user(sub, email=user.email, email_verified=True, groups=["pf-advisors", "admin", "superuser"])
    assert api_sign_in(idp, sub).status_code == 200
    user.refresh_from_db()
    assert not user.is_superuser
    assert _roles(user) == {Role.ADVISORS.value}


# --- Two-factor ------------------------------------------------------------------------------------------------


def test_a_user_with_two_factor_gets_the_challenge(idp: Provider) -> None:
    user, sub = linked_user(idp)
    totp, _ = enable_two_factor(user)
    body = api_sign_in(idp, sub).json()
    assert body["two_factor_required"] is True
    assert body["challenge"]
    assert not LoginSession.objects.filter(user=user).exists()
    done = APIClient().post("/api/v1/auth/2fa/verify/", {"challenge": body["challenge"], "code": totp.now()})
    assert done.status_code == 200, done.content
    event = SecurityEvent.objects.get(kind=Kind.LOGIN_SUCCEEDED, user=user)
    assert event.detail == "method: oidc:mock + two-factor (totp)"


def test_a_trusted_amr_skips_the_challenge(idp: Provider, configure: Callable[..., None]) -> None:
    configure(trust_amr=["mfa", "hwk"])
    user, sub = linked_user(idp)
    enable_two_factor(user)
    idp.user(sub, email=user.email, email_verified=True, amr=["pwd", "mfa"])
    body = api_sign_in(idp, sub).json()
    assert "access" in body
    event = SecurityEvent.objects.get(kind=Kind.LOGIN_SUCCEEDED, user=user)
    assert event.detail == "method: oidc:mock (amr trusted: mfa)"


def test_an_amr_that_configuration_does_not_trust_still_needs_the_challenge(
    idp: Provider, configure: Callable[..., None]
) -> None:
    configure(trust_amr=["hwk"])
    user, sub = linked_user(idp)
    enable_two_factor(user)
    idp.user(sub, email=user.email, email_verified=True, amr=["pwd", "mfa"])
    assert api_sign_in(idp, sub).json()["two_factor_required"] is True


def test_an_amr_is_not_trusted_when_no_values_are_configured(idp: Provider) -> None:
    user, sub = linked_user(idp)
    enable_two_factor(user)
    idp.user(sub, email=user.email, email_verified=True, amr=["mfa"])
    assert api_sign_in(idp, sub).json()["two_factor_required"] is True


# --- Outages, throttles, logs ------------------------------------------------------------------------------------


def test_a_provider_that_cannot_be_reached_is_503_with_retry_after(configure: Callable[..., None]) -> None:
    configure(issuer="http://127.0.0.1:9")  # the discard port: nothing answers
    response = APIClient().post(AUTHORIZE, START, format="json")
    assert response.status_code == 503
    assert response["Retry-After"] == str(oidc_service.UNAVAILABLE_RETRY_SECONDS)
    assert response.json()["detail"] == oidc_service.UNAVAILABLE


def test_a_provider_down_at_the_code_exchange_is_503(idp: Provider, configure: Callable[..., None]) -> None:
    _, sub = linked_user(idp)
    api = APIClient()
    started = api.post(AUTHORIZE, START, format="json").json()
    back = idp.authorize(started["authorization_url"], sub)
    # Its endpoints as discovered (cached) now point at a port where nothing answers.
    for url, entry in list(oidc_service._documents.items()):
        if "openid-configuration" in url:
            value = {**entry.value, "token_endpoint": "http://127.0.0.1:9/token"}
            oidc_service._documents[url] = oidc_service._Cached(value=value, until=entry.until)
    response = api.post(TOKEN, {**back, "code_verifier": VERIFIER}, format="json")
    assert response.status_code == 503
    assert response["Retry-After"]


def test_the_token_exchange_is_throttled_like_the_login(idp: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    rates = {**SimpleRateThrottle.THROTTLE_RATES, "login_ip": "2/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    api = APIClient()
    statuses = [
        api.post(TOKEN, {"code": "c", "state": "s", "code_verifier": VERIFIER}, format="json").status_code
        for _ in range(3)
    ]
    assert statuses == [401, 401, 429]


def test_neither_the_code_nor_the_id_token_is_logged(
    idp: Provider,
    monkeypatch: pytest.MonkeyPatch,
    log_output: io.StringIO,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: dict[str, str] = {}
    exchange = oidc_service._code_exchange

    def recording(**kwargs: Any) -> Any:
        token = exchange(**kwargs)
        seen.update(code=kwargs["code"], id_token=token["id_token"], access_token=token["access_token"])
        return token

    monkeypatch.setattr(oidc_service, "_code_exchange", recording)
    caplog.set_level("DEBUG")
    _, sub = linked_user(idp)
    assert api_sign_in(idp, sub).status_code == 200
    _tampering(monkeypatch, lambda token: token[:-4] + "AAAA")
    assert api_sign_in(idp, sub).status_code == 401
    written = log_output.getvalue() + caplog.text
    for secret in seen.values():
        assert secret not in written
    details = " ".join(SecurityEvent.objects.values_list("detail", flat=True))
    assert seen["code"] not in details
    assert seen["id_token"] not in details


def test_expired_authorizations_are_purged_by_the_cleanup(idp: Provider, time_machine: Any) -> None:
    APIClient().post(AUTHORIZE, START, format="json")
    assert security_records_purge()["oidc_authorizations"] == 0
    time_machine.move_to(OIDCAuthorization.objects.get().expires_at)
    assert security_records_purge()["oidc_authorizations"] == 1
    assert not OIDCAuthorization.objects.exists()


# --- The admin door ---------------------------------------------------------------------------------------------


def admin_sign_in(idp: Provider, sub: str, client: Client, next_url: str = "") -> Any:
    """The login button → the provider → the callback: the callback's response."""
    started = client.get(ADMIN_LOGIN + (f"?next={next_url}" if next_url else ""))
    assert started.status_code == 302, started.content
    back = idp.authorize(started["Location"], sub)
    return client.get(ADMIN_CALLBACK, back)


def test_the_admin_login_page_shows_a_button_per_provider(configure: Callable[..., None]) -> None:
    page = Client().get("/admin/login/")
    assert "Sign in with Mock IdP" in page.content.decode()
    assert 'id="login-form"' in page.content.decode()


def test_admin_sign_in_opens_a_revocable_admin_session(idp: Provider) -> None:
    user, sub = linked_user(idp)
    client = Client()
    response = admin_sign_in(idp, sub, client, next_url="/admin/accounts/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/accounts/"
    session = LoginSession.objects.get(user=user)
    assert session.channel == LoginSession.Channel.ADMIN
    assert client.get("/admin/").status_code == 200
    session_revoke(session=session, client=ClientInfo())
    assert client.get("/admin/").status_code == 302  # ended at once: back to the login page


def test_admin_sign_in_sends_the_provider_our_callback_with_pkce(idp: Provider) -> None:
    _, sub = linked_user(idp)
    admin_sign_in(idp, sub, Client())
    sent = idp.authorize_params[-1]
    assert sent["redirect_uri"] == f"http://testserver{ADMIN_CALLBACK}"
    assert sent["code_challenge_method"] == "S256"


def test_an_off_site_next_is_not_followed(idp: Provider) -> None:
    _, sub = linked_user(idp)
    response = admin_sign_in(idp, sub, Client(), next_url="https://evil.example/")
    assert response["Location"] == "/admin/"


def test_admin_sign_in_continues_into_the_two_factor_step(idp: Provider) -> None:
    user, sub = linked_user(idp)
    totp, _ = enable_two_factor(user)
    client = Client()
    response = admin_sign_in(idp, sub, client)
    assert response["Location"] == "/admin/login/two-factor/"
    done = client.post("/admin/login/two-factor/", {"code": totp.now()})
    assert done.status_code == 302
    assert LoginSession.objects.get(user=user).channel == LoginSession.Channel.ADMIN
    event = SecurityEvent.objects.get(kind=Kind.LOGIN_SUCCEEDED, user=user)
    assert event.detail == "method: oidc:mock + two-factor (totp)"  # both factors named


def test_a_callback_with_a_state_this_browser_did_not_start_is_refused(idp: Provider) -> None:
    _, sub = linked_user(idp)
    victim, attacker = Client(), Client()
    started = attacker.get(ADMIN_LOGIN)
    back = idp.authorize(started["Location"], sub)
    response = victim.get(ADMIN_CALLBACK, back, follow=True)
    assert oidc_service.REFUSED in response.content.decode()
    assert not LoginSession.objects.exists()


def test_a_provider_error_goes_back_to_the_login_page_with_a_message(idp: Provider) -> None:
    client = Client()
    client.get(ADMIN_LOGIN)
    response = client.get(ADMIN_CALLBACK, {"error": "access_denied", "state": "x"}, follow=True)
    assert response.redirect_chain[-1][0] == "/admin/login/"
    assert "cancelled or refused" in response.content.decode()


def test_an_unknown_user_at_the_admin_door_sees_why(idp: Provider) -> None:
    sub = new_subject()
    idp.user(sub, email="nobody@corp.example", email_verified=True)
    client = Client()
    started = client.get(ADMIN_LOGIN)
    back = idp.authorize(started["Location"], sub)
    response = client.get(ADMIN_CALLBACK, back, follow=True)
    assert "No account here for this sign-in" in response.content.decode()


def test_a_provider_down_at_the_admin_door_shows_a_message_not_a_500(configure: Callable[..., None]) -> None:
    configure(issuer="http://127.0.0.1:9")
    response = Client().get(ADMIN_LOGIN, follow=True)
    assert response.status_code == 200
    assert oidc_service.UNAVAILABLE in response.content.decode()


def test_an_api_state_cannot_finish_an_admin_sign_in(idp: Provider) -> None:
    _, sub = linked_user(idp)
    started = APIClient().post(AUTHORIZE, START, format="json").json()
    back = idp.authorize(started["authorization_url"], sub)
    client = Client()
    session = client.session
    session["_admin_oidc_state"] = back["state"]
    session.save()
    client.get(ADMIN_CALLBACK, back)
    assert not LoginSession.objects.exists()
    assert failures("state of another door (api)")


# --- LOCAL_PASSWORDS -------------------------------------------------------------------------------------------


@override_settings(LOCAL_PASSWORDS="off")
def test_local_passwords_off_refuses_staff_password_sign_in_at_both_doors(configure: Callable[..., None]) -> None:
    user = UserFactory()
    api = APIClient().post("/api/v1/auth/login/", {"email": user.email, "password": PASSWORD})
    assert api.status_code == 401
    # The answer of a wrong password: a distinct one would confirm the password to a credential stuffer.
    assert api.json()["detail"] == INVALID_CREDENTIALS
    admin = Client().post("/admin/login/", {"username": user.email, "password": PASSWORD})
    assert admin.status_code == 401
    assert INVALID_CREDENTIALS in admin.content.decode()
    assert len(failures("password: local passwords off for staff")) == 2
    assert not SecurityEvent.objects.filter(kind=Kind.LOCKOUT).exists()


@override_settings(LOCAL_PASSWORDS="off")
def test_local_passwords_off_hides_the_admin_password_form(configure: Callable[..., None]) -> None:
    page = Client().get("/admin/login/").content.decode()
    assert 'id="login-form"' not in page
    assert "Sign in with Mock IdP" in page


@override_settings(LOCAL_PASSWORDS="off")
def test_local_passwords_off_keeps_them_for_non_staff_api_users() -> None:
    user = UserFactory(is_staff=False)
    response = APIClient().post("/api/v1/auth/login/", {"email": user.email, "password": PASSWORD})
    assert response.status_code == 200


@override_settings(LOCAL_PASSWORDS="off")
def test_a_wrong_password_with_local_passwords_off_still_fails_as_a_wrong_password() -> None:
    user = UserFactory()
    response = APIClient().post("/api/v1/auth/login/", {"email": user.email, "password": "wrong"})
    assert response.status_code == 401
    assert response.json()["detail"] == INVALID_CREDENTIALS


@override_settings(LOCAL_PASSWORDS="superusers")
def test_local_passwords_for_superusers_keeps_the_break_glass_account(configure: Callable[..., None]) -> None:
    staff, superuser = UserFactory(), SuperuserFactory()
    api = APIClient()
    assert api.post("/api/v1/auth/login/", {"email": staff.email, "password": PASSWORD}).status_code == 401
    assert api.post("/api/v1/auth/login/", {"email": superuser.email, "password": PASSWORD}).status_code == 200
    admin = Client().post("/admin/login/", {"username": superuser.email, "password": PASSWORD})
    assert admin.status_code == 302
    assert "emergency administrator accounts only" in Client().get("/admin/login/").content.decode()


@override_settings(LOCAL_PASSWORDS="off")
def test_local_passwords_off_refuses_the_emailed_login_code_to_staff() -> None:
    # An emailed code stands in for a password: the same rule applies (services/otp.py).
    user = UserFactory()
    code = "123456"
    now = timezone.now()
    EmailLoginCode.objects.create(
        user=user,
        code_hash=login_code_hash(user_pk=user.pk, code=code),
        created_at=now,
        expires_at=now + datetime.timedelta(minutes=10),
    )
    response = APIClient().post("/api/v1/auth/otp/login/", {"email": user.email, "code": code})
    assert response.status_code == 401
    assert response.json()["detail"] == INVALID_CREDENTIALS
    assert failures("email_code: local passwords off for staff")
    assert EmailLoginCode.objects.get(user=user).used_at is not None  # spent: it cannot be tried again


# --- Linking from the command line -------------------------------------------------------------------------------


@override_settings(OIDC_PROVIDERS={"corp": mock_config("https://login.corp.example/tenant-a/v2.0")})
def test_link_identity_links_an_oidc_provider_account_for_its_configured_issuer() -> None:
    user, admin = UserFactory(), SuperuserFactory()
    call_command("link_identity", user.email, "abc-123", "--provider", "oidc:corp", "--by", admin.email)
    identity = ExternalIdentity.objects.get(user=user)
    assert (identity.provider, identity.subject) == ("oidc:corp", "abc-123")
    assert identity.issuer == "https://login.corp.example/tenant-a/v2.0"


def test_link_identity_refuses_an_oidc_provider_not_configured_here() -> None:
    user, admin = UserFactory(), SuperuserFactory()
    with pytest.raises(CommandError, match="not a provider configured here"):
        call_command("link_identity", user.email, "abc-123", "--provider", "oidc:corp", "--by", admin.email)
    assert not ExternalIdentity.objects.exists()


def test_a_link_made_for_another_issuer_does_not_sign_in(idp: Provider) -> None:
    # OIDC_MOCK_ISSUER was re-pointed (another tenant): there the same `sub` may be someone else.
    user, sub = linked_user(idp)
    ExternalIdentity.objects.filter(user=user).update(issuer="https://login.example/old-tenant")
    response = api_sign_in(idp, sub)
    assert response.status_code == 401
    assert response.json()["detail"] == oidc_service.NO_ACCOUNT
    assert failures("linked for another issuer (https://login.example/old-tenant)")
    assert not LoginSession.objects.exists()


def test_links_made_at_a_sign_in_keep_the_issuer(idp: Provider) -> None:
    UserFactory(email="anna@corp.example")
    sub = new_subject()
    idp.user(sub, email="anna@corp.example", email_verified=True)
    assert api_sign_in(idp, sub).status_code == 200
    assert ExternalIdentity.objects.get(subject=sub).issuer == idp.issuer


@pytest.mark.parametrize("provider", ["github", "oidc:", "oidc:Corp"])
def test_link_identity_refuses_a_provider_no_sign_in_would_find(provider: str) -> None:
    user, admin = UserFactory(), SuperuserFactory()
    with pytest.raises(CommandError, match="oidc:<name>"):
        call_command("link_identity", user.email, "abc-123", "--provider", provider, "--by", admin.email)
    assert not ExternalIdentity.objects.exists()


# --- Linking by email: what may be linked ------------------------------------------------------------------------


@pytest.mark.parametrize("asserted", ["adm\u0131n@f\u0131rm.com", "ADM\u0130N@firm.com", "admin@firm.com\u0307"])
def test_a_look_alike_unicode_email_links_nobody(idp: Provider, configure: Callable[..., None], asserted: str) -> None:
    # On PostgreSQL email__iexact (UPPER() = UPPER()) upper-cases the dotless i (U+0131) to I:
    # "adm\u0131n@f\u0131rm.com" matched admin@firm.com.
    configure(create_users=True)
    admin = UserFactory(email="admin@firm.com")
    sub = new_subject()
    idp.user(sub, email=asserted, email_verified=True)
    response = api_sign_in(idp, sub)
    assert response.status_code == 401
    assert not ExternalIdentity.objects.filter(user=admin).exists()
    assert User.objects.count() == 1
    assert failures("is not an ASCII address")


def test_a_superuser_is_never_linked_by_email(idp: Provider) -> None:
    admin = SuperuserFactory(email="root@corp.example")
    sub = new_subject()
    idp.user(sub, email="root@corp.example", email_verified=True)
    response = api_sign_in(idp, sub)
    assert response.status_code == 401
    assert response.json()["detail"] == oidc_service.NO_ACCOUNT
    assert not ExternalIdentity.objects.filter(user=admin).exists()
    assert failures("is a superuser's address")


def test_link_by_email_off_links_nobody_by_email(idp: Provider, configure: Callable[..., None]) -> None:
    configure(link_by_email=False)
    user = UserFactory(email="anna@corp.example")
    sub = new_subject()
    idp.user(sub, email="anna@corp.example", email_verified=True)
    assert api_sign_in(idp, sub).status_code == 401
    assert not ExternalIdentity.objects.filter(user=user).exists()
    assert failures("linking by email is off")


@pytest.mark.parametrize(
    ("email", "allowed"),
    [
        ("anna@corp.example", True),
        ("Anna@CORP.example", True),
        ("anna@evil.example", False),
        ("anna@sub.corp.example", False),
        ("anna@corp.example.evil", False),
    ],
)
def test_email_domains_limit_linking_and_creating(
    idp: Provider, configure: Callable[..., None], email: str, allowed: bool
) -> None:
    configure(email_domains="corp.example, other.example", create_users=True)
    sub = new_subject()
    idp.user(sub, email=email, email_verified=True)
    assert (api_sign_in(idp, sub).status_code == 200) is allowed
    assert ExternalIdentity.objects.filter(subject=sub).exists() is allowed
    if not allowed:
        assert failures("is outside the provider's email domains")


def test_email_domains_limit_linking_an_existing_user(idp: Provider, configure: Callable[..., None]) -> None:
    configure(email_domains="corp.example")
    user = UserFactory(email="anna@partner.example")
    sub = new_subject()
    idp.user(sub, email="anna@partner.example", email_verified=True)
    assert api_sign_in(idp, sub).status_code == 401
    assert not ExternalIdentity.objects.filter(user=user).exists()


def test_email_domains_must_be_ascii_domains() -> None:
    config = mock_config("https://idp.example", email_domains="f\u0131rm.com")
    with (
        override_settings(OIDC_PROVIDERS={"corp": config}),
        pytest.raises(ImproperlyConfigured, match="OIDC_CORP_EMAIL_DOMAINS"),
    ):
        oidc_providers()


@pytest.mark.parametrize(
    ("issuer", "ok"),
    [
        ("https://idp.example", True),
        ("http://127.0.0.1:8080", True),
        ("http://[::1]:8080", True),
        ("http://localhost:8080", True),
        ("http://idp.example", False),
        ("http://localhost.evil.example", False),
        ("ftp://idp.example", False),
        ("https://", False),
    ],
)
def test_an_issuer_must_be_https_unless_on_loopback(issuer: str, ok: bool) -> None:
    with override_settings(OIDC_PROVIDERS={"corp": mock_config(issuer)}):
        if ok:
            assert oidc_providers()["corp"].issuer == issuer
        else:
            with pytest.raises(ImproperlyConfigured, match="OIDC_CORP_ISSUER"):
                oidc_providers()


def test_an_administrators_unlink_is_not_undone_by_the_next_sign_in(idp: Provider) -> None:
    from accounts.services.identities import identity_link, identity_unlink

    user, admin = UserFactory(email="anna@corp.example"), SuperuserFactory()
    sub = new_subject()
    idp.user(sub, email="anna@corp.example", email_verified=True)
    assert api_sign_in(idp, sub).status_code == 200  # linked by the verified email
    identity_unlink(identity=ExternalIdentity.objects.get(user=user), by=admin)
    response = api_sign_in(idp, sub)
    assert response.status_code == 401
    assert response.json()["detail"] == oidc_service.NO_ACCOUNT
    assert not ExternalIdentity.objects.filter(user=user).exists()
    assert failures("was unlinked by an administrator")
    # Another account at the provider with her address does not get round it either.
    other = new_subject()
    idp.user(other, email="anna@corp.example", email_verified=True)
    assert api_sign_in(idp, other).status_code == 401
    # An administrator's explicit link lifts the block.
    identity_link(user=user, provider="oidc:mock", subject=sub, by=admin)
    assert api_sign_in(idp, sub).status_code == 200
    identity_unlink(identity=ExternalIdentity.objects.get(user=user), by=admin)
    identity_link(user=user, provider="oidc:mock", subject=sub, by=admin)
    ExternalIdentity.objects.filter(user=user).delete()  # e.g. the user deleted at the provider and linked anew
    assert api_sign_in(idp, sub).status_code == 200


def test_a_500_during_the_admin_callback_logs_neither_the_code_nor_the_state(
    idp: Provider,
    monkeypatch: pytest.MonkeyPatch,
    log_output: io.StringIO,  # noqa: F811
) -> None:
    _, sub = linked_user(idp)

    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(oidc_service, "_sign_in", broken)
    client = Client(raise_request_exception=False)
    started = client.get(ADMIN_LOGIN)
    back = idp.authorize(started["Location"], sub)
    before = len(log_output.getvalue())  # the test's own requests to the provider are logged by urllib3
    response = client.get(ADMIN_CALLBACK, back)
    assert response.status_code == 500
    written = log_output.getvalue()[before:]
    assert "Internal Server Error" in written
    assert back["code"] not in written
    assert back["state"] not in written


# --- Provider data that does not fit: refusals and 503s, never a 500 ------------------------------------------------


def test_a_subject_longer_than_we_store_is_refused_at_both_doors(idp: Provider) -> None:
    user = UserFactory(email="anna@corp.example")
    sub = "s" * 300
    idp.user(sub, email="anna@corp.example", email_verified=True)
    response = api_sign_in(idp, sub)
    assert response.status_code == 401
    assert response.json()["detail"] == oidc_service.REFUSED
    assert failures("account data refused (ValidationError)")
    browser = Client()
    back = admin_sign_in(idp, sub, browser)
    assert back.status_code == 302
    assert oidc_service.REFUSED in browser.get(back["Location"]).content.decode()
    assert not ExternalIdentity.objects.filter(user=user).exists()
    assert not LoginSession.objects.exists()


def test_an_invalid_email_claim_is_refused_when_creating_users(idp: Provider, configure: Callable[..., None]) -> None:
    configure(create_users=True)
    sub = new_subject()
    idp.user(sub, email="not an address", email_verified=True)
    response = api_sign_in(idp, sub)
    assert response.status_code == 401
    assert not User.objects.exists()
    assert failures("account data refused (ValidationError)")


def test_a_concurrent_first_sign_in_of_the_same_account_is_refused_not_a_500(
    idp: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = UserFactory(email="anna@corp.example")
    sub = new_subject()
    idp.user(sub, email="anna@corp.example", email_verified=True)
    link = oidc_service._link

    def raced(**kwargs: Any) -> None:
        # The other request passed the same checks and linked first; ours fails at the unique constraint.
        ExternalIdentity.objects.create(provider="oidc:mock", subject=sub, issuer=idp.issuer, user=UserFactory())
        monkeypatch.setattr(ExternalIdentity, "full_clean", lambda self, **kw: None)
        link(**kwargs)

    monkeypatch.setattr(oidc_service, "_link", raced)
    response = api_sign_in(idp, sub)
    assert response.status_code == 401
    assert failures("account data refused (IntegrityError)")
    assert not ExternalIdentity.objects.filter(user=user).exists()
    assert not ExternalIdentity.objects.filter(subject=sub).exists()  # rolled back with the refused sign-in


def _serving(monkeypatch: pytest.MonkeyPatch, suffix: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Changes the provider's document whose URL ends with `suffix` as we receive it."""
    fetch = oidc_service._fetch_json

    def changed(url: str) -> dict[str, Any]:
        document = fetch(url)
        if url.endswith(suffix):
            change(document)
        return document

    monkeypatch.setattr(oidc_service, "_fetch_json", changed)


@pytest.mark.parametrize("keys", [[1], "abc", 5, None, [{"kty": "RSA"}, "x"]])
def test_a_malformed_key_set_is_unavailable_at_both_doors(
    idp: Provider, monkeypatch: pytest.MonkeyPatch, keys: Any
) -> None:
    _, sub = linked_user(idp)
    _serving(monkeypatch, "/jwks", lambda document: document.update(keys=keys))
    response = api_sign_in(idp, sub)
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    browser = Client()
    back = admin_sign_in(idp, sub, browser)
    assert back.status_code == 302
    assert oidc_service.UNAVAILABLE in browser.get(back["Location"]).content.decode()
    assert not LoginSession.objects.exists()


@pytest.mark.parametrize("algorithms", [5, "RS256", [5], {"RS256": True}])
def test_a_malformed_algorithm_list_is_unavailable(
    idp: Provider, monkeypatch: pytest.MonkeyPatch, algorithms: Any
) -> None:
    _serving(
        monkeypatch,
        "/.well-known/openid-configuration",
        lambda document: document.update(id_token_signing_alg_values_supported=algorithms),
    )
    response = APIClient().post(AUTHORIZE, START, format="json")
    assert response.status_code == 503
    page = Client().get(ADMIN_LOGIN, follow=True)
    assert oidc_service.UNAVAILABLE in page.content.decode()


def test_a_second_account_at_the_same_provider_does_not_link_by_email(idp: Provider) -> None:
    user, first = linked_user(idp, email="anna@corp.example")
    second = new_subject()
    idp.user(second, email="anna@corp.example", email_verified=True)
    response = api_sign_in(idp, second)
    assert response.status_code == 401
    assert response.json()["detail"] == oidc_service.NO_ACCOUNT
    assert list(ExternalIdentity.objects.filter(user=user).values_list("subject", flat=True)) == [first]
    assert failures("is linked to another account there")


def test_an_email_link_to_an_inactive_user_is_rolled_back_with_the_refusal(idp: Provider) -> None:
    user = UserFactory(email="gone@corp.example", is_active=False)
    sub = new_subject()
    idp.user(sub, email="gone@corp.example", email_verified=True)
    response = api_sign_in(idp, sub)
    assert response.status_code == 401
    assert response.json()["detail"] == oidc_service.NOT_ALLOWED
    assert not ExternalIdentity.objects.filter(user=user).exists()
    assert not SecurityEvent.objects.filter(kind=Kind.IDENTITY_LINKED).exists()
    assert failures(f"{sub}: inactive")


@override_settings(OIDC_PROVIDERS={"corp": mock_config("https://login.corp.example/tenant-a/v2.0")})
def test_the_user_admin_links_an_oidc_account_for_the_configured_issuer_and_shows_it(client: Client) -> None:
    from accounts.tests.test_admin import _change_form

    admin, user = SuperuserFactory(), UserFactory()
    browser = client
    browser.force_login(admin)
    url = f"/admin/accounts/user/{user.pk}/change/"
    form = _change_form(
        user,
        **{
            "external_identities-TOTAL_FORMS": "1",
            "external_identities-0-provider": "oidc:corp",
            "external_identities-0-subject": "abc-123",
        },
    )
    assert browser.post(url, form).status_code == 302
    identity = ExternalIdentity.objects.get(user=user)
    assert identity.issuer == "https://login.corp.example/tenant-a/v2.0"
    assert "https://login.corp.example/tenant-a/v2.0" in browser.get(url).content.decode()


def test_the_user_admin_refuses_an_oidc_provider_not_configured_here(client: Client) -> None:
    from accounts.tests.test_admin import _change_form

    admin, user = SuperuserFactory(), UserFactory()
    browser = client
    browser.force_login(admin)
    url = f"/admin/accounts/user/{user.pk}/change/"
    form = _change_form(
        user,
        **{
            "external_identities-TOTAL_FORMS": "1",
            "external_identities-0-provider": "oidc:corp",
            "external_identities-0-subject": "abc-123",
        },
    )
    response = browser.post(url, form)
    assert response.status_code == 200
    assert "not a provider configured here" in response.content.decode()
    assert not ExternalIdentity.objects.exists()
