"""16 workers reconciling and storing the same items while reviewers resolve them (PostgreSQL)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from sync.models import (
    Conflict,
    ConflictAlreadyResolved,
    ConflictChanged,
    ConflictResolution,
    ItemSnapshot,
    SyncState,
)
from sync.services import reconcile_many
from tests.factories import make_change
from tests.reliability.concurrency import assert_no_errors, run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PAIR = {"confluence_page_id": "page-1", "linear_team_id": "team-1"}
ITEMS = [f"i-{n:02}" for n in range(12)]
ROUNDS = 6


def _pairs(worker: int, round_: int) -> list[tuple[dict, dict]]:
    # Each worker writes its own Linear titles: every round is a new disagreement on every item.
    return [
        (
            make_change("linear", itemId=item, itemData={"title": f"L{worker}-{round_}", "n": 1}),
            make_change("confluence", itemId=item, itemData={"title": "C", "n": 1}),
        )
        for item in ITEMS
    ]


def test_reconcilers_storers_and_reviewers_lose_nothing_and_never_resolve_an_unseen_version():
    ItemSnapshot.objects.record_synced(
        "org-a", [{"itemId": item, "itemData": {"title": "A", "n": 1}} for item in ITEMS], **PAIR
    )
    reviewers = [get_user_model().objects.create_user(username=f"reviewer{n}") for n in range(4)]
    seen_and_resolved: list[tuple[str, int, dict, int]] = []

    def reconciler(worker: int) -> int:
        for round_ in range(ROUNDS):
            reconcile_many("org-a", _pairs(worker, round_), batch_size=5, **PAIR)
        return ROUNDS

    def storer(worker: int) -> int:
        for round_, item in itertools.product(range(ROUNDS), ITEMS):
            linear, confluence = _pairs(worker, round_)[ITEMS.index(item)]
            Conflict.objects.store(
                f"conflict-{item}",
                linear_change=linear,
                confluence_change=confluence,
                organization_id="org-a",
                **PAIR,
            )
        return ROUNDS

    def reviewer(index: int) -> dict[str, int]:
        counts = {"resolved": 0, "changed": 0, "already": 0}
        user = reviewers[index]
        for _ in range(ROUNDS * 3):
            for conflict in list(Conflict.objects.unresolved(**PAIR)[:6]):
                try:
                    conflict.resolve("linear", by=user, expected_version=conflict.version)
                except ConflictChanged:
                    counts["changed"] += 1
                except ConflictAlreadyResolved:
                    counts["already"] += 1
                else:
                    counts["resolved"] += 1
                    seen_and_resolved.append(
                        (conflict.pk, conflict.version, conflict.linear_change["itemData"], user.pk)
                    )
        return counts

    def work(i: int) -> Any:
        if i < 8:
            return reconciler(i)
        if i < 12:
            return storer(i)
        return reviewer(i - 12)

    outcomes = run_together(work, writers=16)
    assert_no_errors(outcomes)

    # One row per item, nothing else.
    assert sorted(Conflict.objects.values_list("pk", flat=True)) == [f"conflict-{item}" for item in ITEMS]
    # Every successful resolution resolved the content its reviewer saw: the log entry written for it
    # carries the Linear itemData of the version read.
    assert seen_and_resolved, "no reviewer managed a resolution: the test proves nothing"
    for conflict_id, _version, item_data, user_pk in seen_and_resolved:
        assert ConflictResolution.objects.filter(
            conflict_id=conflict_id, action="resolved", by_id=user_pk, resolved_change__itemData=item_data
        ).exists()
    # The resolution log and the rows agree: each conflict is resolved iff its last entry is "resolved".
    for conflict in Conflict.objects.all():
        entries = list(ConflictResolution.objects.for_conflict(conflict.pk).values_list("action", flat=True))
        assert conflict.is_resolved == (bool(entries) and entries[-1] == "resolved")
        assert conflict.version >= 1
        assert conflict.organization.linear_id == "org-a"
    # The pair's count is the number of unresolved conflicts.
    state = SyncState.objects.get(**PAIR)
    assert state.conflict_count == Conflict.objects.filter(is_resolved=False).count()
