"""Settings of the linear-planning-store project.

Every setting that differs between machines comes from the environment (or a ``.env`` file beside
``manage.py``), read here with django-environ and nowhere else. ``.env.example`` documents each
variable. ``DEBUG`` defaults to off; with it off, secrets have no defaults and a missing or weak one
stops start-up with ``ImproperlyConfigured`` naming the variable (never its value).
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A .env file beside manage.py (or ENV_FILE) is read first; it never overrides variables already set.
environ.Env.read_env(env.str("ENV_FILE", default=str(BASE_DIR / ".env")))

DEBUG = env.bool("DEBUG", default=False)

# --- Secrets ---------------------------------------------------------------------------------
# Development defaults exist only with DEBUG on; they are public and worthless by design.
_DEV_SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production-0123456789"  # noqa: S105
_DEV_FERNET_KEY = "development-only-fernet-key-do-not-use-in-production"


def _secret_key_problem(value: str) -> str | None:
    """Why ``value`` is not a production-grade SECRET_KEY, mirroring Django's check W009."""
    if len(value) < 50:
        return "it is shorter than 50 characters"
    if len(set(value)) < 5:
        return "it has fewer than 5 distinct characters"
    if value.startswith("django-insecure-"):
        return "it starts with 'django-insecure-'"
    return None


SECRET_KEY = env.str("SECRET_KEY", default="")
FERNET_KEYS = [key.strip() for key in env.list("FERNET_KEYS", default=[]) if key.strip()]

if DEBUG:
    SECRET_KEY = SECRET_KEY or _DEV_SECRET_KEY
    FERNET_KEYS = FERNET_KEYS or [_DEV_FERNET_KEY]
else:
    if not SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    _problem = _secret_key_problem(SECRET_KEY)
    if _problem:
        raise ImproperlyConfigured(f"SECRET_KEY is too weak for DEBUG off: {_problem}.")
    if not FERNET_KEYS:
        raise ImproperlyConfigured(
            "FERNET_KEYS must be set when DEBUG is off (comma-separated; the first key "
            "encrypts, every key decrypts)."
        )
# fernet_fields derives a Fernet key from each entry with HKDF, so any long random string works.
FERNET_USE_HKDF = True

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Applications ----------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "accounts",
    "planning",
    "sync",
    "legacy",
    "console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "config.middleware.SearchTermLengthMiddleware",
    "config.middleware.NulCharacterMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Inside the config package, so that an installed copy (pip install .) has it too.
        "DIRS": [BASE_DIR / "config" / "templates"],
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

WSGI_APPLICATION = "config.wsgi.application"

AUTH_USER_MODEL = "accounts.User"

# --- Database --------------------------------------------------------------------------------
# No DATABASE_URL: with DEBUG on, a SQLite file inside the project folder (git-ignored); with DEBUG off,
# a start-up error, so that a production process never runs on a file nobody backs up. SQLite in
# production stays possible, on purpose only: an explicit sqlite:/// URL.
_DATABASE_URL = env.str("DATABASE_URL", default="").strip()
if not _DATABASE_URL:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DATABASE_URL must be set when DEBUG is off (postgres://user:password@host:5432/name; "
            "an explicit sqlite:///path/to/db.sqlite3 for SQLite)."
        )
    _DATABASE_URL = f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {"default": env.db_url_config(_DATABASE_URL)}
