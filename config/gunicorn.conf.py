"""Gunicorn settings: ``gunicorn -c config/gunicorn.conf.py``.

This file reads no environment variable itself. Gunicorn's own ones configure it:
``PORT`` (bind ``0.0.0.0:$PORT``; without it ``127.0.0.1:8000``), ``WEB_CONCURRENCY`` (workers,
default 1), ``FORWARDED_ALLOW_IPS`` (proxies trusted for X-Forwarded-*, default 127.0.0.1) and
``GUNICORN_CMD_ARGS`` (any command-line option, e.g. ``--bind 0.0.0.0:8000 --workers 4``).
Django's settings come from the environment as usual (see ``.env.example``).
"""

wsgi_app = "config.wsgi:application"

# Requests are short admin page views; a worker stuck for longer than this is restarted.
timeout = 30
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so that a slow leak cannot grow without bound.
max_requests = 2000
max_requests_jitter = 200

# Gunicorn's loggers carry no handler of their own and propagate to the root logger. In a worker,
# Django's LOGGING (config/settings.py) configures the root logger, so access and error lines get
# the same format (LOG_FORMAT) and the same secret redaction as the application's. In the master,
# which never loads Django, this root handler redacts too.
accesslog = "-"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "config.logging.RedactingFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_secrets"],
            "stream": "ext://sys.stderr",
        },
    },
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"handlers": [], "propagate": True},
        "gunicorn.access": {"handlers": [], "propagate": True},
    },
}
