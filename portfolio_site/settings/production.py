"""Production: refuses DEBUG on, a weak secret, SQLite or no Redis; `manage.py check --deploy` is clean."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import env

# Django's own deployment check (security.W009) asks for 50 characters with at least 5 different ones.
MIN_SECRET_LENGTH = 50
MIN_SECRET_DISTINCT = 5


def _require_strong(name: str, value: str) -> None:
    if len(value) < MIN_SECRET_LENGTH or len(set(value)) < MIN_SECRET_DISTINCT or value.startswith("django-insecure"):
        raise ImproperlyConfigured(f"{name} must be set to a random value of at least {MIN_SECRET_LENGTH} characters.")


if DEBUG:  # noqa: F405
    raise ImproperlyConfigured("DEBUG must be off in production.")
SECRET_KEY = env.str("SECRET_KEY", default="")
_require_strong("SECRET_KEY", SECRET_KEY)
SIMPLE_JWT["SIGNING_KEY"] = env.str("JWT_SIGNING_KEY", default=SECRET_KEY)  # noqa: F405
_require_strong("JWT_SIGNING_KEY", SIMPLE_JWT["SIGNING_KEY"])  # noqa: F405

# TOTP seeds must survive a SECRET_KEY rotation: production names its encryption keys explicitly.
if not env.list("ENCRYPTION_KEYS", default=[]):
    raise ImproperlyConfigured("ENCRYPTION_KEYS must be set in production (Fernet keys, newest first).")

# SQLite keeps money as floating point (15 digits) and lets one process write at a time: production runs on
# PostgreSQL, whose numeric is exact.
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":  # noqa: F405
    raise ImproperlyConfigured("DATABASE_URL must name a PostgreSQL database in production (postgres://...).")

# Several processes serve production: a per-process cache would serve other processes' stale responses
# after a write, and per-process throttles would multiply every limit by the number of processes.
if not REDIS_URL:  # noqa: F405
    raise ImproperlyConfigured("REDIS_URL must be set in production: the cache is shared by every process.")

# TLS ends at the load balancer, which says so in X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# Health probes come from inside the network over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^health/"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"
