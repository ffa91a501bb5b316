"""With the production settings, real responses of every door (the API, the admin, the API docs, the health probes)
carry the security headers: HSTS (a year, subdomains, preload), nosniff, frame deny, a referrer policy, a
cross-origin opener policy and a content security policy with no inline script and no framing.

Django starts in a fresh process with the production settings (as test_settings does) and answers through its test
client over "HTTPS" (X-Forwarded-Proto, as the load balancer says it): the responses are the ones a browser gets.
The database is a closed loopback port, so nothing here waits on one; the pages read need none. The one setting
changed: static files are named by Django's plain storage, since the hashed manifest is made by collectstatic when
the image is built (Dockerfile), not here.
"""

import json
from typing import Any

import pytest

from portfolio_site.tests.test_settings import STRONG_SECRET, run_django

PATHS = {
    "api": "/api/v1/clients/",  # 401 to an anonymous caller: still a real answer of the API door
    "api_schema": "/api/schema/",
    "api_docs": "/api/docs/",
    "admin_login": "/admin/login/",
    "health": "/health/live",
}
FETCH = (
    "import json, django; django.setup(); from django.conf import settings; from django.test import Client; "
    "from django.test.utils import override_settings; c = Client(); paths = json.loads({paths!r}); out = {{}}\n"
    "plain = {{'BACKEND': 'django.contrib.staticfiles.storage.StaticFilesStorage'}}\n"
    "storages = {{**settings.STORAGES, 'staticfiles': plain}}\n"
    "override_settings(STORAGES=storages).enable()\n"
    "for name, path in paths.items():\n"
    "    r = c.get(path, headers={{'X-Forwarded-Proto': 'https'}})\n"
    "    out[name] = {{'status': r.status_code, 'headers': dict(r.headers.items())}}\n"
    "print(json.dumps(out))"
)


@pytest.fixture(scope="module")
def responses() -> dict[str, Any]:
    code = FETCH.format(paths=json.dumps(PATHS))
    result = run_django(
        code, SECRET_KEY=STRONG_SECRET, ALLOWED_HOSTS="testserver", DATABASE_URL="postgres://app@127.0.0.1:9/none"
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def directives(policy: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for part in policy.split(";"):
        if part.strip():
            name, *sources = part.split()
            found[name] = sources
    return found


@pytest.mark.parametrize("door", list(PATHS))
def test_production_responses_answer_without_a_server_error(responses: dict[str, Any], door: str) -> None:
    assert responses[door]["status"] < 500
    assert responses[door]["status"] != 301  # served over HTTPS, not redirected to it


@pytest.mark.parametrize("door", list(PATHS))
def test_production_responses_carry_hsts_for_a_year_with_subdomains_and_preload(
    responses: dict[str, Any], door: str
) -> None:
    assert responses[door]["headers"]["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


@pytest.mark.parametrize("door", list(PATHS))
def test_production_responses_forbid_sniffing_framing_and_cross_origin_openers(
    responses: dict[str, Any], door: str
) -> None:
    headers = responses[door]["headers"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.parametrize("door", list(PATHS))
def test_production_responses_carry_a_content_security_policy_without_inline_scripts_or_framing(
    responses: dict[str, Any], door: str
) -> None:
    policy = directives(responses[door]["headers"]["Content-Security-Policy"])
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    scripts = policy.get("script-src", policy["default-src"])
    assert "'unsafe-inline'" not in scripts
    assert "'unsafe-eval'" not in scripts
    assert "'unsafe-inline'" not in policy["default-src"]
