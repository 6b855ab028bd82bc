"""SyncState: last_synced_at, mark_synced (one upsert), set_status and the database rules."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.models import Organization
from sync.models import Conflict, SyncState
from tests.factories import make_sync_state

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_last_synced_at_is_none_without_a_row():
    assert SyncState.objects.last_synced_at("page", "team") is None


def test_last_synced_at_is_none_for_a_row_that_never_synced():
    make_sync_state(confluence_page_id="page", linear_team_id="team")
    assert SyncState.objects.last_synced_at("page", "team") is None


def test_mark_synced_creates_the_row_at_now(clock):
    state = SyncState.objects.mark_synced("page", "team")

    assert state.last_synced_at == T0
    assert state.status == "idle"
    assert state.organization is None
    assert state.created_at == T0
    assert SyncState.objects.last_synced_at("page", "team") == T0
    assert SyncState.objects.count() == 1


def test_mark_synced_twice_updates_one_row_and_keeps_created_at(clock):
    first = SyncState.objects.mark_synced("page", "team")
    clock.advance(minutes=10)

    second = SyncState.objects.mark_synced("page", "team")

    assert second.pk == first.pk
    assert second.last_synced_at == T0 + dt.timedelta(minutes=10)
    assert second.created_at == T0
    assert second.updated_at == T0 + dt.timedelta(minutes=10)
    assert SyncState.objects.count() == 1


def test_mark_synced_with_an_explicit_time_keeps_other_pairs_apart():
    at = dt.datetime(2025, 6, 1, 8, 30, 15, 123000, tzinfo=dt.UTC)
    SyncState.objects.mark_synced("page", "team", at)
    SyncState.objects.mark_synced("page", "other-team", T0)

    assert SyncState.objects.last_synced_at("page", "team") == at
    assert SyncState.objects.last_synced_at("page", "other-team") == T0
    assert SyncState.objects.count() == 2


def test_mark_synced_with_an_older_time_moves_the_mark_back():
    """Overwrite, as updateLastSyncTimestamp did: a mark moved back only re-syncs, never skips."""
    SyncState.objects.mark_synced("page", "team", T0)
    SyncState.objects.mark_synced("page", "team", T0 - dt.timedelta(days=1))

    assert SyncState.objects.last_synced_at("page", "team") == T0 - dt.timedelta(days=1)


def test_mark_synced_keeps_an_aware_time_in_another_zone_as_the_same_instant():
    tz = dt.timezone(dt.timedelta(hours=5, minutes=30))
    SyncState.objects.mark_synced("page", "team", dt.datetime(2026, 1, 1, 17, 30, tzinfo=tz))
    assert SyncState.objects.last_synced_at("page", "team") == T0


def test_mark_synced_sets_the_organization_only_when_given():
    SyncState.objects.mark_synced("page", "team", organization_id="org-lin-1")
    state = SyncState.objects.mark_synced("page", "team")

    assert state.organization == Organization.objects.get(linear_id="org-lin-1")


def test_mark_synced_resets_a_failed_status_to_idle():
    SyncState.objects.set_status("page", "team", "failed")
    assert SyncState.objects.mark_synced("page", "team").status == "idle"


@pytest.mark.parametrize("existing", [True, False], ids=["existing pair", "new pair"])
def test_mark_synced_is_one_upsert_statement(existing, django_assert_num_queries):
    if existing:
        make_sync_state(confluence_page_id="page", linear_team_id="team", conflict_count=2)
    # INSERT ... ON CONFLICT ... RETURNING: no UPDATE first, no re-read, no transaction of its own
    # (tests/test_db.py), whether the row exists or not.
    with django_assert_num_queries(1) as captured:
        state = SyncState.objects.mark_synced("page", "team")
    sql = captured.captured_queries[0]["sql"].upper()
    assert sql.startswith("INSERT") and "ON CONFLICT" in sql
    stored = SyncState.objects.get()
    assert (state.pk, state.conflict_count) == (stored.pk, stored.conflict_count)
    assert state.conflict_count == (2 if existing else 0)


def test_mark_synced_does_not_touch_the_conflict_count():
    make_sync_state(confluence_page_id="page", linear_team_id="team", conflict_count=4)
    assert SyncState.objects.mark_synced("page", "team").conflict_count == 4


def test_set_status_creates_or_updates_the_row():
    assert SyncState.objects.set_status("page", "team", "running").status == "running"
    assert SyncState.objects.set_status("page", "team", "failed").status == "failed"
    state = SyncState.objects.get()
    assert (state.status, state.last_synced_at) == ("failed", None)


def test_set_status_refuses_an_unknown_status():
    with pytest.raises(ValidationError, match="status must be one of idle, running, failed"):
        SyncState.objects.set_status("page", "team", "done")
    assert SyncState.objects.count() == 0


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("", "team"), ValidationError, "confluence_page_id must not be empty."),
        (("page", "   "), ValidationError, "linear_team_id must not be empty."),
        (("page", "x" * 256), ValidationError, "linear_team_id is 256 characters long"),
        (("pa\x00ge", "team"), ValidationError, "confluence_page_id must not contain NUL characters."),
        ((None, "team"), ValueError, "confluence_page_id must be a string, not NoneType."),
        (("page", 12), ValueError, "linear_team_id must be a string, not int."),
        (("page", "team", dt.datetime(2026, 1, 1)), ValidationError, "at must be timezone-aware"),
        (("page", "team", 1767268800000), ValueError, "at must be a datetime, not int."),
    ],
)
def test_mark_synced_refuses_bad_arguments_before_writing(args, error, message):
    with pytest.raises(error) as excinfo:
        SyncState.objects.mark_synced(*args)
    assert message in str(excinfo.value)
    assert SyncState.objects.count() == 0


def test_last_synced_at_validates_its_arguments():
    with pytest.raises(ValueError, match="linear_team_id must be a string"):
        SyncState.objects.last_synced_at("page", None)


@pytest.mark.parametrize(
    "update",
    [{"status": "done"}, {"conflict_count": -1}, {"confluence_page_id": ""}, {"linear_team_id": ""}],
)
def test_database_refuses_rule_breaking_states(update):
    make_sync_state(confluence_page_id="page", linear_team_id="team")
    with pytest.raises(IntegrityError), transaction.atomic():
        SyncState.objects.filter(confluence_page_id="page").update(**update)


def test_database_refuses_a_second_row_for_a_pair():
    make_sync_state(confluence_page_id="page", linear_team_id="team")
    with pytest.raises(IntegrityError), transaction.atomic():
        SyncState.objects.create(confluence_page_id="page", linear_team_id="team")


def test_organization_is_protected_while_it_has_sync_state():
    from django.db.models import ProtectedError

    SyncState.objects.mark_synced("page", "team", organization_id="org-p")
    with pytest.raises(ProtectedError):
        Organization.objects.get(linear_id="org-p").delete()


# --- conflict_count ------------------------------------------------------------------------------


def test_refresh_conflict_counts_of_many_pairs_is_two_statements_per_chunk(clock, django_assert_num_queries):
    """More pairs than one statement takes: every count right, only changed rows written, no CASE per row."""
    pairs = [(f"page-{n:03}", "team") for n in range(450)]
    SyncState.objects.bulk_create(
        SyncState(confluence_page_id=page, linear_team_id=team, conflict_count=n % 2)
        for n, (page, team) in enumerate(pairs)
    )
    # One unresolved conflict on every third pair, and a resolved one on pair 1 that must not count.
    Conflict.objects.bulk_create(
        Conflict(id=f"c{n}", confluence_page_id=page, linear_team_id=team)
        for n, (page, team) in enumerate(pairs)
        if n % 3 == 0
    )
    Conflict.objects.filter(pk="c0").update(is_resolved=True, resolution_strategy="linear", resolved_at=T0)
    clock.advance(hours=1)

    # Two chunks (400 + 50 pairs), each: lock the state rows, one UPDATE.
    with django_assert_num_queries(4) as captured:
        SyncState.objects.refresh_conflict_counts(pairs)

    assert not any("CASE" in query["sql"] for query in captured.captured_queries)
    expected = {page: int(n % 3 == 0 and n != 0) for n, (page, _) in enumerate(pairs)}
    rows = {row.confluence_page_id: row for row in SyncState.objects.all()}
    assert {page: row.conflict_count for page, row in rows.items()} == expected
    changed = {page for n, (page, _) in enumerate(pairs) if expected[page] != n % 2}
    assert {page for page, row in rows.items() if row.updated_at == clock.now} == changed


def test_recount_conflicts_keeps_updated_at_unless_asked_and_reports_changed_rows():
    make_sync_state(confluence_page_id="p", linear_team_id="t", conflict_count=5, updated_at=T0)
    make_sync_state(confluence_page_id="q", linear_team_id="t", conflict_count=0, updated_at=T0)

    assert SyncState.objects.recount_conflicts() == 1  # p drops to 0; q already right

    assert dict(SyncState.objects.values_list("confluence_page_id", "conflict_count")) == {"p": 0, "q": 0}
    assert set(SyncState.objects.values_list("updated_at", flat=True)) == {T0}
