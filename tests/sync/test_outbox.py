"""The resolution outbox on Conflict: claim_resolutions, mark_applied, mark_apply_failed, withdrawal."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import json
import re
import threading

import pytest
from asgiref.sync import sync_to_async
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from sync.models import Conflict, ItemSnapshot, LeaseLost
from sync.models import leases as leases_module
from tests.factories import make_change, make_conflict
from tests.reliability.concurrency import assert_no_errors, run_together

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
SECOND = dt.timedelta(seconds=1)

#: A table outside the app with a unique key: "applying" a resolution inserts its id, so a second
#: application of the same resolution fails loudly (IntegrityError) instead of passing unnoticed.
APPLIED_TABLE = "outbox_test_applied"


@pytest.fixture
def no_jitter(monkeypatch):
    monkeypatch.setattr(leases_module, "jitter_fraction", lambda: 0.0)


@pytest.fixture
def applied_table(django_db_blocker):
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {APPLIED_TABLE} "
            "(conflict_id varchar(255) PRIMARY KEY, worker varchar(255) NOT NULL)"
        )
    yield APPLIED_TABLE
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {APPLIED_TABLE}")


def apply_once(conflict: Conflict, worker: str, at: dt.datetime | None = None) -> None:
    """The test's "apply": record the application and mark it, in one transaction."""
    with transaction.atomic():
        conflict.mark_applied(worker=worker, at=at)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {APPLIED_TABLE} (conflict_id, worker) VALUES (%s, %s)", [conflict.pk, worker]
            )


def applied_rows() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT conflict_id, worker FROM {APPLIED_TABLE} ORDER BY conflict_id")
        return [tuple(row) for row in cursor.fetchall()]


def resolved_conflict(item_id: str = "item-1", *, organization_id: str | None = "org-a", **fields):
    conflict = make_conflict(
        item_id=item_id,
        organization_id=organization_id,
        confluence_page_id=fields.pop("confluence_page_id", "page-1"),
        linear_team_id=fields.pop("linear_team_id", "team-1"),
        **fields,
    )
    return conflict.resolve("confluence")


def reload(conflict: Conflict) -> Conflict:
    return Conflict.objects.get(pk=conflict.pk)


# --- claim_resolutions ------------------------------------------------------------------------------


def test_a_resolution_waits_until_one_worker_claims_it(clock):
    first = resolved_conflict("item-1")
    clock.advance(minutes=1)
    second = resolved_conflict("item-2")
    make_conflict(item_id="open")  # unresolved: nothing to apply

    claimed = Conflict.objects.claim_resolutions(worker="w1", lease=MINUTE, at=T0)
    again = Conflict.objects.claim_resolutions(worker="w2", at=T0)

    assert [c.pk for c in claimed] == [first.pk, second.pk]  # oldest resolution first
    assert again == []
    stored = reload(first)
    assert (stored.apply_lease_owner, stored.apply_lease_expires_at) == ("w1", T0 + MINUTE)
    assert stored.updated_at == first.updated_at  # the resolved() order is untouched
    assert claimed[0].apply_lease_owner == "w1"


def test_claim_takes_at_most_limit_and_only_the_organization_asked():
    ours = [resolved_conflict(f"ours-{i}", organization_id="org-a") for i in range(3)]
    resolved_conflict("theirs", organization_id="org-b")

    claimed = Conflict.objects.claim_resolutions(worker="w1", limit=2, organization_id="org-a", at=T0)
    rest = Conflict.objects.claim_resolutions(worker="w1", organization_id="org-a", at=T0)

    assert len(claimed) == 2
    assert sorted(c.pk for c in claimed + rest) == sorted(c.pk for c in ours)
    assert Conflict.objects.get(pk="conflict-theirs").apply_lease_owner == ""


def test_claim_resolutions_runs_in_one_select_and_one_update(django_assert_max_num_queries):
    for i in range(5):
        resolved_conflict(f"item-{i}")
    with django_assert_max_num_queries(4):  # SAVEPOINT, SELECT … FOR UPDATE, UPDATE, RELEASE
        assert len(Conflict.objects.claim_resolutions(worker="w1", at=T0)) == 5


