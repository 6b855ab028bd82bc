"""Conflict: store (upsert), queries, resolve, reopen, discard, clear, counters and the log."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from sync.models import (
    Conflict,
    ConflictAlreadyResolved,
    ConflictResolution,
    SyncState,
)
from tests.factories import make_change, make_conflict, make_organization, make_sync_state

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def linear(item_id: str = "item-1", **data) -> dict:
    return make_change("linear", itemId=item_id, itemData=data or {"title": "A", "estimate": 3})


def confluence(item_id: str = "item-1", **data) -> dict:
    return make_change("confluence", itemId=item_id, itemData=data or {"title": "B", "estimate": 3})


def count_of(page: str, team: str) -> int:
    return SyncState.objects.get(confluence_page_id=page, linear_team_id=team).conflict_count


def log_of(conflict_id: str) -> list[tuple[str, str, str | None]]:
    return [
        (entry.action, entry.strategy, entry.by.username if entry.by else None)
        for entry in ConflictResolution.objects.for_conflict(conflict_id)
    ]


# --- store -------------------------------------------------------------------------------------


def test_store_creates_conflict_with_item_fields_and_differing_count(clock):
    conflict = Conflict.objects.store(
        "conflict-item-1",
        linear_change=linear(title="A", estimate=3, owner="x"),
        confluence_change=confluence(title="B", estimate=3),
        confluence_page_id="page-1",
        linear_team_id="team-1",
    )

    row = Conflict.objects.get(pk="conflict-item-1")
    assert row.item_type == "story"
    assert row.item_id == "item-1"
    assert row.differing_field_count == 2  # title differs, owner only on the Linear side
    assert row.confluence_page_id == "page-1"
    assert row.linear_team_id == "team-1"
    assert row.linear_change == linear(title="A", estimate=3, owner="x")
    assert row.resolved_change is None
    assert row.is_resolved is False
    assert row.resolution_strategy == ""
    assert row.created_at == T0
    assert row.updated_at == T0
    assert conflict.pk == row.pk


def test_store_without_page_and_team_keeps_them_empty_and_creates_no_state():
    make_conflict(id="conflict-old")

    row = Conflict.objects.get(pk="conflict-old")
    assert (row.confluence_page_id, row.linear_team_id) == ("", "")
    assert SyncState.objects.count() == 0


def test_store_creates_the_sync_state_of_its_pair_with_the_count():
    Conflict.objects.store(
        "c1",
        linear_change=linear(),
        confluence_change=confluence(),
        confluence_page_id="p",
        linear_team_id="t",
    )

    state = SyncState.objects.get()
    assert (state.confluence_page_id, state.linear_team_id) == ("p", "t")
    assert state.conflict_count == 1
    assert state.last_synced_at is None


def test_store_twice_with_same_changes_keeps_one_row_and_changes_nothing(clock):
    Conflict.objects.store("c1", linear_change=linear(), confluence_change=confluence())
    clock.advance(minutes=5)

    Conflict.objects.store("c1", linear_change=linear(), confluence_change=confluence())

    assert Conflict.objects.count() == 1
    assert Conflict.objects.get().updated_at == T0


def test_store_same_changes_does_not_reopen_a_resolved_conflict(clock):
    make_conflict(id="c1", linear_change=linear(), confluence_change=confluence()).resolve("linear")

    Conflict.objects.store("c1", linear_change=linear(), confluence_change=confluence())

    assert Conflict.objects.get().is_resolved is True
    assert log_of("c1") == [("resolved", "linear", None)]


def test_store_with_different_changes_updates_an_unresolved_conflict(clock):
    Conflict.objects.store("c1", linear_change=linear(), confluence_change=confluence())
    clock.advance(minutes=5)

    Conflict.objects.store(
        "c1", linear_change=linear(title="A2", size=1), confluence_change=confluence(title="A2", size=2)
    )

    row = Conflict.objects.get()
    assert row.linear_change["itemData"] == {"title": "A2", "size": 1}
    assert row.differing_field_count == 1
    assert row.updated_at == T0 + dt.timedelta(minutes=5)
    assert row.created_at == T0
    assert log_of("c1") == []


def test_store_with_different_changes_reopens_a_resolved_conflict(clock, operator):
    conflict = make_conflict(
        id="c1",
        linear_change=linear(),
        confluence_change=confluence(),
        confluence_page_id="p",
        linear_team_id="t",
    )
    conflict.resolve("confluence", by=operator)
    assert count_of("p", "t") == 0
    clock.advance(minutes=1)

    Conflict.objects.store("c1", linear_change=linear(title="new"), confluence_change=confluence())

    row = Conflict.objects.get()
    assert row.is_resolved is False
    assert row.resolution_strategy == ""
    assert row.resolved_at is None
    assert row.resolved_by is None
    assert row.resolved_change is None
    assert row.linear_change["itemData"] == {"title": "new"}
    assert log_of("c1") == [("resolved", "confluence", "alice"), ("reopened", "", None)]
    assert count_of("p", "t") == 1


def test_store_with_a_page_and_team_later_moves_the_conflict_and_both_counts():
    Conflict.objects.store(
        "c1",
        linear_change=linear(),
        confluence_change=confluence(),
        confluence_page_id="p1",
        linear_team_id="t",
    )

    Conflict.objects.store(
        "c1",
        linear_change=linear(),
        confluence_change=confluence(),
        confluence_page_id="p2",
        linear_team_id="t",
    )

    assert Conflict.objects.get().confluence_page_id == "p2"
    assert count_of("p1", "t") == 0
    assert count_of("p2", "t") == 1


def test_store_with_none_page_keeps_the_stored_page():
    Conflict.objects.store(
        "c1",
        linear_change=linear(),
        confluence_change=confluence(),
        confluence_page_id="p",
        linear_team_id="t",
    )

    Conflict.objects.store("c1", linear_change=linear(title="x"), confluence_change=confluence())

    assert Conflict.objects.get().pair == ("p", "t")


@pytest.mark.parametrize(
    ("side", "missing"),
    [
        ("linear_change", "itemId"),
        ("linear_change", "source"),
        ("linear_change", "itemData"),
        ("confluence_change", "itemId"),
        ("confluence_change", "source"),
        ("confluence_change", "itemData"),
    ],
)
def test_store_refuses_a_change_without_a_required_key_naming_key_and_side(side, missing):
    changes = {"linear_change": linear(), "confluence_change": confluence()}
    del changes[side][missing]

    with pytest.raises(ValidationError) as excinfo:
        Conflict.objects.store("c1", **changes)

    assert excinfo.value.messages == [f"{side} has no '{missing}' key."]
    assert Conflict.objects.count() == 0


@pytest.mark.parametrize(
    ("linear_change", "message"),
    [
        (["not", "an", "object"], "linear_change must be a JSON object, not list."),
        ("{}", "linear_change must be a JSON object, not str."),
        (
            make_change("linear", itemData=[1, 2]),
            "linear_change['itemData'] must be a JSON object, not list.",
        ),
        (make_change("linear", itemId=""), "linear_change['itemId'] must be a non-empty string."),
        ({**make_change("linear"), "source": 7}, "linear_change['source'] must be a non-empty string."),
        (make_change("linear", itemData={"t": "a\x00b"}), "linear_change must not contain NUL characters."),
        (make_change("linear", itemData={"a\x00": 1}), "linear_change must not contain NUL characters."),
        (make_change("linear", itemData={"n": float("nan")}), None),
        (make_change("linear", itemData={"when": T0}), None),
        (make_change("linear", itemData={"s": {1, 2}}), None),
    ],
)
def test_store_refuses_bad_changes_before_writing(linear_change, message):
    with pytest.raises(ValidationError) as excinfo:
        Conflict.objects.store("c1", linear_change=linear_change, confluence_change=confluence())

    if message is not None:
        assert excinfo.value.messages == [message]
    else:
        assert excinfo.value.messages[0].startswith("linear_change is not valid JSON")
    assert Conflict.objects.count() == 0


def test_store_refuses_changes_about_different_items():
    with pytest.raises(ValidationError, match="different items"):
        Conflict.objects.store("c1", linear_change=linear("a"), confluence_change=confluence("b"))
    assert Conflict.objects.count() == 0


@pytest.mark.parametrize("bad_id", ["", "   ", "x" * 256, "a\x00b"])
def test_store_refuses_a_bad_conflict_id(bad_id):
    with pytest.raises(ValidationError):
        Conflict.objects.store(bad_id, linear_change=linear(), confluence_change=confluence())
    assert Conflict.objects.count() == 0


def test_store_refuses_a_non_string_conflict_id():
    with pytest.raises(ValueError, match="conflict_id must be a string"):
        Conflict.objects.store(42, linear_change=linear(), confluence_change=confluence())


def test_json_columns_keep_unicode_and_nesting_exactly():
    data = {
        "title": "Überprüfung 🚀 — 日本語",
        "nested": {"a": [1, 2.5, None, True, {"deep": ["x", {"deeper": "y"}]}]},
        "empty": {},
        "escaped": 'quote " backslash \\ \\u0000 as text',
    }
    Conflict.objects.store("c1", linear_change=linear(**data), confluence_change=confluence(**data))

    row = Conflict.objects.get()
    assert row.linear_change["itemData"] == data
    assert row.confluence_change["itemData"] == data
    assert row.differing_field_count == 0


# --- queries -----------------------------------------------------------------------------------


def test_unresolved_lists_newest_first_and_filters_by_page_and_team(clock):
    make_conflict(id="c1", confluence_page_id="p1", linear_team_id="t1")
    clock.advance(minutes=1)
    make_conflict(id="c2", confluence_page_id="p1", linear_team_id="t2")
    clock.advance(minutes=1)
    make_conflict(id="c3", confluence_page_id="p2", linear_team_id="t1")
    clock.advance(minutes=1)
    make_conflict(id="c4").resolve("linear")

    assert [c.pk for c in Conflict.objects.unresolved()] == ["c3", "c2", "c1"]
    assert [c.pk for c in Conflict.objects.unresolved("p1")] == ["c2", "c1"]
    assert [c.pk for c in Conflict.objects.unresolved(linear_team_id="t1")] == ["c3", "c1"]
    assert [c.pk for c in Conflict.objects.unresolved("p1", "t2")] == ["c2"]
    assert list(Conflict.objects.unresolved("nope")) == []


def test_unresolved_breaks_ties_by_id_descending(clock):
    for conflict_id in ["b", "c", "a"]:
        make_conflict(id=conflict_id)

    assert [c.pk for c in Conflict.objects.unresolved()] == ["c", "b", "a"]


def test_resolved_lists_by_updated_at_newest_first(clock):
    first = make_conflict(id="c1", confluence_page_id="p", linear_team_id="t")
    second = make_conflict(id="c2", confluence_page_id="p", linear_team_id="t")
    make_conflict(id="c3")
    clock.advance(minutes=1)
    second.resolve("linear")
    clock.advance(minutes=1)
    first.resolve("confluence")

    assert [c.pk for c in Conflict.objects.resolved()] == ["c1", "c2"]
    assert [c.pk for c in Conflict.objects.resolved("p", "t")] == ["c1", "c2"]
    assert list(Conflict.objects.resolved("other")) == []


def test_query_scope_arguments_are_validated():
    with pytest.raises(ValueError, match="confluence_page_id must be a string"):
        Conflict.objects.unresolved(5)


# --- resolve -----------------------------------------------------------------------------------


def test_resolve_with_linear_keeps_the_linear_change_with_the_resolved_id(clock, operator):
    conflict = make_conflict(id="conflict-item-1", linear_change=linear(), confluence_change=confluence())
    clock.advance(minutes=2)

    returned = conflict.resolve("linear", by=operator)

    expected = {**linear(), "id": "resolved-conflict-item-1"}
    assert returned is conflict
    assert conflict.resolved_change == expected
    row = Conflict.objects.get()
    assert row.is_resolved is True
    assert row.resolution_strategy == "linear"
    assert row.resolved_change == expected
    assert row.resolved_change["source"] == "linear"
    assert row.resolved_at == T0 + dt.timedelta(minutes=2)
    assert row.updated_at == T0 + dt.timedelta(minutes=2)
    assert row.resolved_by == operator
    entry = ConflictResolution.objects.get()
    assert (entry.conflict_id, entry.action, entry.strategy, entry.by) == (
        "conflict-item-1",
        "resolved",
        "linear",
        operator,
    )
    assert entry.resolved_change == expected
    assert entry.at == T0 + dt.timedelta(minutes=2)


def test_resolve_with_confluence_keeps_the_confluence_change():
    conflict = make_conflict(id="c1", linear_change=linear(), confluence_change=confluence())

    conflict.resolve("confluence")

    row = Conflict.objects.get()
    assert row.resolved_change == {**confluence(), "id": "resolved-c1"}
    assert row.resolved_by is None
    assert log_of("c1") == [("resolved", "confluence", None)]


def test_resolve_manual_stores_the_operator_change_with_the_resolved_id(operator):
    conflict = make_conflict(id="c1")
    merged = make_change("linear", itemId=conflict.item_id, itemData={"title": "merged ✓", "estimate": 5})

    conflict.resolve("manual", merged, by=operator)

    row = Conflict.objects.get()
    assert row.resolution_strategy == "manual"
    assert row.resolved_change == {**merged, "id": "resolved-c1"}
    assert ConflictResolution.objects.get().resolved_change == {**merged, "id": "resolved-c1"}


def test_resolve_manual_without_a_change_is_refused():
    conflict = make_conflict(id="c1")
    with pytest.raises(ValidationError) as excinfo:
        conflict.resolve("manual")
    assert excinfo.value.messages == ["A manual resolution needs a resolved_change."]
    assert Conflict.objects.get().is_resolved is False
    assert ConflictResolution.objects.count() == 0


def test_resolve_manual_with_an_invalid_change_names_the_missing_key():
    conflict = make_conflict(id="c1")
    with pytest.raises(ValidationError) as excinfo:
        conflict.resolve("manual", {"itemId": "x", "source": "manual"})
    assert excinfo.value.messages == ["resolved_change has no 'itemData' key."]
    assert Conflict.objects.get().is_resolved is False


def test_resolve_refuses_a_resolved_change_for_a_side_strategy():
    conflict = make_conflict(id="c1")
    with pytest.raises(ValidationError, match="only for the manual strategy"):
        conflict.resolve("linear", make_change())
    assert Conflict.objects.get().is_resolved is False


@pytest.mark.parametrize("strategy", ["", "LINEAR", "both", "keep"])
def test_resolve_refuses_an_unknown_strategy(strategy):
    conflict = make_conflict(id="c1")
    with pytest.raises(ValidationError, match="strategy must be one of linear, confluence, manual"):
        conflict.resolve(strategy)
    assert Conflict.objects.get().is_resolved is False


def test_resolve_refuses_a_by_that_is_not_a_user():
    conflict = make_conflict(id="c1")
    with pytest.raises(ValueError, match="by must be a User or None"):
        conflict.resolve("linear", by="alice")
    assert Conflict.objects.get().is_resolved is False


def test_a_stale_caller_cannot_resolve_again_and_learns_who_did(clock, operator):
    make_conflict(id="c1")
    stale = Conflict.objects.get(pk="c1")
    Conflict.objects.get(pk="c1").resolve("linear", by=operator)

    with pytest.raises(ConflictAlreadyResolved) as excinfo:
        stale.resolve("confluence")

    assert excinfo.value.messages == [
        "Conflict 'c1' was already resolved (linear) by alice at 2026-01-01T12:00:00+00:00; "
        "reopen it first to resolve it again."
    ]
    assert isinstance(excinfo.value, ValidationError)
    row = Conflict.objects.get()
    assert row.resolution_strategy == "linear"
    assert log_of("c1") == [("resolved", "linear", "alice")]


def test_resolve_of_a_deleted_conflict_is_a_clear_error():
    conflict = make_conflict(id="c1")
    Conflict.objects.discard("c1")
    with pytest.raises(ValidationError) as excinfo:
        conflict.resolve("linear")
    assert excinfo.value.messages == ["Conflict 'c1' no longer exists."]
    assert ConflictResolution.objects.count() == 0


# --- reopen ------------------------------------------------------------------------------------


def test_reopen_clears_the_resolution_and_logs_it(clock, operator, other_operator):
    conflict = make_conflict(id="c1", confluence_page_id="p", linear_team_id="t")
    conflict.resolve("linear", by=operator)
    clock.advance(hours=1)

    conflict.reopen(by=other_operator)

    row = Conflict.objects.get()
    assert (
        row.is_resolved,
        row.resolution_strategy,
        row.resolved_at,
        row.resolved_by,
        row.resolved_change,
    ) == (
        False,
        "",
        None,
        None,
        None,
    )
    assert row.updated_at == T0 + dt.timedelta(hours=1)
    assert conflict.is_resolved is False
    assert log_of("c1") == [("resolved", "linear", "alice"), ("reopened", "", "bob")]
    assert count_of("p", "t") == 1


def test_reopen_of_an_unresolved_conflict_is_refused():
    conflict = make_conflict(id="c1")
    with pytest.raises(ValidationError) as excinfo:
        conflict.reopen()
    assert excinfo.value.messages == ["Conflict 'c1' is not resolved."]
    assert ConflictResolution.objects.count() == 0


def test_reopened_conflict_can_be_resolved_again():
    conflict = make_conflict(id="c1")
    conflict.resolve("linear")
    conflict.reopen()

    conflict.resolve("confluence")

    assert Conflict.objects.get().resolution_strategy == "confluence"
    assert log_of("c1") == [
        ("resolved", "linear", None),
        ("reopened", "", None),
        ("resolved", "confluence", None),
    ]


# --- discard and clear -------------------------------------------------------------------------


def test_discard_says_whether_a_row_went_and_keeps_the_log():
    make_conflict(id="c1").resolve("linear")

    assert Conflict.objects.discard("c1") is True
    assert Conflict.objects.discard("c1") is False
    assert Conflict.objects.discard("never-stored") is False
    assert Conflict.objects.count() == 0
    assert log_of("c1") == [("resolved", "linear", None)]


def test_clear_deletes_the_scope_and_returns_the_count():
    make_conflict(id="a", confluence_page_id="p1", linear_team_id="t1")
    make_conflict(id="b", confluence_page_id="p1", linear_team_id="t2")
    make_conflict(id="c", confluence_page_id="p2", linear_team_id="t1").resolve("linear")
    make_conflict(id="d")

    assert Conflict.objects.clear("p1", "t2") == 1
    assert sorted(Conflict.objects.values_list("pk", flat=True)) == ["a", "c", "d"]
    assert Conflict.objects.clear(linear_team_id="t1") == 2
    assert list(Conflict.objects.values_list("pk", flat=True)) == ["d"]
    assert Conflict.objects.clear("nothing-here") == 0
    assert Conflict.objects.clear() == 1
    assert Conflict.objects.count() == 0
    assert log_of("c") == [("resolved", "linear", None)]


# --- conflict_count ----------------------------------------------------------------------------


def test_conflict_count_stays_true_through_every_conflict_method():
    def store(conflict_id, title="A"):
        return Conflict.objects.store(
            conflict_id,
            linear_change=linear(conflict_id, title=title),
            confluence_change=confluence(conflict_id),
            confluence_page_id="p",
            linear_team_id="t",
        )

    store("a")
    store("b")
    store("c")
    assert count_of("p", "t") == 3
    store("a")  # same changes again
    assert count_of("p", "t") == 3
    Conflict.objects.get(pk="a").resolve("linear")
    assert count_of("p", "t") == 2
    Conflict.objects.get(pk="a").reopen()
    assert count_of("p", "t") == 3
    Conflict.objects.get(pk="a").resolve("confluence")
    store("a", title="changed")  # reopens
    assert count_of("p", "t") == 3
    assert Conflict.objects.discard("b") is True
    assert count_of("p", "t") == 2
    Conflict.objects.get(pk="c").resolve("linear")
    assert count_of("p", "t") == 1
    assert Conflict.objects.discard("c") is True  # a resolved one: the count does not move
    assert count_of("p", "t") == 1
    assert Conflict.objects.clear("p", "t") == 1
    assert count_of("p", "t") == 0


def test_conflict_count_is_recounted_not_incremented():
    make_conflict(id="a", confluence_page_id="p", linear_team_id="t")
    SyncState.objects.filter(confluence_page_id="p").update(conflict_count=40)

    make_conflict(id="b", confluence_page_id="p", linear_team_id="t")

    assert count_of("p", "t") == 2


def test_clear_keeps_other_pairs_counts():
    make_conflict(id="a", confluence_page_id="p1", linear_team_id="t")
    make_conflict(id="b", confluence_page_id="p2", linear_team_id="t")

    Conflict.objects.clear("p1")

    assert count_of("p1", "t") == 0
    assert count_of("p2", "t") == 1


# --- database rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "update",
    [
        {"is_resolved": True},  # no strategy, no time
        {"is_resolved": True, "resolution_strategy": "linear"},  # no time
        {"is_resolved": True, "resolved_at": T0},  # no strategy
        {"resolution_strategy": "linear"},  # unresolved with a strategy
        {"resolved_at": T0},  # unresolved with a time
        {"is_resolved": True, "resolution_strategy": "both", "resolved_at": T0},  # unknown strategy
    ],
)
def test_database_refuses_resolved_without_strategy_and_time(update):
    make_conflict(id="c1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Conflict.objects.filter(pk="c1").update(**update)


def test_database_refuses_unresolved_with_leftover_resolution():
    make_conflict(id="c1").resolve("linear")
    with pytest.raises(IntegrityError), transaction.atomic():
        Conflict.objects.filter(pk="c1").update(is_resolved=False)


def test_database_accepts_a_consistent_raw_resolution():
    make_conflict(id="c1")
    Conflict.objects.filter(pk="c1").update(is_resolved=True, resolution_strategy="manual", resolved_at=T0)
    assert Conflict.objects.get().resolution_strategy == "manual"


def test_item_data_diff_of_a_conflict_compares_the_item_data():
    conflict = make_conflict(
        id="c1",
        linear_change=linear(title="A", estimate=3),
        confluence_change=confluence(title="B", estimate=3),
    )
    rows = [(row.field, row.linear, row.confluence, row.differs) for row in conflict.item_data_diff()]
    assert rows == [("title", "A", "B", True), ("estimate", 3, 3, False)]


# --- indexes -----------------------------------------------------------------------------------


def _plan(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Planner costs on a tiny test table favour a scan; forbid it to see whether an index serves.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute("EXPLAIN " + sql, params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        return " ".join(str(row) for row in cursor.fetchall())


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (lambda: Conflict.objects.unresolved()[:50], "sync_conflict_unresolved_idx"),
        (lambda: Conflict.objects.resolved()[:50], "sync_conflict_resolved_idx"),
        (lambda: Conflict.objects.unresolved("p1", "t1")[:50], "sync_conflict_pair_open_idx"),
        (lambda: Conflict.objects.resolved("p1", "t1")[:50], "sync_conflict_pair_done_idx"),
    ],
)
def test_listings_are_served_by_an_index_without_a_sort(query, index):
    for n in range(40):
        conflict = make_conflict(id=f"c{n:02}", confluence_page_id=f"p{n % 4}", linear_team_id="t1")
        if n % 3 == 0:
            conflict.resolve("linear")

    plan = _plan(query())

    assert index in plan
    assert "TEMP B-TREE" not in plan  # SQLite sorting on its own
    assert "Sort" not in plan.replace("Incremental Sort", "")  # PostgreSQL sorting on its own


def test_store_query_counts(django_assert_num_queries):
    changes = {"linear_change": linear(), "confluence_change": confluence()}
    scope = {"confluence_page_id": "p", "linear_team_id": "t"}
    # lock-read, the pair's organization (none named), insert (in a savepoint), state row
    # insert-if-absent, lock state, recount (one UPDATE); plus the savepoints of atomic() inside the
    # test transaction.
    with django_assert_num_queries(10):
        Conflict.objects.store("c1", **changes, **scope)
    # The same conflict again: the locked read, and the pair's organization (it still has none).
    with django_assert_num_queries(4):
        Conflict.objects.store("c1", **changes, **scope)


def test_a_store_naming_no_organization_takes_its_pairs():
    """First-part callers (and seed_demo) store without organization_id: the conflict still belongs to
    the organization of its (page, team), so tenant scoping and the console treat it as theirs."""
    org = make_organization(linear_id="org-pair")
    make_sync_state(organization=org, confluence_page_id="p-org", linear_team_id="t-org")
    changes = {"linear_change": linear(), "confluence_change": confluence()}
    stored = Conflict.objects.store("c-org", **changes, confluence_page_id="p-org", linear_team_id="t-org")
    assert Conflict.objects.get(pk=stored.pk).organization_id == org.pk
    # No pair, no organization (the old system's conflicts); a named organization always wins.
    assert Conflict.objects.store("c-none", **changes).organization_id is None
    other = make_organization(linear_id="org-named")
    named = Conflict.objects.store(
        "c-named", **changes, confluence_page_id="p-org", linear_team_id="t-org", organization_id="org-named"
    )
    assert named.organization_id == other.pk


def test_listing_unresolved_conflicts_is_one_query(django_assert_num_queries):
    for n in range(5):
        make_conflict(id=f"c{n}")
    with django_assert_num_queries(1):
        assert len(list(Conflict.objects.unresolved())) == 5
