"""Settings shared by every environment; each value comes from the environment (12-factor).

`.env.example` documents every variable. `test` and `production` build on this module.
"""

import base64
import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from csp import constants as csp_constants

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A developer's `.env` is a convenience; real deployments set the environment itself.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env.str("SECRET_KEY", default="django-insecure-local-development-key-change-me")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # First, so that its management commands (changepassword) take precedence over Django's.
    "accounts",
    "accounts.apps.AdminSiteConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "clients",
    "ledger",
    "holdings",
    # Last of the business apps: it uses holdings, ledger and clients, and nothing imports it.
    "trading",
    "portfolio_site.crypto",
    "portfolio_site.imports",
    "portfolio_site.jobs",
    "portfolio_site.idempotency",
    "django_celery_beat",
    "simple_history",
    # The history changelist across every tracked model: on top, as health is (it reads every app's history).
    "portfolio_site.changelog",
]

MIDDLEWARE = [
    # First: every log line of the request (and of the jobs it enqueues) carries its request id.
    "portfolio_site.logs.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The Content-Security-Policy header on every response (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Ends an admin session once its login session has ended (logout elsewhere, revocation, limits).
    "accounts.web.LoginSessionMiddleware",
    # Binds the door (admin or API) of a request for the change history; its user is read when a row is saved.
    "portfolio_site.history.HistoryMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portfolio_site.urls"
WSGI_APPLICATION = "portfolio_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # The project's own tags (it is no app with a templatetags package): {% load large_tables %}.
            "libraries": {"large_tables": "portfolio_site.admin_large"},
        },
    },
]

# --- Database -----------------------------------------------------------------------------------
# SQLite file in the project unless DATABASE_URL names another (postgres://user@host:5432/name).
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend plus an exact SUM for money (SQLite would add decimals as floats).
    DATABASES["default"]["ENGINE"] = "portfolio_site.sqlite3"
    DATABASES["default"]["OPTIONS"] = {
        # A writer takes the write lock when its transaction begins, so SQLite can make it wait (up to
        # `timeout` seconds) instead of failing with "database is locked" when a read turns into a write.
        "transaction_mode": "IMMEDIATE",
        "timeout": env.int("SQLITE_TIMEOUT_SECONDS", default=20),
        # WAL lets readers go on while one process writes. synchronous stays FULL (not NORMAL): with NORMAL
        # a power cut may undo the last committed transactions, and these are cash postings.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL",
        **DATABASES["default"].get("OPTIONS", {}),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache --------------------------------------------------------------------------------------
# Redis when REDIS_URL is set. Exceptions are swallowed and timeouts are short so that a Redis outage
# costs speed (every read becomes a miss), never a 500.
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="portfolio"),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 0.5,
                "SOCKET_TIMEOUT": 0.5,
            },
        }
    }
    DJANGO_REDIS_IGNORE_EXCEPTIONS = True
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "portfolio"}}
API_CACHE_SECONDS = env.int("API_CACHE_SECONDS", default=60)
# How long a user's roles and permissions stay cached (accounts.grants): every change through Django bumps them at
# once; this bounds one made outside it.
GRANTS_CACHE_SECONDS = env.int("GRANTS_CACHE_SECONDS", default=600)

# --- Auth ---------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
# The model rows belong to: the scoped doors (portfolio_site.scoping) refuse to serve a model that points at it
# unless its QuerySet scopes it by the clients app's rule.
SCOPE_OWNER_MODEL = "clients.Client"
# Django's model backend, its permissions (and the roles, read with them) cached across requests.
AUTHENTICATION_BACKENDS = ["accounts.grants.CachedPermissionsBackend"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    # Kept so that users brought over from other systems can log in; Django re-hashes with Argon2.
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.BCryptPasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Change history (django-simple-history, see portfolio_site/history.py) --------------------
# A revert from the history page would write around the services (their rules, the ledger): history is a record.
SIMPLE_HISTORY_REVERT_DISABLED = True

# --- Internationalisation -----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files -------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT: Path | None = BASE_DIR / "staticfiles"
# Uploaded files (asset images) go through Django's storage API: on this machine's disk under MEDIA_ROOT by default,
# which suits one app server. Several app servers share one storage instead (S3-compatible, through
# django-storages: see the README); FILE_STORAGE_BACKEND names its class. MEDIA_URL is never served: files are
# read through the API's and the admin's views, which check permissions.
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": env.str("FILE_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage")},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Email --------------------------------------------------------------------------------------
# smtp+tls://user:password@smtp.example.com:587 in production; the console in development.
_email = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST", "")
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="back-office@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Content security policy (django-csp) ----------------------------------------------------------
# Pages load nothing from another host: scripts, styles, images, fonts and API calls come from this site (the
# API docs' Swagger UI and Redoc from our static files, drf-spectacular-sidecar). The few inline scripts and
# style blocks we keep (the docs pages' start-up code) carry the request's nonce (`request.csp_nonce`); no
# 'unsafe-inline', no 'unsafe-eval'. `data:` images are Swagger UI's icons (SVG inside its stylesheet); `blob:`
# workers are Redoc's search index, built by its own script in the page. Neither names a host.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp_constants.SELF],
        "script-src": [csp_constants.SELF, csp_constants.NONCE],
        "style-src": [csp_constants.SELF, csp_constants.NONCE],
        "img-src": [csp_constants.SELF, "data:"],
        "font-src": [csp_constants.SELF],
        "connect-src": [csp_constants.SELF],
        "worker-src": [csp_constants.SELF, "blob:"],
        "object-src": [csp_constants.NONE],
        "base-uri": [csp_constants.SELF],
        "form-action": [csp_constants.SELF],
        "frame-ancestors": [csp_constants.NONE],
    }
}

