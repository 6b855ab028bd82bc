"""Migration 0005 gives existing conflicts the organization their (page, team) sync state knows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("sync", "0004_ids_not_empty"), ("accounts", "0003_created_at_returned_by_upserts")]
AFTER = [("sync", "0005_three_way_sync")]


@pytest.mark.django_db(transaction=True)
def test_existing_conflicts_get_their_pairs_organization():
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(BEFORE)
        apps = executor.loader.project_state(BEFORE).apps
        Organization = apps.get_model("accounts", "Organization")
        SyncState = apps.get_model("sync", "SyncState")
        Conflict = apps.get_model("sync", "Conflict")
        acme = Organization.objects.create(linear_id="org-acme")
        SyncState.objects.create(confluence_page_id="p1", linear_team_id="t1", organization=acme)
        SyncState.objects.create(confluence_page_id="p2", linear_team_id="t2")
        for conflict_id, page, team in (("c-known", "p1", "t1"), ("c-no-org", "p2", "t2"), ("c-old", "", "")):
            Conflict.objects.create(id=conflict_id, confluence_page_id=page, linear_team_id=team)

        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        apps = executor.loader.project_state(AFTER).apps
        Conflict = apps.get_model("sync", "Conflict")
        rows = dict(Conflict.objects.values_list("id", "organization__linear_id"))
        assert rows == {"c-known": "org-acme", "c-no-org": None, "c-old": None}
        assert set(Conflict.objects.values_list("version", flat=True)) == {1}
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
