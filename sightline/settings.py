"""Sightline settings, driven by environment variables.

With no DATABASE_URL and no REDIS_URL this runs on the embedded default (SQLite,
Celery tasks executed in-process): for a newcomer's first run only. Tests, CI and
production set both and run a real Celery worker.
"""

import warnings
from pathlib import Path

import dj_database_url
import plotly
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from sightline.envvars import env, envbool, envint
from sightline.queues import now_queue
from sightline.settings_security import installation_key

BASE_DIR = Path(__file__).resolve().parent.parent


DEBUG = envbool("DEBUG", "False")
# Production hardening and its refusals are switched on explicitly by the deployment.
PRODUCTION = envbool("SIGHTLINE_PRODUCTION", "False")

SECRET_KEY = env("SECRET_KEY")
ALLOWED_HOSTS = [h.strip() for h in (env("ALLOWED_HOSTS", "") or "").split(",") if h.strip()]
if PRODUCTION:
    if not SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY must be set in production (SIGHTLINE_PRODUCTION=1).")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set in production (SIGHTLINE_PRODUCTION=1).")
else:
    SECRET_KEY = SECRET_KEY or "dev-only-insecure-key-never-used-in-production"
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["127.0.0.1", "localhost", "testserver"]

# Keyed hash for pseudonymised patient ids in exports; separate from SECRET_KEY so it can be
# rotated per study. Production refuses to start without its own; elsewhere each installation
# generates one on first start and keeps it in var/pseudonym.key (never a public default key).
PSEUDONYM_KEY = env("PSEUDONYM_KEY")
REDIS_URL = env("REDIS_URL")
if PRODUCTION:
    if not PSEUDONYM_KEY or PSEUDONYM_KEY == SECRET_KEY:
        raise ImproperlyConfigured(
            "PSEUDONYM_KEY must be set in production (SIGHTLINE_PRODUCTION=1), and differ from SECRET_KEY."
        )
    if not REDIS_URL:
        raise ImproperlyConfigured(
            "REDIS_URL must be set in production (SIGHTLINE_PRODUCTION=1): the workers, the caches and "
            "the login throttle's counts are shared through it."
        )
elif not PSEUDONYM_KEY:
    PSEUDONYM_KEY = installation_key(BASE_DIR / "var" / "pseudonym.key")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI's assets, served from our own static files (no CDN).
    "drf_spectacular_sidecar",
    "csp",
    # Ordered bottom layer first (see the import-linter contract in pyproject.toml).
    "common",
    "accounts",
    "models_registry",
    "patients",
    "explanations",
    "clinician_ui",
    "monitoring",
    "interop",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Oversized API bodies are refused (413 JSON) before anything reads them.
    "sightline.middleware.ApiBodyLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Pages and API answers carry patient data: never cached (static files are served above).
    "sightline.middleware.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Idle and absolute session limits (accounts.sessions).
    "accounts.sessions.SessionTimeoutMiddleware",
    # A database outage answers the API 503 JSON, not an HTML 500.
    "explanations.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "sightline.urls"
WSGI_APPLICATION = "sightline.wsgi.application"

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

