"""The security state (lockouts, throttles, spent challenges) survives a cache outage, and the other
findings of the attack on the login doors: a token naming another user's session, the idle limit on access
tokens, registration that tells no one which addresses have accounts."""

import datetime
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
import time_machine
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import LoginSession, SecurityCounter, User
from accounts.services.counters import counter_hit
from accounts.services.events import ClientInfo
from accounts.services.two_factor import totp_confirm, totp_enrol
from accounts.tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db
LOGIN = "/api/v1/auth/login/"
VERIFY = "/api/v1/auth/2fa/verify/"
ME = "/api/v1/auth/me/"
REGISTER = "/api/v1/auth/register/"


@pytest.fixture
def anna() -> User:
    return UserFactory(email="anna@example.com")


def login(email: str, password: str = PASSWORD, ip: str = "203.0.113.7") -> Any:
    return APIClient().post(LOGIN, {"email": email, "password": password}, REMOTE_ADDR=ip)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Any) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A redis-server of the test's own, on a free port, so that stopping it disturbs no one else."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp_path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield process, port
    process.kill()
    process.wait(timeout=10)


def _redis_cache(port: int) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 0.2,
                "SOCKET_TIMEOUT": 0.2,
            },
        }
    }


def test_a_redis_outage_in_the_middle_of_a_run_of_logins_does_not_lift_the_lockout(
    anna: User, private_redis: Any, settings: Any
) -> None:
    process, port = private_redis
    settings.CACHES = _redis_cache(port)
    settings.LOCKOUT_THRESHOLD = 5
    cache.set("probe", 1)
    assert cache.get("probe") == 1  # the private Redis is really serving
    for _ in range(3):
        assert login(anna.email, "wrong").status_code == 401

    process.kill()
    process.wait(timeout=10)
    assert cache.get("probe") is None  # the cache now forgives: every read a miss

    for _ in range(2):
        assert login(anna.email, "wrong").status_code == 401
    locked = login(anna.email)  # the right password, after the fifth failure
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) > 0


def test_a_redis_outage_does_not_lift_the_throttles(
    anna: User, private_redis: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rest_framework.throttling import SimpleRateThrottle

    rates = {"login_ip": "3/min", "login_account": "100/min", "email_ip": "100/min", "email_account": "100/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    process, port = private_redis
    settings.CACHES = _redis_cache(port)
    login("a@example.com", "x")
    process.kill()
    process.wait(timeout=10)
    login("b@example.com", "x")
    login("c@example.com", "x")
    assert login(anna.email).status_code == 429


def test_a_spent_two_factor_challenge_stays_spent_through_a_redis_outage(
    anna: User, private_redis: Any, settings: Any
) -> None:
    totp = pyotp.TOTP(totp_enrol(user=anna).secret)
    totp_confirm(user=anna, code=totp.at(time.time(), counter_offset=-1), client=ClientInfo())
    process, port = private_redis
    settings.CACHES = _redis_cache(port)
    challenge = login(anna.email).json()["challenge"]
    assert APIClient().post(VERIFY, {"challenge": challenge, "code": totp.now()}).status_code == 200
    process.kill()
    process.wait(timeout=10)
    replay = APIClient().post(VERIFY, {"challenge": challenge, "code": totp.at(time.time(), counter_offset=1)})
    assert replay.status_code == 401


def test_each_hit_counts_one_more_within_the_window() -> None:
    window = datetime.timedelta(minutes=5)
    counts = [counter_hit(key="k", window=window).count for _ in range(7)]
    assert counts == [1, 2, 3, 4, 5, 6, 7]


def test_a_counter_starts_again_once_its_window_has_ended() -> None:
    window = datetime.timedelta(minutes=5)
    counter_hit(key="k", window=window)
    counter_hit(key="k", window=window)
    with time_machine.travel(timezone.now() + window + datetime.timedelta(seconds=1)):
        assert counter_hit(key="k", window=window).count == 1


def test_purging_deletes_only_counters_whose_window_has_ended(capsys: pytest.CaptureFixture[str]) -> None:
    counter_hit(key="old", window=datetime.timedelta(seconds=1))
    counter_hit(key="live", window=datetime.timedelta(hours=1))
    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=1)):
        call_command("purge_security_counters")
    assert list(SecurityCounter.objects.values_list("key", flat=True)) == ["live"]
    assert "1" in capsys.readouterr().out


