"""Every path that locks conflicts and sync states, mixed by 16 threads on PostgreSQL: no deadlock.

``Conflict.objects.clear()`` deleted its rows in the table's physical order while ``store``, ``resolve``,
``reopen``, ``discard`` and bulk resolution locked them in id order and then the (page, team) sync states:
three rounds of 16 such workers raised over a hundred "deadlock detected". The mix below runs every one
of those paths on a few overlapping conflicts for a bounded time and accepts only the outcomes each path
documents (a ``ValidationError`` such as "already resolved" or "no longer exists").
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from sync import services
from sync.models import Conflict, SyncState
from tests.factories import make_change
from tests.reliability.concurrency import WRITERS, run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

#: How long the 16 workers mix operations. On the unfixed code a deadlock showed within a second or two.
DURATION_SECONDS = 12.0
PAGES = ["page-1", "page-2", "page-3"]
TEAMS = ["team-a", "team-b"]
CONFLICT_IDS = [f"conflict-item-{n:02d}" for n in range(24)]


def _store(rng: random.Random) -> str:
    conflict_id = rng.choice(CONFLICT_IDS)
    item_id = conflict_id.removeprefix("conflict-")
    Conflict.objects.store(
        conflict_id,
        linear_change=make_change("linear", itemId=item_id, itemData={"title": f"L{rng.randrange(3)}"}),
        confluence_change=make_change(
            "confluence", itemId=item_id, itemData={"title": f"C{rng.randrange(3)}"}
        ),
        # Sometimes a new pair: store then locks two sync states (old and new).
        confluence_page_id=rng.choice(PAGES),
        linear_team_id=rng.choice(TEAMS),
    )
    return "store"


def _resolve(rng: random.Random) -> str:
    conflict = Conflict.objects.filter(pk=rng.choice(CONFLICT_IDS)).first()
    if conflict is None:
        return "resolve-missing"
    conflict.resolve(rng.choice(["linear", "confluence"]))
    return "resolve"


def _reopen(rng: random.Random) -> str:
    conflict = Conflict.objects.filter(pk=rng.choice(CONFLICT_IDS), is_resolved=True).first()
    if conflict is None:
        return "reopen-none"
    conflict.reopen()
    return "reopen"


def _bulk_resolve(rng: random.Random) -> str:
    services.resolve_conflicts(rng.sample(CONFLICT_IDS, 8), rng.choice(["linear", "confluence"]), by=None)
    return "bulk"


def _clear(rng: random.Random) -> str:
    scope = rng.randrange(4)
    if scope == 0:
        Conflict.objects.clear(rng.choice(PAGES))
    elif scope == 1:
        Conflict.objects.clear(linear_team_id=rng.choice(TEAMS))
    elif scope == 2:
        Conflict.objects.clear(rng.choice(PAGES), rng.choice(TEAMS))
    else:
        Conflict.objects.clear()
    return "clear"


def _discard(rng: random.Random) -> str:
    Conflict.objects.discard(rng.choice(CONFLICT_IDS))
    return "discard"


# Stores dominate, as in the agent: clears need rows to delete.
OPERATIONS = [_store] * 6 + [_resolve] * 3 + [_bulk_resolve] * 2 + [_clear] * 2 + [_reopen, _discard]

#: The ValidationError codes the paths document for a row someone else changed or deleted first.
EXPECTED_CODES = {"already_resolved", "does_not_exist", "not_resolved"}


def test_every_conflict_and_sync_state_path_mixed_by_sixteen_threads_never_deadlocks():
    for conflict_id in CONFLICT_IDS[:12]:
        _store(random.Random(conflict_id))
    stop_at = time.monotonic() + DURATION_SECONDS
    done: Counter[str] = Counter()
    unexpected: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        rng = random.Random(index)
        with connection.cursor() as cursor:
            # A lock wait longer than this is a stuck worker, not a slow one: fail it instead of hanging.
            cursor.execute("SET lock_timeout = '10s'")
        while time.monotonic() < stop_at:
            operation = rng.choice(OPERATIONS)
            try:
                outcome = operation(rng)
            except ValidationError as exc:
                outcome = f"refused:{exc.code}"
                if exc.code not in EXPECTED_CODES:
                    with lock:
                        unexpected.append(f"{operation.__name__}: ValidationError {exc.code}: {exc}")
            except Exception as exc:  # every other exception is the finding
                outcome = f"error:{type(exc).__name__}"
                with lock:
                    unexpected.append(f"{operation.__name__}: {type(exc).__name__}: {exc}")
            with lock:
                done[outcome] += 1

    outcomes = run_together(work, WRITERS)

    assert [o.error for o in outcomes] == [None] * WRITERS
    assert unexpected == [], f"{len(unexpected)} unexpected errors, first: {unexpected[:3]}"
    # The mix really ran every path many times (not one worker looping on a refusal).
    for name in ("store", "resolve", "bulk", "clear", "reopen", "discard"):
        assert done[name] >= 5, done
    # And every count the paths kept is the true number of unresolved conflicts of its pair.
    for state in SyncState.objects.all():
        unresolved = Conflict.objects.unresolved(state.confluence_page_id, state.linear_team_id)
        assert state.conflict_count == unresolved.count(), state