# --- CORS ---------------------------------------------------------------------------------------
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/.*$"

# --- REST framework -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.SessionJWTAuthentication",
        # Lets staff logged in to the admin use the browsable API and Swagger UI, while their session is live.
        "accounts.authentication.LoginSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["portfolio_site.api.permissions.ModelPermissions"],
    "DEFAULT_FILTER_BACKENDS": [
        "portfolio_site.api.filters.FilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    # DRF's JSON parser, except that a body nested too deep is a 400 rather than a RecursionError (500).
    "DEFAULT_PARSER_CLASSES": [
        "portfolio_site.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "portfolio_site.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "portfolio_site.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "portfolio_site.api.exceptions.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    # Rates of the login and email-sending endpoints, per client IP and per email address.
    "DEFAULT_THROTTLE_RATES": {
        "login_ip": env.str("THROTTLE_LOGIN_IP", default="30/min"),
        "login_account": env.str("THROTTLE_LOGIN_ACCOUNT", default="10/min"),
        "email_ip": env.str("THROTTLE_EMAIL_IP", default="20/hour"),
        "email_account": env.str("THROTTLE_EMAIL_ACCOUNT", default="5/hour"),
        # Asking for an asset image's description, per user: each one is a (paid) call to the describer.
        "asset_describe": env.str("ASSET_DESCRIBE_RATE", default="10/min"),
    },
    # Proxies in front of the app that append to X-Forwarded-For (0: use the TCP peer address).
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

# --- Login sessions and login security (accounts) ----------------------------------------------
SESSION_IDLE_MINUTES = env.int("SESSION_IDLE_MINUTES", default=30)
SESSION_ABSOLUTE_HOURS = env.int("SESSION_ABSOLUTE_HOURS", default=24)
# The admin's Django session never outlives its login session (whose limits are the ones above).
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_HOURS * 3600
SESSION_COOKIE_HTTPONLY = True
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    # A refresh token never outlives its session (capped again per session when issued).
    "REFRESH_TOKEN_LIFETIME": timedelta(hours=SESSION_ABSOLUTE_HOURS),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default=SECRET_KEY),
    "UPDATE_LAST_LOGIN": False,  # the login service records last_login and last_login_ip itself
}
# Cookie mode: tokens travel in HttpOnly cookies (for browser front ends) instead of the response body,
# and unsafe requests authenticated by cookie need the CSRF token.
AUTH_COOKIE_MODE = env.bool("AUTH_COOKIE_MODE", default=False)
AUTH_COOKIE_SECURE = env.bool("AUTH_COOKIE_SECURE", default=True)
AUTH_COOKIE_SAMESITE = env.str("AUTH_COOKIE_SAMESITE", default="Strict")
LOCKOUT_THRESHOLD = env.int("LOCKOUT_THRESHOLD", default=5)
LOCKOUT_MINUTES = env.int("LOCKOUT_MINUTES", default=15)
LOGIN_CODE_MINUTES = env.int("LOGIN_CODE_MINUTES", default=5)
LOGIN_CODE_MAX_ATTEMPTS = env.int("LOGIN_CODE_MAX_ATTEMPTS", default=5)
TWO_FACTOR_CHALLENGE_SECONDS = env.int("TWO_FACTOR_CHALLENGE_SECONDS", default=300)
EMAIL_VERIFICATION_MAX_AGE_HOURS = env.int("EMAIL_VERIFICATION_MAX_AGE_HOURS", default=72)
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=3600)
# Sign-in with a Supabase access token (POST /api/v1/auth/supabase/token/): off unless SUPABASE_URL is set. The
# token's issuer must be `{SUPABASE_URL}/auth/v1`; its signature is checked against the project's JWKS (RS256/ES256)
# or, for a project that signs with a shared secret, against SUPABASE_JWT_SECRET (HS256 is refused without it).
SUPABASE_URL = env.str("SUPABASE_URL", default="").rstrip("/")
SUPABASE_JWKS_URL = env.str("SUPABASE_JWKS_URL", default="")
SUPABASE_JWT_SECRET = env.str("SUPABASE_JWT_SECRET", default="")
SUPABASE_AUDIENCE = env.str("SUPABASE_AUDIENCE", default="authenticated")
SUPABASE_JWKS_TIMEOUT = env.float("SUPABASE_JWKS_TIMEOUT", default=5.0)
SUPABASE_JWKS_CACHE_SECONDS = env.int("SUPABASE_JWKS_CACHE_SECONDS", default=300)
SUPABASE_LEEWAY_SECONDS = env.int("SUPABASE_LEEWAY_SECONDS", default=30)
# Sign-in through OpenID Connect providers (accounts.services.oidc): OIDC_PROVIDERS names them (a comma list of
# slugs; empty = off), and each NAME has its OIDC_<NAME>_* variables, read here into plain values and checked at
# start-up by accounts.oidc_config (a missing issuer or an unknown target role refuses to start, naming the variable).
# Discovery and keys are fetched on first use, never at start-up.
OIDC_PROVIDERS: dict[str, dict[str, object]] = {}
for _name in env.list("OIDC_PROVIDERS", default=[]):
    _prefix = f"OIDC_{_name.upper().replace('-', '_')}_"
    OIDC_PROVIDERS[_name] = {
        "issuer": env.str(f"{_prefix}ISSUER", default=""),
        "client_id": env.str(f"{_prefix}CLIENT_ID", default=""),
        "client_secret": env.str(f"{_prefix}CLIENT_SECRET", default=""),
        "scopes": env.str(f"{_prefix}SCOPES", default="openid email profile"),
        "label": env.str(f"{_prefix}LABEL", default=_name),
        "create_users": env.bool(f"{_prefix}CREATE_USERS", default=False),
        "link_by_email": env.bool(f"{_prefix}LINK_BY_EMAIL", default=True),
        "email_domains": env.list(f"{_prefix}EMAIL_DOMAINS", default=[]),
        "roles_claim": env.str(f"{_prefix}ROLES_CLAIM", default=""),
        "role_map": env.dict(f"{_prefix}ROLE_MAP", default={}),
        "trust_amr": env.list(f"{_prefix}TRUST_AMR", default=[]),
        "api_redirect_uris": env.list(f"{_prefix}API_REDIRECT_URIS", default=[]),
    }
