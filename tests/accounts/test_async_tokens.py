"""Async twins of the accounts API under asyncio, and refreshes that stall no other task (PostgreSQL).

Tests drive coroutines with ``async_to_sync`` from the test thread: the twins' ``sync_to_async`` calls
then run on that thread (and its connection), as they would on asgiref's shared thread in an agent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections import Counter

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone

from accounts.models import (
    ConfluenceToken,
    LinearToken,
    Organization,
    ReauthorizationRequired,
    RefreshRejected,
)
from sync.models import SyncState
from tests.reliability.concurrency import assert_no_errors, run_together

pytestmark = pytest.mark.django_db(transaction=True)

ACCESS = "lin_async_access_PLAINTEXT_1111"
REFRESH = "lin_async_refresh_PLAINTEXT_2222"


def run(coroutine_function, *args, **kwargs):
    return async_to_sync(coroutine_function)(*args, **kwargs)


def store(organization_id: str = "org-async", *, expires_in: dt.timedelta) -> LinearToken:
    return LinearToken.objects.store(
        organization_id,
        access_token=ACCESS,
        refresh_token=REFRESH,
        app_user_id="app-1",
        expires_at=timezone.now() + expires_in,
    )


# --- the twins, on both engines --------------------------------------------------------------------------


def test_async_store_and_lookup_twins_match_their_sync_forms():
    async def main():
        token = await LinearToken.objects.astore(
            "org-async",
            access_token=ACCESS,
            refresh_token=REFRESH,
            app_user_id="app-1",
            expires_at=timezone.now() + dt.timedelta(hours=1),
            scope="read",
        )
        found = await LinearToken.objects.afor_organization("org-async")
        missing = await LinearToken.objects.afor_organization("org-none")
        organization = await Organization.objects.aby_linear_id("org-async")
        ensured = await Organization.objects.aensure("org-new", name="New")
        return token, found, missing, organization, ensured

    token, found, missing, organization, ensured = run(main)
    assert isinstance(token, LinearToken) and found.pk == token.pk and missing is None
    assert (found.access_token, found.refresh_token, found.scope) == (ACCESS, REFRESH, "read")
    assert organization.pk == token.organization_id
    assert Organization.objects.get(linear_id="org-new").name == "New" == ensured.name


def test_async_confluence_twins():
    async def main():
        stored = await ConfluenceToken.objects.astore(
            "org-async",
            cloud_id="cloud-1",
            site_url="https://acme.atlassian.net",
            access_token="conf-access",
            refresh_token="conf-refresh",
            expires_at=timezone.now() + dt.timedelta(seconds=5),
        )
        fresh = await ConfluenceToken.objects.aaccess_token("org-async", refresher, cloud_id="cloud-1")
        by_cloud = await ConfluenceToken.objects.afor_organization("org-async", "cloud-1")
        from_response = await ConfluenceToken.objects.astore_oauth_response(
            "org-async",
            {"access_token": "conf-access-3", "expires_in": 60, "scope": "read write"},
            cloud_id="cloud-2",
            site_url="https://acme.atlassian.net",
        )
        return stored, fresh, by_cloud, from_response

    async def refresher(refresh_token: str):
        assert refresh_token == "conf-refresh"
        return "conf-access-2", None, timezone.now() + dt.timedelta(hours=1)

    stored, fresh, by_cloud, from_response = run(main)
    assert fresh == "conf-access-2" and by_cloud.pk == stored.pk and by_cloud.access_token == "conf-access-2"
    assert ConfluenceToken.objects.get(cloud_id="cloud-2").scope == "read write" == from_response.scope


def test_aaccess_token_returns_a_fresh_token_without_a_refresh():
    store(expires_in=dt.timedelta(hours=1))

    def refresher(refresh_token: str):
        raise AssertionError("not expected")

    assert run(LinearToken.objects.aaccess_token, "org-async", refresher) == ACCESS


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_aaccess_token_refreshes_with_a_sync_or_an_async_refresher(kind):
    store(expires_in=dt.timedelta(seconds=10))
    calls = []

    def sync_refresher(refresh_token: str):
        calls.append((refresh_token, threading.current_thread().name))
        return "new-access", "new-refresh", timezone.now() + dt.timedelta(hours=1)

    async def async_refresher(refresh_token: str):
        calls.append((refresh_token, threading.current_thread().name))
        return "new-access", "new-refresh", timezone.now() + dt.timedelta(hours=1)

    refresher = sync_refresher if kind == "sync" else async_refresher
    assert run(LinearToken.objects.aaccess_token, "org-async", refresher) == "new-access"
    assert [given for given, _thread in calls] == [REFRESH]
    # A sync refresher runs on a refresh thread, never on the test (shared) thread.
    if kind == "sync":
        assert calls[0][1].startswith("token-refresh")
    row = LinearToken.objects.get(organization__linear_id="org-async")
    assert (row.access_token, row.refresh_token) == ("new-access", "new-refresh")


def test_arefresh_updates_the_instance_and_the_row():
    token = store(expires_in=dt.timedelta(hours=1))

    async def refresher(refresh_token: str):
        return "arefreshed", None, timezone.now() + dt.timedelta(hours=2)

    assert run(token.arefresh, refresher) is token
    assert token.access_token == "arefreshed" and token.refresh_token == REFRESH
    assert LinearToken.objects.get(pk=token.pk).access_token == "arefreshed"


def test_async_reauthorization_state():
    store(expires_in=dt.timedelta(seconds=1))
    calls = []

    async def rejecting(refresh_token: str):
        calls.append(refresh_token)
        raise RefreshRejected(refresh_token)

    with pytest.raises(ReauthorizationRequired) as raised:
        run(LinearToken.objects.aaccess_token, "org-async", rejecting)
    assert REFRESH not in str(raised.value)
    with pytest.raises(ReauthorizationRequired):
        run(LinearToken.objects.aaccess_token, "org-async", rejecting)
    assert calls == [REFRESH]
    run(
        LinearToken.objects.astore_oauth_response,
        "org-async",
        {"access_token": "after-reauth", "refresh_token": "r2", "expires_in": 3600},
        app_user_id="app-1",
    )
    assert run(LinearToken.objects.aaccess_token, "org-async", rejecting) == "after-reauth"


@pytest.mark.postgres  # SQLite's in-memory test database ignores close()
def test_a_refresh_thread_closes_its_connection():
    store(expires_in=dt.timedelta(seconds=1))
    seen = {}

    def refresher(refresh_token: str):
        from django.db import connections

        seen["connection"] = connections["default"]  # this thread's wrapper, not the proxy
        return "new-access", None, timezone.now() + dt.timedelta(hours=1)

    run(LinearToken.objects.aaccess_token, "org-async", refresher)
    assert seen["connection"].connection is None  # closed when the refresh ended


# --- concurrency, PostgreSQL ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_slow_async_refresh_does_not_hold_up_other_tasks_database_calls():
    """While one task's arefresh waits 1 s on the provider, 50 concurrent lookups each take < 100 ms."""
    token = store(expires_in=dt.timedelta(hours=1))
    SyncState.objects.mark_synced("page-1", "team-1", organization_id="org-async")
    alast_synced_at = sync_to_async(SyncState.objects.last_synced_at)

    async def main():
        in_provider = asyncio.Event()

        async def slow_provider(refresh_token: str):
            in_provider.set()
            await asyncio.sleep(1)
            return "slow-access", None, timezone.now() + dt.timedelta(hours=1)

        await alast_synced_at("page-1", "team-1")  # the shared thread's connection is open
        refresh = asyncio.ensure_future(token.arefresh(slow_provider))
        await asyncio.wait_for(in_provider.wait(), timeout=10)

        async def timed() -> tuple[float, dt.datetime | None]:
            start = time.perf_counter()
            value = await alast_synced_at("page-1", "team-1")
            return time.perf_counter() - start, value

        started = time.perf_counter()
        results = await asyncio.gather(*(timed() for _ in range(50)))
        all_done = time.perf_counter() - started
        refresh_done_before = refresh.done()
        await refresh
        return results, all_done, refresh_done_before

    results, all_done, refresh_done_before = run(main)
    assert refresh_done_before is False  # the lookups ran while the provider was still waited on
    assert all(value is not None for _elapsed, value in results)
    slowest = max(elapsed for elapsed, _value in results)
    assert slowest < 0.1, f"slowest lookup took {slowest:.3f} s (all 50: {all_done:.3f} s)"
    assert LinearToken.objects.get(pk=token.pk).access_token == "slow-access"


