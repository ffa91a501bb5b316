"""Settings come from the environment: production refuses weak ones, and `check --deploy` is clean.

Each case starts Django in a fresh process with an environment built from scratch, so nothing of the
developer's or the test run's environment leaks in.
"""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings

BASE_DIR = Path(settings.BASE_DIR)
PRODUCTION = "portfolio_site.settings.production"
STRONG_SECRET = secrets.token_urlsafe(50)
# What production needs besides a secret; Redis and PostgreSQL are connected to lazily, so nothing here talks to them.
PRODUCTION_SERVICES = {
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "DATABASE_URL": "postgres://app@db.internal:5432/portfolio",
}
PRINT_SETTINGS = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'CACHES': s.CACHES, 'DATABASES': s.DATABASES, 'DEBUG': s.DEBUG}, default=str))"
)


def dotenv_defines(name: str) -> bool:
    """base.py reads BASE_DIR/.env for variables the environment leaves unset; a test unsetting one must know."""
    dotenv = BASE_DIR / ".env"
    if not dotenv.exists():
        return False
    return any(line.strip().startswith(f"{name}=") for line in dotenv.read_text().splitlines())


def run_django(code: str, module: str = PRODUCTION, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": module, "PYTHONDONTWRITEBYTECODE": "1"}
    if module == PRODUCTION:
        env.update(PRODUCTION_SERVICES)
    env.update(environ)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def start_django(**environ: str) -> subprocess.CompletedProcess[str]:
    return run_django("import django; django.setup()", **environ)


def settings_of(module: str = PRODUCTION, **environ: str) -> dict:
    result = run_django(PRINT_SETTINGS, module, **environ)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- Production refuses weak settings ----------------------------------------------------------------------


def test_production_starts_with_a_strong_secret_and_debug_off() -> None:
    result = start_django(SECRET_KEY=STRONG_SECRET, DEBUG="false")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("debug", ["true", "1", "on"])
def test_production_refuses_to_start_with_debug_on(debug: str) -> None:
    result = start_django(SECRET_KEY=STRONG_SECRET, DEBUG=debug)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DEBUG must be off in production" in result.stderr


def test_production_refuses_to_start_without_a_secret_key() -> None:
    if dotenv_defines("SECRET_KEY"):
        pytest.skip(".env sets SECRET_KEY, so it cannot be left unset here")
    result = start_django()
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize(
    "secret",
    ["", "x" * 31, "abcde" * 9 + "abcd", "k" * 60, "django-insecure-" + "x" * 40],
    ids=["empty", "31-characters", "49-characters", "one-repeated-character", "django-insecure-prefix"],
)
def test_production_refuses_to_start_with_a_weak_secret_key(secret: str) -> None:
    result = start_django(SECRET_KEY=secret)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY must be set" in result.stderr


def test_production_accepts_a_varied_secret_key_of_exactly_50_characters() -> None:
    assert start_django(SECRET_KEY="abcde" * 10).returncode == 0


def test_production_refuses_to_start_without_encryption_keys() -> None:
    result = start_django(SECRET_KEY=STRONG_SECRET, ENCRYPTION_KEYS="")
    assert result.returncode != 0
    assert "ENCRYPTION_KEYS must be set in production" in result.stderr


def test_production_refuses_to_start_without_redis() -> None:
    result = start_django(SECRET_KEY=STRONG_SECRET, REDIS_URL="")
    assert result.returncode != 0
    assert "REDIS_URL must be set in production" in result.stderr


def test_production_refuses_to_start_with_a_weak_jwt_signing_key() -> None:
    result = start_django(SECRET_KEY=STRONG_SECRET, JWT_SIGNING_KEY="short")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "JWT_SIGNING_KEY must be set" in result.stderr


@pytest.mark.parametrize("url", ["sqlite:////var/lib/portfolio/db.sqlite3", "sqlite://:memory:"])
def test_production_refuses_to_start_on_sqlite(url: str) -> None:
    result = start_django(SECRET_KEY=STRONG_SECRET, DATABASE_URL=url)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DATABASE_URL must name a PostgreSQL database" in result.stderr


def test_production_check_deploy_reports_no_issues() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=BASE_DIR,
        env={
            "PATH": os.environ.get("PATH", ""),
            "DJANGO_SETTINGS_MODULE": PRODUCTION,
            "SECRET_KEY": STRONG_SECRET,
            **PRODUCTION_SERVICES,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNINGS" not in result.stderr + result.stdout


def test_production_redirects_the_api_to_https_but_not_the_health_probes() -> None:
    code = (
        "import json, django; django.setup(); from django.test import Client; c = Client(); "
        "live, api = c.get('/health/live'), c.get('/api/v1/clients/'); "
        "secure = c.get('/health/live', headers={'X-Forwarded-Proto': 'https'}); "
        "print(json.dumps([live.status_code, api.status_code, api.get('Location'), "
        "secure.get('Strict-Transport-Security')]))"
    )
    result = run_django(code, SECRET_KEY=STRONG_SECRET, ALLOWED_HOSTS="testserver")
    assert result.returncode == 0, result.stderr
    live, api, location, hsts = json.loads(result.stdout)
    assert (live, api, location) == (200, 301, "https://testserver/api/v1/clients/")
    assert hsts == "max-age=31536000; includeSubDomains; preload"


# --- The environment picks the cache and the database ------------------------------------------------------


@pytest.mark.parametrize("module", [PRODUCTION, "portfolio_site.settings.test"])
def test_redis_url_switches_the_cache_to_django_redis_that_ignores_outages(module: str) -> None:
    cache = settings_of(module, SECRET_KEY=STRONG_SECRET, REDIS_URL="redis://cache.internal:6380/3")["CACHES"][
        "default"
    ]
    assert cache["BACKEND"] == "django_redis.cache.RedisCache"
    assert cache["LOCATION"] == "redis://cache.internal:6380/3"
    assert cache["OPTIONS"]["IGNORE_EXCEPTIONS"] is True
    assert cache["OPTIONS"]["SOCKET_CONNECT_TIMEOUT"] <= 1
    assert cache["OPTIONS"]["SOCKET_TIMEOUT"] <= 1


def test_without_redis_url_the_development_cache_is_local_memory() -> None:
    if dotenv_defines("REDIS_URL"):
        pytest.skip(".env sets REDIS_URL")
    cache = settings_of("portfolio_site.settings.dev")["CACHES"]["default"]
    assert cache["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"


def test_test_settings_keep_their_own_redis_key_prefix() -> None:
    cache = settings_of("portfolio_site.settings.test", REDIS_URL="redis://127.0.0.1:6379/15")["CACHES"]["default"]
    assert cache["KEY_PREFIX"] == "portfolio-test"


def test_database_url_is_honoured() -> None:
    database = settings_of(
        SECRET_KEY=STRONG_SECRET, DATABASE_URL="postgres://app:s3cret@db.internal:6543/portfolio_prod"
    )["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["HOST"], database["PORT"], database["NAME"]) == ("db.internal", 6543, "portfolio_prod")
    assert (database["USER"], database["PASSWORD"]) == ("app", "s3cret")
    assert database["CONN_HEALTH_CHECKS"] is True


def test_without_database_url_the_database_is_the_projects_sqlite_file() -> None:
    if dotenv_defines("DATABASE_URL"):
        pytest.skip(".env sets DATABASE_URL")
    database = settings_of("portfolio_site.settings.dev")["DATABASES"]["default"]
    # Django's SQLite backend with the project's exact decimal SUM.
    assert database["ENGINE"] == "portfolio_site.sqlite3"
    assert database["NAME"] == str(BASE_DIR / "db.sqlite3")


def test_on_sqlite_a_writer_waits_for_the_lock_in_wal_mode() -> None:
    if dotenv_defines("DATABASE_URL"):
        pytest.skip(".env sets DATABASE_URL")
    options = settings_of("portfolio_site.settings.dev")["DATABASES"]["default"]["OPTIONS"]
    assert options["transaction_mode"] == "IMMEDIATE"
    assert options["timeout"] >= 5
    assert "journal_mode=WAL" in options["init_command"]


def test_development_settings_serve_the_admin_login_page_with_its_static_files() -> None:
    code = (
        "import django; django.setup(); from django.test import Client; c = Client(); "
        "page = c.get('/admin/login/'); css = c.get('/static/admin/css/base.css'); "
        "print(page.status_code, css.status_code)"
    )
    result = run_django(code, "portfolio_site.settings.dev", ALLOWED_HOSTS="testserver")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "200"]