# --- Tokens and sessions -------------------------------------------------------------------------


def test_a_token_naming_another_users_session_is_refused(anna: User) -> None:
    mallory = UserFactory(email="mallory@example.com")
    annas_session = login(anna.email).json()["session"]
    forged = AccessToken.for_user(mallory)  # signed as any token of ours, but pointing at Anna's session
    forged["sid"] = annas_session
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert client.get(ME).status_code == 401


def test_a_token_whose_sid_is_not_a_session_id_is_refused_not_a_500(anna: User) -> None:
    token = AccessToken.for_user(anna)
    token["sid"] = "not-a-uuid"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get(ME).status_code == 401


def test_the_idle_limit_holds_for_access_tokens_too(anna: User, settings: Any) -> None:
    settings.SIMPLE_JWT = {**settings.SIMPLE_JWT, "ACCESS_TOKEN_LIFETIME": datetime.timedelta(hours=2)}
    tokens = login(anna.email).json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert client.get(ME).status_code == 200
    later = timezone.now() + datetime.timedelta(minutes=settings.SESSION_IDLE_MINUTES + 1)
    with time_machine.travel(later):
        cache.clear()  # what the cache vouched for lasts a minute
        refused = client.get(ME)
    assert refused.status_code == 401
    assert "inactivity" in refused.json()["detail"]
    assert LoginSession.objects.get(pk=tokens["session"]).end_reason == LoginSession.EndReason.IDLE


def test_a_live_sessions_end_reason_is_null_as_the_schema_says(anna: User) -> None:
    tokens = login(anna.email).json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    (row,) = client.get("/api/v1/auth/sessions/").json()["results"]
    assert row["end_reason"] is None
    assert row["channel"] == "api"


# --- Registration --------------------------------------------------------------------------------


def test_registration_answers_alike_for_a_known_and_an_unknown_address(anna: User) -> None:
    known = APIClient().post(REGISTER, {"email": anna.email, "password": "x"})
    unknown = APIClient().post(REGISTER, {"email": "nobody@example.com", "password": "x"})
    assert known.status_code == unknown.status_code == 401
    assert known.json() == unknown.json()
    assert "exists" not in known.content.decode()


def test_registration_is_throttled(anna: User, monkeypatch: pytest.MonkeyPatch) -> None:
    from rest_framework.throttling import SimpleRateThrottle

    rates = {"login_ip": "2/min", "login_account": "100/min", "email_ip": "100/min", "email_account": "100/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    for _ in range(2):
        APIClient().post(REGISTER, {"email": "x@example.com", "password": "x"})
    assert APIClient().post(REGISTER, {"email": "y@example.com", "password": "x"}).status_code == 429


def test_the_sessions_list_answers_as_the_schema_describes_for_live_and_ended_sessions(anna: User) -> None:
    from openapi_core import OpenAPI

    from portfolio_site.tests.test_schema import ContractClient

    schema = json.loads(APIClient().get("/api/schema/?format=json").content)
    contract = ContractClient(OpenAPI.from_dict(schema), anna)  # opens one live session
    ended = login(anna.email).json()["session"]
    LoginSession.objects.filter(pk=ended).update(revoked_at=timezone.now(), end_reason="logout")
    rows = contract.get("/api/v1/auth/sessions/", expect=200)["results"]
    assert sorted(str(row["end_reason"]) for row in rows) == ["None", "logout"]