_db = DATABASES["default"]
_db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
_db["CONN_HEALTH_CHECKS"] = True
_db.setdefault("OPTIONS", {})
if _db["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend with psycopg's C timestamp loader (config/backends/postgresql/base.py).
    _db["ENGINE"] = "config.backends.postgresql"
if _db["ENGINE"] == "config.backends.postgresql":
    if env.bool("DB_POOL", default=False):
        if _db["CONN_MAX_AGE"]:
            raise ImproperlyConfigured(
                "DB_POOL and CONN_MAX_AGE cannot both be set: the pool keeps connections itself."
            )
        _db["OPTIONS"]["pool"] = {
            "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
            "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
            "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
        }
    if env.bool("DB_PREPARED_STATEMENTS", default=True):
        # On by default: psycopg binds parameters on the server and prepares a statement once it has
        # run it `prepare_threshold` times on a connection, so PostgreSQL stops planning the agent's
        # repeated lookups — what raw psycopg does by default, and what makes the hot paths reach
        # the targets against it (docs/benchmarks.md, "Settings"). Prepared statements live in a
        # connection (an agent keeps its connection; the web process with DB_POOL or CONN_MAX_AGE).
        # Behind a pooler that cannot keep them (PgBouncer in transaction mode before 1.21, or
        # without max_prepared_statements): DB_PREPARED_STATEMENTS=false.
        _db["OPTIONS"]["server_side_binding"] = True
        _db["OPTIONS"]["prepare_threshold"] = env.int("DB_PREPARE_THRESHOLD", default=5)
elif _db["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so concurrent writers wait for it
    # (up to `timeout` seconds) instead of failing with "database is locked" on upgrade.
    _db["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    _db["OPTIONS"].setdefault("timeout", 20)
    _db["OPTIONS"].setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
# Lets parallel test runs on one PostgreSQL server use distinct test databases.
if env.str("TEST_DATABASE_NAME", default=""):
    _db["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Agent workers: sync scheduling and the resolution outbox (docs/operations.md, "Many workers") ---
# Seconds between two syncs of a (page, team) pair; a new pair's default (editable per pair in the admin).
SYNC_INTERVAL_SECONDS = env.int("SYNC_INTERVAL_SECONDS", default=300)
# After a failed sync the pair is retried after BASE seconds, doubled per consecutive failure up to MAX
# (plus at most 10 % jitter). The same for resolutions that fail to apply.
SYNC_RETRY_BASE_SECONDS = env.int("SYNC_RETRY_BASE_SECONDS", default=30)
SYNC_RETRY_MAX_SECONDS = env.int("SYNC_RETRY_MAX_SECONDS", default=3600)
APPLY_RETRY_BASE_SECONDS = env.int("APPLY_RETRY_BASE_SECONDS", default=30)
APPLY_RETRY_MAX_SECONDS = env.int("APPLY_RETRY_MAX_SECONDS", default=3600)
for _name in (
    "SYNC_INTERVAL_SECONDS",
    "SYNC_RETRY_BASE_SECONDS",
    "SYNC_RETRY_MAX_SECONDS",
    "APPLY_RETRY_BASE_SECONDS",
    "APPLY_RETRY_MAX_SECONDS",
):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1 (seconds).")
if SYNC_RETRY_BASE_SECONDS > SYNC_RETRY_MAX_SECONDS:
    raise ImproperlyConfigured("SYNC_RETRY_BASE_SECONDS must not exceed SYNC_RETRY_MAX_SECONDS.")
if APPLY_RETRY_BASE_SECONDS > APPLY_RETRY_MAX_SECONDS:
    raise ImproperlyConfigured("APPLY_RETRY_BASE_SECONDS must not exceed APPLY_RETRY_MAX_SECONDS.")

# --- Passwords, i18n, static files -----------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# One date format with the time zone on every admin page (config/formats/en/formats.py).
FORMAT_MODULE_PATH = ["config.formats"]

STATIC_URL = "static/"
# Where `collectstatic` writes and whitenoise serves from with DEBUG off.
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# Whitenoise derives these from DEBUG when its middleware starts. Fixed here from the environment's
# DEBUG, so development keeps its behaviour (files found by the finders, re-scanned on change) even
# where a test runner turns DEBUG off at run time; production (DEBUG off) is whitenoise's default.
WHITENOISE_AUTOREFRESH = DEBUG
WHITENOISE_USE_FINDERS = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Security (production) -------------------------------------------------------------------
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
        # Only behind a proxy that sets X-Forwarded-Proto and strips it from clients.
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# The DEBUG page and the error report (what AdminEmailHandler mails) of a request that carries a secret
# (the token admin's views) hide its POST values and every frame's variables, DEBUG on or off.
DEFAULT_EXCEPTION_REPORTER_FILTER = "config.errors.SensitiveRequestExceptionReporterFilter"

# --- Logging ---------------------------------------------------------------------------------
# One configuration for every logger (Django's own included): records propagate to the root logger,
# whose single handler redacts anything that looks like a secret (config/logging.py) and writes plain
# text or, with LOG_FORMAT=json, one JSON object per line for log shippers.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL.")
LOG_FORMAT = env.str("LOG_FORMAT", default="plain").lower()
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured("LOG_FORMAT must be 'plain' or 'json'.")
# Who configures logging. "project": this configuration below, root logger included — manage.py, the
# WSGI/ASGI entry points (gunicorn) set it. "guest" (the default for any other django.setup(), i.e. an
# agent that imports the models): the host's logging configuration is left alone — Django applies
# neither its defaults nor LOGGING (LOGGING_CONFIG = None: Django's dictConfig would close the host's
# handlers) — and the redacting filter rides on the project's and Django's loggers instead
# (accounts.apps, config.logging.install_guest_redaction), so their records reach the host's handlers
# already redacted. An agent that wants the project's configuration sets LOG_SETUP=project.
LOG_SETUP = env.str("LOG_SETUP", default="guest").lower()
if LOG_SETUP not in ("guest", "project"):
    raise ImproperlyConfigured("LOG_SETUP must be 'guest' or 'project'.")
if LOG_SETUP == "guest":
    LOGGING_CONFIG = None
# Django's loggers stay at INFO or above: at DEBUG they log every SQL query and template lookup.
_DJANGO_LOG_LEVEL = "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_secrets": {"()": "config.logging.RedactingFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.logging.JSONFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Django's default configuration gives these loggers handlers of their own (without the filter);
    # naming them here with no handlers sends their records through the root handler instead.
    "loggers": {
        "django": {"handlers": [], "level": _DJANGO_LOG_LEVEL, "propagate": True},
        "django.server": {"handlers": [], "level": _DJANGO_LOG_LEVEL, "propagate": True},
    },
}
