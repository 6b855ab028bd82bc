"""Conflict.objects.store racing a clear: it stores, or reports a clear error, never ``DoesNotExist``.

The race (issue 18, item 1b): store finds no row, a concurrent store inserts it (so store's own insert
fails), and a concurrent clear deletes it before store reads it back. The tests replay that interleaving
on one connection by making the insert fail as the concurrent one made it fail; the 16-thread mix in
``tests/reliability/test_concurrency_conflict_locks.py`` runs the real thing on PostgreSQL.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from sync.models import Conflict, ConflictResolution, SyncState
from sync.models.conflicts import ConflictManager
from tests.factories import make_change

pytestmark = pytest.mark.django_db


def store() -> Conflict:
    return Conflict.objects.store(
        "conflict-item-1",
        linear_change=make_change("linear", itemId="item-1"),
        confluence_change=make_change("confluence", itemId="item-1", itemData={"title": "Other"}),
        confluence_page_id="page-1",
        linear_team_id="team-1",
    )


def fail_inserts(monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """Make the first ``times`` inserts of ``store`` fail as a concurrent insert of the same id does."""
    calls: list[int] = []
    real_create = ConflictManager.create

    def create(self, **fields):
        calls.append(1)
        if len(calls) <= times:
            # The other writer's row, committed and then deleted by a clear: nothing to read back.
            raise IntegrityError('duplicate key value violates unique constraint "sync_conflict_pkey"')
        return real_create(self, **fields)

    monkeypatch.setattr(ConflictManager, "create", create)
    return calls


def test_store_whose_colliding_row_a_clear_deleted_inserts_again(monkeypatch):
    calls = fail_inserts(monkeypatch, times=1)

    conflict = store()

    assert len(calls) == 2
    row = Conflict.objects.get()
    assert (row.pk, row.confluence_change["itemData"], row.is_resolved) == (
        "conflict-item-1",
        {"title": "Other"},
        False,
    )
    assert conflict.pk == row.pk
    assert SyncState.objects.get(confluence_page_id="page-1", linear_team_id="team-1").conflict_count == 1


def test_store_that_keeps_losing_its_row_raises_a_validation_error_and_writes_nothing(monkeypatch):
    calls = fail_inserts(monkeypatch, times=100)

    with pytest.raises(ValidationError) as caught:
        store()

    assert caught.value.code == "concurrent_delete"
    assert "conflict-item-1" in caught.value.messages[0]
    assert len(calls) == 3  # bounded
    assert Conflict.objects.count() == 0
    assert SyncState.objects.count() == 0
    assert ConflictResolution.objects.count() == 0