# Seconds for one request to a provider (discovery, keys, code exchange), how long its discovery document and keys
# are kept, the clock leeway on the ID token's exp/iat, and how long an API sign-in may take between authorize/
# and token/.
OIDC_HTTP_TIMEOUT = env.float("OIDC_HTTP_TIMEOUT", default=5.0)
OIDC_CACHE_SECONDS = env.int("OIDC_CACHE_SECONDS", default=300)
OIDC_LEEWAY_SECONDS = env.int("OIDC_LEEWAY_SECONDS", default=60)
OIDC_AUTHORIZATION_SECONDS = env.int("OIDC_AUTHORIZATION_SECONDS", default=600)
# Password sign-in (and the emailed login code that stands in for it) for staff users: "on", "superusers" (only
# superusers keep it: a break-glass account for when the identity provider is down) or "off". Non-staff users keep
# their passwords whatever this says: the setting moves staff onto the firm's identity provider.
LOCAL_PASSWORDS = env.str("LOCAL_PASSWORDS", default="on")
# Where links in emails point (the front end, or this site).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
# Fernet keys for secrets stored encrypted (every app's EncryptedTextField, portfolio_site.crypto: TOTP seeds):
# the first encrypts, any decrypts. Outside production a key is derived from SECRET_KEY so that development needs
# no set-up.
ENCRYPTION_KEYS = env.list(
    "ENCRYPTION_KEYS",
    default=[base64.urlsafe_b64encode(hashlib.sha256(f"encryption:{SECRET_KEY}".encode()).digest()).decode()],
)