def test_a_lease_that_ran_out_lets_another_worker_take_the_resolution_and_the_first_loses_it(
    applied_table,
):
    conflict = resolved_conflict()
    (mine,) = Conflict.objects.claim_resolutions(worker="w1", lease=SECOND, at=T0)

    assert Conflict.objects.claim_resolutions(worker="w2", at=T0 + dt.timedelta(milliseconds=999)) == []
    (theirs,) = Conflict.objects.claim_resolutions(worker="w2", at=T0 + SECOND)
    apply_once(theirs, "w2", at=T0 + 2 * SECOND)

    with pytest.raises(LeaseLost, match="worker 'w1' lost its lease"):
        apply_once(mine, "w1", at=T0 + 3 * SECOND)

    assert applied_rows() == [(conflict.pk, "w2")]
    stored = reload(conflict)
    assert (stored.applied_at, stored.applied_by, stored.apply_attempts) == (T0 + 2 * SECOND, "w2", 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"worker": ""}, ValidationError, "worker must not be empty"),
        ({"worker": "w", "lease": dt.timedelta(0)}, ValidationError, "lease must be between"),
        ({"worker": "w", "limit": 1001}, ValidationError, "limit must be between"),
        ({"worker": "w", "limit": "5"}, ValueError, "limit must be an integer"),
    ],
)
def test_claim_resolutions_refuses_bad_arguments(kwargs, error, message):
    conflict = resolved_conflict()
    with pytest.raises(error, match=message):
        Conflict.objects.claim_resolutions(**kwargs)
    assert reload(conflict).apply_lease_owner == ""


# --- mark_applied -----------------------------------------------------------------------------------


def test_mark_applied_records_when_and_who_and_the_resolved_item_as_its_snapshot(applied_table):
    conflict = resolved_conflict(
        "item-9",
        confluence_change=make_change(
            "confluence", itemId="item-9", itemType="feature", itemData={"title": "Confluence wins"}
        ),
    )
    (claimed,) = Conflict.objects.claim_resolutions(worker="w1", at=T0)

    apply_once(claimed, "w1", at=T0 + SECOND)

    stored = reload(conflict)
    assert (stored.applied_at, stored.applied_by, stored.apply_attempts) == (T0 + SECOND, "w1", 1)
    assert (stored.apply_lease_owner, stored.apply_lease_expires_at) == ("", None)
    assert stored.last_apply_error == ""
    assert claimed.applied_by == "w1"
    snapshot = ItemSnapshot.objects.get()
    assert snapshot.organization.linear_id == "org-a"
    assert (snapshot.item_id, snapshot.item_type) == ("item-9", "feature")
    assert snapshot.item_data == {"title": "Confluence wins"}
    assert (snapshot.confluence_page_id, snapshot.linear_team_id) == ("page-1", "team-1")
    assert snapshot.synced_at == T0 + SECOND
    assert ItemSnapshot.objects.base_for("org-a", ["item-9"]) == {"item-9": {"title": "Confluence wins"}}
    assert list(Conflict.objects.applied()) == [stored]
    assert list(Conflict.objects.awaiting_application()) == []
    assert Conflict.objects.claim_resolutions(worker="w2", at=T0 + dt.timedelta(days=1)) == []


def test_mark_applied_of_a_legacy_conflict_without_an_organization_records_no_snapshot():
    conflict = resolved_conflict(organization_id=None)
    (claimed,) = Conflict.objects.claim_resolutions(worker="w1", at=T0)
    claimed.mark_applied(worker="w1", at=T0)
    assert reload(conflict).applied_by == "w1"
    assert ItemSnapshot.objects.count() == 0


def test_mark_applied_without_holding_the_lease_raises_lease_lost_and_writes_nothing():
    conflict = resolved_conflict()
    with pytest.raises(LeaseLost, match="not held by any worker"):
        reload(conflict).mark_applied(worker="w1", at=T0)
    Conflict.objects.claim_resolutions(worker="w1", at=T0)
    with pytest.raises(LeaseLost, match="now held by 'w1'"):
        reload(conflict).mark_applied(worker="w2", at=T0)
    stored = reload(conflict)
    assert (stored.applied_at, stored.apply_attempts, stored.apply_lease_owner) == (None, 0, "w1")
    assert ItemSnapshot.objects.count() == 0


