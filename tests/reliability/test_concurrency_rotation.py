"""Key rotation never makes an unrelated organization wait for a slow refresh (issue 18, item 2).

A refresh holds its token row while the provider answers. The rotation used to lock a whole batch of
rows and then wait for that one row, keeping the rest of the batch locked: stores and refreshes of the
other organizations in the batch stalled for the whole provider call. Now it skips the held row, rotates
the others, and comes back to the held one alone.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import LinearToken
from accounts.services import rotate_token_keys
from tests.accounts.conftest import NEW_KEY, OLD_KEY, fernet_of, raw_column
from tests.factories import make_linear_token, make_organization
from tests.reliability.test_faults import killer_connection

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

#: How long another organization's write may wait: "a moment", far below the slow provider call.
MOMENT = "2s"


def wait_until_waiting_on_a_lock(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    with killer_connection() as admin:
        while time.monotonic() < deadline:
            query = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s"
            row = admin.execute(query, [pid]).fetchone()
            if row and row[0] == "Lock":
                return
            time.sleep(0.02)
    pytest.fail(f"backend {pid} never waited for a lock")


def in_thread(target: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``target(outcome)`` in a thread with its own connection; ``outcome`` gets result or error."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = target(outcome)
        except BaseException as exc:  # reported to the test
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_slow_refresh_of_one_organization_never_stalls_the_others_during_rotation(settings):
    settings.FERNET_KEYS = [OLD_KEY]
    # Ids in this order: B (before the slow row, so the old code held it while waiting), A (slow), C.
    before = make_linear_token(organization=make_organization(linear_id="org-b"))
    slow = make_linear_token(organization=make_organization(linear_id="org-a"))
    after = make_linear_token(organization=make_organization(linear_id="org-c"))
    settings.FERNET_KEYS = [NEW_KEY, OLD_KEY]

    in_provider = threading.Event()
    provider_may_answer = threading.Event()

    def slow_refresher(refresh_token: str) -> tuple[str, str, dt.datetime]:
        in_provider.set()
        assert provider_may_answer.wait(30)
        return "a-access-new", "a-refresh-new", timezone.now() + dt.timedelta(hours=1)

    refresh_thread, refreshed = in_thread(
        lambda _: LinearToken.objects.get(pk=slow.pk).refresh(slow_refresher)
    )
    assert in_provider.wait(20)

    def rotate(outcome: dict[str, Any]) -> Any:
        connection.ensure_connection()
        outcome["pid"] = connection.connection.info.backend_pid
        return rotate_token_keys(batch_size=10)

    rotation_thread, rotation = in_thread(rotate)
    deadline = time.monotonic() + 20
    while "pid" not in rotation and time.monotonic() < deadline:
        time.sleep(0.01)
    # The rotation reaches the held row (old code: with B locked; new: alone, after B and C).
    wait_until_waiting_on_a_lock(rotation["pid"])

    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = '{MOMENT}'")  # a longer wait fails the test
        LinearToken.objects.store(
            "org-b", access_token="b-access-new", refresh_token="b-refresh-new", app_user_id="b",
            expires_at=timezone.now() + dt.timedelta(hours=1),
        )
        LinearToken.objects.get(pk=after.pk).refresh(
            lambda _: ("c-access-new", "c-refresh-new", timezone.now() + dt.timedelta(hours=1))
        )
        assert rotation_thread.is_alive()  # the rotation itself still waits for A
    finally:
        provider_may_answer.set()
        refresh_thread.join(30)
        rotation_thread.join(30)

    assert "error" not in refreshed and "error" not in rotation, (refreshed, rotation)
    assert rotation["result"].undecryptable == []
    # Every row ends under the new key, the held one included, with its refreshed pair.
    settings.FERNET_KEYS = [NEW_KEY]
    for token, access in ((before, "b-access-new"), (slow, "a-access-new"), (after, "c-access-new")):
        stored = raw_column(LinearToken, token.pk, "access_token")
        assert fernet_of(NEW_KEY).decrypt(stored) == access.encode()
        assert LinearToken.objects.get(pk=token.pk).access_token == access
