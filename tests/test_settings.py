"""Production settings refuse to start without their secrets and pass Django's deploy checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STRONG_SECRET = "k3J9x!qP0vZ7m@L2wR8tY5uB1nC4eF6gH9jK0lM3oQ7sT2vX5zA8dG1"
FERNET = "a-long-random-fernet-key-material-for-the-test-0123456789"

PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": STRONG_SECRET,
    "FERNET_KEYS": FERNET,
    "ALLOWED_HOSTS": "planning.example.com",
    "DATABASE_URL": "sqlite:///:memory:",
    "ENV_FILE": "/nonexistent/.env",
}


def run_manage(*args: str, env_overrides: dict[str, str | None]) -> subprocess.CompletedProcess:
    env = {**os.environ}
    for key in (
        "DEBUG",
        "SECRET_KEY",
        "FERNET_KEYS",
        "ALLOWED_HOSTS",
        "DATABASE_URL",
        "DB_POOL",
        "CONN_MAX_AGE",
        "DB_PREPARED_STATEMENTS",
        "DB_PREPARE_THRESHOLD",
    ):
        env.pop(key, None)
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("SECRET_KEY", "SECRET_KEY must be set when DEBUG is off"),
        ("FERNET_KEYS", "FERNET_KEYS must be set when DEBUG is off"),
    ],
)
def test_production_without_secret_fails_naming_the_variable(missing, message):
    proc = run_manage("check", env_overrides={**PRODUCTION_ENV, missing: None})
    assert proc.returncode != 0
    assert "ImproperlyConfigured" in proc.stderr
    assert message in proc.stderr


@pytest.mark.parametrize("database_url", [None, "", "  "], ids=["unset", "empty", "blank"])
def test_production_without_database_url_fails_at_start_up(database_url):
    proc = run_manage("check", "--deploy", env_overrides={**PRODUCTION_ENV, "DATABASE_URL": database_url})
    assert proc.returncode != 0
    assert "ImproperlyConfigured" in proc.stderr
    assert "DATABASE_URL must be set when DEBUG is off" in proc.stderr


def test_production_accepts_an_explicit_sqlite_url(tmp_path):
    show = (
        "from django.conf import settings; d = settings.DATABASES['default']; "
        "print(d['ENGINE'], d['NAME'])"
    )
    url = f"sqlite:///{tmp_path / 'chosen.sqlite3'}"
    proc = run_manage(
        "shell", "--no-imports", "-c", show, env_overrides={**PRODUCTION_ENV, "DATABASE_URL": url}
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["django.db.backends.sqlite3", str(tmp_path / "chosen.sqlite3")]


def test_weak_secret_key_is_refused_without_echoing_it():
    weak = "django-insecure-" + "x" * 60
    proc = run_manage("check", env_overrides={**PRODUCTION_ENV, "SECRET_KEY": weak})
    assert proc.returncode != 0
    assert "SECRET_KEY is too weak" in proc.stderr
    assert weak not in proc.stderr and weak not in proc.stdout


def test_short_secret_key_is_refused():
    proc = run_manage("check", env_overrides={**PRODUCTION_ENV, "SECRET_KEY": "short-but-random-9!"})
    assert proc.returncode != 0
    assert "shorter than 50 characters" in proc.stderr


def test_fernet_values_never_echoed_when_secret_key_missing():
    proc = run_manage("check", env_overrides={**PRODUCTION_ENV, "SECRET_KEY": None})
    assert FERNET not in proc.stderr + proc.stdout


def test_check_deploy_is_clean_with_production_variables():
    proc = run_manage("check", "--deploy", "--fail-level", "WARNING", env_overrides=PRODUCTION_ENV)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "System check identified no issues" in proc.stdout


def test_pool_and_conn_max_age_together_are_refused():
    proc = run_manage(
        "check",
        env_overrides={
            "DEBUG": "true",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
            "DB_POOL": "true",
            "CONN_MAX_AGE": "60",
        },
    )
    assert proc.returncode != 0
    assert "DB_POOL and CONN_MAX_AGE cannot both be set" in proc.stderr


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        ("postgres://postgres@127.0.0.1:5432/postgres", "True 5"),
        ("sqlite:///:memory:", "None None"),  # a psycopg option: SQLite ignores the variable
    ],
)
def test_prepared_statements_are_on_by_default_and_can_be_switched_off(database_url, expected):
    show = (
        "from django.conf import settings; o = settings.DATABASES['default']['OPTIONS']; "
        "print(o.get('server_side_binding'), o.get('prepare_threshold'))"
    )
    env = {"DEBUG": "true", "ENV_FILE": "/nonexistent/.env", "DATABASE_URL": database_url}
    default = run_manage("shell", "--no-imports", "-c", show, env_overrides=env)
    assert default.returncode == 0, default.stderr
    assert default.stdout.split() == expected.split()
    disabled = run_manage(
        "shell", "--no-imports", "-c", show, env_overrides={**env, "DB_PREPARED_STATEMENTS": "false"}
    )
    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stdout.split() == ["None", "None"]


def test_debug_mode_has_development_defaults():
    proc = run_manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.DEBUG, bool(settings.SECRET_KEY), "
        "len(settings.FERNET_KEYS), settings.DATABASES['default']['ENGINE'])",
        env_overrides={"DEBUG": "true", "ENV_FILE": "/nonexistent/.env"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "1", "django.db.backends.sqlite3"]


def test_debug_mode_without_database_url_uses_the_project_sqlite_file():
    proc = run_manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.DATABASES['default']['NAME'])",
        env_overrides={"DEBUG": "true", "ENV_FILE": "/nonexistent/.env"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(ROOT / "db.sqlite3")