def test_mark_applied_twice_raises_lease_lost_the_second_time(applied_table):
    resolved_conflict()
    (claimed,) = Conflict.objects.claim_resolutions(worker="w1", at=T0)
    apply_once(claimed, "w1", at=T0)
    with pytest.raises(LeaseLost):
        apply_once(claimed, "w1", at=T0)
    assert len(applied_rows()) == 1


# --- mark_apply_failed --------------------------------------------------------------------------------


@override_settings(APPLY_RETRY_BASE_SECONDS=10, APPLY_RETRY_MAX_SECONDS=25)
def test_failed_applications_are_retried_with_doubling_back_off_up_to_the_cap(no_jitter, applied_table):
    conflict = resolved_conflict()
    at = T0
    waits = []
    for attempt in range(4):
        (claimed,) = Conflict.objects.claim_resolutions(worker="w1", at=at)
        claimed.mark_apply_failed(worker="w1", error=f"Linear 503 #{attempt}", at=at)
        waits.append((claimed.next_apply_at - at).total_seconds())
        assert Conflict.objects.claim_resolutions(worker="w1", at=claimed.next_apply_at - SECOND) == []
        at = claimed.next_apply_at

    assert waits == [10, 20, 25, 25]
    stored = reload(conflict)
    assert (stored.apply_attempts, stored.last_apply_error, stored.applied_at) == (4, "Linear 503 #3", None)
    assert list(Conflict.objects.failing_to_apply()) == [stored]

    (claimed,) = Conflict.objects.claim_resolutions(worker="w2", at=at)
    apply_once(claimed, "w2", at=at)
    stored = reload(conflict)
    assert (stored.apply_attempts, stored.last_apply_error, stored.next_apply_at) == (5, "", None)
    assert list(Conflict.objects.failing_to_apply()) == []
    assert applied_rows() == [(conflict.pk, "w2")]


def test_mark_apply_failed_redacts_secrets_and_needs_the_lease():
    conflict = resolved_conflict()
    with pytest.raises(LeaseLost):
        reload(conflict).mark_apply_failed(worker="w1", error="boom", at=T0)
    (claimed,) = Conflict.objects.claim_resolutions(worker="w1", at=T0)
    with pytest.raises(ValueError, match="error must be a string"):
        claimed.mark_apply_failed(worker="w1", error=RuntimeError("boom"), at=T0)
    claimed.mark_apply_failed(worker="w1", error="Bearer abc.def-ghi rejected", at=T0)
    assert reload(conflict).last_apply_error == "Bearer [REDACTED] rejected"


# --- withdrawal: reopen, re-store, resolve again ----------------------------------------------------------


def test_reopening_withdraws_a_claimed_application(applied_table):
    conflict = resolved_conflict()
    (claimed,) = Conflict.objects.claim_resolutions(worker="w1", at=T0)

    reload(conflict).reopen()

    with pytest.raises(LeaseLost, match="not held by any worker"):
        apply_once(claimed, "w1", at=T0)
    stored = reload(conflict)
    assert (stored.apply_lease_owner, stored.apply_lease_expires_at, stored.applied_at) == ("", None, None)
    assert Conflict.objects.claim_resolutions(worker="w2", at=T0) == []
    assert applied_rows() == []


def test_restoring_new_changes_withdraws_an_applied_resolution_and_the_new_one_is_applied_afresh(
    applied_table, clock
):
    conflict = resolved_conflict("item-5")
    (claimed,) = Conflict.objects.claim_resolutions(worker="w1", at=T0)
    claimed.mark_apply_failed(worker="w1", error="once", at=T0)
    (claimed,) = Conflict.objects.claim_resolutions(worker="w1", at=T0 + MINUTE)
    claimed.mark_applied(worker="w1", at=T0 + MINUTE)

    make_conflict(
        item_id="item-5",
        linear_change=make_change("linear", itemId="item-5", itemData={"title": "New disagreement"}),
    )
    stored = reload(conflict)
    assert stored.is_resolved is False
    assert (stored.applied_at, stored.applied_by, stored.apply_attempts, stored.last_apply_error) == (
        None,
        "",
        0,
        "",
    )

    clock.advance(minutes=5)
    stored.resolve("linear")
    (again,) = Conflict.objects.claim_resolutions(worker="w2", at=T0 + 2 * MINUTE)
    apply_once(again, "w2", at=T0 + 2 * MINUTE)
    assert reload(conflict).applied_by == "w2"
    assert ItemSnapshot.objects.base_for("org-a", ["item-5"]) == {"item-5": {"title": "New disagreement"}}


