"""Many workers on SyncState: claim_due, renew_lease, release, back-off, and their async twins."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from sync.models import LeaseLost, SyncState, retry_delay
from sync.models import leases as leases_module
from tests.factories import make_sync_state
from tests.reliability.concurrency import assert_no_errors, run_together

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
SECOND = dt.timedelta(seconds=1)


@pytest.fixture
def no_jitter(monkeypatch):
    monkeypatch.setattr(leases_module, "jitter_fraction", lambda: 0.0)


def close_this_threads_connection() -> None:
    connection.close()


def pairs(n: int, **fields) -> list[SyncState]:
    return [
        make_sync_state(confluence_page_id=f"page-{i:03}", linear_team_id="team", **fields) for i in range(n)
    ]


def reload(state: SyncState) -> SyncState:
    return SyncState.objects.get(pk=state.pk)


# --- claim_due --------------------------------------------------------------------------------------


def test_a_pair_never_synced_is_due_at_once_and_claimed_under_a_lease():
    (state,) = pairs(1)

    claimed = SyncState.objects.claim_due(worker="w1", lease=5 * MINUTE, at=T0)

    assert [s.pk for s in claimed] == [state.pk]
    stored = reload(state)
    assert stored.lease_owner == "w1"
    assert stored.lease_expires_at == T0 + 5 * MINUTE
    assert stored.status == "running"
    assert stored.updated_at == T0
    assert claimed[0].lease_owner == "w1" and claimed[0].lease_expires_at == T0 + 5 * MINUTE


def test_claim_hands_each_pair_to_one_worker_up_to_the_limit_most_overdue_first():
    never, *_ = pairs(1)
    late = make_sync_state(confluence_page_id="late", linear_team_id="team", next_sync_at=T0 - 10 * MINUTE)
    later = make_sync_state(confluence_page_id="later", linear_team_id="team", next_sync_at=T0 - MINUTE)
    not_yet = make_sync_state(confluence_page_id="future", linear_team_id="team", next_sync_at=T0 + SECOND)

    first = SyncState.objects.claim_due(worker="w1", limit=2, at=T0)
    second = SyncState.objects.claim_due(worker="w2", limit=10, at=T0)
    third = SyncState.objects.claim_due(worker="w3", limit=10, at=T0)

    assert [s.pk for s in first] == [never.pk, late.pk]
    assert [s.pk for s in second] == [later.pk]
    assert third == []
    assert reload(not_yet).lease_owner == ""
    assert dict(SyncState.objects.values_list("confluence_page_id", "lease_owner")) == {
        "page-000": "w1",
        "late": "w1",
        "later": "w2",
        "future": "",
    }


def test_a_pair_is_due_exactly_at_its_next_sync_at():
    state = make_sync_state(next_sync_at=T0)

    assert SyncState.objects.claim_due(worker="w1", at=T0 - dt.timedelta(microseconds=1)) == []
    assert [s.pk for s in SyncState.objects.claim_due(worker="w1", at=T0)] == [state.pk]


def test_a_one_second_lease_is_honoured_and_then_the_pair_is_claimable_again():
    (state,) = pairs(1)
    SyncState.objects.claim_due(worker="w1", lease=SECOND, at=T0)

    assert SyncState.objects.claim_due(worker="w2", at=T0 + dt.timedelta(milliseconds=999)) == []
    taken = SyncState.objects.claim_due(worker="w2", at=T0 + SECOND)

    assert [s.pk for s in taken] == [state.pk]
    assert reload(state).lease_owner == "w2"
    assert reload(state).lease_expires_at == T0 + SECOND + 5 * MINUTE


def test_claim_for_one_organization_leaves_other_tenants_pairs():
    ours = SyncState.objects.mark_synced("p-ours", "team", T0 - dt.timedelta(days=1), organization_id="org-a")
    SyncState.objects.mark_synced("p-theirs", "team", T0 - dt.timedelta(days=1), organization_id="org-b")
    make_sync_state(confluence_page_id="p-legacy", linear_team_id="team")

    claimed = SyncState.objects.claim_due(worker="w1", organization_id="org-a", at=T0)
    unknown = SyncState.objects.claim_due(worker="w1", organization_id="org-unknown", at=T0)

    assert [s.pk for s in claimed] == [ours.pk]
    assert unknown == []
    assert SyncState.objects.filter(lease_owner="").count() == 2


def test_claim_due_runs_in_one_select_and_one_update(django_assert_max_num_queries):
    pairs(5)
    with django_assert_max_num_queries(4):  # SAVEPOINT, SELECT … FOR UPDATE, UPDATE, RELEASE
        claimed = SyncState.objects.claim_due(worker="w1", limit=5, at=T0)
    assert len(claimed) == 5


def test_claim_with_nothing_due_writes_nothing(django_assert_max_num_queries):
    make_sync_state(next_sync_at=T0 + MINUTE)
    with django_assert_max_num_queries(3):
        assert SyncState.objects.claim_due(worker="w1", at=T0) == []
    assert SyncState.objects.get().status == "idle"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"worker": ""}, ValidationError, "worker must not be empty"),
        ({"worker": 7}, ValueError, "worker must be a string"),
        ({"worker": "w", "lease": dt.timedelta(milliseconds=999)}, ValidationError, "lease must be between"),
        ({"worker": "w", "lease": dt.timedelta(days=2)}, ValidationError, "lease must be between"),
        ({"worker": "w", "lease": 60}, ValueError, "lease must be a timedelta"),
        ({"worker": "w", "limit": 0}, ValidationError, "limit must be between 1 and 1000"),
        ({"worker": "w", "limit": True}, ValueError, "limit must be an integer"),
        ({"worker": "w", "at": dt.datetime(2026, 1, 1)}, ValidationError, "at must be timezone-aware"),
        ({"worker": "w", "organization_id": ""}, ValidationError, "organization_id must not be empty"),
    ],
)
def test_claim_due_refuses_bad_arguments_before_writing(kwargs, error, message):
    (state,) = pairs(1)
    with pytest.raises(error, match=message):
        SyncState.objects.claim_due(**kwargs)
    assert reload(state).lease_owner == ""


# --- renew_lease ------------------------------------------------------------------------------------


def test_renew_extends_the_lease_and_keeps_others_out():
    pairs(1)
    (state,) = SyncState.objects.claim_due(worker="w1", lease=MINUTE, at=T0)

    renewed = state.renew_lease(worker="w1", lease=2 * MINUTE, at=T0 + 50 * SECOND)

    assert renewed is state
    assert reload(state).lease_expires_at == T0 + 50 * SECOND + 2 * MINUTE
    assert SyncState.objects.claim_due(worker="w2", at=T0 + 2 * MINUTE) == []


def test_renew_after_the_lease_ran_out_raises_lease_lost():
    pairs(1)
    (state,) = SyncState.objects.claim_due(worker="w1", lease=MINUTE, at=T0)

    with pytest.raises(LeaseLost, match="worker 'w1' lost its lease") as lost:
        state.renew_lease(worker="w1", at=T0 + MINUTE)
    assert lost.value.code == "lease_lost"
    assert reload(state).lease_expires_at == T0 + MINUTE


def test_renew_by_another_worker_raises_lease_lost_naming_the_holder():
    pairs(1)
    (state,) = SyncState.objects.claim_due(worker="w1", lease=MINUTE, at=T0)
    (taken,) = SyncState.objects.claim_due(worker="w2", lease=MINUTE, at=T0 + MINUTE)

    with pytest.raises(LeaseLost, match="now held by 'w2'") as lost:
        state.renew_lease(worker="w1", at=T0 + MINUTE + SECOND)
    assert lost.value.holder == "w2"
    assert reload(taken).lease_owner == "w2"


# --- release ----------------------------------------------------------------------------------------


def test_release_after_success_marks_synced_and_schedules_the_next_run():
    make_sync_state(sync_interval=dt.timedelta(minutes=15), failure_count=2, last_error="boom")
    (state,) = SyncState.objects.claim_due(worker="w1", at=T0)

    released = state.release(worker="w1", success=True, at=T0 + 30 * SECOND)

    assert released is state
    stored = reload(state)
    assert stored.last_synced_at == T0 + 30 * SECOND
    assert stored.next_sync_at == T0 + 30 * SECOND + dt.timedelta(minutes=15)
    assert (stored.status, stored.failure_count, stored.last_error) == ("idle", 0, "")
    assert (stored.lease_owner, stored.lease_expires_at) == ("", None)
    assert SyncState.objects.last_synced_at(*stored.pair) == T0 + 30 * SECOND
    assert state.next_sync_at == stored.next_sync_at


def test_release_and_renew_are_short(django_assert_max_num_queries):
    pairs(1)
    (state,) = SyncState.objects.claim_due(worker="w1", at=T0)
    with django_assert_max_num_queries(1):  # one conditional UPDATE
        state.renew_lease(worker="w1", at=T0)
    with django_assert_max_num_queries(4):  # SAVEPOINT, SELECT … FOR UPDATE, UPDATE, RELEASE
        state.release(worker="w1", success=True, at=T0)


def test_release_with_an_explicit_next_sync_at_uses_it():
    pairs(1)
    (state,) = SyncState.objects.claim_due(worker="w1", at=T0)
    state.release(worker="w1", success=True, next_sync_at=T0 + dt.timedelta(days=1), at=T0)
    assert reload(state).next_sync_at == T0 + dt.timedelta(days=1)


@override_settings(SYNC_RETRY_BASE_SECONDS=30, SYNC_RETRY_MAX_SECONDS=200)
def test_failures_back_off_doubling_up_to_the_cap_and_success_resets(no_jitter):
    (state,) = pairs(1)
    at = T0
    waits = []
    for _ in range(5):
        (state,) = SyncState.objects.claim_due(worker="w1", at=at)
        state.release(worker="w1", success=False, error="Linear said 502", at=at)
        waits.append((state.next_sync_at - at).total_seconds())
        assert SyncState.objects.claim_due(worker="w1", at=state.next_sync_at - SECOND) == []
        at = state.next_sync_at

    assert waits == [30, 60, 120, 200, 200]
    stored = reload(state)
    assert (stored.status, stored.failure_count, stored.last_error) == ("failed", 5, "Linear said 502")
    assert stored.last_synced_at is None

    (state,) = SyncState.objects.claim_due(worker="w1", at=at)
    state.release(worker="w1", success=True, at=at)
    assert (reload(state).failure_count, reload(state).last_error, reload(state).status) == (0, "", "idle")


@override_settings(SYNC_RETRY_BASE_SECONDS=100, SYNC_RETRY_MAX_SECONDS=1000)
def test_back_off_jitter_adds_at_most_ten_percent(monkeypatch):
    pairs(1)
    monkeypatch.setattr(leases_module, "jitter_fraction", lambda: leases_module.MAX_JITTER)
    (state,) = SyncState.objects.claim_due(worker="w1", at=T0)
    state.release(worker="w1", success=False, at=T0)
    assert state.next_sync_at == T0 + dt.timedelta(seconds=110)
    assert state.last_error == ""


def test_retry_delay_with_real_jitter_stays_within_ten_percent_above_the_doubled_delay():
    base, cap = dt.timedelta(seconds=10), dt.timedelta(seconds=60)
    for failures, exact in [(1, 10), (2, 20), (3, 40), (4, 60), (60, 60)]:
        for _ in range(50):
            delay = retry_delay(failures, base=base, cap=cap).total_seconds()
            assert exact <= delay <= exact * 1.1
    with pytest.raises(ValueError, match="failures must be at least 1"):
        retry_delay(0, base=base, cap=cap)


def test_release_by_a_worker_not_holding_the_pair_raises_lease_lost_and_writes_nothing():
    pairs(1)
    (state,) = SyncState.objects.claim_due(worker="w1", at=T0)

    with pytest.raises(LeaseLost, match="now held by 'w1'"):
        SyncState.objects.get(pk=state.pk).release(worker="intruder", success=True, at=T0)

    stored = reload(state)
    assert (stored.lease_owner, stored.last_synced_at, stored.status) == ("w1", None, "running")


def test_release_after_the_pair_was_taken_over_raises_lease_lost():
    pairs(1)
    (mine,) = SyncState.objects.claim_due(worker="w1", lease=SECOND, at=T0)
    (theirs,) = SyncState.objects.claim_due(worker="w2", at=T0 + 2 * SECOND)
    theirs.release(worker="w2", success=True, at=T0 + 3 * SECOND)

    with pytest.raises(LeaseLost, match="not held by any worker"):
        mine.release(worker="w1", success=False, error="late", at=T0 + 4 * SECOND)

    stored = reload(mine)
    assert (stored.last_synced_at, stored.failure_count, stored.last_error) == (T0 + 3 * SECOND, 0, "")


def test_release_of_an_expired_lease_nobody_took_over_still_counts():
    pairs(1)
    (state,) = SyncState.objects.claim_due(worker="w1", lease=SECOND, at=T0)
    state.release(worker="w1", success=True, at=T0 + MINUTE)
    assert reload(state).last_synced_at == T0 + MINUTE


def test_release_keeps_the_error_without_secrets_and_cut_to_length():
    pairs(2)
    first, second = SyncState.objects.claim_due(worker="w1", at=T0)
    token = "lin_api_abcdefghijklmnop0123"
    first.release(worker="w1", success=False, error=f"401 for {token} at Linear\x00", at=T0)
    second.release(worker="w1", success=False, error="x" * 5000, at=T0)

    assert reload(first).last_error == "401 for [REDACTED] at Linear\ufffd"
    assert len(reload(second).last_error) == 4000
    assert reload(second).last_error.endswith("…")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"worker": "w1", "success": "yes"}, ValueError, "success must be a bool"),
        ({"worker": "w1", "success": True, "error": "boom"}, ValidationError, "error is only for a failed"),
        ({"worker": "w1", "success": False, "error": 500}, ValueError, "error must be a string"),
        ({"worker": "w1", "success": True, "next_sync_at": "tomorrow"}, ValueError, "next_sync_at must be"),
        ({"worker": "", "success": True}, ValidationError, "worker must not be empty"),
    ],
)
def test_release_refuses_bad_arguments_and_keeps_the_lease(kwargs, error, message):
    pairs(1)
    (state,) = SyncState.objects.claim_due(worker="w1", at=T0)
    with pytest.raises(error, match=message):
        state.release(at=T0, **kwargs)
    assert reload(state).lease_owner == "w1"


# --- scheduling fields, old callers, rules ----------------------------------------------------------


@override_settings(SYNC_INTERVAL_SECONDS=90)
def test_a_new_pair_takes_its_interval_from_the_settings():
    assert SyncState.objects.mark_synced("page", "team", T0).sync_interval == dt.timedelta(seconds=90)
    assert SyncState.objects.set_status("page2", "team", "idle").sync_interval == dt.timedelta(seconds=90)


def test_mark_synced_without_leases_keeps_working_and_leaves_a_lease_alone():
    pairs(1)
    (state,) = SyncState.objects.claim_due(worker="w1", at=T0)

    SyncState.objects.mark_synced(state.confluence_page_id, state.linear_team_id, T0 + SECOND)

    stored = reload(state)
    assert stored.last_synced_at == T0 + SECOND
    assert (stored.lease_owner, stored.lease_expires_at) == ("w1", T0 + 5 * MINUTE)


def test_lease_is_held_reads_this_copy():
    (state,) = pairs(1)
    assert not state.lease_is_held(T0)
    (state,) = SyncState.objects.claim_due(worker="w1", lease=MINUTE, at=T0)
    assert state.lease_is_held(T0 + 59 * SECOND)
    assert not state.lease_is_held(T0 + MINUTE)


def test_querysets_for_the_admin_and_dashboard():
    a, b, c = pairs(3)
    SyncState.objects.filter(pk=a.pk).update(failure_count=1)
    SyncState.objects.filter(pk=b.pk).update(failure_count=4)
    SyncState.objects.claim_due(worker="w1", limit=1, lease=MINUTE, at=T0)

    assert [s.pk for s in SyncState.objects.failing()] == [b.pk, a.pk]
    assert [s.pk for s in SyncState.objects.leased(T0)] == [a.pk]
    assert sorted(s.pk for s in SyncState.objects.due(T0)) == [b.pk, c.pk]


def test_a_row_inserted_outside_the_orm_gets_the_database_defaults_and_is_due():
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO sync_syncstate (confluence_page_id, linear_team_id, status, conflict_count, "
            "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s)",
            ["raw-page", "raw-team", "idle", 0, T0, T0],
        )
    (state,) = SyncState.objects.claim_due(worker="w1", at=T0)
    assert (state.pair, state.sync_interval, state.failure_count) == (
        ("raw-page", "raw-team"),
        dt.timedelta(seconds=300),
        0,
    )
    assert (state.last_error, state.next_sync_at) == ("", None)


@pytest.mark.parametrize(
    "fields",
    [
        {"lease_owner": "w1", "lease_expires_at": None},
        {"lease_owner": "", "lease_expires_at": T0},
        {"sync_interval": dt.timedelta(milliseconds=500)},
        {"failure_count": -1},
    ],
    ids=["owner-without-expiry", "expiry-without-owner", "interval-under-1s", "negative-failures"],
)
def test_the_database_refuses_inconsistent_schedule_and_lease_rows(fields):
    state = make_sync_state()
    with pytest.raises(IntegrityError), transaction.atomic():
        SyncState.objects.filter(pk=state.pk).update(**fields)


# --- async twins ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_async_twins_claim_renew_release_and_read():
    async def worker_loop() -> tuple:
        await SyncState.objects.amark_synced("p", "t", T0 - dt.timedelta(days=1), organization_id="org-x")
        await SyncState.objects.aset_status("p", "t", "idle")
        (state,) = await SyncState.objects.aclaim_due(worker="aw", lease=MINUTE, at=T0)
        await state.arenew_lease(worker="aw", lease=2 * MINUTE, at=T0 + SECOND)
        renewed_until = state.lease_expires_at
        await state.arelease(worker="aw", success=True, at=T0 + 2 * SECOND)
        scheduled = state.next_sync_at
        last = await SyncState.objects.alast_synced_at("p", "t")
        rescheduled = await SyncState.objects.filter(confluence_page_id="p").aschedule_now()
        # sync_to_async ran the ORM on its executor thread: close that thread's connection.
        await sync_to_async(close_this_threads_connection)()
        return renewed_until, last, state, scheduled, rescheduled

    renewed_until, last, state, scheduled, rescheduled = asyncio.run(worker_loop())

    assert renewed_until == T0 + SECOND + 2 * MINUTE
    assert last == T0 + 2 * SECOND
    assert reload(state).lease_owner == ""
    assert scheduled == T0 + 2 * SECOND + dt.timedelta(seconds=300)
    assert rescheduled == 1
    assert reload(state).next_sync_at is None  # "sync now" after the release scheduled it


# --- threads on PostgreSQL ----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_sixteen_threads_claiming_together_take_each_due_pair_exactly_once():
    SyncState.objects.bulk_create(
        [SyncState(confluence_page_id=f"page-{i:04}", linear_team_id="team") for i in range(400)]
    )
    taken: dict[int, list[int]] = {}
    lock = threading.Lock()

    def work(index: int) -> int:
        count = 0
        while claimed := SyncState.objects.claim_due(worker=f"t{index}", limit=7, at=T0):
            with lock:
                for state in claimed:
                    taken.setdefault(state.pk, []).append(index)
            count += len(claimed)
        return count

    outcomes = run_together(work, 16)

    assert_no_errors(outcomes)
    assert sum(o.result for o in outcomes) == 400
    assert len(taken) == 400
    assert all(len(owners) == 1 for owners in taken.values())
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM sync_syncstate WHERE lease_owner = ''")
        assert cursor.fetchone() == (0,)


# --- admin ------------------------------------------------------------------------------------------------


STATES = "admin:sync_syncstate_changelist"


def admin_client(*perms: str) -> Client:
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user(username=f"staff-{len(perms)}", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="sync", codename__in=perms))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def su_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser(username="root", password=None))
    return client


def test_sync_state_list_shows_schedule_lease_failures_and_a_redacted_error_linked_to_history(
    su_client, no_jitter
):
    now = timezone.now()
    pairs(2)
    held, failed = SyncState.objects.claim_due(worker="host-1:42", lease=MINUTE, at=now)
    failed.release(worker="host-1:42", success=False, error="401 lin_api_abcdefghijklmnop0123", at=now)

    response = su_client.get(reverse(STATES))

    html = response.content.decode()
    rows = {state.pk: state for state in response.context["cl"].result_list}
    assert set(rows) == {held.pk, failed.pk}
    assert "host-1:42 until " in html
    assert "401 [REDACTED]" in html and "lin_api_" not in html
    history = f"/admin/sync/synchistory/?confluence_page_id={held.confluence_page_id}&amp;linear_team_id=team"
    assert f'href="{history}"' in html
    failing = su_client.get(reverse(STATES), {"schedule": "failing"}).context["cl"].result_list
    leased = su_client.get(reverse(STATES), {"schedule": "leased"}).context["cl"].result_list
    assert [s.pk for s in failing] == [failed.pk]
    assert [s.pk for s in leased] == [held.pk]
    assert list(su_client.get(reverse(STATES), {"schedule": "due"}).context["cl"].result_list) == []


def test_an_expired_lease_is_shown_as_expired(clock, su_client):
    # The list compares the lease with now: the lease ran out a minute before the stopped clock.
    pairs(1)
    SyncState.objects.claim_due(worker="gone", lease=SECOND, at=clock.now - 60 * SECOND)
    assert "gone, expired 2026-01-01 11:59 UTC" in su_client.get(reverse(STATES)).content.decode()


def test_the_interval_is_the_one_editable_field_and_saving_it_leaves_a_lease_alone(su_client):
    pairs(1)
    (state,) = SyncState.objects.claim_due(worker="w1", at=T0)
    url = reverse("admin:sync_syncstate_change", args=[state.pk])

    page = su_client.get(url).content.decode()
    response = su_client.post(
        url, {"sync_interval": "00:10:00", "status": "failed", "lease_owner": "", "failure_count": "9"}
    )

    assert 'name="sync_interval"' in page and 'name="lease_owner"' not in page
    assert response.status_code == 302
    stored = reload(state)
    assert stored.sync_interval == dt.timedelta(minutes=10)
    assert (stored.status, stored.lease_owner, stored.failure_count) == ("running", "w1", 0)


def test_an_interval_under_a_second_is_a_form_error(su_client):
    (state,) = pairs(1)
    response = su_client.post(reverse("admin:sync_syncstate_change", args=[state.pk]), {"sync_interval": "0"})
    assert response.status_code == 200
    assert "greater than or equal to 0:00:01" in response.content.decode()
    assert reload(state).sync_interval == dt.timedelta(seconds=300)


def test_sync_now_makes_the_selected_pairs_due_at_once(su_client):
    a, b = pairs(2, next_sync_at=T0 + dt.timedelta(days=365 * 50))
    response = su_client.post(
        reverse(STATES), {"action": "sync_now", "_selected_action": [a.pk]}, follow=True
    )
    assert "1 pair(s) will be synced by the next free worker." in response.content.decode()
    assert reload(a).next_sync_at is None
    assert reload(b).next_sync_at == T0 + dt.timedelta(days=365 * 50)
    assert [s.pk for s in SyncState.objects.claim_due(worker="w", at=T0)] == [a.pk]


def test_without_change_permission_sync_states_are_read_only_and_add_delete_are_refused(su_client):
    (state,) = pairs(1, next_sync_at=T0)
    viewer = admin_client("view_syncstate")
    url = reverse("admin:sync_syncstate_change", args=[state.pk])

    assert viewer.post(url, {"sync_interval": "00:10:00"}).status_code == 403
    viewer.post(reverse(STATES), {"action": "sync_now", "_selected_action": [state.pk]})
    assert b'name="sync_interval"' not in viewer.get(url).content
    assert su_client.get(reverse("admin:sync_syncstate_add")).status_code == 403
    delete = reverse("admin:sync_syncstate_delete", args=[state.pk])
    assert su_client.post(delete, {"post": "yes"}).status_code == 403
    stored = reload(state)
    assert (stored.sync_interval, stored.next_sync_at) == (dt.timedelta(seconds=300), T0)
    assert SyncState.objects.count() == 1
