"""Settings for djtrace's sample bookstore. Backends are switched with DJTRACE_SAMPLE_* env vars."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import django
from django.core.exceptions import ImproperlyConfigured
from djtrace.sample_site.paths import data_dir

SECRET_KEY = "djtrace-sample-site-insecure-dev-key-do-not-use-in-production"
DEBUG = os.environ.get("DJTRACE_SAMPLE_DEBUG", "").lower() in {"1", "true", "yes", "on"}
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "djtrace",
    "djtrace.sample_site.bookstore",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # One function-style and one class-style custom middleware, so both shapes get traced.
    "djtrace.sample_site.middleware.request_id_middleware",
    "djtrace.sample_site.middleware.ServerTimingMiddleware",
]
if os.environ.get("DJTRACE_SAMPLE_SYNC_MIDDLEWARE") == "1":
    # Sync only and outermost: under ASGI every request hops to a thread for it and back to
    # the event loop for the async layers inside (the lab shows the hops).
    MIDDLEWARE.insert(0, "djtrace.sample_site.lab_middleware.SyncOnlyMiddleware")

ROOT_URLCONF = "djtrace.sample_site.urls"
WSGI_APPLICATION = "djtrace.sample_site.wsgi.application"
ASGI_APPLICATION = "djtrace.sample_site.asgi.application"

# --- database -------------------------------------------------------------------------------

DATA_DIR = data_dir()  # created lazily by sample_site.seed, never at import time


def _choice(name: str, default: str, choices: dict[str, str]) -> str:
    """An env switch's value; an unknown one is an error, never a silent fallback."""
    value = os.environ.get(name, default).lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r}: use one of {', '.join(sorted(choices))}")
    return choices[value]


def _int(name: str, default: str) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number") from None


_DB = _choice(
    "DJTRACE_SAMPLE_DB",
    "sqlite",
    {"sqlite": "sqlite", "postgres": "postgres", "postgresql": "postgres", "pg": "postgres"},
)
_CONN_MAX_AGE = _int("DJTRACE_SAMPLE_CONN_MAX_AGE", "0")

if _DB == "postgres":
    # Django's native pool needs 5.1+, and Django refuses a pool with persistent connections.
    _pool = django.VERSION >= (5, 1) and os.environ.get("DJTRACE_SAMPLE_PG_POOL", "1") != "0"
    if _pool and _CONN_MAX_AGE:
        raise ImproperlyConfigured(
            "DJTRACE_SAMPLE_CONN_MAX_AGE needs the pool off (DJTRACE_SAMPLE_PG_POOL=0): "
            "Django's connection pool works with CONN_MAX_AGE=0 only"
        )
    _pg: dict[str, Any] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DJTRACE_SAMPLE_PG_NAME", "djtrace_sample"),
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "USER": os.environ.get("DJTRACE_SAMPLE_PG_USER", "postgres"),
        "PASSWORD": "",
        "CONN_MAX_AGE": _CONN_MAX_AGE,
    }
    if _pool:
        # A small pool shows checkout waits under load: DJTRACE_SAMPLE_PG_POOL_MAX=2.
        _pool_options: dict[str, Any] = {}
        if os.environ.get("DJTRACE_SAMPLE_PG_POOL_MAX"):
            _pool_options["max_size"] = _int("DJTRACE_SAMPLE_PG_POOL_MAX", "4")
            _pool_options["min_size"] = min(
                _int("DJTRACE_SAMPLE_PG_POOL_MIN", "1"), _pool_options["max_size"]
            )
        if os.environ.get("DJTRACE_SAMPLE_PG_POOL_TIMEOUT"):
            _pool_options["timeout"] = float(_int("DJTRACE_SAMPLE_PG_POOL_TIMEOUT", "30"))
        _pg["OPTIONS"] = {"pool": _pool_options or True}
    DATABASES = {"default": _pg}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "db.sqlite3"),
            "CONN_MAX_AGE": _CONN_MAX_AGE,
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache and sessions ---------------------------------------------------------------------

if _choice("DJTRACE_SAMPLE_CACHE", "locmem", {"locmem": "locmem", "redis": "redis"}) == "redis":
    _redis_db = _int("DJTRACE_SAMPLE_REDIS_DB", "0")
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:6379/{_redis_db}",
            "KEY_PREFIX": "djtrace-sample",
        }
    }
    _session_engine = "django.contrib.sessions.backends.cached_db"
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "djtrace-sample",
        }
    }
    _session_engine = "django.contrib.sessions.backends.db"

SESSION_ENGINE = os.environ.get("DJTRACE_SAMPLE_SESSION_ENGINE", _session_engine)

# --- templates ------------------------------------------------------------------------------

TEMPLATES: list[dict[str, Any]] = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "NAME": "django",
        "DIRS": [],
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

# jinja2 is an optional dependency: without it every template lookup would fail when Django
# instantiates the backend, so only /jinja/ is lost instead.
if importlib.util.find_spec("jinja2") is not None:
    TEMPLATES.append(
        {
            "BACKEND": "django.template.backends.jinja2.Jinja2",
            "NAME": "jinja2",
            "DIRS": [],
            "APP_DIRS": True,  # bookstore/jinja2/
            "OPTIONS": {"environment": "djtrace.sample_site.jinja2_env.environment"},
        }
    )

# Django 4.2 warns on every `{{ form }}` unless it opts in to the <div> output that 5.0+ uses;
# the transitional renderer is gone in 6.0, hence the version check.
if django.VERSION < (5, 0):
    FORM_RENDERER = "django.forms.renderers.DjangoDivFormRenderer"

# --- misc -----------------------------------------------------------------------------------

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
STATIC_URL = "/static/"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True
