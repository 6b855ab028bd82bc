"""Resolution against a version, per-field picks, newest, and the async twins of the conflict API."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError

from sync.models import Conflict, ConflictChanged, ConflictResolution, FieldOwnership, ItemSnapshot, SyncState
from sync.services import aresolve_conflicts, reconcile, resolve_conflicts
from tests.factories import make_change

pytestmark = pytest.mark.django_db

PAIR = {"confluence_page_id": "page-1", "linear_team_id": "team-1"}
BASE = {"title": "A", "estimate": 3, "state": {"name": "Todo", "id": 1}}


def _conflict(linear_data=None, confluence_data=None, *, linear_ms=2_000, confluence_ms=1_000) -> Conflict:
    ItemSnapshot.objects.record_synced(
        "org-a", [{"itemId": "i-1", "itemType": "story", "itemData": BASE}], **PAIR
    )
    linear = make_change(
        "linear",
        itemId="i-1",
        itemData=linear_data or {"title": "L", "estimate": 3, "state": {"name": "Doing", "id": 1}},
        timestamp=linear_ms,
    )
    confluence = make_change(
        "confluence",
        itemId="i-1",
        itemData=confluence_data or {"title": "C", "estimate": 5, "state": {"name": "Done", "id": 1}},
        timestamp=confluence_ms,
    )
    result = reconcile("org-a", linear, confluence, **PAIR)
    assert result.outcome == "conflict"
    return result.conflict


def test_fields_strategy_takes_a_side_per_path_and_keeps_the_automatic_merge(operator):
    conflict = _conflict()
    assert conflict.conflicting_fields == ["state.name", "title"]
    conflict.resolve(
        "fields", by=operator, expected_version=1, picks={"title": "confluence", "state.name": "linear"}
    )
    conflict.refresh_from_db()
    assert conflict.is_resolved and conflict.resolution_strategy == "fields"
    assert conflict.resolved_change["itemData"] == {
        "title": "C",
        "estimate": 5,
        "state": {"name": "Doing", "id": 1},
    }
    assert conflict.resolved_change["id"] == "resolved-conflict-i-1"
    assert conflict.resolved_change["source"] == "merged"
    entry = ConflictResolution.objects.get()
    assert (entry.strategy, entry.by) == ("fields", operator)
    assert entry.resolved_change == conflict.resolved_change
    assert SyncState.objects.get(**PAIR).conflict_count == 0


@pytest.mark.parametrize(
    ("picks", "message"),
    [
        ({"title": "linear"}, "missing: state.name"),
        ({"title": "linear", "state.name": "linear", "estimate": "linear"}, "not in conflict: estimate"),
        ({"title": "linear", "state.name": "base"}, "must be 'linear' or 'confluence'"),
        ({"title..x": "linear"}, "is not a dotted field path"),
    ],
)
def test_fields_strategy_refuses_missing_unknown_and_bad_picks(picks, message):
    conflict = _conflict()
    with pytest.raises(ValidationError, match=message.replace(".", r"\.")):
        conflict.resolve("fields", picks=picks)
    conflict.refresh_from_db()
    assert not conflict.is_resolved
    assert ConflictResolution.objects.count() == 0


def test_picks_are_only_for_fields_and_fields_needs_picks():
    conflict = _conflict()
    with pytest.raises(ValidationError, match="picks are only for the fields strategy"):
        conflict.resolve("linear", picks={"title": "linear"})
    with pytest.raises(ValidationError, match="The fields strategy needs picks"):
        conflict.resolve("fields")
    with pytest.raises(ValueError, match="picks must be a dict"):
        conflict.resolve("fields", picks=["title"])
    with pytest.raises(
        ValidationError, match="strategy must be one of linear, confluence, manual, fields, newest"
    ):
        conflict.resolve("merged")  # the system's strategy
    assert not Conflict.objects.get().is_resolved


def test_newest_strategy_takes_every_conflicting_path_from_the_later_change():
    conflict = _conflict(linear_ms=1_000, confluence_ms=9_000)
    conflict.resolve("newest")
    conflict.refresh_from_db()
    assert conflict.resolution_strategy == "newest"
    assert conflict.resolved_change["itemData"] == {
        "title": "C",
        "estimate": 5,
        "state": {"name": "Done", "id": 1},
    }


def test_newest_strategy_with_equal_times_is_refused():
    conflict = _conflict(linear_ms=5_000, confluence_ms=5_000)
    with pytest.raises(ValidationError, match="same timestamp"):
        conflict.resolve("newest")
    assert not Conflict.objects.get().is_resolved


def test_expected_version_stale_raises_conflict_changed_naming_both_versions(operator):
    conflict = _conflict()
    assert conflict.version == 1
    # a re-sync changes the disagreement while the reviewer looks at version 1
    linear = make_change(
        "linear", itemId="i-1", itemData={"title": "L2", "estimate": 3, "state": BASE["state"]}
    )
    confluence = make_change(
        "confluence", itemId="i-1", itemData={"title": "C", "estimate": 3, "state": BASE["state"]}
    )
    reconcile("org-a", linear, confluence, **PAIR)
    with pytest.raises(ConflictChanged) as excinfo:
        conflict.resolve("linear", by=operator, expected_version=1)
    assert isinstance(excinfo.value, ValidationError)
    assert "expected version 1, it is now version 2" in str(excinfo.value)
    assert excinfo.value.current_version == 2
    fresh = Conflict.objects.get()
    assert not fresh.is_resolved
    assert ConflictResolution.objects.count() == 0
    fresh.resolve("linear", by=operator, expected_version=2)
    assert Conflict.objects.get().is_resolved


def test_expected_version_checks_its_type():
    conflict = _conflict()
    with pytest.raises(ValueError, match="expected_version must be an integer"):
        conflict.resolve("linear", expected_version="1")
    with pytest.raises(ValidationError, match="expected_version must be at least 1"):
        conflict.resolve("linear", expected_version=0)


def test_old_conflicts_without_base_resolve_by_fields_on_every_differing_leaf():
    linear = make_change("linear", itemId="old", itemData={"title": "L", "n": 1})
    confluence = make_change("confluence", itemId="old", itemData={"title": "C", "n": 1})
    conflict = Conflict.objects.store("conflict-old", linear_change=linear, confluence_change=confluence)
    assert conflict.conflict_paths() == ["title"]
    conflict.resolve("fields", picks={"title": "confluence"})
    assert Conflict.objects.get().resolved_change["itemData"] == {"title": "C", "n": 1}


def test_merge_of_a_conflict_shows_the_owner_rules_that_applied():
    conflict = _conflict()
    FieldOwnership.objects.set_owner("org-a", "state", "linear")
    merge = conflict.merge()
    assert merge.decisions["state.name"] == "owner:linear"
    assert merge.owner_rules_applied == {"state.name": "state"}
    # stored conflicting paths stay what the reviewer was shown until the next store
    assert conflict.conflict_paths(merge) == ["state.name", "title"]


def test_bulk_resolve_skips_rows_whose_version_changed(operator):
    conflict = _conflict()
    other = Conflict.objects.store(
        "conflict-x",
        linear_change=make_change("linear", itemId="x", itemData={"t": 1}),
        confluence_change=make_change("confluence", itemId="x", itemData={"t": 2}),
    )
    Conflict.objects.store(
        "conflict-x",
        linear_change=make_change("linear", itemId="x", itemData={"t": 3}),
        confluence_change=make_change("confluence", itemId="x", itemData={"t": 2}),
    )
    result = resolve_conflicts(
        [conflict.pk, other.pk], "linear", by=operator, expected_versions={conflict.pk: 1, other.pk: 1}
    )
    assert result.resolved == [conflict.pk]
    assert result.changed == [other.pk]
    assert not Conflict.objects.get(pk=other.pk).is_resolved


def test_bulk_resolve_refuses_fields_and_newest(operator):
    with pytest.raises(ValidationError, match="Bulk resolution keeps one side"):
        resolve_conflicts(["conflict-x"], "newest", by=operator)
    with pytest.raises(ValueError, match="expected_versions must be a dict"):
        resolve_conflicts(["conflict-x"], "linear", by=operator, expected_versions=[1])


@pytest.mark.django_db(transaction=True)
def test_async_twins_of_the_conflict_api(operator):
    linear = make_change("linear", itemId="a", itemData={"t": 1})
    confluence = make_change("confluence", itemId="a", itemData={"t": 2})
    conflict = async_to_sync(Conflict.objects.astore)(
        "conflict-a", linear_change=linear, confluence_change=confluence, organization_id="org-a", **PAIR
    )
    assert conflict.version == 1 and conflict.organization.linear_id == "org-a"
    async_to_sync(conflict.aresolve)("fields", picks={"t": "confluence"}, by=operator, expected_version=1)
    assert Conflict.objects.get().resolved_change["itemData"] == {"t": 2}
    async_to_sync(conflict.areopen)(by=operator)
    assert not Conflict.objects.get().is_resolved
    merge = async_to_sync(conflict.amerge)()
    assert merge.conflicts == ["t"]
    result = async_to_sync(aresolve_conflicts)(
        ["conflict-a"], "linear", by=operator, expected_versions={"conflict-a": 1}
    )
    assert result.resolved == ["conflict-a"]
    assert async_to_sync(Conflict.objects.adiscard)("conflict-a") is True
    Conflict.objects.store(
        "conflict-b",
        linear_change=make_change("linear", itemId="b"),
        confluence_change=make_change("confluence", itemId="b"),
        **PAIR,
    )
    assert async_to_sync(Conflict.objects.aclear)("page-1") == 1
    assert Conflict.objects.count() == 0
