"""Sixteen real threads store and refresh the same OAuth token: one consistent row, no refresh token
spent twice, ciphertext at rest. PostgreSQL only, ``transaction=True``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import ConfluenceToken, LinearToken, Organization
from tests.reliability.concurrency import WRITERS, assert_no_errors, run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

EXPIRES = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def _raw_columns(table: str) -> list[bytes]:
    """Every stored access and refresh token of ``table`` as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT access_token, refresh_token FROM {table}")
        return [bytes(value) for row in cursor.fetchall() for value in row if value is not None]


def test_linear_store_same_organization_keeps_one_row_from_one_writer():
    def work(i: int) -> LinearToken:
        return LinearToken.objects.store(
            "org-race",
            access_token=f"lin_oauth_access_{i:02d}",
            refresh_token=f"lin_oauth_refresh_{i:02d}",
            app_user_id=f"app-user-{i:02d}",
            expires_at=EXPIRES + dt.timedelta(days=i),
        )

    outcomes = run_together(work)

    assert_no_errors(outcomes)
    assert Organization.objects.filter(linear_id="org-race").count() == 1
    token = LinearToken.objects.get()
    # All four values come from the same writer: no mix of two upserts.
    i = int(token.app_user_id[-2:])
    assert (token.access_token, token.refresh_token, token.expires_at) == (
        f"lin_oauth_access_{i:02d}",
        f"lin_oauth_refresh_{i:02d}",
        EXPIRES + dt.timedelta(days=i),
    )
    assert {o.result.pk for o in outcomes} == {token.pk}
    raw = _raw_columns("accounts_lineartoken")
    assert len(raw) == 2 and all(b"lin_oauth" not in value for value in raw)


def test_linear_store_distinct_organizations_loses_none():
    outcomes = run_together(
        lambda i: LinearToken.objects.store(
            f"org-{i}", access_token=f"access-{i}", app_user_id="app", expires_at=EXPIRES
        )
    )

    assert_no_errors(outcomes)
    tokens = LinearToken.objects.select_related("organization")
    stored = {t.organization.linear_id: t.access_token for t in tokens}
    assert stored == {f"org-{i}": f"access-{i}" for i in range(WRITERS)}


def test_confluence_store_same_cloud_keeps_one_row_other_clouds_kept():
    def work(i: int) -> ConfluenceToken:
        # Even writers race on one cloud id; odd writers each have their own.
        cloud = "cloud-shared" if i % 2 == 0 else f"cloud-{i}"
        return ConfluenceToken.objects.store(
            "org-conf",
            cloud_id=cloud,
            site_url="https://acme.atlassian.net",
            access_token=f"conf-access-{i:02d}",
            refresh_token=f"conf-refresh-{i:02d}",
            expires_at=EXPIRES,
        )

    outcomes = run_together(work)

    assert_no_errors(outcomes)
    tokens = {t.cloud_id: t for t in ConfluenceToken.objects.all()}
    assert set(tokens) == {"cloud-shared", *(f"cloud-{i}" for i in range(1, WRITERS, 2))}
    shared = tokens["cloud-shared"]
    i = int(shared.access_token[-2:])
    assert i % 2 == 0 and shared.refresh_token == f"conf-refresh-{i:02d}"
    for j in range(1, WRITERS, 2):
        assert tokens[f"cloud-{j}"].access_token == f"conf-access-{j:02d}"


class RecordingRefresher:
    """A stand-in for the HTTP refresh: records each refresh token it is given, returns a new pair."""

    def __init__(self, delay: float = 0.02) -> None:
        self.spent: list[str] = []
        self.issued: list[str] = []
        self._lock = threading.Lock()
        self._delay = delay

    def __call__(self, refresh_token: str) -> tuple[str, str, dt.datetime]:
        # The provider's round trip: long enough for the other workers to pile up on the row lock.
        time.sleep(self._delay)
        with self._lock:
            self.spent.append(refresh_token)
            n = len(self.spent)
            self.issued.append(f"refresh-{n}")
        return f"access-{n}", f"refresh-{n}", timezone.now() + dt.timedelta(hours=n)


def test_refresh_from_one_stale_copy_calls_the_provider_once():
    """Sixteen workers loaded the token before any refreshed it: one refreshes, fifteen reuse its result."""
    LinearToken.objects.store(
        "org-r", access_token="access-0", refresh_token="refresh-0", app_user_id="a", expires_at=EXPIRES
    )
    copies = [LinearToken.objects.for_organization("org-r") for _ in range(WRITERS)]
    refresher = RecordingRefresher()

    outcomes = run_together(lambda i: copies[i].refresh(refresher))

    assert_no_errors(outcomes)
    assert refresher.spent == ["refresh-0"]
    assert {(o.result.access_token, o.result.refresh_token) for o in outcomes} == {("access-1", "refresh-1")}
    stored = LinearToken.objects.get()
    assert (stored.access_token, stored.refresh_token) == ("access-1", "refresh-1")


def test_refresh_from_fresh_copies_never_spends_a_refresh_token_twice():
    """Workers that each load the token when they start form a chain: every refresh token spent once."""
    ConfluenceToken.objects.store(
        "org-r",
        cloud_id="c",
        site_url="https://acme.atlassian.net",
        access_token="access-0",
        refresh_token="refresh-0",
        expires_at=EXPIRES,
    )
    refresher = RecordingRefresher(delay=0.005)

    outcomes = run_together(
        lambda i: ConfluenceToken.objects.for_organization("org-r", "c").refresh(refresher)
    )

    assert_no_errors(outcomes)
    assert len(refresher.spent) == len(set(refresher.spent)), refresher.spent
    # Each call spent the token the previous call issued.
    assert refresher.spent == ["refresh-0", *refresher.issued[:-1]]
    stored = ConfluenceToken.objects.get()
    assert stored.refresh_token == refresher.issued[-1]
    assert stored.access_token == f"access-{len(refresher.spent)}"
