"""DB_PREPARED_STATEMENTS: the agent's API on a PostgreSQL connection that prepares its statements."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.db.utils import load_backend
from django.utils import timezone

from accounts.models import LinearToken
from sync.models import LinearIssueCache, SyncHistory, SyncState

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

#: What config/settings.py puts in OPTIONS with DB_PREPARED_STATEMENTS=true (tests/test_settings.py).
PREPARED_OPTIONS = {"server_side_binding": True, "prepare_threshold": 5}


@pytest.fixture
def prepared_connection() -> Iterator[Any]:
    """This thread's default connection replaced by one opened with the prepared-statement OPTIONS."""
    default = connections["default"]
    settings_dict = copy.deepcopy(default.settings_dict)
    settings_dict["OPTIONS"] = {**settings_dict.get("OPTIONS", {}), **PREPARED_OPTIONS}
    wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, "default")
    connections["default"] = wrapper
    try:
        yield wrapper
    finally:
        connections["default"] = default
        wrapper.close()


def prepared_statements(wrapper: Any) -> list[str]:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_the_api_works_and_repeated_lookups_are_prepared(prepared_connection: Any) -> None:
    expires_at = timezone.now() + dt.timedelta(hours=1)
    stored = LinearToken.objects.store(
        "org-1", access_token="access-1111", app_user_id="app", expires_at=expires_at
    )
    state = SyncState.objects.mark_synced("page-1", "team-1")
    SyncHistory.objects.record("page-1", "team-1", success=True, created_issues=2)
    assert LinearIssueCache.objects.upsert_many("org-1", [{"id": "i1", "title": 'say "hi"'}]) == 1

    for _ in range(6):  # past prepare_threshold
        token = LinearToken.objects.for_organization("org-1")
        assert (token.pk, token.access_token, token.organization.linear_id) == (
            stored.pk,
            "access-1111",
            "org-1",
        )
        assert SyncState.objects.last_synced_at("page-1", "team-1") == state.last_synced_at
        (run,) = SyncHistory.objects.for_pair("page-1", "team-1")[:50]
        assert run.created_issues == 2

    assert prepared_connection.settings_dict["OPTIONS"]["server_side_binding"] is True
    statements = " ".join(prepared_statements(prepared_connection))
    assert '"accounts_lineartoken"' in statements
    assert '"sync_syncstate"' in statements
    assert LinearIssueCache.objects.get().issue_data == {"id": "i1", "title": 'say "hi"'}