if not env("DATABASE_URL"):
    # The embedded default keeps its SQLite file under var/ (git-ignored).
    (BASE_DIR / "var").mkdir(exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}",
        conn_max_age=envint("DB_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default serves the web process and in-process tasks at once. A deferred
    # transaction that reads and then writes cannot wait for a concurrent one (SQLite answers
    # "database is locked" at once, which the API would answer 503): take the write lock when the
    # transaction begins, wait up to SQLITE_BUSY_TIMEOUT_SECONDS for it, and let readers read
    # while a writer writes (WAL).
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": envint("SQLITE_BUSY_TIMEOUT_SECONDS", 20),
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
# Login throttling (LOGIN_FAILURE_*, LOGIN_BACKOFF_*): sightline/settings_security.py.
# Personal API tokens (create_api_token): how long one lasts unless --expires says, and at most.
API_TOKEN_DEFAULT_DAYS = envint("API_TOKEN_DEFAULT_DAYS", 90)
API_TOKEN_MAX_DAYS = envint("API_TOKEN_MAX_DAYS", 365)
LOGIN_REDIRECT_URL = "worklist"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
# The hospital's local time zone: cohort slices take their day and shift (day 07:00-18:59) from it.
HOSPITAL_TIME_ZONE = env("HOSPITAL_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# plotly.js is served from our own static files: the copy shipped inside the pinned
# plotly package, so the chart library and the Python figures never disagree.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/plotly", Path(plotly.__file__).parent / "package_data"),
]

# Outside production, WhiteNoise serves static files straight from the app and vendor folders
# (no collectstatic needed for the demo); production serves the collected, hashed copies.
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    # WhiteNoise warns that STATIC_ROOT does not exist, which is expected before any collectstatic.
    warnings.filterwarnings("ignore", message="No directory at: ", module="whitenoise.base")

# Registry artifacts, content-addressed by sha256.
MODEL_STORE = Path(env("MODEL_STORE") or BASE_DIR / "var" / "model_store")

CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"  # a host, or kombu warns "No hostname was supplied"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
# One queue per deployment (and per test run, so a test's worker takes only its own tasks).
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", "sightline")
# Lone predictions' explanations have a queue of their own (sightline.celery.route_lone_tasks), read
# first: a worker consumes the queues in this order ("priority" below keeps the order fixed).
CELERY_TASK_QUEUES = [Queue(now_queue(CELERY_TASK_DEFAULT_QUEUE)), Queue(CELERY_TASK_DEFAULT_QUEUE)]
CELERY_TASK_ROUTES = ["sightline.celery.route_lone_tasks"]
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", 120)
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 180)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 600, "queue_order_strategy": "priority"}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-explanations": {
        "task": "explanations.tasks.explanation_sweep",
        "schedule": envint("EXPLANATION_SWEEP_SECONDS", 60),
    },
    # Per-subgroup figures of versions still without them (models_registry.subgroups).
    "sweep-subgroup-figures": {
        "task": "models_registry.tasks.subgroups_sweep",
        "schedule": envint("SUBGROUP_SWEEP_SECONDS", 300),
    },
    # Recompute the monitoring dashboard's default views (monitoring.services.default_comparisons).
    "refresh-monitoring-summaries": {
        "task": "monitoring.tasks.monitoring_refresh",
        "schedule": envint("MONITORING_REFRESH_SECONDS", 600),
    },
    # Forget CDS Hooks token ids whose tokens have expired (they can no longer be replayed).
    "prune-seen-cds-tokens": {
        "task": "interop.tasks.seen_jti_prune",
        "schedule": envint("CDS_JTI_PRUNE_SECONDS", 3600),
    },
}
# Scores arriving schedule one refresh of their version's default monitoring summaries this many
# seconds later (a burst of scores shares it).
MONITORING_REFRESH_DEBOUNCE_SECONDS = envint("MONITORING_REFRESH_DEBOUNCE_SECONDS", 30)
# Explanation engine thresholds (engine.profile.DEFAULTS lists them all), e.g. the model
# abstains when EXPLANATION_KEY_MISSING_ABSTAIN of the EXPLANATION_KEY_FEATURES most influential
# inputs are not measured.
EXPLANATION_ENGINE = {
    "key_features": envint("EXPLANATION_KEY_FEATURES", 5),
    "key_missing_abstain": envint("EXPLANATION_KEY_MISSING_ABSTAIN", 3),
    "stability_perturbations": envint("EXPLANATION_STABILITY_PERTURBATIONS", 20),
}
# Cohort recompute: predictions per chunk task; bounded sample per (version, unit, shift, day).
COHORT_CHUNK_SIZE = envint("COHORT_CHUNK_SIZE", 2000)
COHORT_SAMPLE_SIZE = envint("COHORT_SAMPLE_SIZE", 200)
# A running cohort job in which no chunk started or finished for this long is re-dispatched by the
# sweep (its messages were lost); keep it above the task time limit.
COHORT_STALL_SECONDS = envint("COHORT_STALL_SECONDS", 600)
# Per-subgroup figures at registration (issue #18): bootstrap resamples of fairlearn's MetricFrame,
# the floor under which a subgroup is "too few to judge", and the disparity flags' margins
# (calibration in the large, in probability points; the four-fifths rule for alert rates).
SUBGROUP_BOOTSTRAP_RESAMPLES = envint("SUBGROUP_BOOTSTRAP_RESAMPLES", 200)
# A worker computes them right after registration (and the sweep catches up); the test suite turns
# this off so that its workers only run the tasks a test is about.
SUBGROUP_FIGURES_QUEUED = envbool("SUBGROUP_FIGURES_QUEUED", "True")
SUBGROUP_MIN_SIZE = envint("SUBGROUP_MIN_SIZE", 50)
SUBGROUP_MIN_EVENTS = envint("SUBGROUP_MIN_EVENTS", 10)
SUBGROUP_CALIBRATION_MARGIN = float(env("SUBGROUP_CALIBRATION_MARGIN", "0.05"))
SUBGROUP_ALERT_RATIO_FLOOR = float(env("SUBGROUP_ALERT_RATIO_FLOOR", "0.8"))
# Monitoring flags an override-rate gap between subgroups above this margin, among groups with enough alerts.
SUBGROUP_OVERRIDE_MARGIN = float(env("SUBGROUP_OVERRIDE_MARGIN", "0.10"))
SUBGROUP_OVERRIDE_MIN_ALERTS = envint("SUBGROUP_OVERRIDE_MIN_ALERTS", 20)
# The monitoring page's subgroup view: bootstrap resamples per window (computed by a task, cached).
SUBGROUP_MONITORING_RESAMPLES = envint("SUBGROUP_MONITORING_RESAMPLES", 100)
# A worker computing them for longer than this is taken for dead and the sweep queues them again.
SUBGROUP_STUCK_SECONDS = envint("SUBGROUP_STUCK_SECONDS", 3600)
# An explanation pending or running longer than this is re-queued by the sweep.
EXPLANATION_STUCK_SECONDS = envint("EXPLANATION_STUCK_SECONDS", 300)

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        # Embedded default: files, shared by `manage.py demo` (it fills them) and the web server.
        else {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": BASE_DIR / "var" / "cache",
        }
    )
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.auth.ServiceTokenAuthentication",
        "accounts.auth.SessionLoginAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["sightline.parsers.StrictJSONParser"],
    "EXCEPTION_HANDLER": "sightline.api_errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": ["sightline.throttling.CallerRateThrottle"],
    # Per scoring-service token, per signed-in user, per anonymous address. Configurable because
    # a hospital's scoring run may post a whole census at once.
    "DEFAULT_THROTTLE_RATES": {
        "service": env("THROTTLE_SERVICE_RATE", "60000/min"),
        "user": env("THROTTLE_USER_RATE", "1200/min"),
        "anon": env("THROTTLE_ANON_RATE", "60/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Sightline API",
    "DESCRIPTION": "Explanations for ICU risk alerts. See CONTRACT.md.",
    "VERSION": "1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Every operation documents its JSON errors (CONTRACT.md section 7).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "sightline.openapi.add_error_responses",
    ],
}

