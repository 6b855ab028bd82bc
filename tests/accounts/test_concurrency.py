"""Concurrent store and refresh on PostgreSQL: one row, no error, no refresh token spent twice."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import LinearToken, Organization
from tests.reliability.concurrency import assert_no_errors, run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; fail on any error; return the results."""
    outcomes = run_together(work, writers=count)
    assert_no_errors(outcomes)
    return [outcome.result for outcome in outcomes]


def test_sixteen_concurrent_stores_for_a_new_organization_leave_one_row() -> None:
    expires_at = timezone.now() + dt.timedelta(hours=1)

    def store(i: int) -> tuple[int, int]:
        token = LinearToken.objects.store(
            "org-race",
            access_token=f"race-access-{i:04d}",
            refresh_token=f"race-refresh-{i:04d}",
            app_user_id=f"user-{i}",
            expires_at=expires_at + dt.timedelta(minutes=i),
        )
        return token.pk, i

    results = run_in_threads(16, store)

    assert Organization.objects.filter(linear_id="org-race").count() == 1
    assert LinearToken.objects.count() == 1
    row = LinearToken.objects.get()
    assert {pk for pk, _ in results} == {row.pk}
    # The row holds one writer's values, all of them from the same writer (the last to commit).
    n = int(row.app_user_id.removeprefix("user-"))
    assert (row.access_token, row.refresh_token) == (f"race-access-{n:04d}", f"race-refresh-{n:04d}")
    assert row.expires_at == expires_at + dt.timedelta(minutes=n)


def test_eight_concurrent_refreshers_never_spend_a_refresh_token_twice() -> None:
    LinearToken.objects.store(
        "org-refresh",
        access_token="start-access-0000",
        refresh_token="start-refresh-0000",
        app_user_id="user",
        expires_at=timezone.now() - dt.timedelta(minutes=1),
    )
    given: list[str] = []
    lock = threading.Lock()

    def refresher(refresh_token: str) -> tuple[str, str | None, dt.datetime]:
        with lock:
            given.append(refresh_token)
            n = len(given)
        return f"new-access-{n:04d}", f"new-refresh-{n:04d}", timezone.now() + dt.timedelta(hours=1)

    def refresh(i: int) -> str:
        # A worker loading after another's refresh sees (and may spend) the new refresh token.
        token = LinearToken.objects.for_organization("org-refresh")
        return token.refresh(refresher).access_token

    results = run_in_threads(8, refresh)

    assert max(Counter(given).values()) == 1  # no refresh token was ever given twice
    assert given[0] == "start-refresh-0000"
    row = LinearToken.objects.get()
    assert row.refresh_token == f"new-refresh-{len(given):04d}"
    assert set(results) <= {f"new-access-{n:04d}" for n in range(1, len(given) + 1)}


def test_concurrent_refreshers_of_one_loaded_state_call_the_provider_once() -> None:
    LinearToken.objects.store(
        "org-once",
        access_token="start-access-0000",
        refresh_token="start-refresh-0000",
        app_user_id="user",
        expires_at=timezone.now() - dt.timedelta(minutes=1),
    )
    copies = [LinearToken.objects.for_organization("org-once") for _ in range(8)]
    given: list[str] = []
    lock = threading.Lock()

    def refresher(refresh_token: str) -> tuple[str, str | None, dt.datetime]:
        with lock:
            given.append(refresh_token)
        return "once-access-0001", None, timezone.now() + dt.timedelta(hours=1)

    results = run_in_threads(8, lambda i: copies[i].refresh(refresher).access_token)

    assert given == ["start-refresh-0000"]
    assert results == ["once-access-0001"] * 8
    row = LinearToken.objects.get()
    assert (row.access_token, row.refresh_token) == ("once-access-0001", "start-refresh-0000")