# Currencies with no published rate between them are crossed through this one (ECB reference rates: EUR).
FX_PIVOT_CURRENCY = env.str("FX_PIVOT_CURRENCY", default="EUR")
# A valuation flags a price older than this many days before its `as_of` as stale (and still uses it).
VALUATION_STALE_PRICE_DAYS = env.int("VALUATION_STALE_PRICE_DAYS", default=5)
# The admin dashboard's currency: assets under management and the largest positions are converted into it (at the
# latest rates, through the pivot when needed). Each portfolio's own figures stay in its base currency.
REPORTING_CURRENCY = env.str("REPORTING_CURRENCY", default="EUR").strip().upper()

# Market data sources (holdings.market_data): {name: {"CLASS": dotted path, "URL": http(s)/file URL or path,
# "TIMEOUT": seconds, "MAX_BYTES": bytes}}, refreshed in this order by `manage.py refresh_market_data` and the
# job. The name is what an asset's symbol names (AssetSymbol.source). A source whose URL is empty is left out:
# by default only the ECB's daily euro reference rates; a price source needs a URL with `{symbol}` in it.
# Asset images (holdings.images): an upload's limits, checked before its pixels are decoded.
ASSET_IMAGE_MAX_BYTES = env.int("ASSET_IMAGE_MAX_BYTES", default=10 * 2**20)
ASSET_IMAGE_MAX_PIXELS = env.int("ASSET_IMAGE_MAX_PIXELS", default=25_000_000)
# What drafts an asset's description from its images (holdings.images.describers): "none" (nothing is sent
# anywhere), "openai" (an OpenAI-compatible chat-completions API with vision: a hosted service or a model server on
# the firm's network), or a class's dotted path. The images are sent to that host.
ASSET_DESCRIBER = env.str("ASSET_DESCRIBER", default="none")
ASSET_DESCRIBER_BASE_URL = env.str("ASSET_DESCRIBER_BASE_URL", default="https://api.openai.com/v1")
ASSET_DESCRIBER_API_KEY = env.str("ASSET_DESCRIBER_API_KEY", default="")
ASSET_DESCRIBER_MODEL = env.str("ASSET_DESCRIBER_MODEL", default="gpt-4o-mini")
ASSET_DESCRIBER_TIMEOUT = env.float("ASSET_DESCRIBER_TIMEOUT", default=60.0)
ASSET_DESCRIBER_MAX_CHARS = env.int("ASSET_DESCRIBER_MAX_CHARS", default=4000)
ASSET_DESCRIBER_MAX_RESPONSE_BYTES = env.int("ASSET_DESCRIBER_MAX_RESPONSE_BYTES", default=256 * 1024)

MARKET_DATA_TIMEOUT = env.float("MARKET_DATA_TIMEOUT", default=30.0)
MARKET_DATA_MAX_BYTES = env.int("MARKET_DATA_MAX_BYTES", default=64 * 2**20)
MARKET_DATA_SOURCES = {
    name: entry
    for name, entry in {
        "ecb": {
            "CLASS": "holdings.market_data.ecb.EcbReferenceRates",
            "URL": env.str(
                "MARKET_DATA_ECB_URL", default="https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"
            ),
        },
        "prices": {
            "CLASS": "holdings.market_data.csv_prices.CsvDailyPrices",
            "URL": env.str("MARKET_DATA_PRICES_URL", default=""),
        },
    }.items()
    if entry["URL"]
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Portfolio back-office API",
    "DESCRIPTION": "Clients, holdings and cash ledger of a wealth and asset manager's back-office.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # The docs pages load Swagger UI and Redoc from this site's static files (drf-spectacular-sidecar), not
    # from a CDN: a bank's network or a CI runner without internet would otherwise show a blank page.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No validator badge: Swagger UI would send the schema's URL to validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "ENUM_NAME_OVERRIDES": {
        "AllocationKindEnum": "holdings.models.AllocationKind",
        "AssetImageKindEnum": "holdings.models.AssetImageKind",
        "OrderStatusEnum": "trading.models.OrderStatus",
        "PortfolioKindEnum": "clients.models.PortfolioKind",
        "TransactionKindEnum": "ledger.models.TransactionKind",
    },
}


# --- Job queue (Celery) ---------------------------------------------------------------------------
# The broker and result store: CELERY_BROKER_URL if set, else the cache's Redis (REDIS_URL) on the next database
# number (redis://host:6379/0 -> redis://host:6379/1), so that clearing the cache never drops queued jobs. With
# neither set (a bare development machine) there is no broker: tasks run in the web process right after the
# transaction commits (`task_always_eager`), so `make run` needs nothing else.
def _next_database(url: str) -> str:
    base, _, database = url.rstrip("/").rpartition("/")
    if not database.isdigit():  # redis://host:6379 (database 0 implied)
        return f"{url.rstrip('/')}/1"
    return f"{base}/{int(database) + 1}"


CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=_next_database(REDIS_URL) if REDIS_URL else "")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=CELERY_BROKER_URL or None)
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
# In-process (eager) tasks run after the commit; a failure there is recorded on its JobRun and logged, never
# turned into a 500 for a request that already committed.
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = timedelta(days=1)
# A job is acknowledged once it has run, not when a worker takes it: a worker killed mid-job leaves it queued for
# another (jobs are idempotent, so running one again is safe).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TIMEZONE = "UTC"
# Our logging configuration (JSON lines) stays in charge inside the worker.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# The readiness probe calls the workers absent when their last heartbeat (a periodic job) is older than this.
JOBS_HEARTBEAT_MAX_AGE_SECONDS = env.int("JOBS_HEARTBEAT_MAX_AGE_SECONDS", default=180)
# Finished JobRuns are deleted this many days later (nightly): the every-minute jobs would grow the table for ever.
JOBS_RUN_RETENTION_DAYS = env.int("JOBS_RUN_RETENTION_DAYS", default=30)
# How long ended login sessions and used login codes are kept (for the security history) before the nightly
# clean-up deletes them.
SECURITY_RECORDS_RETENTION_DAYS = env.int("SECURITY_RECORDS_RETENTION_DAYS", default=30)
# An Idempotency-Key's first answer is replayed for this long (Stripe: 24 hours); an older key acts as new and the
# nightly clean-up deletes it.
IDEMPOTENCY_KEY_TTL = timedelta(hours=env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24))
# An admin import of more rows than this runs as a job (its page shows progress); smaller ones run in the request.
IMPORT_JOB_ROW_THRESHOLD = env.int("IMPORT_JOB_ROW_THRESHOLD", default=5000)

# --- Trading --------------------------------------------------------------------------------------------
# The kinds of broker a connection (trading.BrokerConnection, kept in the database by Operations) may be: each kind's
# adapter (trading.brokers.base.Broker) and the options every connection of that kind shares. A connection adds its
# own name, endpoint and credentials. The paper broker fills orders against our own prices, so the whole flow runs
# on a laptop; its fee schedule is a rate of the gross amount with a minimum per fill, and fill_parts > 1 fills each
# order in that many parts. Alpaca's options bound how long a worker waits on it.
TRADING_BROKER_KINDS: dict[str, dict[str, Any]] = {
    "paper": {
        "BACKEND": "trading.brokers.paper.PaperBroker",
        "OPTIONS": {
            "fee_rate": env.str("PAPER_BROKER_FEE_RATE", default="0.001"),
            "minimum_fee": env.str("PAPER_BROKER_MINIMUM_FEE", default="1.00"),
            "fill_parts": env.int("PAPER_BROKER_FILL_PARTS", default=1),
        },
    },
    "alpaca": {
        "BACKEND": "trading.brokers.alpaca.AlpacaBroker",
        "OPTIONS": {
            "timeout": env.float("ALPACA_TIMEOUT", default=10.0),
            "max_retries": env.int("ALPACA_MAX_RETRIES", default=3),
            "max_retry_wait": env.float("ALPACA_MAX_RETRY_WAIT", default=30.0),
            "fee_rate": env.str("ALPACA_FEE_RATE", default="0"),
        },
    },
}
# Where the trading day is reckoned: a day order expires at the end of the day there, a fill's trade date is its
# date there.
TRADING_TIMEZONE = env.str("TRADING_TIMEZONE", default="America/New_York")
# A market buy holds its units at the latest price plus this fraction (prices move between the order and its fill).
TRADING_MARKET_ORDER_BUFFER = env.str("TRADING_MARKET_ORDER_BUFFER", default="0.05")
# After a broker accepts an order, its first status poll comes this many seconds later (then every minute).
TRADING_FIRST_POLL_SECONDS = env.int("TRADING_FIRST_POLL_SECONDS", default=2)
# A rebalancing proposal older than this is refused on acceptance (prices move): propose again.
TRADING_PROPOSAL_MAX_AGE_MINUTES = env.int("TRADING_PROPOSAL_MAX_AGE_MINUTES", default=15)

# --- Logging ------------------------------------------------------------------------------------------
# JSON lines on standard output (LOG_FORMAT=plain for a human-readable console). Every line carries the request
# id (followed into the jobs a request enqueues), the user id and the route; a redaction filter masks passwords,
# tokens, codes and secrets before any handler formats a line.
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "portfolio_site.logs.ContextFilter"},
        "redact": {"()": "portfolio_site.logs.RedactingFilter"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(user_id)s %(route)s %(task)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["context", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
