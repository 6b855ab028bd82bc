"""Concurrent writers on PostgreSQL: upserts stay single rows, resolutions apply exactly once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from sync import services
from sync.models import (
    Conflict,
    ConflictAlreadyResolved,
    ConflictResolution,
    LinearIssueCache,
    SyncState,
)
from tests.factories import make_change, make_conflict
from tests.reliability.concurrency import run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_concurrently(functions: list[Callable[[], Any]]) -> list[Any]:
    """Run each function in its own thread, all released at once; results or raised exceptions."""
    outcomes = run_together(lambda i: functions[i](), writers=len(functions))
    return [outcome.result if outcome.error is None else outcome.error for outcome in outcomes]


def test_sixteen_concurrent_mark_synced_make_one_row_without_error():
    results = run_concurrently(
        [lambda: SyncState.objects.mark_synced("page", "team", organization_id="org-1") for _ in range(16)]
    )

    assert [type(r).__name__ for r in results] == ["SyncState"] * 16
    assert SyncState.objects.count() == 1
    assert len({r.pk for r in results}) == 1


def test_concurrent_resolutions_of_one_conflict_apply_exactly_once():
    make_conflict(id="c1", confluence_page_id="p", linear_team_id="t")
    users = [get_user_model().objects.create_user(username=f"op{n}") for n in range(4)]
    strategies = ["linear", "confluence", "linear", "confluence"]

    def resolve(n: int) -> Any:
        # Each thread holds its own copy loaded before anyone resolved: the stale-caller case.
        return stale[n].resolve(strategies[n], by=users[n])

    stale = [Conflict.objects.get(pk="c1") for _ in range(4)]
    results = run_concurrently([lambda n=n: resolve(n) for n in range(4)])

    applied = [r for r in results if isinstance(r, Conflict)]
    refused = [r for r in results if isinstance(r, ConflictAlreadyResolved)]
    assert (len(applied), len(refused)) == (1, 3), results
    row = Conflict.objects.get()
    winner = applied[0]
    assert (row.resolution_strategy, row.resolved_by_id) == (
        winner.resolution_strategy,
        winner.resolved_by_id,
    )
    assert all(winner.resolved_by.username in str(error) for error in refused)
    assert ConflictResolution.objects.count() == 1
    assert SyncState.objects.get().conflict_count == 0


def test_concurrent_bulk_and_single_resolutions_never_resolve_a_conflict_twice():
    ids = [f"c{n:02}" for n in range(12)]
    for conflict_id in ids:
        make_conflict(id=conflict_id, confluence_page_id="p", linear_team_id="t")
    user = get_user_model().objects.create_user(username="op")
    # Overlapping sets in opposite orders: the service locks by id order, so no deadlock.
    results = run_concurrently(
        [
            lambda: services.resolve_conflicts(ids[:8], "linear", by=user),
            lambda: services.resolve_conflicts(list(reversed(ids[4:])), "confluence", by=user),
            lambda: services.resolve_conflicts(ids[2:10], "linear", by=user),
        ]
    )

    assert all(isinstance(r, services.BulkResolution) for r in results), results
    resolved = [conflict_id for r in results for conflict_id in r.resolved]
    assert sorted(resolved) == ids  # each conflict resolved by exactly one caller
    assert ConflictResolution.objects.count() == 12
    assert Conflict.objects.filter(is_resolved=False).count() == 0
    assert SyncState.objects.get().conflict_count == 0


def test_concurrent_store_of_one_id_keeps_one_row_without_error():
    def store(n: int) -> Any:
        return Conflict.objects.store(
            "conflict-item-1",
            linear_change=make_change("linear", itemId="item-1", itemData={"v": n}),
            confluence_change=make_change("confluence", itemId="item-1", itemData={"v": -1}),
            confluence_page_id="p",
            linear_team_id="t",
        )

    results = run_concurrently([lambda n=n: store(n) for n in range(8)])

    assert [type(r).__name__ for r in results] == ["Conflict"] * 8, results
    assert Conflict.objects.count() == 1
    assert Conflict.objects.get().linear_change["itemData"]["v"] in range(8)
    assert SyncState.objects.get().conflict_count == 1


def test_concurrent_stores_on_one_pair_keep_the_count_true():
    def store(n: int) -> Any:
        return Conflict.objects.store(
            f"conflict-{n}",
            linear_change=make_change("linear", itemId=f"i{n}"),
            confluence_change=make_change("confluence", itemId=f"i{n}"),
            confluence_page_id="p",
            linear_team_id="t",
        )

    results = run_concurrently([lambda n=n: store(n) for n in range(10)])

    assert [type(r).__name__ for r in results] == ["Conflict"] * 10, results
    assert SyncState.objects.get().conflict_count == 10


def test_concurrent_upserts_of_overlapping_issues_neither_fail_nor_duplicate():
    batches = [[{"id": f"issue-{n:03}", "writer": w} for n in range(200)] for w in range(4)]
    batches[1].reverse()
    batches[3].reverse()

    results = run_concurrently(
        [lambda b=b: LinearIssueCache.objects.upsert_many("org-1", b, batch_size=50) for b in batches]
    )

    assert results == [200, 200, 200, 200]
    assert LinearIssueCache.objects.count() == 200
