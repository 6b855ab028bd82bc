"""Sixteen real threads write the same rows at once: nothing is lost, nothing unexpected is raised.

PostgreSQL only (SQLite serialises writers with a file lock, so there is no race to test); every test
runs with ``transaction=True`` so that each thread's commits are real and visible to the others.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest
from django.utils import timezone

from planning.models import Enabler, Feature, PlanningSession, Story
from planning.services import save_planning_result
from sync.models import (
    Conflict,
    ConflictAlreadyResolved,
    ConflictResolution,
    LinearIssueCache,
    SyncState,
)
from tests.factories import make_change, make_planning_session
from tests.reliability.concurrency import WRITERS, assert_no_errors, errors, run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


# --- mark_synced -----------------------------------------------------------------------------------


def test_mark_synced_same_pair_keeps_one_row_with_one_writers_value():
    def work(i: int) -> SyncState:
        return SyncState.objects.mark_synced(
            "page-1", "team-1", BASE + dt.timedelta(minutes=i), organization_id="org-sync"
        )

    outcomes = run_together(work)

    assert_no_errors(outcomes)
    rows = list(SyncState.objects.values_list("confluence_page_id", "linear_team_id", "status"))
    assert rows == [("page-1", "team-1", "idle")]
    written = {BASE + dt.timedelta(minutes=i) for i in range(WRITERS)}
    assert SyncState.objects.last_synced_at("page-1", "team-1") in written
    # Every writer got the row back, and the organization was created once.
    assert {o.result.pk for o in outcomes} == {SyncState.objects.get().pk}
    assert SyncState.objects.get().organization.linear_id == "org-sync"


def test_mark_synced_distinct_pairs_loses_none():
    outcomes = run_together(
        lambda i: SyncState.objects.mark_synced(f"page-{i}", "team-1", BASE + dt.timedelta(hours=i))
    )

    assert_no_errors(outcomes)
    assert dict(SyncState.objects.values_list("confluence_page_id", "last_synced_at")) == {
        f"page-{i}": BASE + dt.timedelta(hours=i) for i in range(WRITERS)
    }


# --- conflicts -------------------------------------------------------------------------------------


def _changes(item_id: str, title: str = "L") -> dict:
    return {
        "linear_change": make_change("linear", itemId=item_id, itemData={"title": title}),
        "confluence_change": make_change("confluence", itemId=item_id, itemData={"title": "C"}),
    }


def test_store_same_new_conflict_creates_one_row_and_counts_it_once():
    outcomes = run_together(
        lambda i: Conflict.objects.store(
            "conflict-x", **_changes("x"), confluence_page_id="p", linear_team_id="t"
        )
    )

    assert_no_errors(outcomes)
    assert list(Conflict.objects.values_list("id", "is_resolved")) == [("conflict-x", False)]
    assert SyncState.objects.get(confluence_page_id="p", linear_team_id="t").conflict_count == 1


def test_store_distinct_conflicts_on_one_pair_counts_every_one():
    outcomes = run_together(
        lambda i: Conflict.objects.store(
            f"conflict-{i}", **_changes(str(i)), confluence_page_id="p", linear_team_id="t"
        )
    )

    assert_no_errors(outcomes)
    assert Conflict.objects.unresolved("p", "t").count() == WRITERS
    assert SyncState.objects.get(confluence_page_id="p", linear_team_id="t").conflict_count == WRITERS


def test_store_same_conflict_with_different_changes_keeps_one_writers_changes():
    outcomes = run_together(
        lambda i: Conflict.objects.store(
            "conflict-y", **_changes("y", title=f"L{i}"), confluence_page_id="p", linear_team_id="t"
        )
    )

    assert_no_errors(outcomes)
    conflict = Conflict.objects.get()
    assert conflict.linear_change["itemData"]["title"] in {f"L{i}" for i in range(WRITERS)}
    assert conflict.confluence_change["itemData"] == {"title": "C"}
    assert SyncState.objects.get().conflict_count == 1


def test_resolve_same_conflict_exactly_one_wins_and_one_log_entry():
    Conflict.objects.store("conflict-z", **_changes("z"), confluence_page_id="p", linear_team_id="t")
    strategies = ["linear", "confluence"]

    # Each thread holds its own (stale) copy, as two operators' browser tabs would.
    outcomes = run_together(lambda i: Conflict.objects.get(pk="conflict-z").resolve(strategies[i % 2]))

    winners = [o for o in outcomes if o.error is None]
    losers = [o for o in outcomes if o.error is not None]
    assert len(winners) == 1
    assert all(isinstance(o.error, ConflictAlreadyResolved) for o in losers), errors(outcomes)
    conflict = Conflict.objects.get()
    assert conflict.is_resolved
    assert conflict.resolution_strategy == strategies[winners[0].index % 2]
    assert list(ConflictResolution.objects.values_list("conflict_id", "action", "strategy")) == [
        ("conflict-z", "resolved", conflict.resolution_strategy)
    ]
    assert SyncState.objects.get().conflict_count == 0


def test_resolve_distinct_conflicts_on_one_pair_counts_down_to_zero():
    for i in range(WRITERS):
        Conflict.objects.store(
            f"conflict-{i}", **_changes(str(i)), confluence_page_id="p", linear_team_id="t"
        )
    assert SyncState.objects.get().conflict_count == WRITERS

    outcomes = run_together(lambda i: Conflict.objects.get(pk=f"conflict-{i}").resolve("linear"))

    assert_no_errors(outcomes)
    assert Conflict.objects.unresolved().count() == 0
    assert ConflictResolution.objects.filter(action="resolved").count() == WRITERS
    assert SyncState.objects.get().conflict_count == 0


def test_store_and_resolve_racing_leave_a_consistent_conflict_and_count():
    """Half the writers resolve, half store new changes (which reopens): the count matches the rows."""
    for i in range(WRITERS):
        Conflict.objects.store(
            f"conflict-{i}", **_changes(str(i)), confluence_page_id="p", linear_team_id="t"
        )

    def work(i: int) -> Conflict:
        conflict_id = f"conflict-{i // 2}"
        if i % 2:
            return Conflict.objects.store(
                conflict_id, **_changes(str(i // 2), title="new"), confluence_page_id="p", linear_team_id="t"
            )
        return Conflict.objects.get(pk=conflict_id).resolve("confluence")

    outcomes = run_together(work)

    # A resolve that loses to nothing cannot fail; a store never fails. ConflictAlreadyResolved is the
    # only acceptable error and cannot happen here (each conflict has a single resolver).
    assert_no_errors(outcomes)
    unresolved = Conflict.objects.filter(is_resolved=False).count()
    assert SyncState.objects.get().conflict_count == unresolved
    raced = list(Conflict.objects.filter(pk__in=[f"conflict-{i}" for i in range(WRITERS // 2)]))
    assert len(raced) == WRITERS // 2  # else the loop below checks fewer conflicts than raced
    # The other half was never touched and is still open.
    assert unresolved == WRITERS - WRITERS // 2 + sum(not conflict.is_resolved for conflict in raced)
    for conflict in raced:
        assert conflict.linear_change["itemData"] == {"title": "new"}
        entries = list(ConflictResolution.objects.for_conflict(conflict.pk).values_list("action", flat=True))
        # Resolved then reopened by the store, or the store first and then resolved.
        assert entries in (["resolved", "reopened"], ["resolved"])
        assert conflict.is_resolved == (entries == ["resolved"])


# --- save_planning_result --------------------------------------------------------------------------


def test_save_planning_result_on_one_session_keeps_every_writers_rows():
    session = make_planning_session()

    def work(i: int):
        return save_planning_result(
            PlanningSession.objects.get(pk=session.pk),
            features=[
                # Every writer sends the shared feature; each adds its own story to it.
                {
                    "feature_id": "FEAT-shared",
                    "title": "Shared",
                    "stories": [{"story_id": f"S-{i}", "title": f"Story {i}"}],
                },
                {
                    "feature_id": f"FEAT-{i}",
                    "title": f"Feature {i}",
                    "stories": [{"story_id": "S-own", "title": "Own story"}],
                },
            ],
            enablers=[{"enabler_id": f"EN-{i % 4}", "title": "Enabler", "enabler_type": "research"}],
        )

    outcomes = run_together(work)

    assert_no_errors(outcomes)
    features = set(Feature.objects.filter(planning_session=session).values_list("feature_id", flat=True))
    assert features == {"FEAT-shared", *(f"FEAT-{i}" for i in range(WRITERS))}
    shared_stories = Story.objects.filter(planning_feature__feature_id="FEAT-shared").values_list(
        "story_id", flat=True
    )
    assert set(shared_stories) == {f"S-{i}" for i in range(WRITERS)}
    assert Story.objects.filter(story_id="S-own").count() == WRITERS
    assert sorted(Enabler.objects.values_list("enabler_id", flat=True)) == ["EN-0", "EN-1", "EN-2", "EN-3"]
    # Exactly one writer created the shared feature; the others found it.
    assert sum(o.result.features.created for o in outcomes) == WRITERS + 1
    assert sum(o.result.enablers.created for o in outcomes) == 4


# --- LinearIssueCache.upsert_many ------------------------------------------------------------------


def test_overlapping_upsert_many_batches_in_any_order_lose_nothing():
    """Writer i upserts issues i*10 .. i*10+29 (overlapping its neighbours), shuffled, in batches of 7.

    Linear returns issues in whatever order it likes, so two agents' batches overlap in different
    orders: the bulk upsert must not deadlock on each other's row locks.
    """

    def ids(i: int) -> list[str]:
        return [f"ISS-{n:04d}" for n in range(i * 10, i * 10 + 30)]

    def work(i: int) -> int:
        issue_ids = ids(i)
        random.Random(i).shuffle(issue_ids)
        issues = [{"id": issue_id, "writer": i} for issue_id in issue_ids]
        return LinearIssueCache.objects.upsert_many("org-cache", issues, batch_size=7)

    outcomes = run_together(work)

    assert_no_errors(outcomes)
    assert [o.result for o in outcomes] == [30] * WRITERS
    rows = dict(LinearIssueCache.objects.values_list("linear_issue_id", "issue_data"))
    expected_ids = {issue_id for i in range(WRITERS) for issue_id in ids(i)}
    assert set(rows) == expected_ids
    for issue_id, data in rows.items():
        writers_of_it = {i for i in range(WRITERS) if issue_id in ids(i)}
        assert data["id"] == issue_id
        assert data["writer"] in writers_of_it
    assert LinearIssueCache.objects.values("organization").distinct().count() == 1


def test_last_updated_is_set_by_every_upsert():
    LinearIssueCache.objects.upsert_many("org-cache", [{"id": "ISS-1"}])
    before = timezone.now()

    outcomes = run_together(
        lambda i: LinearIssueCache.objects.upsert_many("org-cache", [{"id": "ISS-1", "n": i}])
    )

    assert_no_errors(outcomes)
    row = LinearIssueCache.objects.get()
    assert row.last_updated >= before
    assert row.issue_data["n"] in range(WRITERS)
