"""Migrations apply from empty, reverse, and match the models."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


@pytest.mark.django_db(transaction=True)
def test_migrations_reverse_to_zero_and_apply_again():
    # legacy depends on nothing of ours; accounts takes every other app of ours down with it.
    for app in ("legacy", "accounts"):
        call_command("migrate", app, "zero", interactive=False, verbosity=0)
    tables = connection.introspection.table_names()
    assert not [t for t in tables if t.startswith(("accounts_", "planning_", "sync_", "legacy_"))]
    call_command("migrate", interactive=False, verbosity=0)
    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []


@pytest.mark.django_db
def test_makemigrations_check_is_clean():
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out, verbosity=1)
    assert "No changes detected" in out.getvalue()