# Reasons a clinician picks when acting on an alert (CONTRACT.md section 4), per action.
# The codes are stored with each action and exported to outcome studies: add codes freely,
# but never reuse an old code for a new meaning.
ALERT_ACTION_REASONS = {
    "acknowledge": [
        {"code": "reviewing", "label": "Seen, reviewing now"},
        {"code": "review_on_rounds", "label": "Seen, will review on rounds"},
    ],
    "accept": [
        {"code": "treatment_changed", "label": "Treatment started or changed"},
        {"code": "investigations_ordered", "label": "Further investigations ordered"},
        {"code": "monitoring_increased", "label": "Monitoring increased"},
        {"code": "goals_of_care_discussion", "label": "Goals-of-care discussion planned"},
    ],
    "dismiss": [
        {"code": "already_aware", "label": "Already aware, plan in place"},
        {"code": "not_clinically_relevant", "label": "Not clinically relevant for this patient"},
        {"code": "data_error", "label": "Input data wrong or out of date"},
        {"code": "patient_comfort_care", "label": "Patient receiving comfort care"},
    ],
    "escalate": [
        {"code": "senior_review", "label": "Senior clinician review requested"},
        {"code": "outreach_team", "label": "Critical care outreach / rapid response called"},
        {"code": "specialist_consult", "label": "Specialist consult requested"},
    ],
}