def test_a_stale_copy_of_an_earlier_resolution_cannot_be_marked_after_a_new_one_was_claimed(clock):
    conflict = resolved_conflict()
    (stale,) = Conflict.objects.claim_resolutions(worker="w1", at=T0)
    clock.advance(minutes=1)
    reload(conflict).reopen()
    clock.advance(minutes=1)
    reload(conflict).resolve("linear")
    (fresh,) = Conflict.objects.claim_resolutions(worker="w1", at=T0)

    with pytest.raises(LeaseLost):
        stale.mark_applied(worker="w1", at=T0)
    fresh.mark_applied(worker="w1", at=T0)
    assert reload(conflict).applied_by == "w1"


def test_a_deleted_conflict_cannot_be_marked():
    conflict = resolved_conflict()
    (claimed,) = Conflict.objects.claim_resolutions(worker="w1", at=T0)
    Conflict.objects.discard(conflict.pk)
    with pytest.raises(ValidationError, match="no longer exists"):
        claimed.mark_applied(worker="w1", at=T0)


# --- rules and migration ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"applied_at": T0, "applied_by": ""},
        {"applied_at": None, "applied_by": "w1"},
        {"apply_lease_owner": "w1", "apply_lease_expires_at": None},
        {"apply_attempts": -1},
    ],
    ids=["applied-without-worker", "worker-without-time", "lease-without-expiry", "negative-attempts"],
)
def test_the_database_refuses_inconsistent_outbox_rows(fields):
    conflict = resolved_conflict()
    with pytest.raises(IntegrityError), transaction.atomic():
        Conflict.objects.filter(pk=conflict.pk).update(**fields)


def test_an_unresolved_conflict_cannot_be_applied_in_the_database():
    conflict = make_conflict()
    with pytest.raises(IntegrityError), transaction.atomic():
        Conflict.objects.filter(pk=conflict.pk).update(applied_at=T0, applied_by="w1")


def test_the_migration_marks_resolutions_older_than_the_outbox_applied():
    migration = importlib.import_module("sync.migrations.0011_conflict_resolution_outbox")
    conflict = resolved_conflict()
    pending = make_conflict(item_id="open")

    migration.mark_earlier_resolutions_applied(apps, None)

    stored = reload(conflict)
    assert (stored.applied_at, stored.applied_by) == (stored.resolved_at, "before-the-outbox")
    assert reload(pending).applied_at is None
    migration.unmark_earlier_resolutions(apps, None)
    assert (reload(conflict).applied_at, reload(conflict).applied_by) == (None, "")


# --- async twins ------------------------------------------------------------------------------------------


def close_this_threads_connection() -> None:
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_async_twins_claim_mark_failed_and_applied():
    first = resolved_conflict("a-1")
    second = resolved_conflict("a-2")

    async def loop() -> list[str]:
        claimed = await Conflict.objects.aclaim_resolutions(worker="aw", at=T0)
        await claimed[0].amark_apply_failed(worker="aw", error="nope", at=T0)
        await claimed[1].amark_applied(worker="aw", at=T0)
        await sync_to_async(close_this_threads_connection)()
        return [c.pk for c in claimed]

    assert asyncio.run(loop()) == [first.pk, second.pk]
    assert (reload(first).apply_attempts, reload(first).last_apply_error) == (1, "nope")
    assert reload(second).applied_by == "aw"


# --- threads on PostgreSQL ----------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_sixteen_threads_apply_each_of_three_hundred_resolutions_exactly_once(applied_table):
    for i in range(300):
        resolved_conflict(f"t-{i:03}")
    counts: list[int] = []
    lock = threading.Lock()

    def work(index: int) -> int:
        done = 0
        while claimed := Conflict.objects.claim_resolutions(worker=f"t{index}", limit=9):
            for conflict in claimed:
                apply_once(conflict, f"t{index}")
                done += 1
        with lock:
            counts.append(done)
        return done

    assert_no_errors(run_together(work, 16))

    assert sum(counts) == 300
    assert len(applied_rows()) == 300
    assert Conflict.objects.awaiting_application().count() == 0
    assert Conflict.objects.applied().count() == 300
    assert ItemSnapshot.objects.count() == 300


