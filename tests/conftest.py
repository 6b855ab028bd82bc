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