# Inside the EHR (CONTRACT.md section 8): CDS Hooks and SMART App Launch.
# Sightline's own public base URL, as the EHR reaches it: a CDS Hooks token's `aud` must be this plus
# the service path, and the SMART redirect URI is this plus /smart/callback. Unset, the CDS Hooks and
# SMART endpoints answer 503 in production; elsewhere the request's own host is used.
CDS_PUBLIC_BASE_URL = (env("CDS_PUBLIC_BASE_URL", "") or "").rstrip("/")
if PRODUCTION and CDS_PUBLIC_BASE_URL and not CDS_PUBLIC_BASE_URL.startswith("https://"):
    raise ImproperlyConfigured(
        "CDS_PUBLIC_BASE_URL must be Sightline's https:// address in production (SIGHTLINE_PRODUCTION=1)."
    )
# Clock skew allowed on a CDS Hooks token's exp/iat, and the longest lifetime (exp - iat) accepted.
CDS_JWT_LEEWAY_SECONDS = envint("CDS_JWT_LEEWAY_SECONDS", 60)
CDS_JWT_MAX_LIFETIME_SECONDS = envint("CDS_JWT_MAX_LIFETIME_SECONDS", 300)
# How many factors a CDS card's detail lists.
CDS_CARD_TOP_FACTORS = envint("CDS_CARD_TOP_FACTORS", 5)
# A SMART launch session lasts as long as the EHR's access token, and never longer than this.
SMART_SESSION_MAX_SECONDS = envint("SMART_SESSION_MAX_SECONDS", 8 * 3600)
# Timeout of each call to an EHR (its SMART configuration, token endpoint, JWKS).
EHR_HTTP_TIMEOUT_SECONDS = envint("EHR_HTTP_TIMEOUT_SECONDS", 5)

# Seconds between the worklist's background refreshes (rows are updated in place).
WORKLIST_POLL_SECONDS = envint("WORKLIST_POLL_SECONDS", 15)
# Hours a patient's latest score may lag their unit's newest before the worklist lists them apart
# (left the unit, or their scores stopped; counted, behind a link). A whole stopped unit stays listed.
WORKLIST_LEFT_AFTER_HOURS = envint("WORKLIST_LEFT_AFTER_HOURS", 12)
# Rows per database fetch, CSV write and Parquet row group in the outcome-study export.
EXPORT_CHUNK_SIZE = envint("EXPORT_CHUNK_SIZE", 2000)

# What a model bundle .zip may unpack to (the declared sizes and the bytes really written alike),
# and the largest upload of one (POST /api/v1/models/, the whole multipart body): a zip is never
# much larger than what it unpacks to, so a bigger upload could never be accepted and is refused
# (413 JSON) before it is read or written to a temporary file. Raise them together (and nginx's
# client_max_body_size, docker/nginx.conf).
MODEL_BUNDLE_MAX_UNPACKED_BYTES = envint("MODEL_BUNDLE_MAX_UNPACKED_BYTES", 256 * 1024 * 1024)
MODEL_UPLOAD_MAX_BYTES = envint("MODEL_UPLOAD_MAX_BYTES", MODEL_BUNDLE_MAX_UNPACKED_BYTES + 1024 * 1024)
# Largest request body accepted by the API, per path prefix; larger bodies get 413 JSON unread.
# A bulk ingest of 10,000 predictions is ~20 MB; a model bundle upload is a zip file.
API_BODY_LIMIT_DEFAULT = envint("API_BODY_LIMIT_DEFAULT", 1024 * 1024)
API_BODY_LIMITS = {
    "/api/v1/predictions/bulk/": envint("API_BODY_LIMIT_BULK", 40 * 1024 * 1024),
    "/api/v1/models/": envint("API_BODY_LIMIT_MODELS", MODEL_UPLOAD_MAX_BYTES),
    "/fhir/": envint("API_BODY_LIMIT_FHIR", 4 * 1024 * 1024),
    "/cds-services/": envint("API_BODY_LIMIT_CDS", 4 * 1024 * 1024),
}
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 40 * 1024 * 1024)
BULK_MAX_ITEMS = 10_000
# A prediction scored further ahead of this server's clock is refused (clock fault).
SCORED_AT_MAX_FUTURE_SECONDS = envint("SCORED_AT_MAX_FUTURE_SECONDS", 300)

if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "True")
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
SESSION_COOKIE_HTTPONLY = True

# Content-Security-Policy, sessions (idle and absolute limits): sightline/settings_security.py.
from sightline.settings_security import *  # noqa: E402, F403

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
    },
}
