"""sync.services.resolve_conflicts: bulk resolution through the per-conflict code, in one transaction."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.core.exceptions import ValidationError

from sync import services
from sync.models import Conflict, ConflictResolution, SyncState
from tests.factories import make_conflict

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_resolve_conflicts_reports_resolved_skipped_and_missing(clock, operator, other_operator):
    for conflict_id in ["a", "b", "c"]:
        make_conflict(id=conflict_id, confluence_page_id="p", linear_team_id="t")
    Conflict.objects.get(pk="b").resolve("confluence", by=other_operator)
    clock.advance(minutes=1)

    result = services.resolve_conflicts(["c", "b", "ghost", "a", "c"], "linear", by=operator)

    assert result == services.BulkResolution(resolved=["c", "a"], skipped=["b"], missing=["ghost"])
    rows = {c.pk: c for c in Conflict.objects.all()}
    assert {pk: (c.resolution_strategy, c.resolved_by.username) for pk, c in rows.items()} == {
        "a": ("linear", "alice"),
        "b": ("confluence", "bob"),
        "c": ("linear", "alice"),
    }
    assert rows["a"].resolved_change == {**rows["a"].linear_change, "id": "resolved-a"}
    assert rows["a"].resolved_at == T0 + dt.timedelta(minutes=1)
    assert list(
        ConflictResolution.objects.order_by("id").values_list("conflict_id", "strategy", "by__username")
    ) == [
        ("b", "confluence", "bob"),
        ("c", "linear", "alice"),
        ("a", "linear", "alice"),
    ]
    assert SyncState.objects.get().conflict_count == 0


def test_resolve_conflicts_goes_through_the_per_conflict_resolution_code(operator):
    make_conflict(id="a")
    make_conflict(id="b")
    with mock.patch.object(
        Conflict, "_apply_resolution", autospec=True, side_effect=Conflict._apply_resolution
    ) as spy:
        services.resolve_conflicts(["a", "b"], "confluence", by=operator)
    assert [call.args[0].pk for call in spy.call_args_list] == ["a", "b"]


def test_resolve_conflicts_is_all_or_nothing(operator):
    make_conflict(id="a", confluence_page_id="p", linear_team_id="t")
    make_conflict(id="b", confluence_page_id="p", linear_team_id="t")
    real = Conflict._apply_resolution

    def fail_on_b(conflict, *args, **kwargs):
        if conflict.pk == "b":
            raise RuntimeError("disk full")
        return real(conflict, *args, **kwargs)

    with (
        mock.patch.object(Conflict, "_apply_resolution", autospec=True, side_effect=fail_on_b),
        pytest.raises(RuntimeError, match="disk full"),
    ):
        services.resolve_conflicts(["a", "b"], "linear", by=operator)

    assert Conflict.objects.filter(is_resolved=True).count() == 0
    assert ConflictResolution.objects.count() == 0
    assert SyncState.objects.get().conflict_count == 2


def test_resolve_conflicts_locks_rows_in_one_query(operator, django_assert_num_queries):
    for n in range(20):
        make_conflict(id=f"c{n:02}")
    # 1 locked read + per conflict (update + log insert) + savepoint/release of atomic.
    with django_assert_num_queries(1 + 2 * 20 + 2) as captured:
        result = services.resolve_conflicts([f"c{n:02}" for n in range(20)], "linear", by=operator)
    assert len(result.resolved) == 20
    selects = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT")]
    assert len(selects) == 1


def test_resolve_conflicts_recounts_every_pair_in_two_statements(operator, django_assert_num_queries):
    pairs = [(f"page-{n}", f"team-{n % 3}") for n in range(12)]
    for n in range(24):
        page, team = pairs[n % 12]
        make_conflict(id=f"c{n:02}", confluence_page_id=page, linear_team_id=team)
    make_conflict(id="kept", confluence_page_id="page-0", linear_team_id="team-0")
    assert SyncState.objects.get(confluence_page_id="page-0").conflict_count == 3

    # 1 locked read + per conflict (update + log insert) + the recount of all 12 pairs (lock their
    # state rows, one UPDATE with a correlated count) + savepoint/release of atomic: not per pair.
    with django_assert_num_queries(1 + 2 * 24 + 2 + 2) as captured:
        services.resolve_conflicts([f"c{n:02}" for n in range(24)], "linear", by=operator)

    state_sql = [q["sql"] for q in captured.captured_queries if "sync_syncstate" in q["sql"]]
    assert len(state_sql) == 2  # the locking SELECT and one UPDATE for all pairs
    counts = dict(SyncState.objects.values_list("confluence_page_id", "conflict_count"))
    assert counts == {page: (1 if page == "page-0" else 0) for page, _ in pairs}


@pytest.mark.parametrize(
    ("ids", "strategy", "error", "message"),
    [
        (["a"], "manual", ValidationError, "resolve manual conflicts one by one"),
        (["a"], "both", ValidationError, "strategy must be one of"),
        ("a", "linear", ValueError, "not a single string"),
        (5, "linear", ValueError, "conflict_ids must be an iterable of ids, not int."),
        (None, "linear", ValueError, "conflict_ids must be an iterable of ids, not NoneType."),
        ([""], "linear", ValidationError, "conflict_ids[0] must not be empty."),
        (["a", 3], "linear", ValueError, "conflict_ids[1] must be a string"),
    ],
)
def test_resolve_conflicts_refuses_bad_arguments_before_writing(ids, strategy, error, message, operator):
    make_conflict(id="a")
    with pytest.raises(error) as excinfo:
        services.resolve_conflicts(ids, strategy, by=operator)
    assert message in str(excinfo.value)
    assert Conflict.objects.get().is_resolved is False


def test_resolve_conflicts_refuses_a_by_that_is_not_a_user():
    make_conflict(id="a")
    with pytest.raises(ValueError, match="by must be a User"):
        services.resolve_conflicts(["a"], "linear", by=object())
    assert Conflict.objects.get().is_resolved is False


def test_resolve_conflicts_with_no_ids_does_nothing(operator):
    assert services.resolve_conflicts([], "linear", by=operator) == services.BulkResolution()
