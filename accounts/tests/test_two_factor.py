import datetime
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pyotp
import pytest
import time_machine
from cryptography.fernet import Fernet
from django.core import mail
from django.test import Client as DjangoClient
from django.test import override_settings
from openapi_core import OpenAPI
from rest_framework.test import APIClient

from accounts.models import LoginSession, RecoveryCode, SecurityEvent, TOTPDevice, User
from accounts.services.events import ClientInfo
from accounts.services.two_factor import recovery_code_hash, totp_confirm, totp_enrol
from accounts.tests.factories import PASSWORD, UserFactory, access_token_for
from portfolio_site.crypto import decrypt
from portfolio_site.tests.test_schema import ContractClient

pytestmark = pytest.mark.django_db
STATUS = "/api/v1/auth/2fa/"
ENROL = "/api/v1/auth/2fa/totp/enrol/"
CONFIRM = "/api/v1/auth/2fa/totp/confirm/"
DISABLE = "/api/v1/auth/2fa/totp/disable/"
VERIFY = "/api/v1/auth/2fa/verify/"
LOGIN = "/api/v1/auth/login/"
Kind = SecurityEvent.Kind
# Mid-way through a 30-second time step, so that a step either side is a whole step away.
NOW = datetime.datetime(2026, 3, 2, 9, 0, 15, tzinfo=datetime.UTC)


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def anna() -> User:
    return UserFactory(email="anna@example.com")


def signed_in(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(user)}")
    return client


def enable_two_factor(user: User) -> tuple[pyotp.TOTP, list[str]]:
    """Turns two-factor on; confirmed with the previous step's code, so the current step is still unspent."""
    totp = pyotp.TOTP(totp_enrol(user=user).secret)
    codes = totp_confirm(user=user, code=totp.at(time.time(), counter_offset=-1), client=ClientInfo())
    return totp, codes


def challenge_for(user: User) -> str:
    response = APIClient().post(LOGIN, {"email": user.email, "password": PASSWORD})
    assert response.status_code == 200, response.content
    return str(response.json()["challenge"])


def verify(challenge: str, ip: str = "203.0.113.7", **answer: str) -> Any:
    return APIClient().post(VERIFY, {"challenge": challenge, **answer}, REMOTE_ADDR=ip)


def step_offset_code(totp: pyotp.TOTP, offset: int) -> str:
    return totp.at(time.time(), counter_offset=offset)


# --- Enrolling and confirming ----------------------------------------------------------------------


