"""Signing in with a Supabase access token: tokens made here with key pairs generated here, the public half served
by a JWKS endpoint on loopback started by the tests."""

import base64
import hashlib
import hmac
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import ExternalIdentity, LoginSession, SecurityEvent, User
from accounts.services import supabase as supabase_service
from accounts.services.identities import identity_link
from accounts.tests.factories import PASSWORD, SuperuserFactory, UserFactory
from accounts.tests.test_two_factor import enable_two_factor
from portfolio_site.tests.test_logs import log_output  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db
URL = "/api/v1/auth/supabase/token/"
Kind = SecurityEvent.Kind
SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
SUBJECT = uuid.UUID("8d0f5f7e-4a5b-4c1e-9b7a-2f1e3d4c5b6a")


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


class JWKS:
    """A Supabase project's key endpoint on loopback: serves `keys`, or answers 500 while `down`."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.down = False
        self.requests = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.requests += 1
                if jwks.down or self.path != "/auth/v1/.well-known/jwks.json":
                    self.send_response(500 if jwks.down else 404)
                    self.end_headers()
                    return
                body = json.dumps({"keys": jwks.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def public_jwk(key: Any, kid: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"}


@pytest.fixture
def project(rsa_key: Any, ec_key: Any) -> Iterator[JWKS]:
    """A configured Supabase project whose keys are served on loopback (the default JWKS address)."""
    supabase_service._jwks_client.cache_clear()
    jwks = JWKS([public_jwk(rsa_key, "rsa-1"), public_jwk(ec_key, "ec-1")])
    with override_settings(SUPABASE_URL=jwks.url, SUPABASE_JWKS_URL="", SUPABASE_JWT_SECRET=""):
        yield jwks
    jwks.close()
    supabase_service._jwks_client.cache_clear()


def claims(project: JWKS, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    body = {
        "sub": str(SUBJECT),
        "aud": "authenticated",
        "iss": f"{project.url}/auth/v1",
        "iat": now,
        "exp": now + 3600,
        "role": "authenticated",
        "email": "anna@supabase.example",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def token(project: JWKS, key: Any, *, alg: str = "RS256", kid: str = "rsa-1", **changes: Any) -> str:
    return jwt.encode(claims(project, **changes), key, algorithm=alg, headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(project: JWKS, *, alg: str, key: bytes | None) -> str:
    """A token built by hand (PyJWT refuses to make these): `alg: none`, or HS256 keyed with a public key."""
    head = b64(json.dumps({"alg": alg, "typ": "JWT", "kid": "rsa-1"}).encode())
    body = b64(json.dumps(claims(project)).encode())
    signature = b"" if key is None else hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def exchange(access_token: str, ip: str = "203.0.113.7") -> Any:
    return APIClient().post(URL, {"access_token": access_token}, REMOTE_ADDR=ip, HTTP_USER_AGENT="Supabase-app/1")


@pytest.fixture
def admin() -> User:
    return SuperuserFactory(email="admin@example.com")


@pytest.fixture
def anna(admin: User) -> User:
    user = UserFactory(email="anna@example.com")
    identity_link(user=user, provider="supabase", subject=str(SUBJECT), by=admin)
    return user


def refused_alike(response: Any, message: str = supabase_service.INVALID_TOKEN) -> None:
    assert response.status_code == 401, response.content
    assert response.json() == {"detail": message}
    assert not LoginSession.objects.exists()


# --- Signing in --------------------------------------------------------------------------------------------


def test_a_valid_token_of_a_linked_user_opens_a_listed_revocable_session(project: JWKS, anna: User, rsa_key: Any):
    response = exchange(token(project, rsa_key))
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"access", "refresh", "session", "access_expires_at", "refresh_expires_at"}
    session = LoginSession.objects.get(pk=body["session"])
    assert (session.user, session.channel, session.ip, session.user_agent) == (
        anna,
        "api",
        "203.0.113.7",
        "Supabase-app/1",
    )
    assert SecurityEvent.objects.filter(kind=Kind.LOGIN_SUCCEEDED, user=anna, detail="method: supabase").exists()

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    listed = api.get("/api/v1/auth/sessions/")
    assert [row["id"] for row in listed.json()["results"]] == [body["session"]]
    assert api.post(f"/api/v1/auth/sessions/{body['session']}/revoke/").status_code == 204
    assert api.get("/api/v1/auth/sessions/").status_code == 401
    assert APIClient().post("/api/v1/auth/token/refresh/", {"refresh": body["refresh"]}).status_code == 401


def test_an_es256_token_signed_with_the_projects_ec_key_is_accepted(project: JWKS, anna: User, ec_key: Any) -> None:
    response = exchange(token(project, ec_key, alg="ES256", kid="ec-1"))
    assert response.status_code == 200, response.content


def test_the_keys_are_fetched_once_and_cached(project: JWKS, anna: User, rsa_key: Any) -> None:
    assert exchange(token(project, rsa_key)).status_code == 200
    assert exchange(token(project, rsa_key)).status_code == 200
    assert project.requests == 1


def test_a_user_with_two_factor_gets_the_challenge_and_then_tokens(project: JWKS, anna: User, rsa_key: Any) -> None:
    totp, _ = enable_two_factor(anna)
    response = exchange(token(project, rsa_key))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["two_factor_required"] is True
    assert not LoginSession.objects.exists()
    verified = APIClient().post("/api/v1/auth/2fa/verify/", {"challenge": body["challenge"], "code": totp.now()})
    assert verified.status_code == 200, verified.content
    assert LoginSession.objects.filter(user=anna, pk=verified.json()["session"]).exists()


def test_the_local_password_still_works_for_a_linked_user(project: JWKS, anna: User) -> None:
    response = APIClient().post("/api/v1/auth/login/", {"email": anna.email, "password": PASSWORD})
    assert response.status_code == 200


# --- Refused tokens ----------------------------------------------------------------------------------------


def test_a_tampered_signature_is_refused(project: JWKS, anna: User, rsa_key: Any) -> None:
    head, body, signature = token(project, rsa_key).split(".")
    forged_body = b64(json.dumps(claims(project, sub=str(uuid.uuid4()))).encode())
    refused_alike(exchange(f"{head}.{forged_body}.{signature}"))
    flipped = signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")
    refused_alike(exchange(f"{head}.{body}.{flipped}"))
    assert SecurityEvent.objects.filter(kind=Kind.LOGIN_FAILED, detail="supabase: bad signature").count() == 2


def test_a_token_signed_with_another_key_is_refused(project: JWKS, anna: User, other_rsa_key: Any) -> None:
    refused_alike(exchange(token(project, other_rsa_key)))


def test_a_token_naming_an_unknown_key_is_refused(project: JWKS, anna: User, other_rsa_key: Any) -> None:
    refused_alike(exchange(token(project, other_rsa_key, kid="someone-elses")))


def test_an_expired_token_is_refused(project: JWKS, anna: User, rsa_key: Any) -> None:
    now = int(time.time())
    refused_alike(exchange(token(project, rsa_key, iat=now - 7200, exp=now - 3600)))
    assert SecurityEvent.objects.filter(kind=Kind.LOGIN_FAILED, detail="supabase: expired").exists()


def test_a_token_issued_in_the_future_is_refused(project: JWKS, anna: User, rsa_key: Any) -> None:
    now = int(time.time())
    refused_alike(exchange(token(project, rsa_key, iat=now + 600, nbf=now + 600)))


def test_a_token_for_another_audience_is_refused(project: JWKS, anna: User, rsa_key: Any) -> None:
    refused_alike(exchange(token(project, rsa_key, aud="anon")))


def test_a_token_of_another_issuer_is_refused(project: JWKS, anna: User, rsa_key: Any) -> None:
    refused_alike(exchange(token(project, rsa_key, iss="https://other.supabase.co/auth/v1")))


def test_a_token_without_expiry_is_refused(project: JWKS, anna: User, rsa_key: Any) -> None:
    refused_alike(exchange(token(project, rsa_key, exp=None)))


def test_a_subject_that_is_not_a_uuid_is_refused(project: JWKS, anna: User, rsa_key: Any) -> None:
    refused_alike(exchange(token(project, rsa_key, sub="anna")))


def test_an_unsigned_token_is_refused(project: JWKS, anna: User) -> None:
    refused_alike(exchange(hand_signed(project, alg="none", key=None)))


def test_an_hs256_token_keyed_with_the_public_key_is_refused(project: JWKS, anna: User, rsa_key: Any) -> None:
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    refused_alike(exchange(hand_signed(project, alg="HS256", key=pem)))
    with override_settings(SUPABASE_JWT_SECRET=SECRET):
        refused_alike(exchange(hand_signed(project, alg="HS256", key=pem)))


def test_an_hs256_token_is_accepted_only_when_the_projects_secret_is_configured(project: JWKS, anna: User) -> None:
    signed = token(project, SECRET, alg="HS256")
    refused_alike(exchange(signed))
    with override_settings(SUPABASE_JWT_SECRET=SECRET):
        refused_alike(exchange(token(project, "another-secret-of-at-least-32-characters!!", alg="HS256")))
        assert exchange(signed).status_code == 200


def test_garbage_is_refused(project: JWKS, anna: User) -> None:
    refused_alike(exchange("not-a-jwt"))
    assert APIClient().post(URL, {}).status_code == 400


# --- Refused users: one answer, whatever the reason ----------------------------------------------------------


def test_an_unknown_subject_is_refused(project: JWKS, anna: User, rsa_key: Any) -> None:
    refused_alike(exchange(token(project, rsa_key, sub=str(uuid.uuid4()))), supabase_service.NOT_LINKED)
    assert SecurityEvent.objects.filter(kind=Kind.LOGIN_FAILED, user=None, detail__endswith="not linked").exists()


def test_a_user_not_linked_is_refused_even_with_the_same_email(project: JWKS, rsa_key: Any) -> None:
    UserFactory(email="anna@supabase.example")  # the token's email: never used to link
    refused_alike(exchange(token(project, rsa_key)), supabase_service.NOT_LINKED)


def test_an_inactive_or_non_staff_linked_user_is_refused_alike(project: JWKS, anna: User, rsa_key: Any) -> None:
    User.objects.filter(pk=anna.pk).update(is_active=False)
    inactive = exchange(token(project, rsa_key))
    User.objects.filter(pk=anna.pk).update(is_active=True, is_staff=False)
    not_staff = exchange(token(project, rsa_key))
    unknown = exchange(token(project, rsa_key, sub=str(uuid.uuid4())))
    for response in (inactive, not_staff):
        refused_alike(response, supabase_service.NOT_LINKED)
    assert inactive.content == not_staff.content == unknown.content
    details = set(SecurityEvent.objects.filter(kind=Kind.LOGIN_FAILED, user=anna).values_list("detail", flat=True))
    assert details == {f"supabase {SUBJECT}: inactive", f"supabase {SUBJECT}: not staff"}


def test_a_locked_out_user_is_refused_with_429(project: JWKS, anna: User, rsa_key: Any, settings: Any) -> None:
    for _ in range(settings.LOCKOUT_THRESHOLD):
        APIClient().post("/api/v1/auth/login/", {"email": anna.email, "password": "wrong"})
    assert exchange(token(project, rsa_key)).status_code == 429


def test_the_exchange_is_throttled_per_ip_like_the_login(project: JWKS, monkeypatch: pytest.MonkeyPatch) -> None:
    rates = {"login_ip": "2/min", "login_account": "100/min", "email_ip": "100/min", "email_account": "100/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    assert [exchange("not-a-jwt").status_code for _ in range(3)] == [401, 401, 429]


# --- Configuration and outages -----------------------------------------------------------------------------


@override_settings(SUPABASE_URL="")
def test_without_configuration_the_endpoint_answers_404() -> None:
    response = APIClient().post(URL, {"access_token": "x"})
    assert response.status_code == 404
    assert response.json() == {"detail": "Supabase sign-in is not configured."}


def test_a_jwks_endpoint_that_is_down_answers_503_saying_when_to_try_again(
    project: JWKS, anna: User, rsa_key: Any
) -> None:
    project.down = True
    response = exchange(token(project, rsa_key))
    assert response.status_code == 503
    assert response.json() == {"detail": supabase_service.UNAVAILABLE}
    assert response["Retry-After"] == "30"
    assert not LoginSession.objects.exists()


def test_a_jwks_endpoint_that_cannot_be_reached_answers_503(project: JWKS, anna: User, rsa_key: Any) -> None:
    signed = token(project, rsa_key)
    project.close()
    assert exchange(signed).status_code == 503


def test_a_jwks_endpoint_without_keys_answers_503(project: JWKS, anna: User, rsa_key: Any) -> None:
    project.keys = []
    assert exchange(token(project, rsa_key)).status_code == 503


def test_the_token_appears_in_no_log_line_nor_event(
    project: JWKS,
    anna: User,
    rsa_key: Any,
    log_output: io.StringIO,  # noqa: F811
) -> None:
    expired = token(project, rsa_key, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)
    good = token(project, rsa_key)
    exchange(expired)
    exchange(good)
    project.down = True
    supabase_service._jwks_client.cache_clear()
    exchange(good)
    output = log_output.getvalue()
    assert "supabase" in output.lower()  # the outage was logged...
    for signed in (expired, good):
        assert signed not in output  # ...without the token
        for part in signed.split("."):
            assert part not in output
        assert not SecurityEvent.objects.filter(detail__contains=signed.split(".")[2][:20]).exists()


# --- Linking, by administrators only --------------------------------------------------------------------------


def test_linking_and_unlinking_are_security_events(admin: User) -> None:
    user = UserFactory(email="bob@example.com")
    call_command("link_identity", "bob@example.com", str(SUBJECT).upper(), "--by", admin.email, stdout=io.StringIO())
    identity = ExternalIdentity.objects.get(user=user)
    assert (identity.provider, identity.subject, identity.linked_by) == ("supabase", str(SUBJECT), admin)
    call_command("link_identity", "bob@example.com", "--unlink", "--by", admin.email, stdout=io.StringIO())
    assert not ExternalIdentity.objects.exists()
    kinds = list(SecurityEvent.objects.filter(user=user).order_by("id").values_list("kind", "detail"))
    assert kinds == [
        (Kind.IDENTITY_LINKED, f"supabase:{SUBJECT} by admin@example.com"),
        (Kind.IDENTITY_UNLINKED, f"supabase:{SUBJECT} by admin@example.com"),
    ]


def test_only_an_administrator_may_link(admin: User) -> None:
    UserFactory(email="bob@example.com")
    UserFactory(email="mallory@example.com")
    with pytest.raises(CommandError, match="Only an administrator"):
        call_command("link_identity", "bob@example.com", str(SUBJECT), "--by", "mallory@example.com")
    assert not ExternalIdentity.objects.exists()


def test_a_holder_of_the_permission_may_link() -> None:
    from django.contrib.auth.models import Permission

    holder = UserFactory(email="security@example.com")
    holder.user_permissions.add(Permission.objects.get(codename="add_externalidentity"))
    UserFactory(email="bob@example.com")
    call_command("link_identity", "bob@example.com", str(SUBJECT), "--by", holder.email, stdout=io.StringIO())
    assert ExternalIdentity.objects.filter(subject=str(SUBJECT)).exists()


def test_a_supabase_user_links_to_one_user_and_a_user_to_one_supabase_user(admin: User, anna: User) -> None:
    UserFactory(email="bob@example.com")
    with pytest.raises(CommandError, match="already linked to a user"):
        call_command("link_identity", "bob@example.com", str(SUBJECT), "--by", admin.email)
    with pytest.raises(CommandError, match="already linked to an account"):
        call_command("link_identity", anna.email, str(uuid.uuid4()), "--by", admin.email)
    with pytest.raises(CommandError, match="UUID"):
        call_command("link_identity", "bob@example.com", "not-a-uuid", "--by", admin.email)


def test_the_database_refuses_a_second_link_of_one_subject(admin: User, anna: User) -> None:
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        ExternalIdentity.objects.create(provider="supabase", subject=str(SUBJECT), user=admin)
    with pytest.raises(IntegrityError), transaction.atomic():
        ExternalIdentity.objects.create(provider="supabase", subject=str(uuid.uuid4()), user=anna)


# --- The schema tells the truth ------------------------------------------------------------------------------


def test_the_exchange_answers_as_the_schema_describes(project: JWKS, anna: User, rsa_key: Any) -> None:
    from openapi_core import OpenAPI

    from portfolio_site.tests.test_schema import ContractClient

    contract = ContractClient(OpenAPI.from_dict(json.loads(APIClient().get("/api/schema/?format=json").content)))
    assert "access" in contract.post(URL, {"access_token": token(project, rsa_key)}, expect=200)
    contract.post(URL, {"access_token": token(project, rsa_key, aud="anon")}, expect=401, check_request=True)
    contract.post(URL, {}, expect=400)
    enable_two_factor(anna)
    assert contract.post(URL, {"access_token": token(project, rsa_key)}, expect=200)["two_factor_required"] is True
    project.down = True
    supabase_service._jwks_client.cache_clear()
    contract.post(URL, {"access_token": token(project, rsa_key)}, expect=503, check_request=True)
    with override_settings(SUPABASE_URL=""):
        contract.post(URL, {"access_token": "x"}, expect=404, check_request=True)
