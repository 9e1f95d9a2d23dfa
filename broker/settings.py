"""Django settings for the worklist broker.

Every setting a site may change comes from an environment variable; the README's
configuration table lists them all. Problems are collected in ``CONFIG_PROBLEMS`` and
reported by the ``broker`` system checks (see ``broker/checks.py``).
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import django_stubs_ext
from celery.schedules import crontab

from broker.config import Config

# Lets admin and queryset classes be subscripted for type hints at run time. (Importing
# DRF here would freeze its settings before REST_FRAMEWORK below is read.)
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
_cfg = Config()

VAR_DIR = Path(_cfg.string("BROKER_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = _cfg.boolean("DEBUG", False)

# --- secrets -------------------------------------------------------------------------
# Order: SECRET_KEY, then the file SECRET_KEY_FILE (``make run`` writes a random one to
# var/secret_key), then, only under DEBUG, a throw-away key. Outside DEBUG there is no
# usable default: the broker.E010 check stops the start.
_secret = _cfg.string("SECRET_KEY", "")
_secret_file = Path(_cfg.string("SECRET_KEY_FILE", str(VAR_DIR / "secret_key")))
if not _secret and _secret_file.is_file():
    _secret = _secret_file.read_text().strip()
SECRET_KEY_MISSING = not _secret
if SECRET_KEY_MISSING:
    # Never usable outside DEBUG: a check refuses to start without a real key.
    _secret = "insecure-debug-only-" + secrets.token_urlsafe(32)
SECRET_KEY = _secret

ALLOWED_HOSTS = _cfg.list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = _cfg.list("CSRF_TRUSTED_ORIGINS", [])

# Behind TLS (a reverse proxy or the site's load balancer), turn on every HTTPS safeguard.
HTTPS = _cfg.boolean("BROKER_HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- network listeners ---------------------------------------------------------------
BROKER_BIND = _cfg.bind_address("BROKER_BIND", "127.0.0.1")
BROKER_HTTP_PORT = _cfg.port("BROKER_HTTP_PORT", 8000)
BROKER_DICOM_PORT = _cfg.port("BROKER_DICOM_PORT", 11112)
BROKER_HL7_PORT = _cfg.port("BROKER_HL7_PORT", 2575)
BROKER_AE_TITLE = _cfg.ae_title("BROKER_AE_TITLE", "WORKLIST")
BROKER_HTTP_WORKERS = _cfg.integer("BROKER_HTTP_WORKERS", 2, minimum=1, maximum=64)

# DICOM association policy.
DICOM_RESTRICT_CALLING_AE = _cfg.boolean("DICOM_RESTRICT_CALLING_AE", False)
DICOM_MAX_ASSOCIATIONS = _cfg.integer("DICOM_MAX_ASSOCIATIONS", 50, minimum=1, maximum=1000)
DICOM_ACSE_TIMEOUT = _cfg.number("DICOM_ACSE_TIMEOUT", 30.0, minimum=1.0)
DICOM_DIMSE_TIMEOUT = _cfg.number("DICOM_DIMSE_TIMEOUT", 30.0, minimum=1.0)
DICOM_NETWORK_TIMEOUT = _cfg.number("DICOM_NETWORK_TIMEOUT", 60.0, minimum=1.0)
DICOM_MAX_PDU = _cfg.integer("DICOM_MAX_PDU", 262144, minimum=0)
# --- listener hardening (reliability) ---
# Connections one address may hold (associations and connections that have not asked
# for one yet); default half of DICOM_MAX_ASSOCIATIONS, so one host never holds them all.
DICOM_MAX_ASSOCIATIONS_PER_HOST = _cfg.integer(
    "DICOM_MAX_ASSOCIATIONS_PER_HOST",
    max(1, DICOM_MAX_ASSOCIATIONS // 2),
    minimum=1,
    maximum=1000,
)
# Bytes of one DIMSE message (command + data set) a peer may make the listener hold.
DICOM_MAX_MESSAGE_BYTES = _cfg.integer(
    "DICOM_MAX_MESSAGE_BYTES", 256 * 1024 * 1024, minimum=64 * 1024
)
DICOM_TLS_CERT = _cfg.existing_file("DICOM_TLS_CERT")
DICOM_TLS_KEY = _cfg.existing_file("DICOM_TLS_KEY")
DICOM_TLS_CA = _cfg.existing_file("DICOM_TLS_CA")
# Threads (each with one database connection) that run the listener's queries.
DICOM_DB_WORKERS = _cfg.integer("DICOM_DB_WORKERS", 4, minimum=1, maximum=64)

# Worklist (C-FIND) policy.
MWL_MAX_ANSWERS = _cfg.integer("MWL_MAX_ANSWERS", 5000, minimum=1)
MWL_PN_CASE_INSENSITIVE = _cfg.boolean("MWL_PN_CASE_INSENSITIVE", False)
MWL_CALLING_AE_AS_STATION = _cfg.boolean("MWL_CALLING_AE_AS_STATION", False)

# HL7 MLLP listener.
HL7_MAX_MESSAGE_BYTES = _cfg.integer("HL7_MAX_MESSAGE_BYTES", 1024 * 1024, minimum=1024)
HL7_IDLE_TIMEOUT = _cfg.number("HL7_IDLE_TIMEOUT", 300.0, minimum=1.0)
HL7_MAX_CONNECTIONS = _cfg.integer("HL7_MAX_CONNECTIONS", 200, minimum=1)
# --- MLLP hardening (reliability) ---
HL7_MAX_CONNECTIONS_PER_HOST = _cfg.integer(
    "HL7_MAX_CONNECTIONS_PER_HOST", max(1, HL7_MAX_CONNECTIONS // 4), minimum=1
)
# Seconds an ACK may wait for the peer to read it before the connection is dropped.
HL7_WRITE_TIMEOUT = _cfg.number("HL7_WRITE_TIMEOUT", 30.0, minimum=0.1)
HL7_TLS_CERT = _cfg.existing_file("HL7_TLS_CERT")
HL7_TLS_KEY = _cfg.existing_file("HL7_TLS_KEY")
HL7_STUDY_UID_POLICY = _cfg.choice("HL7_STUDY_UID_POLICY", "generate", ("generate", "reject"))
HL7_RECEIVING_APPLICATION = _cfg.string("HL7_RECEIVING_APPLICATION", "WORKLIST")
HL7_RECEIVING_FACILITY = _cfg.string("HL7_RECEIVING_FACILITY", "BROKER")
# ORC-1/ORC-5 -> SPS status, e.g. "NW_SC=SCHEDULED,CA_CA=CANCELED"; empty: the default
# table of the mapping document (checked by hl7v2.E001).
HL7_ORDER_STATUS_TABLE = _cfg.string("HL7_ORDER_STATUS_TABLE", "")
# Scheduled Station AE Title: ORC-18 / IPC-9 if sent, else the device registry (modality,
# and IPC-8 location if sent); or only one of the two.
HL7_STATION_AE_SOURCE = _cfg.choice(
    "HL7_STATION_AE_SOURCE", "message-or-registry", ("message-or-registry", "message", "registry")
)
# Transactions in flight at once per listener process (threads, one database connection
# each). Messages arriving while all are busy wait, and the next free worker commits up
# to HL7_BATCH_MAX of them in one transaction (group commit; each ACKed after it).
# 0: 8 on PostgreSQL (round trips overlap), 2 on SQLite (one writer: messages of several
# connections then share a commit). Resolved below, once the database is known.
HL7_WORKERS = _cfg.integer("HL7_WORKERS", 0, minimum=0, maximum=64)
HL7_BATCH_MAX = _cfg.integer("HL7_BATCH_MAX", 32, minimum=1, maximum=1000)
# hl7_server processes sharing the port; 0: one per CPU on PostgreSQL, one on SQLite.
HL7_PROCESSES = _cfg.integer("HL7_PROCESSES", 0, minimum=0, maximum=64)

# Status back to the RIS (MPPS -> ORC-5 IP/CM/DC). Empty host: no status is sent.
RIS_HL7_HOST = _cfg.string("RIS_HL7_HOST", "")
RIS_HL7_PORT = _cfg.port("RIS_HL7_PORT", 2576)
RIS_HL7_MESSAGE = _cfg.choice("RIS_HL7_MESSAGE", "ORM^O01", ("ORM^O01", "OMI^O23"))
RIS_HL7_TIMEOUT = _cfg.number("RIS_HL7_TIMEOUT", 10.0, minimum=0.1)
# Retries of a status message the RIS did not accept (down, AE, AR): the wait doubles
# from RIS_HL7_RETRY_DELAY up to RIS_HL7_RETRY_MAX_DELAY; after RIS_HL7_MAX_ATTEMPTS the
# message is marked failed and holds back later messages of its order until retried.
RIS_HL7_RETRY_DELAY = _cfg.number("RIS_HL7_RETRY_DELAY", 10.0, minimum=0.01)
RIS_HL7_RETRY_MAX_DELAY = _cfg.number("RIS_HL7_RETRY_MAX_DELAY", 600.0, minimum=0.01)
RIS_HL7_MAX_ATTEMPTS = _cfg.integer("RIS_HL7_MAX_ATTEMPTS", 50, minimum=1)

# Prefix for generated UIDs (Study Instance UIDs when the RIS sends none). pydicom's
# prefix is the default; a site with its own root sets it.
BROKER_UID_ROOT = _cfg.string("BROKER_UID_ROOT", "1.2.826.0.1.3680043.8.498.")

# --- routing of completed studies (routing/) ------------------------------------------
# Received instances are kept here until every job that needs them is finished and
# ROUTING_RETENTION_HOURS have passed.
# Empty: spool/ under BROKER_VAR_DIR.
_spool_dir = _cfg.string("ROUTING_SPOOL_DIR", "")
ROUTING_SPOOL_DIR = Path(_spool_dir) if _spool_dir else VAR_DIR / "spool"
# Flush each received file to disk before answering success. Off, a power cut can lose
# instances already acknowledged; on, each instance waits for the disk (5-15 ms here).
ROUTING_SPOOL_FSYNC = _cfg.boolean("ROUTING_SPOOL_FSYNC", True)
# A study with no MPPS in progress is routed once no instance arrived for this long.
ROUTING_STABLE_SECONDS = _cfg.number("ROUTING_STABLE_SECONDS", 120.0, minimum=0.0)
# After a final MPPS, how long to wait for the instances it lists before routing what is
# there (the jobs are then WARNING, with the missing instance UIDs).
ROUTING_COMPLETENESS_TIMEOUT = _cfg.number("ROUTING_COMPLETENESS_TIMEOUT", 600.0, minimum=0.0)
# Retries of failed instances: the wait doubles from ROUTING_RETRY_DELAY up to
# ROUTING_RETRY_MAX_DELAY; after ROUTING_MAX_ATTEMPTS the job is FAILED.
ROUTING_RETRY_DELAY = _cfg.number("ROUTING_RETRY_DELAY", 30.0, minimum=0.0)
ROUTING_RETRY_MAX_DELAY = _cfg.number("ROUTING_RETRY_MAX_DELAY", 1800.0, minimum=0.0)
ROUTING_MAX_ATTEMPTS = _cfg.integer("ROUTING_MAX_ATTEMPTS", 10, minimum=1)
ROUTING_RETENTION_HOURS = _cfg.number("ROUTING_RETENTION_HOURS", 72.0, minimum=0.0)
# A worker holds a job it sends for this long (renewed while it sends); a job whose
# worker died is taken by another one after it.
ROUTING_LEASE_SECONDS = _cfg.number("ROUTING_LEASE_SECONDS", 120.0, minimum=1.0)
# How often Celery beat runs the routing checks (completeness, quiet period, due retries,
# expired leases, spool clean-up).
ROUTING_TICK_SECONDS = _cfg.number("ROUTING_TICK_SECONDS", 5.0, minimum=0.1)
# Seconds to wait for a destination to answer (connect, association, each response).
ROUTING_TIMEOUT = _cfg.number("ROUTING_TIMEOUT", 30.0, minimum=0.1)

# --- Django --------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "audit",
    "broker",
    "worklist",
    "hl7v2",
    "mpps",
    "routing",
    "frontdesk",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: answers a locked-out login with 429.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "broker.urls"
WSGI_APPLICATION = "broker.wsgi.application"

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

_default_db = f"sqlite:///{VAR_DIR / 'broker.sqlite3'}"
_db = _cfg.database("DATABASE_URL", _default_db)
# --- durability (reliability) ---
# FULL: a commit (and so an ACK) is on disk before it returns, even in WAL mode; NORMAL
# may lose the last transactions on power failure. README "Durability" has the cost.
SQLITE_SYNCHRONOUS = _cfg.choice("SQLITE_SYNCHRONOUS", "FULL", ("FULL", "NORMAL"))
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the worklist be read while HL7 writes; IMMEDIATE takes the write lock at
    # BEGIN so two writers queue instead of failing a lock upgrade mid-transaction.
    _db.setdefault("OPTIONS", {}).update(
        {
            "init_command": f"PRAGMA journal_mode=WAL; PRAGMA synchronous={SQLITE_SYNCHRONOUS};",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    )
    # A file, not memory: protocol tests serve from other threads and processes. One
    # file per test run, so parallel runs on one machine do not collide.
    _db["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    _db["CONN_MAX_AGE"] = _cfg.integer("DATABASE_CONN_MAX_AGE", 60, minimum=0)
    _db["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _db}
if not HL7_WORKERS:
    HL7_WORKERS = 2 if _db["ENGINE"] == "django.db.backends.sqlite3" else 8
# The HL7 intake's cached statements (core.fastpath) are prepared on PostgreSQL; false
# behind a connection pooler in transaction mode that does not track prepared
# statements (PgBouncer before 1.21).
DATABASE_PREPARED_STATEMENTS = _cfg.boolean("DATABASE_PREPARED_STATEMENTS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# --- staff pages (frontdesk) ----------------------------------------------------------
# Every page but /health/ needs a login; the sign-in page is Django's own login view.
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
# Seconds between two refreshes of the procedure board (htmx polls a fragment).
BOARD_REFRESH_SECONDS = _cfg.number("BOARD_REFRESH_SECONDS", 2.0, minimum=0.5)

# --- login rate limiting (django-axes) -------------------------------------------------
# After AXES_FAILURE_LIMIT failed logins of one username from one address, that pair is
# locked out for AXES_COOLOFF_MINUTES (answer 429); a successful login resets the count.
AUTHENTICATION_BACKENDS = [
    "broker.auth.LoginRateLimitBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = _cfg.integer("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=_cfg.integer("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Failed attempts are kept (that is the lockout); successful logins are not logged.
AXES_DISABLE_ACCESS_LOG = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = _cfg.string("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic puts the pages' CSS and JS for whitenoise to serve (the Docker
# image collects them at build time into its own folder, outside the data volume).
STATIC_ROOT = Path(_cfg.string("BROKER_STATIC_ROOT", str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- REST API (worklist/api.py, mpps/api.py, hl7v2/api.py; core/api.py) ---------------
# Reads need the model's view permission (roles: broker/roles.py); pages of results are
# capped at API_MAX_PAGE_SIZE whatever ?limit= / ?page_size= asks for.
API_PAGE_SIZE = _cfg.integer("API_PAGE_SIZE", 100, minimum=1)
API_MAX_PAGE_SIZE = _cfg.integer("API_MAX_PAGE_SIZE", 1000, minimum=1)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["core.api.ModelPermissions"],
    "DEFAULT_PAGINATION_CLASS": "core.api.Pagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "PAGE_SIZE": API_PAGE_SIZE,
}
# OpenAPI 3 at /api/schema/, Swagger UI at /api/docs/, its JavaScript and CSS served by
# the broker itself (drf-spectacular-sidecar) and its online validator off: no request
# to another host, so the docs work on a hospital network without internet. (Not
# drf-spectacular's Redoc page: its template loads web fonts from Google.)
SPECTACULAR_SETTINGS = {
    "TITLE": "Worklist broker API",
    "DESCRIPTION": (
        "Patients, orders, scheduled steps, MPPS, HL7 and RIS message logs, board and "
        "turnaround figures; /api/v1/mwlitems/ as dcm4chee's MWL-RS (DICOM JSON)."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "SPSStatusEnum": "worklist.status.SPSStatus",
        "PriorityEnum": "worklist.status.Priority",
        "MPPSStatusEnum": "mpps.status.MPPSStatus",
        "OutboundStateEnum": "mpps.status.OutboundState",
        "HL7OutcomeEnum": "hl7v2.status.Outcome",
    },
}

# --- Celery --------------------------------------------------------------------------
# Default: kombu's filesystem transport, so a first run needs no server; a real worker
# process still runs the tasks asynchronously. Production: redis://.
CELERY_QUEUE_DIR = VAR_DIR / "queue"
CELERY_BROKER_URL = _cfg.broker_url("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_QUEUE_DIR / "messages"),
        "data_folder_out": str(CELERY_QUEUE_DIR / "messages"),
        "processed_folder": str(CELERY_QUEUE_DIR / "processed"),
        "store_processed": False,
        # kombu writes its broadcast exchanges (celery.pidbox) here; without it, into
        # the current working directory.
        "control_folder": str(CELERY_QUEUE_DIR / "control"),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True  # a task lost with its worker is run again, not dropped
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = _cfg.integer("CELERY_TASK_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = _cfg.integer("CELERY_TASK_SOFT_TIME_LIMIT", 240, minimum=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = False

# --- Celery beat ---------------------------------------------------------------------
# Periodic tasks (``celery -A broker beat``, started by ``manage.py serve``). A plain
# dict: each app adds its own entries. The schedule file lives under BROKER_VAR_DIR.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "routing-tick": {"task": "routing.tick", "schedule": ROUTING_TICK_SECONDS},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- self-healing, health and metrics (reliability) ----------------------------------
HEARTBEAT_INTERVAL = _cfg.number("HEARTBEAT_INTERVAL", 60.0, minimum=1.0)
# A pending RIS message whose send task was lost (queue outage, worker killed before
# the ack) is queued again this long after it was due.
RIS_REQUEUE_AFTER = _cfg.number("RIS_REQUEUE_AFTER", 120.0, minimum=1.0)
CELERY_BEAT_SCHEDULE.update(
    {
        "broker-heartbeat": {"task": "broker.heartbeat", "schedule": HEARTBEAT_INTERVAL},
        "broker-requeue-lost": {"task": "broker.requeue_lost", "schedule": 60.0},
    }
)
# Retention in days (0: keep forever); purged daily at PURGE_HOUR (TIME_ZONE) by beat.
RETENTION_HL7_MESSAGE_DAYS = _cfg.integer("RETENTION_HL7_MESSAGE_DAYS", 90, minimum=0)
RETENTION_MPPS_DATASET_DAYS = _cfg.integer("RETENTION_MPPS_DATASET_DAYS", 90, minimum=0)
RETENTION_RIS_ATTEMPT_DAYS = _cfg.integer("RETENTION_RIS_ATTEMPT_DAYS", 90, minimum=0)
RETENTION_HEARTBEAT_DAYS = _cfg.integer("RETENTION_HEARTBEAT_DAYS", 7, minimum=0)
RETENTION_AUDIT_DAYS = _cfg.integer("RETENTION_AUDIT_DAYS", 2190, minimum=0)
PURGE_HOUR = _cfg.integer("PURGE_HOUR", 3, minimum=0, maximum=23)
CELERY_TIMEZONE = TIME_ZONE  # beat's crontab entries are in the site's time
CELERY_BEAT_SCHEDULE["broker-purge"] = {
    "task": "broker.purge",
    "schedule": crontab(hour=PURGE_HOUR, minute=17),
}
# /health/: where to reach the listeners from the web process, and when to say "down".
_local = "127.0.0.1" if BROKER_BIND in ("0.0.0.0", "::", "localhost") else BROKER_BIND
HEALTH_DICOM_HOST = _cfg.string("HEALTH_DICOM_HOST", _local)
HEALTH_HL7_HOST = _cfg.string("HEALTH_HL7_HOST", _local)
HEALTH_TIMEOUT = _cfg.number("HEALTH_TIMEOUT", 2.0, minimum=0.1)
HEALTH_WORKER_MAX_AGE = _cfg.number("HEALTH_WORKER_MAX_AGE", 3 * HEARTBEAT_INTERVAL, minimum=1.0)
HEALTH_RIS_BACKLOG_MAX_AGE = _cfg.number("HEALTH_RIS_BACKLOG_MAX_AGE", 3600.0, minimum=1.0)
# /metrics: loopback only by default, or with "Authorization: Bearer METRICS_TOKEN".
METRICS_ALLOWED_NETWORKS = _cfg.networks("METRICS_ALLOWED_IPS", ["127.0.0.0/8", "::1/128"])
METRICS_TOKEN = _cfg.string("METRICS_TOKEN", "")
# prometheus-client's multiprocess mode: read when it is first imported, so set here.
METRICS_DIR = Path(_cfg.string("METRICS_DIR", str(VAR_DIR / "metrics")))
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(METRICS_DIR))
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

# --- benchmark aids (issue 17) ---------------------------------------------------------
# The DICOM listener's socket options (core.dicom.net.tune_socket): "nodelay+quickack"
# (the default), "nodelay", or "off". Only for measuring what they are worth
# (bench/socket_options.py); never turn them off in service.
DICOM_TCP_TUNING = _cfg.choice(
    "DICOM_TCP_TUNING", "nodelay+quickack", ("nodelay+quickack", "nodelay", "off")
)

# --- logging -------------------------------------------------------------------------
LOG_LEVEL = _cfg.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    # No patient data at INFO or WARNING (nor ERROR): exception texts withheld.
    "filters": {"withhold_values": {"()": "broker.logfilters.WithholdValues"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["withhold_values"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # pynetdicom logs every PDU at DEBUG and identifiers (patient data) on request.
        "pynetdicom": {"level": "WARNING"},
        # pydicom logs the values it cannot read ("Invalid value for VR PN: ...").
        "pydicom": {"level": "ERROR"},
        # "Not Found: <path>" at WARNING: the path is whatever the client typed.
        "django.request": {"level": "ERROR"},
        # Python warnings (Django routes them here) quote values too, e.g. pydicom's.
        "py.warnings": {"level": "ERROR"},
        "django.db.backends": {"level": "WARNING"},
        # django-axes: its start-up banner and every attempt at INFO; lockouts (with the
        # username masked) at WARNING.
        "axes": {"level": "WARNING"},
    },
}

# gunicorn's access log under `serve`: method, path (never the query string: admin
# searches carry patient names), status, size, time. Off with HTTP_ACCESS_LOG=false.
HTTP_ACCESS_LOG = _cfg.boolean("HTTP_ACCESS_LOG", True)
HTTP_ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'

CONFIG_PROBLEMS = _cfg.problems
# Every environment variable read above, with its default (read by manage.py conformance).
CONFIG_DEFAULTS = _cfg.defaults

os.makedirs(STATIC_ROOT, exist_ok=True)
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Producers (listeners) and the worker share these folders.
    os.makedirs(CELERY_QUEUE_DIR / "messages", exist_ok=True)
    os.makedirs(CELERY_QUEUE_DIR / "processed", exist_ok=True)
    os.makedirs(CELERY_QUEUE_DIR / "control", exist_ok=True)
