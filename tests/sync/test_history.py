"""SyncHistory: record, for_pair (newest first, index-served) and the counters' constraints."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from accounts.models import Organization
from sync.models import SyncHistory
from tests.factories import make_sync_history

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_record_stores_every_field(clock):
    entry = SyncHistory.objects.record(
        "page",
        "team",
        success=False,
        error="Linear said 500 — “retry”",
        created_issues=1,
        updated_issues=2,
        confluence_changes=3,
        conflicts_detected=4,
        conflicts_resolved=5,
        organization_id="org-1",
    )

    row = SyncHistory.objects.get(pk=entry.pk)
    assert (row.confluence_page_id, row.linear_team_id, row.success, row.error) == (
        "page",
        "team",
        False,
        "Linear said 500 — “retry”",
    )
    assert (
        row.created_issues,
        row.updated_issues,
        row.confluence_changes,
        row.conflicts_detected,
        row.conflicts_resolved,
    ) == (1, 2, 3, 4, 5)
    assert row.synced_at == T0
    assert row.organization == Organization.objects.get(linear_id="org-1")
    assert (row.direction, row.deleted_issues) == ("", None)


def test_record_defaults(clock):
    row = SyncHistory.objects.record("page", "team", success=True)
    assert (row.error, row.created_issues, row.conflicts_resolved, row.organization) == ("", 0, 0, None)


def test_record_keeps_an_explicit_synced_at():
    at = dt.datetime(2024, 2, 29, 23, 59, 59, tzinfo=dt.UTC)
    assert SyncHistory.objects.record("page", "team", success=True, synced_at=at).synced_at == at


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"success": 1}, ValueError, "success must be a bool, not int."),
        ({"success": True, "created_issues": -1}, ValidationError, "created_issues must not be negative"),
        ({"success": True, "conflicts_resolved": True}, ValueError, "conflicts_resolved must be an integer"),
        ({"success": True, "updated_issues": "3"}, ValueError, "updated_issues must be an integer"),
        ({"success": True, "error": 42}, ValueError, "error must be a string"),
        ({"success": True, "error": "a\x00b"}, ValidationError, "error must not contain NUL characters."),
        ({"success": True, "synced_at": dt.datetime(2026, 1, 1)}, ValidationError, "synced_at must be"),
    ],
)
def test_record_refuses_bad_arguments_before_writing(kwargs, error, message):
    with pytest.raises(error) as excinfo:
        SyncHistory.objects.record("page", "team", **kwargs)
    assert message in str(excinfo.value)
    assert SyncHistory.objects.count() == 0


def test_for_pair_is_newest_first_and_only_that_pair():
    for minutes in [5, 1, 9, 3]:
        make_sync_history(
            confluence_page_id="page", linear_team_id="team", synced_at=T0 + dt.timedelta(minutes=minutes)
        )
    make_sync_history(confluence_page_id="page", linear_team_id="other", synced_at=T0)
    make_sync_history(confluence_page_id="other", linear_team_id="team", synced_at=T0)

    minutes = [
        int((row.synced_at - T0).total_seconds() // 60)
        for row in SyncHistory.objects.for_pair("page", "team")
    ]

    assert minutes == [9, 5, 3, 1]
    assert [r.synced_at for r in SyncHistory.objects.for_pair("page", "team")[:2]] == [
        T0 + dt.timedelta(minutes=9),
        T0 + dt.timedelta(minutes=5),
    ]
    assert list(SyncHistory.objects.for_pair("page", "nobody")) == []


def test_for_pair_breaks_ties_newest_id_first():
    first = make_sync_history(confluence_page_id="page", linear_team_id="team", synced_at=T0)
    second = make_sync_history(confluence_page_id="page", linear_team_id="team", synced_at=T0)
    assert [row.pk for row in SyncHistory.objects.for_pair("page", "team")] == [second.pk, first.pk]


def test_for_pair_is_served_by_the_pair_index():
    for i in range(300):
        make_sync_history(
            confluence_page_id=f"page-{i % 30}", linear_team_id="team", synced_at=T0 + dt.timedelta(seconds=i)
        )
    sql, params = SyncHistory.objects.for_pair("page-3", "team")[:50].query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql, params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = " ".join(str(row) for row in cursor.fetchall())
    assert "sync_history_pair_idx" in plan


@pytest.mark.parametrize(
    "field",
    [
        "created_issues",
        "updated_issues",
        "confluence_changes",
        "conflicts_detected",
        "conflicts_resolved",
        "deleted_issues",
    ],
)
def test_database_refuses_negative_counters(field):
    row = make_sync_history()
    with pytest.raises(IntegrityError), transaction.atomic():
        SyncHistory.objects.filter(pk=row.pk).update(**{field: -1})


def test_record_takes_the_first_shape_fields():
    row = SyncHistory.objects.record(
        "page", "team", success=True, direction="linear_to_confluence", deleted_issues=4
    )
    assert SyncHistory.objects.values_list("direction", "deleted_issues").get(pk=row.pk) == (
        "linear_to_confluence",
        4,
    )
    with pytest.raises(ValidationError, match="deleted_issues must not be negative"):
        SyncHistory.objects.record("page", "team", success=True, deleted_issues=-1)
    with pytest.raises(ValidationError, match="direction is 33 characters long"):
        SyncHistory.objects.record("page", "team", success=True, direction="x" * 33)
    assert SyncHistory.objects.count() == 1


def test_first_shape_fields_are_stored():
    row = make_sync_history(direction="bidirectional", deleted_issues=2)
    assert SyncHistory.objects.values_list("direction", "deleted_issues").get(pk=row.pk) == (
        "bidirectional",
        2,
    )


# --- async twin -------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_arecord_appends_a_run_like_record():
    from asgiref.sync import async_to_sync

    at = dt.datetime(2026, 5, 1, 8, 30, tzinfo=dt.UTC)
    entry = async_to_sync(SyncHistory.objects.arecord)(
        "page-a",
        "team-a",
        success=True,
        created_issues=3,
        conflicts_resolved=1,
        synced_at=at,
        organization_id="org-async",
    )
    row = SyncHistory.objects.get(pk=entry.pk)
    assert (
        row.confluence_page_id,
        row.success,
        row.created_issues,
        row.conflicts_resolved,
        row.synced_at,
    ) == (
        "page-a",
        True,
        3,
        1,
        at,
    )
    assert row.organization.linear_id == "org-async"
    with pytest.raises(ValidationError, match="created_issues must not be negative"):
        async_to_sync(SyncHistory.objects.arecord)("page-a", "team-a", success=True, created_issues=-1)
    assert SyncHistory.objects.count() == 1
