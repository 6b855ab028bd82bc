"""Logging: one configuration, secrets redacted on every handler, optional JSON lines."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from config.logging import REDACTED, JSONFormatter, RedactingFilter, redact

ROOT = Path(__file__).resolve().parent.parent

LINEAR_OAUTH = "lin_oauth_8f3b2c1d9e7a6b5c4d3e2f1a0b9c8d7e"
LINEAR_API = "lin_api_Zx81kQ0pLm29VbN4rT7wYc3sD6fG5hJ"
ATLASSIAN_JWT = (
    "eyJraWQiOiJhdXRoLmF0bGFzc2lhbi5jb20tQUNDRVNTIiwiYWxnIjoiUlMyNTYifQ"
    ".eyJqdGkiOiI4ZDM0YjBkYS0xZjNkLTRmYmEtODQ1NiIsInN1YiI6IjU1NzA1ODphYmMifQ"
    ".Qm9ndXNTaWduYXR1cmVGb3JUZXN0c09ubHlfMDEyMzQ1Njc4OQ"
)
FERNET_CIPHERTEXT = "gAAAAABnQ1x2Vj0sY3pQ9bR7tK1mZ8wF4hL6cN2eD5aS0uX3oI7yG9jT1vB4qW8rE2nM5kP0xH6"
RANDOM_BASE64 = "Zk3J9xqP0vZ7mL2wR8tY5uB1nC4eF6gH9jK0"
RANDOM_HEX = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"stored {LINEAR_OAUTH} for org", f"stored {REDACTED} for org"),
        (f"personal key {LINEAR_API}.", f"personal key {REDACTED}."),
        (f"Authorization: Bearer {ATLASSIAN_JWT}", f"Authorization: Bearer {REDACTED}"),
        ("authorization=Basic dXNlcjpwYXNz", f"authorization=Basic {REDACTED}"),
        (f"header bearer {RANDOM_BASE64}", f"header bearer {REDACTED}"),
        (f"confluence token {ATLASSIAN_JWT} expired", f"confluence token {REDACTED} expired"),
        (f"row 7 holds {FERNET_CIPHERTEXT}", f"row 7 holds {REDACTED}"),
        (f"opaque {RANDOM_BASE64} and {RANDOM_HEX}", f"opaque {REDACTED} and {REDACTED}"),
        ("refresh_token=abc123 next=1", f"refresh_token={REDACTED} next=1"),
        ("?access_token=xyz&page=2", f"?access_token={REDACTED}&page=2"),
        ("FERNET_KEYS=first,second done", f"FERNET_KEYS={REDACTED} done"),
        ('password: "hunter two", user: "ann"', f'password: "{REDACTED}", user: "ann"'),
        ("{'client_secret': 's3cr3t', 'n': 1}", f"{{'client_secret': '{REDACTED}', 'n': 1}}"),
        ('{"api_key": "k-1", "n": 1}', f'{{"api_key": "{REDACTED}", "n": 1}}'),
        ("SECRET_KEY = django-insecure-xyz", f"SECRET_KEY = {REDACTED}"),
    ],
)
def test_redact_replaces_secrets(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "organization 8f1c2a3b-1234-4abc-9def-0123456789ab synced",
        "Conflict conflict-997b651d-9254-5b0c-a763-8f51b38bf830 resolved (linear)",
        "issues 8f1c2a3b-1234-4abc-9def-0123456789ab,0a1b2c3d-1234-4abc-9def-0123456789ab",
        'File "/work/main/.venv/lib/python3.11/site-packages/django/db/models/query.py", line 1',
        "planning.services.save_planning_result wrote 12 stories for session 42",
        "conflict-PROJ-123 on page 98765 / team ENG reopened",
        "https://acme.atlassian.net/wiki/spaces/ENG/pages/98765/PI+Planning+2026.1",
        "synced at 2026-11-25T14:00:00+00:00 in 0.53s",
        "unresolved_conflicts_for_page_and_team_without_any_digits_here",
        "getPlanningSessionsByOrganizationIdAndStatus / PlanningSessionAdminChangelistView2",
        "Linear_Team_ENG_Page_98765_Conflicts_2026 test_store_twice_keeps_one_row_on_PostgreSQL15",
    ],
)
def test_redact_keeps_ordinary_text(text):
    assert redact(text) == text


def _record(msg, args=(), exc_info=None, name="agent"):
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, exc_info)


def test_filter_redacts_arguments_of_any_type_and_keeps_the_record():
    record = _record(
        "stored %s, payload %r, pair %s=%s",
        (LINEAR_OAUTH, {"refresh_token": "r-1", "expires_in": 3600}, "token", "abc"),
    )
    assert RedactingFilter().filter(record) is True
    assert record.getMessage() == (
        f"stored {REDACTED}, payload {{'refresh_token': '{REDACTED}', 'expires_in': 3600}}, "
        f"pair token={REDACTED}"
    )
    assert record.args is None


def test_filter_redacts_mapping_arguments():
    record = _record("token for %(org)s is %(token)s", ({"org": "acme", "token": LINEAR_API},))
    RedactingFilter().filter(record)
    assert record.getMessage() == f"token for acme is {REDACTED}"


def test_filter_redacts_the_traceback():
    try:
        raise ValueError(f"refresh refused for {LINEAR_OAUTH}")
    except ValueError:
        record = _record("refresh failed", exc_info=sys.exc_info())
    RedactingFilter().filter(record)
    assert record.exc_text.startswith("Traceback (most recent call last):")
    assert record.exc_text.endswith(f"ValueError: refresh refused for {REDACTED}")
    assert LINEAR_OAUTH not in logging.Formatter().format(record)


def test_filter_survives_arguments_that_do_not_match_the_format():
    record = _record("two %s %s but one argument", (LINEAR_OAUTH,))
    assert RedactingFilter().filter(record) is True
    assert record.getMessage() == (
        "two %s %s but one argument (log arguments dropped: they did not match the format)"
    )


def test_json_formatter_writes_one_object_per_line():
    try:
        raise RuntimeError("boom\nsecond line ü")
    except RuntimeError:
        record = _record(
            "sync failed for %s\npage ✓", ("ENG",), exc_info=sys.exc_info(), name="sync.services"
        )
    record.created = 1_764_079_200.5  # 2025-11-25T14:00:00.500Z
    line = JSONFormatter().format(record)
    assert "\n" not in line and line.isascii()
    payload = json.loads(line)
    assert list(payload) == ["time", "level", "logger", "message", "exc_info"]
    assert payload["time"] == "2025-11-25T14:00:00.500+00:00"
    assert payload["level"] == "WARNING"
    assert payload["logger"] == "sync.services"
    assert payload["message"] == "sync failed for ENG\npage ✓"
    assert payload["exc_info"].startswith("Traceback (most recent call last):")
    assert payload["exc_info"].endswith("RuntimeError: boom\nsecond line ü")


def test_json_formatter_without_exception_has_null_exc_info():
    payload = json.loads(JSONFormatter().format(_record("ok")))
    assert payload["exc_info"] is None
    assert payload["message"] == "ok"


def test_settings_attach_the_redacting_filter_to_every_handler():
    handlers = settings.LOGGING["handlers"]
    assert handlers, "LOGGING defines no handler"
    for name, handler in handlers.items():
        assert "redact_secrets" in handler.get("filters", []), name
    assert settings.LOGGING["filters"]["redact_secrets"] == {"()": "config.logging.RedactingFilter"}


def test_project_mode_puts_the_redacting_filter_on_the_root_handler():
    # The configured objects, in a process set up as the project's own (LOG_SETUP=project, what
    # manage.py and the WSGI/ASGI entry points set): the root handler carries the filter; Django's
    # loggers add no handler of their own (Django's defaults would bypass the filter) and propagate.
    script = (
        "import logging, django\n"
        "django.setup()\n"
        "from config.logging import RedactingFilter\n"
        "root = logging.getLogger().handlers\n"
        "assert any(isinstance(f, RedactingFilter) for h in root for f in h.filters), root\n"
        "for name in ('django', 'django.server', 'django.request'):\n"
        "    logger = logging.getLogger(name)\n"
        "    assert logger.handlers == [] and logger.propagate, name\n"
        "print('ok')\n"
    )
    proc = _run_python(script, {"LOG_SETUP": "project"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"


def _run_manage(env_overrides: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LOG_FORMAT", "LOG_LEVEL", "DATABASE_URL")}
    env.update({"DEBUG": "true", "ENV_FILE": "/nonexistent/.env", **env_overrides})
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


_EMIT = (
    "import logging\n"
    f"logging.getLogger('agent.tokens').info('stored %s', {LINEAR_OAUTH!r})\n"
    "logging.getLogger('agent.tokens').debug('debug line')\n"
    f"logging.getLogger('django.request').warning('bad request with %s', 'Bearer {RANDOM_BASE64}')\n"
)


def test_json_output_end_to_end():
    proc = _run_manage({"LOG_FORMAT": "json", "LOG_LEVEL": "info"}, "shell", "--no-imports", "-c", _EMIT)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [(r["level"], r["logger"], r["message"]) for r in lines] == [
        ("INFO", "agent.tokens", f"stored {REDACTED}"),
        ("WARNING", "django.request", f"bad request with Bearer {REDACTED}"),
    ]


def test_plain_output_and_level_end_to_end():
    proc = _run_manage({"LOG_FORMAT": "plain", "LOG_LEVEL": "WARNING"}, "shell", "--no-imports", "-c", _EMIT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(f" WARNING django.request bad request with Bearer {REDACTED}")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be 'plain' or 'json'."),
        ("LOG_LEVEL", "loud", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL."),
    ],
)
def test_bad_logging_variable_stops_start_up(variable, value, message):
    proc = _run_manage({variable: value}, "check")
    assert proc.returncode != 0
    assert f"ImproperlyConfigured: {message}" in proc.stderr


@pytest.mark.parametrize(
    "junk",
    ["a" * 200_000, "token" * 40_000, "key-" * 50_000, "aaaaaaaaaaaa." * 15_000, '"' * 200_000],
    ids=["one-run", "keyword-run", "dashed-keywords", "dotted-segments", "quotes"],
)
def test_redacting_a_huge_junk_message_does_not_hang(junk):
    # Before the patterns were anchored, 100,000 characters of "a" took ~5 minutes (quadratic
    # backtracking) and froze any request whose 500 page logged the junk. The bound is a hang
    # detector, two orders of magnitude above the linear time, not a speed measurement.
    import threading

    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(redact(junk)), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert result, "redact() did not finish within 20 s: a pattern backtracks quadratically"
    assert len(result[0]) <= len(junk)


# --- a good guest: django.setup() from agent code keeps the host's logging ------------------------------


def _run_python(script: str, env_overrides: dict[str, str]) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LOG_FORMAT", "LOG_LEVEL", "DATABASE_URL", "LOG_SETUP")
    }
    env.update(
        {"DEBUG": "true", "ENV_FILE": "/nonexistent/.env", "DJANGO_SETTINGS_MODULE": "config.settings"}
    )
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# An agent: its own logging configuration first (a format of its own, a file opened with mode "w"),
# then django.setup(), then log lines from itself, from the project and from Django.
_AGENT = (
    "import logging, sys, django\n"
    "host_format = logging.Formatter('HOST|%(levelname)s|%(name)s|%(message)s')\n"
    "stream = logging.StreamHandler(sys.stdout); stream.setFormatter(host_format)\n"
    "log_file = logging.FileHandler(sys.argv[1] if len(sys.argv) > 1 else 'agent.log', mode='w')\n"
    "log_file.setFormatter(host_format)\n"
    "logging.basicConfig(level=logging.INFO, handlers=[stream, log_file])\n"
    "before = list(logging.getLogger().handlers)\n"
    "django.setup()\n"
    "assert logging.getLogger().handlers == before, logging.getLogger().handlers\n"
    "assert logging.getLogger().level == logging.INFO\n"
    "assert not log_file.stream.closed\n"
    f"logging.getLogger('accounts.models').info('stored %s', {LINEAR_OAUTH!r})\n"
    f"logging.getLogger('sync.models.state').warning('Bearer {RANDOM_BASE64}')\n"
    f"logging.getLogger('django.request').warning('bad request with %s', 'Bearer {RANDOM_BASE64}')\n"
    "logging.getLogger('agent').info('agent line')\n"
    "logging.getLogger('accounts.models').debug('below the host level')\n"
)


def test_django_setup_in_an_agent_keeps_its_logging_and_redacts_the_projects_records(tmp_path):
    log_path = tmp_path / "agent.log"
    env_file = tmp_path / ".env"
    env_file.write_text("")  # a missing ENV_FILE is an INFO line of django-environ's
    agent = _AGENT.replace("sys.argv[1] if len(sys.argv) > 1 else 'agent.log'", repr(str(log_path)))
    proc = _run_python(agent, {"ENV_FILE": str(env_file)})
    assert proc.returncode == 0, proc.stderr
    expected = [
        f"HOST|INFO|accounts.models|stored {REDACTED}",
        f"HOST|WARNING|sync.models.state|Bearer {REDACTED}",
        f"HOST|WARNING|django.request|bad request with Bearer {REDACTED}",
        "HOST|INFO|agent|agent line",
    ]
    assert proc.stdout.splitlines() == expected
    assert log_path.read_text().splitlines() == expected  # the host's file handler was not closed
    assert proc.stderr == ""


def test_log_setup_project_makes_the_project_configure_logging_in_an_agent(tmp_path):
    script = (
        "import logging, django\n"
        "django.setup()\n"
        f"logging.getLogger('accounts.models').warning('stored %s', {LINEAR_OAUTH!r})\n"
    )
    proc = _run_python(script, {"LOG_SETUP": "project", "LOG_FORMAT": "json"})
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert json.loads(line)["message"] == f"stored {REDACTED}"


def test_a_guest_without_logging_configuration_still_sees_warnings_redacted():
    script = (
        "import logging, django\n"
        "django.setup()\n"
        f"logging.getLogger('accounts.models').warning('refresh failed for %s', {LINEAR_OAUTH!r})\n"
        "logging.getLogger('accounts.models').info('not shown: below the last resort level')\n"
    )
    proc = _run_python(script, {})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == f"refresh failed for {REDACTED}\n"


def test_bad_log_setup_stops_start_up():
    proc = _run_manage({"LOG_SETUP": "host"}, "check")
    assert proc.returncode != 0
    assert "ImproperlyConfigured: LOG_SETUP must be 'guest' or 'project'." in proc.stderr


def test_install_guest_redaction_is_idempotent():
    from config.logging import RedactingPassThrough, install_guest_redaction

    install_guest_redaction(("tests.guest",))
    install_guest_redaction(("tests.guest",))
    handlers = logging.getLogger("tests.guest").handlers
    try:
        assert [type(handler) for handler in handlers] == [RedactingPassThrough]
    finally:
        for handler in handlers[:]:
            logging.getLogger("tests.guest").removeHandler(handler)
