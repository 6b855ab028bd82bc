"""config.db.upsert_one: one INSERT … ON CONFLICT … RETURNING, no transaction of its own, on both engines."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from config.db import upsert_one
from sync.models import SyncState
from tests.factories import make_organization, make_sync_state

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
PAIR = {"confluence_page_id": "page-1", "linear_team_id": "team-1"}
KEY = ["confluence_page_id", "linear_team_id"]


def upsert_state(**fields: Any) -> SyncState:
    return upsert_one(
        SyncState.objects,
        SyncState(**PAIR, **fields),
        unique_fields=KEY,
        update_fields=["status", "updated_at"],
    )


def test_a_new_row_is_inserted_and_returned_as_stored() -> None:
    state = upsert_state(status="running", created_at=T0, updated_at=T0)

    stored = SyncState.objects.get()
    assert state.pk == stored.pk
    assert (state.status, state.conflict_count, state.created_at) == ("running", 0, T0)
    assert not state._state.adding
    assert state._state.db == "default"


def test_a_colliding_row_gets_only_the_update_fields_and_comes_back_whole() -> None:
    organization = make_organization(linear_id="org-1")
    existing = make_sync_state(
        **PAIR, organization=organization, conflict_count=4, status="failed", created_at=T0, updated_at=T0
    )
    later = T0 + dt.timedelta(hours=1)

    state = upsert_state(status="idle", conflict_count=0, created_at=later, updated_at=later)

    # What the update kept (organization, count, creation time) is what RETURNING read back.
    assert state.pk == existing.pk
    assert (state.status, state.updated_at) == ("idle", later)
    assert (state.organization_id, state.conflict_count, state.created_at) == (organization.pk, 4, T0)
    stored = SyncState.objects.get()
    assert (stored.status, stored.conflict_count, stored.created_at) == ("idle", 4, T0)


def test_it_is_one_insert_on_conflict_statement(django_assert_num_queries: Any) -> None:
    make_sync_state(**PAIR)
    with django_assert_num_queries(1) as captured:
        upsert_state(status="running")
    sql = captured.captured_queries[0]["sql"].upper()
    assert sql.startswith("INSERT")
    assert "ON CONFLICT" in sql and "RETURNING" in sql


def test_it_opens_no_transaction_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """bulk_create wraps even one row in atomic(): BEGIN and COMMIT round trips on PostgreSQL."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("upsert_one opened a transaction")

    monkeypatch.setattr(transaction, "atomic", refuse)
    state = upsert_state(status="running")
    monkeypatch.undo()
    assert SyncState.objects.get().pk == state.pk


def test_inside_atomic_it_rolls_back_with_the_caller() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        upsert_state(status="running")
        raise RuntimeError("the caller's next step failed")
    assert not SyncState.objects.exists()


def test_a_related_object_passed_in_stays_attached(django_assert_num_queries: Any) -> None:
    organization = make_organization(linear_id="org-1")
    state = upsert_one(
        SyncState.objects,
        SyncState(**PAIR, organization=organization),
        unique_fields=KEY,
        update_fields=["organization", "updated_at"],
    )
    with django_assert_num_queries(0):
        assert state.organization is organization


def test_a_related_object_the_row_no_longer_points_at_is_not_attached() -> None:
    kept = make_organization(linear_id="org-kept")
    make_sync_state(**PAIR, organization=kept)
    passed = make_organization(linear_id="org-passed")

    state = upsert_one(
        SyncState.objects,
        SyncState(**PAIR, organization=passed),
        unique_fields=KEY,
        update_fields=["updated_at"],  # the organization is not updated: the row keeps ``kept``
    )
    assert state.organization_id == kept.pk
    assert state.organization == kept


def test_a_row_that_breaks_a_constraint_raises_integrity_error() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        upsert_state(status="not-a-status")
    assert not SyncState.objects.exists()


@pytest.mark.parametrize(
    ("unique_fields", "update_fields", "message"),
    [
        (KEY, [], "must be provided"),
        ([], ["status"], "Unique fields"),
        (KEY, ["id"], "primary keys"),
    ],
)
def test_bad_options_are_refused_as_bulk_create_refuses_them(
    unique_fields: list[str], update_fields: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        upsert_one(
            SyncState.objects, SyncState(**PAIR), unique_fields=unique_fields, update_fields=update_fields
        )
    assert not SyncState.objects.exists()
