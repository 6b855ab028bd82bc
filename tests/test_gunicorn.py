"""Production serving: gunicorn runs the WSGI app with DEBUG off and whitenoise serves the admin's
static files from a `collectstatic` directory.

The server is a real gunicorn process on 127.0.0.1 (a free port), configured by config/gunicorn.conf.py
and the production environment variables, talking to a migrated temporary SQLite file. Nothing leaves
the loopback interface; every wait is bounded.
"""

from __future__ import annotations

import gzip
import os
import re
import runpy
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import gunicorn
import pytest

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")
STRONG_SECRET = "k3J9x!qP0vZ7m@L2wR8tY5uB1nC4eF6gH9jK0lM3oQ7sT2vX5zA8dG1"
START_TIMEOUT = 30.0
HTTP_TIMEOUT = 10.0

#: Variables of the developer's or CI's shell that must not leak into the production process.
_CLEARED = ("DEBUG", "SECRET_KEY", "FERNET_KEYS", "ALLOWED_HOSTS", "DATABASE_URL", "DB_POOL", "CONN_MAX_AGE",
            "TEST_DATABASE_NAME", "STATIC_ROOT", "LOG_FORMAT", "LOG_LEVEL", "WEB_CONCURRENCY", "PORT",
            "GUNICORN_CMD_ARGS")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _get(url: str, headers: dict[str, str] | None = None):
    # Only http://127.0.0.1 URLs built in this module are opened.
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310
    return urllib.request.urlopen(request, timeout=HTTP_TIMEOUT)  # noqa: S310


@pytest.fixture(scope="module")
def production(tmp_path_factory) -> Iterator[dict]:
    """A migrated SQLite file, a collectstatic directory and a running gunicorn; stopped afterwards."""
    tmp = tmp_path_factory.mktemp("gunicorn")
    static_root = tmp / "static"
    env = {key: value for key, value in os.environ.items() if key not in _CLEARED}
    env.update({
        "DEBUG": "false",
        "SECRET_KEY": STRONG_SECRET,
        "FERNET_KEYS": "a-long-random-fernet-key-material-for-the-gunicorn-test-42",
        "ALLOWED_HOSTS": "127.0.0.1",
        # The test speaks plain HTTP; behind the TLS proxy in production this stays true.
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        "STATIC_ROOT": str(static_root),
        "ENV_FILE": str(tmp / "no.env"),
    })
    _run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env)
    _run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], env)

    port = _free_port()
    args = [str(GUNICORN), "-c", "config/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    if int(gunicorn.__version__.split(".")[0]) >= 27:
        # Gunicorn 27's control socket lives in $HOME; parallel test runs would fight over it.
        args.append("--no-control-socket")
    log_path = tmp / "gunicorn.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if server.poll() is not None:
                pytest.fail(f"gunicorn exited with {server.returncode}:\n{log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"gunicorn did not listen within {START_TIMEOUT}s:\n{log_path.read_text()}")
                time.sleep(0.1)
        yield {"base": base, "static_root": static_root, "log": log_path, "server": server}
    finally:
        if server.poll() is None:
            # Only the process group this fixture started: the gunicorn master and its worker.
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)


def test_gunicorn_config_reads_no_environment_and_redacts_every_handler():
    source = (ROOT / "config" / "gunicorn.conf.py").read_text()
    assert "import os" not in source and "os.environ" not in source and "getenv" not in source
    conf = runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    assert conf["wsgi_app"] == "config.wsgi:application"
    logging_config = conf["logconfig_dict"]
    assert logging_config["filters"]["redact_secrets"] == {"()": "config.logging.RedactingFilter"}
    assert all("redact_secrets" in h["filters"] for h in logging_config["handlers"].values())
    # Gunicorn's loggers have no handler of their own: in a worker, Django's root handler takes them.
    for name in ("gunicorn.error", "gunicorn.access"):
        assert logging_config["loggers"][name] == {"handlers": [], "propagate": True}


def test_admin_login_page_is_served_with_debug_off(production):
    with _get(production["base"] + "/admin/login/") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        body = response.read().decode()
    assert '<form action="/admin/login/" method="post" id="login-form">' in body
    assert 'name="username"' in body and 'name="password"' in body
    assert 'name="csrfmiddlewaretoken"' in body
    # DEBUG off: the manifest storage renders hashed static URLs.
    assert re.search(r'href="/static/admin/css/base\.[0-9a-f]{12}\.css"', body)
    # The site header of the console app, not Django's default.
    assert "Linear Planning Store" in body


def test_hashed_admin_stylesheet_is_served_by_whitenoise_with_long_caching(production):
    with _get(production["base"] + "/admin/login/") as response:
        href = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', response.read().decode())[1]
    expected = (production["static_root"] / href.removeprefix("/static/")).read_bytes()

    with _get(production["base"] + href) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/css")
        # Whitenoise marks hashed files immutable for ten years.
        assert response.headers["Cache-Control"] == "max-age=315360000, public, immutable"
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.read() == expected

    with _get(production["base"] + href, {"Accept-Encoding": "gzip"}) as response:
        assert response.status == 200
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["Vary"] == "Accept-Encoding"
        assert gzip.decompress(response.read()) == expected


def test_unhashed_static_name_gets_short_caching(production):
    with _get(production["base"] + "/static/admin/js/core.js") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/javascript")
        assert response.headers["Cache-Control"] == "max-age=60, public"


def test_access_log_goes_through_the_project_logging(production):
    with _get(production["base"] + "/admin/login/?access_token=lin_oauth_secret0123456789") as response:
        assert response.status == 200
    deadline = time.monotonic() + 5
    while "GET /admin/login/?access_token" not in production["log"].read_text():
        assert time.monotonic() < deadline, production["log"].read_text()
        time.sleep(0.05)
    log = production["log"].read_text()
    assert "lin_oauth_secret0123456789" not in log
    assert '"GET /admin/login/?access_token=[REDACTED] HTTP/1.1" 200' in log
    assert " INFO gunicorn.access 127.0.0.1 " in log