def test_enrol_returns_a_secret_and_its_uri_and_stores_the_secret_encrypted(anna: User) -> None:
    response = signed_in(anna).post(ENROL)
    assert response.status_code == 200, response.content
    body = response.json()
    uri = urlparse(body["provisioning_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == "/Portfolio back-office:anna@example.com"
    assert parse_qs(uri.query)["secret"] == [body["secret"]]
    assert parse_qs(uri.query)["issuer"] == ["Portfolio back-office"]
    device = TOTPDevice.objects.get(user=anna)
    assert body["secret"] not in device.encrypted_secret
    assert decrypt(device.encrypted_secret) == body["secret"]
    assert device.confirmed_at is None
    assert signed_in(anna).get(STATUS).json() == {"enabled": False, "recovery_codes_left": 0}


def test_enrolling_again_replaces_an_unconfirmed_secret(anna: User) -> None:
    first = signed_in(anna).post(ENROL).json()["secret"]
    second = signed_in(anna).post(ENROL).json()["secret"]
    assert first != second
    assert decrypt(TOTPDevice.objects.get(user=anna).encrypted_secret) == second


def test_enrol_is_refused_with_409_while_two_factor_is_on(anna: User, clock: Any) -> None:
    enable_two_factor(anna)
    response = signed_in(anna).post(ENROL)
    assert response.status_code == 409
    assert TOTPDevice.objects.get(user=anna).confirmed_at is not None


def test_confirm_turns_two_factor_on_and_shows_ten_recovery_codes_stored_only_hashed(anna: User, clock: Any) -> None:
    client = signed_in(anna)
    totp = pyotp.TOTP(client.post(ENROL).json()["secret"])
    response = client.post(CONFIRM, {"code": totp.now()})
    assert response.status_code == 200, response.content
    codes = response.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    stored = set(RecoveryCode.objects.filter(user=anna).values_list("code_hash", flat=True))
    assert stored == {recovery_code_hash(user_pk=anna.pk, code=code) for code in codes}
    assert not any(code in code_hash for code in codes for code_hash in stored)
    assert TOTPDevice.objects.get(user=anna).confirmed_at is not None
    assert SecurityEvent.objects.filter(kind=Kind.TWO_FACTOR_ENABLED, user=anna).count() == 1
    assert client.get(STATUS).json() == {"enabled": True, "recovery_codes_left": 10}


def test_confirm_with_a_wrong_code_is_refused_with_400_and_two_factor_stays_off(anna: User, clock: Any) -> None:
    client = signed_in(anna)
    totp = pyotp.TOTP(client.post(ENROL).json()["secret"])
    response = client.post(CONFIRM, {"code": step_offset_code(totp, 2)})
    assert response.status_code == 400
    assert "code" in response.json()
    assert TOTPDevice.objects.get(user=anna).confirmed_at is None
    assert not RecoveryCode.objects.exists()


def test_confirm_without_a_pending_enrolment_is_refused_with_409(anna: User, clock: Any) -> None:
    assert signed_in(anna).post(CONFIRM, {"code": "123456"}).status_code == 409
    totp, _ = enable_two_factor(anna)
    assert signed_in(anna).post(CONFIRM, {"code": totp.now()}).status_code == 409


def test_two_factor_endpoints_need_authentication() -> None:
    anonymous = APIClient()
    assert anonymous.get(STATUS).status_code == 401
    assert anonymous.post(ENROL).status_code == 401
    assert anonymous.post(CONFIRM, {"code": "123456"}).status_code == 401
    assert anonymous.post(DISABLE, {"code": "123456"}).status_code == 401


# --- Logging in with the second factor -------------------------------------------------------------


def test_password_then_totp_code_logs_in_with_tokens(anna: User, clock: Any) -> None:
    totp, _ = enable_two_factor(anna)
    response = verify(challenge_for(anna), code=totp.now())
    assert response.status_code == 200, response.content
    session = LoginSession.objects.get(pk=response.json()["session"])
    assert session.user == anna
    assert (
        SecurityEvent.objects.get(kind=Kind.LOGIN_SUCCEEDED, user=anna).detail == "method: password + two-factor (totp)"
    )


def test_a_challenge_is_answered_once_only(anna: User, clock: Any) -> None:
    totp, codes = enable_two_factor(anna)
    challenge = challenge_for(anna)
    assert verify(challenge, code=totp.now()).status_code == 200
    assert verify(challenge, recovery_code=codes[0]).status_code == 401
    assert RecoveryCode.objects.filter(user=anna, used_at__isnull=True).count() == 10


def test_a_code_one_step_either_side_is_accepted_but_not_two(anna: User, clock: Any) -> None:
    totp, _ = enable_two_factor(anna)  # spent the step before now
    assert verify(challenge_for(anna), code=step_offset_code(totp, 2)).status_code == 401
    assert verify(challenge_for(anna), code=step_offset_code(totp, 1)).status_code == 200
    clock.shift(datetime.timedelta(seconds=150))  # now five steps on: the step before it is unspent
    assert verify(challenge_for(anna), code=step_offset_code(totp, -2)).status_code == 401
    assert verify(challenge_for(anna), code=step_offset_code(totp, -1)).status_code == 200


def test_the_same_time_step_is_never_accepted_twice(anna: User, clock: Any) -> None:
    totp, _ = enable_two_factor(anna)
    code = totp.now()
    assert verify(challenge_for(anna), code=code).status_code == 200
    replayed = verify(challenge_for(anna), code=code)
    assert replayed.status_code == 401
    assert TOTPDevice.objects.get(user=anna).last_used_step == int(time.time()) // 30


def test_a_code_of_a_step_older_than_the_last_accepted_one_is_refused(anna: User, clock: Any) -> None:
    totp, _ = enable_two_factor(anna)
    assert verify(challenge_for(anna), code=step_offset_code(totp, 1)).status_code == 200
    assert verify(challenge_for(anna), code=totp.now()).status_code == 401


def test_a_recovery_code_logs_in_once_and_is_marked_used(anna: User, clock: Any) -> None:
    _, codes = enable_two_factor(anna)
    response = verify(challenge_for(anna), recovery_code=codes[3].upper().replace("-", " "))
    assert response.status_code == 200, response.content
    used = RecoveryCode.objects.get(user=anna, used_at__isnull=False)
    assert used.code_hash == recovery_code_hash(user_pk=anna.pk, code=codes[3])
    assert SecurityEvent.objects.filter(kind=Kind.RECOVERY_CODE_USED, user=anna).count() == 1
    assert verify(challenge_for(anna), recovery_code=codes[3]).status_code == 401
    assert signed_in(anna).get(STATUS).json() == {"enabled": True, "recovery_codes_left": 9}


def test_another_users_recovery_code_is_refused(anna: User, clock: Any) -> None:
    enable_two_factor(anna)
    bob = UserFactory(email="bob@example.com")
    _, bobs_codes = enable_two_factor(bob)
    assert verify(challenge_for(anna), recovery_code=bobs_codes[0]).status_code == 401


@override_settings(LOCKOUT_THRESHOLD=3, LOCKOUT_MINUTES=15)
def test_wrong_second_factors_are_401_audited_and_lock_the_address_with_429(anna: User, clock: Any) -> None:
    totp, codes = enable_two_factor(anna)
    challenge = challenge_for(anna)
    wrong = [
        verify(challenge, code=step_offset_code(totp, 5)),
        verify(challenge, recovery_code="0000-0000-0000"),
        verify(challenge, code="12345"),
    ]
    assert {answer.status_code for answer in wrong} == {401}
    assert len({answer.content for answer in wrong}) == 1
    assert SecurityEvent.objects.filter(kind=Kind.TWO_FACTOR_FAILED, user=anna).count() == 3
    locked = verify(challenge, code=totp.now())  # even the right code waits
    assert locked.status_code == 429
    assert 0 < int(locked["Retry-After"]) <= 15 * 60 + 1
    assert SecurityEvent.objects.filter(kind=Kind.LOCKOUT, user=anna).count() == 1
    assert APIClient().post(LOGIN, {"email": anna.email, "password": PASSWORD}).status_code == 429
    assert not LoginSession.objects.exists()
    assert RecoveryCode.objects.filter(user=anna, used_at__isnull=True).count() == len(codes)


def test_a_forged_or_expired_challenge_is_refused_with_401(anna: User, clock: Any) -> None:
    totp, _ = enable_two_factor(anna)
    challenge = challenge_for(anna)
    assert verify(challenge[:-2] + "xx", code=totp.now()).status_code == 401
    clock.shift(datetime.timedelta(seconds=301))
    assert verify(challenge, code=totp.now()).status_code == 401
    assert not LoginSession.objects.exists()


def test_verify_needs_exactly_one_of_code_and_recovery_code(anna: User, clock: Any) -> None:
    totp, codes = enable_two_factor(anna)
    challenge = challenge_for(anna)
    assert verify(challenge).status_code == 400
    assert verify(challenge, code=totp.now(), recovery_code=codes[0]).status_code == 400


def test_recovery_codes_still_work_when_the_totp_secret_cannot_be_decrypted(anna: User, clock: Any) -> None:
    totp, codes = enable_two_factor(anna)
    challenge = challenge_for(anna)
    with override_settings(ENCRYPTION_KEYS=[Fernet.generate_key().decode()]):
        assert verify(challenge, code=totp.now()).status_code == 401
        assert verify(challenge, recovery_code=codes[0]).status_code == 200


def test_no_secret_or_code_is_ever_stored_in_security_events(anna: User, clock: Any) -> None:
    client = signed_in(anna)
    secret = client.post(ENROL).json()["secret"]
    totp = pyotp.TOTP(secret)
    codes = client.post(CONFIRM, {"code": step_offset_code(totp, -1)}).json()["recovery_codes"]
    verify(challenge_for(anna), code=step_offset_code(totp, 4))
    verify(challenge_for(anna), recovery_code=codes[0])
    clock.shift(datetime.timedelta(seconds=30))
    signed_in(anna).post(DISABLE, {"code": totp.now()})
    spoken = [secret, *codes, step_offset_code(totp, 4), totp.now()]
    for event in SecurityEvent.objects.all():
        recorded = f"{event.detail}{event.email}{event.user_agent}"
        assert not any(value in recorded for value in spoken), recorded
    assert set(SecurityEvent.objects.values_list("kind", flat=True)) >= {
        Kind.TWO_FACTOR_ENABLED,
        Kind.TWO_FACTOR_FAILED,
        Kind.RECOVERY_CODE_USED,
        Kind.TWO_FACTOR_DISABLED,
    }


def test_verify_is_throttled_per_ip_with_429(anna: User, clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from rest_framework.throttling import SimpleRateThrottle

    rates = {"login_ip": "2/min", "login_account": "100/min", "email_ip": "100/min", "email_account": "100/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    verify("forged", ip="198.51.100.1", code="123456")
    verify("forged", ip="198.51.100.1", code="123456")
    throttled = verify("forged", ip="198.51.100.1", code="123456")
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert verify("forged", ip="198.51.100.2", code="123456").status_code == 401


# --- Disabling -----------------------------------------------------------------------------------------------


def test_disable_with_a_totp_code_removes_the_authenticator_and_the_recovery_codes(anna: User, clock: Any) -> None:
    totp, _ = enable_two_factor(anna)
    client = signed_in(anna)
    response = client.post(DISABLE, {"code": totp.now()})
    assert response.status_code == 204
    assert not TOTPDevice.objects.filter(user=anna).exists()
    assert not RecoveryCode.objects.filter(user=anna).exists()
    assert SecurityEvent.objects.get(kind=Kind.TWO_FACTOR_DISABLED, user=anna).detail == "proven by totp"
    assert client.get(STATUS).json() == {"enabled": False, "recovery_codes_left": 0}
    assert "access" in APIClient().post(LOGIN, {"email": anna.email, "password": PASSWORD}).json()


def test_disable_with_a_recovery_code(anna: User, clock: Any) -> None:
    _, codes = enable_two_factor(anna)
    assert signed_in(anna).post(DISABLE, {"code": codes[9]}).status_code == 204
    assert not TOTPDevice.objects.filter(user=anna).exists()


def test_disable_with_a_wrong_or_replayed_code_is_refused_with_400_and_audited(anna: User, clock: Any) -> None:
    totp, _ = enable_two_factor(anna)
    client = signed_in(anna)
    assert client.post(DISABLE, {"code": step_offset_code(totp, 3)}).status_code == 400
    assert client.post(DISABLE, {"code": step_offset_code(totp, -1)}).status_code == 400  # spent by the confirm
    assert SecurityEvent.objects.filter(kind=Kind.TWO_FACTOR_FAILED, user=anna).count() == 2
    assert client.get(STATUS).json() == {"enabled": True, "recovery_codes_left": 10}


@override_settings(LOCKOUT_THRESHOLD=2)
def test_repeated_wrong_codes_to_disable_lock_with_429(anna: User, clock: Any) -> None:
    totp, _ = enable_two_factor(anna)
    client = signed_in(anna)
    for _ in range(2):
        client.post(DISABLE, {"code": "000000"})
    locked = client.post(DISABLE, {"code": totp.now()})
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) > 0
    assert TOTPDevice.objects.filter(user=anna, confirmed_at__isnull=False).exists()


def test_disable_when_two_factor_is_off_is_refused_with_409(anna: User) -> None:
    assert signed_in(anna).post(DISABLE, {"code": "123456"}).status_code == 409


# --- The schema tells the truth ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi(django_db_blocker: Any) -> OpenAPI:
    with django_db_blocker.unblock():
        response = DjangoClient().get("/api/schema/?format=json")
    return OpenAPI.from_dict(json.loads(response.content))


def test_code_and_two_factor_endpoints_match_the_schema(
    anna: User, clock: Any, openapi: OpenAPI, django_capture_on_commit_callbacks: Any
) -> None:
    api, anonymous = ContractClient(openapi, anna), ContractClient(openapi)
    assert api.get(STATUS, expect=200) == {"enabled": False, "recovery_codes_left": 0}
    totp = pyotp.TOTP(api.post(ENROL, expect=200)["secret"])
    assert "code" in api.post(CONFIRM, {"code": step_offset_code(totp, 3)}, expect=400)
    codes = api.post(CONFIRM, {"code": step_offset_code(totp, -1)}, expect=200)["recovery_codes"]
    assert "detail" in api.post(ENROL, expect=409)
    assert "detail" in anonymous.get(STATUS, expect=401)

    with django_capture_on_commit_callbacks(execute=True):
        anonymous.post("/api/v1/auth/otp/request/", {"email": anna.email}, expect=202)
    code = next(line.strip() for line in mail.outbox[-1].body.splitlines() if line.strip().isdigit())
    assert "detail" in anonymous.post("/api/v1/auth/otp/login/", {"email": anna.email, "code": "x"}, expect=401)
    challenge = anonymous.post("/api/v1/auth/otp/login/", {"email": anna.email, "code": code}, expect=200)
    assert "detail" in anonymous.post(VERIFY, {"challenge": challenge["challenge"], "code": "000000"}, expect=401)
    assert anonymous.post(VERIFY, {"challenge": challenge["challenge"], "code": totp.now()}, expect=200)["access"]

    assert "code" in api.post(DISABLE, {"code": "nope"}, expect=400)
    api.post(DISABLE, {"code": codes[0]}, expect=204)
    assert "detail" in api.post(DISABLE, {"code": codes[1]}, expect=409)
    with override_settings(LOCKOUT_THRESHOLD=1):
        anonymous.post("/api/v1/auth/otp/login/", {"email": "x@example.com", "code": "1"}, expect=401)
        locked = anonymous.post("/api/v1/auth/otp/login/", {"email": "x@example.com", "code": "1"}, expect=429)
    assert "detail" in locked