@pytest.mark.postgres
def test_concurrent_aaccess_token_calls_share_one_refresh():
    store(expires_in=dt.timedelta(seconds=5))
    given = []

    async def provider(refresh_token: str):
        given.append(refresh_token)
        await asyncio.sleep(0.2)
        return "shared-access", "shared-refresh", timezone.now() + dt.timedelta(hours=1)

    async def main():
        return await asyncio.gather(
            *(LinearToken.objects.aaccess_token("org-async", provider) for _ in range(30))
        )

    assert run(main) == ["shared-access"] * 30
    assert given == [REFRESH]
    assert LinearToken.objects.get(organization__linear_id="org-async").refresh_token == "shared-refresh"


@pytest.mark.postgres
def test_access_token_from_many_threads_calls_the_provider_once():
    store(expires_in=dt.timedelta(seconds=5))
    given = []
    lock = threading.Lock()

    def provider(refresh_token: str):
        with lock:
            given.append(refresh_token)
        time.sleep(0.2)
        return "thread-access", "thread-refresh", timezone.now() + dt.timedelta(hours=1)

    outcomes = run_together(lambda i: LinearToken.objects.access_token("org-async", provider), writers=12)
    assert_no_errors(outcomes)
    assert Counter(o.result for o in outcomes) == {"thread-access": 12}
    assert given == [REFRESH]


def test_arotate_token_keys_rotates_on_a_thread_of_its_own(settings):
    from accounts.services import arotate_token_keys
    from tests.accounts.conftest import NEW_KEY, OLD_KEY

    settings.FERNET_KEYS = [OLD_KEY]
    token = store(expires_in=dt.timedelta(hours=1))
    settings.FERNET_KEYS = [NEW_KEY, OLD_KEY]
    threads = []
    result = run(
        arotate_token_keys,
        batch_size=10,
        on_progress=lambda p: threads.append(threading.current_thread().name),
    )
    assert (result.rewritten, result.already_current, result.undecryptable_rows) == (1, 0, 0)
    assert threads and all(name.startswith("token-refresh") for name in threads)
    settings.FERNET_KEYS = [NEW_KEY]
    assert LinearToken.objects.get(pk=token.pk).access_token == ACCESS  # readable with the new key alone
