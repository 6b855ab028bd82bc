"""reconcile / reconcile_many: base from the snapshot, owner rules, conflicts stored or resolved as merged."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sync.merge import REMOVED
from sync.models import Conflict, ConflictResolution, FieldOwnership, ItemSnapshot, SyncState
from sync.services import areconcile, areconcile_many, reconcile, reconcile_many
from tests.factories import make_change

pytestmark = pytest.mark.django_db

PAIR = {"confluence_page_id": "page-1", "linear_team_id": "team-1"}


def _changes(item_id: str, linear_data: dict, confluence_data: dict, *, item_type: str = "story", **extra):
    return (
        make_change("linear", itemId=item_id, itemType=item_type, itemData=linear_data, **extra.get("l", {})),
        make_change(
            "confluence", itemId=item_id, itemType=item_type, itemData=confluence_data, **extra.get("c", {})
        ),
    )


def _snapshot(org: str, item_id: str, data: dict) -> None:
    ItemSnapshot.objects.record_synced(
        org, [{"itemId": item_id, "itemType": "story", "itemData": data}], **PAIR
    )


def test_equal_sides_are_in_sync_and_store_nothing():
    linear, confluence = _changes("i-1", {"title": "A"}, {"title": "A"})
    result = reconcile("org-a", linear, confluence, **PAIR)
    assert result.outcome == "in_sync"
    assert result.conflict is None
    assert result.merge.merged == {"title": "A"}
    assert Conflict.objects.count() == 0


def test_one_sided_edit_against_the_snapshot_is_merged_not_a_conflict():
    _snapshot("org-a", "i-1", {"title": "A", "estimate": 3})
    linear, confluence = _changes("i-1", {"title": "B", "estimate": 3}, {"title": "A", "estimate": 5})
    result = reconcile("org-a", linear, confluence, **PAIR)
    assert result.outcome == "merged"
    assert result.merge.merged == {"title": "B", "estimate": 5}
    assert result.merge.to_linear == {"estimate": 5}
    assert result.merge.to_confluence == {"title": "B"}
    assert Conflict.objects.count() == 0
    # the snapshot does not move until the agent applied the updates and records them
    assert ItemSnapshot.objects.base_for("org-a", ["i-1"]) == {"i-1": {"title": "A", "estimate": 3}}


def test_without_snapshot_every_difference_is_a_conflict_stored_without_base():
    linear, confluence = _changes("i-1", {"title": "B", "n": 1}, {"title": "C", "n": 2})
    result = reconcile("org-a", linear, confluence, **PAIR)
    assert result.outcome == "conflict"
    conflict = Conflict.objects.get(pk="conflict-i-1")
    assert result.conflict.pk == conflict.pk
    assert conflict.base_change is None
    assert conflict.conflicting_fields == ["n", "title"]
    assert conflict.differing_field_count == 2
    assert conflict.organization.linear_id == "org-a"
    assert (conflict.confluence_page_id, conflict.linear_team_id) == ("page-1", "team-1")
    assert SyncState.objects.get(**PAIR).conflict_count == 1


def test_true_conflict_is_stored_with_base_and_conflicting_fields_only():
    _snapshot("org-a", "i-1", {"title": "A", "estimate": 3, "labels": ["x"]})
    linear, confluence = _changes(
        "i-1",
        {"title": "B", "estimate": 3, "labels": ["x", "y"]},
        {"title": "C", "estimate": 5, "labels": []},
    )
    result = reconcile("org-a", linear, confluence, **PAIR)
    assert result.outcome == "conflict"
    conflict = Conflict.objects.get()
    assert conflict.conflicting_fields == ["title"]
    assert conflict.differing_field_count == 1
    assert conflict.base_change == {
        "id": "snapshot-i-1",
        "type": "snapshot",
        "source": "snapshot",
        "itemType": "story",
        "itemId": "i-1",
        "itemData": {"title": "A", "estimate": 3, "labels": ["x"]},
    }
    assert result.merge.decisions == {"estimate": "confluence", "labels": "merged"}
    assert result.merge.merged == {"title": "A", "estimate": 5, "labels": ["y"]}


def test_owner_rule_decides_instead_of_storing_a_conflict():
    FieldOwnership.objects.set_owner("org-a", "title", "confluence")
    _snapshot("org-a", "i-1", {"title": "A"})
    linear, confluence = _changes("i-1", {"title": "B"}, {"title": "C"})
    result = reconcile("org-a", linear, confluence, **PAIR)
    assert result.outcome == "merged"
    assert result.merge.decisions == {"title": "owner:confluence"}
    assert result.merge.to_linear == {"title": "C"}
    assert Conflict.objects.count() == 0


def test_rules_of_another_organization_do_not_apply():
    FieldOwnership.objects.set_owner("org-b", "title", "confluence")
    _snapshot("org-a", "i-1", {"title": "A"})
    linear, confluence = _changes("i-1", {"title": "B"}, {"title": "C"})
    assert reconcile("org-a", linear, confluence, **PAIR).outcome == "conflict"


def test_snapshot_of_another_organization_is_not_the_base():
    _snapshot("org-b", "i-1", {"title": "A", "n": 1})
    linear, confluence = _changes("i-1", {"title": "B", "n": 1}, {"title": "A", "n": 1})
    result = reconcile("org-a", linear, confluence, **PAIR)
    assert result.outcome == "conflict"  # no base for org-a: the difference is a conflict
    assert result.merge.has_base is False


def test_newest_rule_uses_the_changes_timestamps():
    FieldOwnership.objects.set_owner("org-a", "title", "newest")
    _snapshot("org-a", "i-1", {"title": "A"})
    linear, confluence = _changes(
        "i-1", {"title": "B"}, {"title": "C"}, l={"timestamp": 2_000}, c={"timestamp": 1_000}
    )
    result = reconcile("org-a", linear, confluence, **PAIR)
    assert (result.outcome, result.merge.decisions) == ("merged", {"title": "newest:linear"})


def test_newest_rule_without_timestamps_leaves_the_conflict_to_a_person():
    FieldOwnership.objects.set_owner("org-a", "title", "newest")
    _snapshot("org-a", "i-1", {"title": "A"})
    linear, confluence = _changes("i-1", {"title": "B"}, {"title": "C"})
    linear.pop("timestamp")
    assert reconcile("org-a", linear, confluence, **PAIR).outcome == "conflict"


def test_open_conflict_that_no_longer_conflicts_is_resolved_as_merged_and_logged():
    _snapshot("org-a", "i-1", {"title": "A"})
    linear, confluence = _changes("i-1", {"title": "B"}, {"title": "C"})
    reconcile("org-a", linear, confluence, **PAIR)
    assert SyncState.objects.get(**PAIR).conflict_count == 1
    # next sync: Confluence took Linear's title
    linear, confluence = _changes("i-1", {"title": "B"}, {"title": "B"})
    result = reconcile("org-a", linear, confluence, **PAIR)
    assert result.outcome == "in_sync"
    assert result.resolved_conflict_id == "conflict-i-1"
    conflict = Conflict.objects.get()
    assert conflict.is_resolved
    assert conflict.resolution_strategy == "merged"
    assert conflict.resolved_by is None
    assert conflict.resolved_change["itemData"] == {"title": "B"}
    assert conflict.resolved_change["id"] == "resolved-conflict-i-1"
    entry = ConflictResolution.objects.get()
    assert (entry.conflict_id, entry.action, entry.strategy, entry.by) == (
        "conflict-i-1",
        "resolved",
        "merged",
        None,
    )
    assert SyncState.objects.get(**PAIR).conflict_count == 0


def test_reconciling_the_same_conflict_again_changes_nothing():
    _snapshot("org-a", "i-1", {"title": "A"})
    linear, confluence = _changes("i-1", {"title": "B"}, {"title": "C"})
    reconcile("org-a", linear, confluence, **PAIR)
    before = Conflict.objects.get()
    reconcile("org-a", linear, confluence, **PAIR)
    after = Conflict.objects.get()
    assert (after.version, after.updated_at) == (before.version, before.updated_at) == (1, before.updated_at)


def test_a_new_disagreement_bumps_the_version_and_reopens_a_resolved_conflict():
    _snapshot("org-a", "i-1", {"title": "A"})
    linear, confluence = _changes("i-1", {"title": "B"}, {"title": "C"})
    reconcile("org-a", linear, confluence, **PAIR)
    Conflict.objects.get().resolve("linear")
    linear, confluence = _changes("i-1", {"title": "B2"}, {"title": "C"})
    reconcile("org-a", linear, confluence, **PAIR)
    conflict = Conflict.objects.get()
    assert conflict.version == 2
    assert not conflict.is_resolved
    assert conflict.linear_change["itemData"] == {"title": "B2"}
    actions = list(ConflictResolution.objects.for_conflict("conflict-i-1").values_list("action", flat=True))
    assert actions == ["resolved", "reopened"]
    assert SyncState.objects.get(**PAIR).conflict_count == 1


def test_resolved_conflict_seen_again_with_the_same_sides_stays_resolved():
    linear, confluence = _changes("i-1", {"title": "B"}, {"title": "C"})
    reconcile("org-a", linear, confluence, **PAIR)
    Conflict.objects.get().resolve("linear")
    reconcile("org-a", linear, confluence, **PAIR)
    assert Conflict.objects.get().is_resolved


def test_reconcile_many_keeps_input_order_and_each_outcome():
    ItemSnapshot.objects.record_synced(
        "org-a",
        [{"itemId": f"i-{n}", "itemData": {"title": "A", "n": n}} for n in range(3)],
        **PAIR,
    )
    pairs = [
        _changes("i-2", {"title": "B", "n": 2}, {"title": "C", "n": 2}),  # conflict
        _changes("i-0", {"title": "A", "n": 0}, {"title": "A", "n": 0}),  # in sync
        _changes("i-1", {"title": "B", "n": 1}, {"title": "A", "n": 1}),  # merged
        _changes("i-9", {"title": "X"}, {"title": "X"}),  # no base, equal
    ]
    results = reconcile_many("org-a", pairs, **PAIR)
    assert [(r.item_id, r.outcome) for r in results] == [
        ("i-2", "conflict"),
        ("i-0", "in_sync"),
        ("i-1", "merged"),
        ("i-9", "in_sync"),
    ]
    assert list(Conflict.objects.values_list("pk", flat=True)) == ["conflict-i-2"]
    assert results[0].conflict.pk == "conflict-i-2"


def _many_pairs(count: int, *, conflict_every: int = 4, prefix: str = "i"):
    pairs = []
    for n in range(count):
        confluence_title = "C" if n % conflict_every == 0 else "A"
        pairs.append(
            _changes(f"{prefix}-{n:05}", {"title": "B", "n": n}, {"title": confluence_title, "n": n})
        )
    return pairs


def test_reconcile_many_runs_a_constant_number_of_queries_per_batch():
    for prefix, count in (("one", 400), ("three", 1200)):
        ItemSnapshot.objects.record_synced(
            "org-a",
            [{"itemId": f"{prefix}-{n:05}", "itemData": {"title": "A", "n": n}} for n in range(count)],
            **PAIR,
        )
    FieldOwnership.objects.set_owner("org-a", "n", "linear")
    with CaptureQueriesContext(connection) as one_batch:
        reconcile_many("org-a", _many_pairs(400, prefix="one"), batch_size=400, **PAIR)
    with CaptureQueriesContext(connection) as three_batches:
        results = reconcile_many("org-a", _many_pairs(1200, prefix="three"), batch_size=400, **PAIR)
    assert sum(r.outcome == "conflict" for r in results) == 300
    assert Conflict.objects.count() == 100 + 300
    # SQLite splits an insert of 100 conflicts into two statements (999 parameters each)
    assert len(one_batch.captured_queries) <= 20
    # every batch costs what the first one did: nothing grows with the items but the batches
    assert len(three_batches.captured_queries) <= 3 * len(one_batch.captured_queries)


def _recounts(context: CaptureQueriesContext) -> int:
    return sum(
        q["sql"].startswith('UPDATE "sync_syncstate" SET "conflict_count"') for q in context.captured_queries
    )


def test_a_batch_that_only_inserts_conflicts_recounts_the_pair_once():
    """The insert step recounts after its commit; the locking step changed nothing and does not."""
    ItemSnapshot.objects.record_synced(
        "org-a", [{"itemId": f"i-{n:05}", "itemData": {"title": "A", "n": n}} for n in range(30)], **PAIR
    )
    with CaptureQueriesContext(connection) as context:
        results = reconcile_many("org-a", _many_pairs(30, conflict_every=3), batch_size=10, **PAIR)
    assert sum(r.outcome == "conflict" for r in results) == 10
    assert _recounts(context) == 3
    assert SyncState.objects.get(**PAIR).conflict_count == 10


def test_a_batch_that_inserts_and_resolves_recounts_after_both_steps():
    reconcile_many("org-a", [_changes("i-old", {"title": "B"}, {"title": "C"})], **PAIR)
    assert SyncState.objects.get(**PAIR).conflict_count == 1
    pairs = [
        _changes("i-old", {"title": "B"}, {"title": "B"}),
        _changes("i-new", {"title": "B"}, {"title": "C"}),
    ]
    with CaptureQueriesContext(connection) as context:
        results = reconcile_many("org-a", pairs, **PAIR)
    assert [r.outcome for r in results] == ["in_sync", "conflict"]
    assert results[0].resolved_conflict_id == "conflict-i-old"
    assert _recounts(context) == 2
    assert SyncState.objects.get(**PAIR).conflict_count == 1
    assert list(Conflict.objects.filter(is_resolved=False).values_list("pk", flat=True)) == ["conflict-i-new"]


def test_a_batch_in_sync_with_nothing_stored_still_makes_the_pairs_state_row():
    reconcile_many("org-a", [_changes("i-1", {"title": "A"}, {"title": "A"})], **PAIR)
    assert SyncState.objects.get(**PAIR).conflict_count == 0


def test_reconcile_many_resolves_disappearing_conflicts_in_bulk():
    pairs = _many_pairs(40, conflict_every=1)
    reconcile_many("org-a", pairs, **PAIR)
    assert Conflict.objects.filter(is_resolved=False).count() == 40
    agreed = [_changes(f"i-{n:05}", {"title": "B", "n": n}, {"title": "B", "n": n}) for n in range(40)]
    with CaptureQueriesContext(connection) as context:
        results = reconcile_many("org-a", agreed, **PAIR)
    assert {r.outcome for r in results} == {"in_sync"}
    assert Conflict.objects.filter(is_resolved=True, resolution_strategy="merged").count() == 40
    assert ConflictResolution.objects.filter(strategy="merged").count() == 40
    assert len(context.captured_queries) <= 16
    assert SyncState.objects.get(**PAIR).conflict_count == 0


def test_reconcile_many_refuses_bad_input_before_writing():
    good = _changes("i-1", {"title": "B"}, {"title": "C"})
    with pytest.raises(ValidationError, match=r"pairs\[1\]: item 'i-1' appears twice"):
        reconcile_many("org-a", [good, good], **PAIR)
    with pytest.raises(ValidationError, match=r"pairs\[1\]: linear_change and confluence_change are about"):
        reconcile_many("org-a", [good, (good[0], make_change("confluence", itemId="other"))], **PAIR)
    with pytest.raises(ValidationError, match=r"pairs\[1\] confluence_change has no 'itemData' key"):
        reconcile_many("org-a", [good, (good[0], {"itemId": "i-1", "source": "c"})], **PAIR)
    with pytest.raises(ValueError, match=r"pairs\[0\] must be a \(linear_change, confluence_change\) tuple"):
        reconcile_many("org-a", [good[0]], **PAIR)
    with pytest.raises(ValidationError, match="confluence_page_id must not be empty"):
        reconcile_many("org-a", [good], confluence_page_id="", linear_team_id="t")
    deep: dict = {}
    node = deep
    for _ in range(300):
        node["a"] = {}
        node = node["a"]
    too_deep = r"pairs\[1\] linear_change is nested too deeply: more than 100 levels"
    with pytest.raises(ValidationError, match=too_deep):
        reconcile_many("org-a", [good, _changes("i-2", deep, {})], **PAIR)
    assert Conflict.objects.count() == 0


def test_reconcile_refuses_a_conflict_id_of_another_organization():
    linear, confluence = _changes("i-1", {"title": "B"}, {"title": "C"})
    reconcile("org-b", linear, confluence, **PAIR)
    with pytest.raises(ValidationError, match="belongs to another organization"):
        reconcile("org-a", linear, confluence, **PAIR)
    assert Conflict.objects.get().organization.linear_id == "org-b"
    # and an agreement in org-a does not resolve org-b's conflict
    agreed = _changes("i-1", {"title": "B"}, {"title": "B"})
    assert reconcile("org-a", *agreed, **PAIR).resolved_conflict_id is None
    assert not Conflict.objects.get().is_resolved


def test_another_organizations_conflict_in_a_later_batch_is_refused_before_any_batch_writes():
    reconcile("org-b", *_changes("i-taken", {"title": "B"}, {"title": "C"}), **PAIR)
    pairs = [_changes(f"i-{n}", {"title": "B"}, {"title": "C"}) for n in range(4)]
    pairs.append(_changes("i-taken", {"title": "B"}, {"title": "D"}))
    taken = "'conflict-i-taken' belongs to another organization"
    with CaptureQueriesContext(connection) as context, pytest.raises(ValidationError, match=taken):
        reconcile_many("org-a", pairs, batch_size=2, **PAIR)
    assert list(Conflict.objects.values_list("pk", "organization__linear_id")) == [
        ("conflict-i-taken", "org-b")
    ]
    assert SyncState.objects.get(**PAIR).conflict_count == 1
    writes = [
        q["sql"] for q in context.captured_queries if q["sql"].startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    assert [sql for sql in writes if "accounts_organization" not in sql] == []


def test_deletion_is_sent_as_removed():
    _snapshot("org-a", "i-1", {"title": "A", "due": "d"})
    linear, confluence = _changes("i-1", {"title": "A"}, {"title": "A", "due": "d"})
    result = reconcile("org-a", linear, confluence, **PAIR)
    assert result.merge.to_confluence == {"due": REMOVED}


@pytest.mark.django_db(transaction=True)
def test_async_twins_of_reconcile():
    linear, confluence = _changes("i-1", {"title": "B"}, {"title": "C"})
    result = async_to_sync(areconcile)("org-a", linear, confluence, **PAIR)
    assert result.outcome == "conflict"
    results = async_to_sync(areconcile_many)("org-a", [_changes("i-2", {"t": 1}, {"t": 1})], **PAIR)
    assert [r.outcome for r in results] == ["in_sync"]
    assert Conflict.objects.count() == 1