# --- admin ------------------------------------------------------------------------------------------------


@pytest.fixture
def su_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser(username="root", password=None))
    return client


def application_cells(html: str) -> dict[str, str]:
    """Conflict id -> where its resolution stands (the resolution column's second line; "—" when open)."""
    cells = {}
    for row in re.findall(r"<tr>.*?</tr>", html, re.S):
        selected = re.search(r'name="_selected_action" value="([^"]+)"', row)
        if selected is None:
            continue
        application = re.search(r'<div class="name-sub conflict-application">(.*?)</div>', row, re.S)
        cells[selected.group(1)] = re.sub(r"<[^>]+>", "", application.group(1)) if application else "—"
    return cells


def test_the_conflict_list_filters_and_shows_where_each_resolution_stands(su_client, no_jitter):
    now = timezone.now()
    waiting = resolved_conflict("waiting")
    failing = resolved_conflict("failing")
    applied = resolved_conflict("applied")
    held = resolved_conflict("held")
    make_conflict(item_id="open")
    for conflict in Conflict.objects.claim_resolutions(worker="w1", at=now):
        if conflict.pk == failing.pk:
            conflict.mark_apply_failed(worker="w1", error="503 token=abc123secret", at=now)
        elif conflict.pk == applied.pk:
            conflict.mark_applied(worker="w1", at=dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC))
        elif conflict.pk == waiting.pk:
            Conflict.objects.filter(pk=conflict.pk).update(apply_lease_owner="", apply_lease_expires_at=None)

    changelist = reverse("admin:sync_conflict_changelist")
    every = application_cells(su_client.get(changelist, {"status": "all"}).content.decode())
    by_filter = {}
    for value in ("waiting", "failing", "applied"):
        response = su_client.get(changelist, {"outbox": value, "status": "resolved"})
        by_filter[value] = sorted(c.pk for c in response.context["cl"].result_list)

    assert every == {
        "conflict-open": "—",
        waiting.pk: "waiting",
        failing.pk: "✗ failing (1 attempts): 503 token=[REDACTED]",
        applied.pk: "✓ applied by w1 at 2026-03-01 09:30 UTC",
        held.pk: "being applied by w1",
    }
    assert by_filter == {
        "waiting": sorted([waiting.pk, failing.pk, held.pk]),
        "failing": [failing.pk],
        "applied": [applied.pk],
    }
    # The filter's links select resolved conflicts too (the list shows open ones by default).
    html = su_client.get(changelist).content.decode()
    assert "?outbox=failing&amp;status=resolved" in html


# --- resolutions imported from the old system ---------------------------------------------------------------


def test_resolved_conflicts_imported_from_the_old_system_do_not_enter_the_outbox():
    """The old agent applied its resolutions itself: imported ones are marked applied, open ones wait."""
    from legacy.tables import CONFLICTS

    change = {"itemId": "OLD-1", "source": "linear", "itemData": {"title": "Old"}}
    base = {
        "linear_change": json.dumps(change),
        "confluence_change": json.dumps({**change, "source": "confluence"}),
        "created_at": T0 - dt.timedelta(days=2),
        "updated_at": T0 - dt.timedelta(days=1),
    }
    resolved = CONFLICTS.convert(
        {**base, "id": "conflict-OLD-1", "is_resolved": True, "resolution_strategy": "linear",
         "resolved_change": json.dumps(change)}
    )
    still_open = CONFLICTS.convert(
        {**base, "id": "conflict-OLD-2", "is_resolved": False, "resolution_strategy": None,
         "resolved_change": None}
    )

    assert (resolved["applied_at"], resolved["applied_by"]) == (T0 - dt.timedelta(days=1), "legacy-import")
    assert (still_open["applied_at"], still_open["applied_by"]) == (None, "")
    Conflict.objects.bulk_create([Conflict(**resolved)])
    assert Conflict.objects.claim_resolutions(worker="w1", at=T0) == []
