"""Fixtures and markers shared by the whole suite.

Test settings (DATABASE_URL, FERNET_KEYS, DEBUG) come from the Makefile or the shell: pytest-django
imports settings before any conftest runs.
"""

from __future__ import annotations

import os
import shutil

import pytest
from django.db import connection


def pytest_collection_modifyitems(config, items):
    on_postgres = connection.vendor == "postgresql"
    has_chromium = shutil.which("chromium") and shutil.which("chromedriver")
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(
                pytest.mark.skip(reason="PostgreSQL only; runs in the PostgreSQL pass of make test")
            )
        if "browser" in item.keywords and not has_chromium and os.environ.get("CI") != "true":
            item.add_marker(
                pytest.mark.skip(reason="chromium/chromedriver not installed (.ci/run installs them)")
            )


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing():
    """Hash test passwords with MD5: PBKDF2's deliberate slowness costs ~0.7 s per created user."""
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture
def clock():
    """The process clock stopped at ``tests.clock.FROZEN_NOW`` until ``clock.advance(...)`` moves it.

    Tests that compare anything with "now" take it (before any fixture that writes rows or logs a
    user in), so they pass on any day the suite runs (see ``tests/clock.py``).
    """
    from tests.clock import frozen_clock

    with frozen_clock() as stopped:
        yield stopped
