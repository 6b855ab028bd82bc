"""Rules the sync tables keep themselves: a raw update() that breaks one is refused on both engines."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from sync.models import Conflict, ConflictResolution, LinearIssueCache, SyncHistory
from tests.factories import (
    make_conflict,
    make_conflict_resolution,
    make_linear_issue_cache,
    make_sync_history,
)

pytestmark = pytest.mark.django_db

BREAKING_UPDATES = [
    (make_conflict, Conflict, {"id": ""}, "sync_conflict_id_not_empty"),
    (
        make_conflict_resolution,
        ConflictResolution,
        {"conflict_id": ""},
        "sync_conflictresolution_conflict_id_not_empty",
    ),
    (make_sync_history, SyncHistory, {"confluence_page_id": ""}, "sync_synchistory_page_team_not_empty"),
    (make_sync_history, SyncHistory, {"linear_team_id": ""}, "sync_synchistory_page_team_not_empty"),
    (
        make_linear_issue_cache,
        LinearIssueCache,
        {"linear_issue_id": ""},
        "sync_linearissuecache_issue_not_empty",
    ),
]


@pytest.mark.parametrize(
    ("factory", "model", "update", "constraint"),
    BREAKING_UPDATES,
    ids=[f"{case[3]}-{next(iter(case[2]))}" for case in BREAKING_UPDATES],
)
def test_database_refuses_an_empty_identifier(factory, model, update, constraint):
    row = factory()
    with pytest.raises(IntegrityError) as excinfo, transaction.atomic():
        model._base_manager.filter(pk=row.pk).update(**update)
    # Both engines name the violated check constraint in the error.
    assert constraint in str(excinfo.value)
    assert model._base_manager.filter(pk=row.pk).exists()
    assert not model._base_manager.filter(**update).exists()
