"""Many agent worker processes on one PostgreSQL: leases, due-pair rounds, kill -9, the outbox.

Each worker is a separate process (multiprocessing 'spawn') with its own connection, running the loops
of ``tests.reliability.lease_workers``. The shapes are the issue's, the sizes smaller so that each test
stays within about 30 s on a loaded two-core machine: 8 processes × 200 pairs × 3 rounds here, the
issue's 8 × 2,000 × 3 in ``benchmarks/workers.py``; 800 resolutions here instead of 10,000
(``SOAK_RESOLUTIONS=10000`` runs the full size).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import queue
import time
from collections.abc import Callable

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import Organization
from sync.models import Conflict, SyncState
from tests.reliability.lease_workers import (
    APPLIED,
    FAR_FUTURE,
    SYNC_LOG,
    apply_worker,
    create_tables,
    drop_tables,
    fails_first_time,
    sync_worker,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

#: Seconds a soak test may run before it fails (a stuck worker, a lost pair).
DEADLINE = 90

ctx = multiprocessing.get_context("spawn")


@pytest.fixture
def soak_tables():
    with connection.cursor() as cursor:
        create_tables(cursor)
    yield
    with connection.cursor() as cursor:
        drop_tables(cursor)


class Workers:
    """Worker processes started together, their reports, and a clean stop."""

    def __init__(self) -> None:
        self.results = ctx.Queue()
        self.go = ctx.Event()
        self.stop = ctx.Event()
        self.processes: dict[str, multiprocessing.process.BaseProcess] = {}
        self.errors: list[str] = []
        self.done: dict[str, int] = {}
        self.hung: dict[str, list[int]] = {}

    def start(self, name: str, target: Callable, *args, **kwargs) -> None:
        process = ctx.Process(target=target, args=args, kwargs=kwargs, name=name)
        process.start()
        self.processes[name] = process

    def drain(self, timeout: float = 0.05) -> None:
        try:
            while True:
                kind, name, value = self.results.get(timeout=timeout)
                if kind == "error":
                    self.errors.append(f"{name}: {value}")
                elif kind == "hung":
                    self.hung[name] = value
                elif kind == "done":
                    self.done[name] = value
        except queue.Empty:
            pass

    def wait_for(self, condition: Callable[[], bool], what: str, deadline: float) -> None:
        while not condition():
            self.drain()
            assert not self.errors, self.errors
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.05)

    def finish(self, deadline: float) -> None:
        self.stop.set()
        self.go.set()
        alive = [name for name, p in self.processes.items() if p.exitcode is None or p.is_alive()]
        for name in alive:
            self.processes[name].join(max(1.0, deadline - time.monotonic()))
        self.drain()
        for process in self.processes.values():
            if process.is_alive():
                process.kill()
                process.join(5)


def fetch(sql: str, params: list | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall()


def overlapping_syncs() -> list[tuple]:
    """Pairs of log rows of one pair whose holds overlap (must be none).

    A sync holds its pair from its start to its end, or, for a worker killed before the end, to the
    expiry of its lease.
    """
    return fetch(
        f"SELECT a.pair_id, a.worker, b.worker FROM {SYNC_LOG} a JOIN {SYNC_LOG} b "
        "ON a.pair_id = b.pair_id AND a.id < b.id "
        "AND b.started_at < COALESCE(a.ended_at, a.lease_expires_at) "
        "AND a.started_at < COALESCE(b.ended_at, b.lease_expires_at)"
    )


def make_pairs(n: int) -> list[int]:
    SyncState.objects.bulk_create(
        [SyncState(confluence_page_id=f"soak-page-{i:05}", linear_team_id="soak-team") for i in range(n)]
    )
    return list(SyncState.objects.order_by("pk").values_list("pk", flat=True))


def released_count() -> int:
    return SyncState.objects.filter(next_sync_at=FAR_FUTURE, lease_owner="").count()


# --- the soak ---


PROCESSES = 8
PAIRS = 200
ROUNDS = 3


def test_eight_worker_processes_sync_every_due_pair_once_per_round_and_never_together(soak_tables):
    pair_ids = make_pairs(PAIRS)
    round_number = ctx.Value("i", 0)
    workers = Workers()
    deadline = time.monotonic() + DEADLINE
    db_name = connection.settings_dict["NAME"]
    try:
        for i in range(PROCESSES):
            name = f"soak-{i}"
            workers.start(
                name, sync_worker, db_name, name, round_number, workers.go, workers.stop, workers.results
            )
        workers.go.set()
        for current in range(ROUNDS):
            workers.wait_for(lambda: released_count() == PAIRS, f"round {current} to finish", deadline)
            if current + 1 < ROUNDS:
                round_number.value = current + 1  # before the pairs are due again: workers log it
                SyncState.objects.update(next_sync_at=None)
    finally:
        workers.finish(deadline)

    assert workers.errors == []
    assert [p.exitcode for p in workers.processes.values()] == [0] * PROCESSES
    assert sum(workers.done.values()) == PAIRS * ROUNDS
    # Every pair synced exactly once per round, and each of those syncs finished.
    per_round = fetch(f"SELECT round, pair_id, COUNT(*), COUNT(ended_at) FROM {SYNC_LOG} GROUP BY 1, 2")
    assert len(per_round) == PAIRS * ROUNDS
    assert {(count, ended) for _, _, count, ended in per_round} == {(1, 1)}
    assert {pair for _, pair, _, _ in per_round} == set(pair_ids)
    assert overlapping_syncs() == []
    # The work was shared: each worker synced something.
    workers_seen = fetch(f"SELECT worker, COUNT(*) FROM {SYNC_LOG} GROUP BY worker")
    assert len(workers_seen) == PROCESSES
    states = SyncState.objects.all()
    assert {(s.status, s.failure_count, s.lease_owner) for s in states} == {("idle", 0, "")}


# --- kill -9 in the middle of the leases ---


KILL_PAIRS = 200
VICTIM_LEASE = 2.0


def test_pairs_of_a_worker_killed_mid_lease_are_synced_by_others_after_expiry(soak_tables):
    make_pairs(KILL_PAIRS)
    round_number = ctx.Value("i", 0)
    workers = Workers()
    deadline = time.monotonic() + DEADLINE
    db_name = connection.settings_dict["NAME"]
    survivor_go = ctx.Event()
    try:
        workers.start(
            "victim",
            sync_worker,
            *(db_name, "victim", round_number, workers.go, workers.stop, workers.results),
            lease_seconds=VICTIM_LEASE,
            batch=10,
            hang=True,
        )
        for i in range(3):
            name = f"survivor-{i}"
            workers.start(
                name, sync_worker, db_name, name, round_number, survivor_go, workers.stop, workers.results
            )
        workers.go.set()
        workers.wait_for(lambda: "victim" in workers.hung, "the victim to claim its pairs", deadline)
        survivor_go.set()
        workers.wait_for(lambda: released_count() >= KILL_PAIRS // 3, "a third of the pairs", deadline)
        workers.processes["victim"].kill()  # SIGKILL: no clean-up, its leases simply stay until they expire
        workers.processes["victim"].join(10)
        workers.wait_for(lambda: released_count() == KILL_PAIRS, "every pair to be synced", deadline)
    finally:
        survivor_go.set()
        workers.finish(deadline)

    assert workers.errors == []
    assert workers.processes["victim"].exitcode == -9
    victims_pairs = workers.hung["victim"]
    assert len(victims_pairs) == 10
    # The victim started one sync and never ended it; every pair was synced to the end exactly once.
    victim_rows = fetch(f"SELECT pair_id, ended_at FROM {SYNC_LOG} WHERE worker = 'victim'")
    assert victim_rows == [(victims_pairs[0], None)]
    finished = fetch(f"SELECT pair_id, COUNT(*) FROM {SYNC_LOG} WHERE ended_at IS NOT NULL GROUP BY pair_id")
    assert len(finished) == KILL_PAIRS
    assert {count for _, count in finished} == {1}
    # No survivor touched the victim's pairs before its lease ran out.
    (victim_lease_end,) = fetch(f"SELECT lease_expires_at FROM {SYNC_LOG} WHERE worker = 'victim'")[0]
    takeovers = fetch(
        f"SELECT pair_id, worker, started_at FROM {SYNC_LOG} WHERE pair_id = ANY(%s) AND worker <> 'victim'",
        [victims_pairs],
    )
    assert sorted(pair for pair, _, _ in takeovers) == sorted(victims_pairs)
    assert all(started >= victim_lease_end for _, _, started in takeovers)
    assert overlapping_syncs() == []
    assert SyncState.objects.exclude(lease_owner="").count() == 0


# --- the outbox: many resolutions, 8 workers, one killed half-way ---


RESOLUTIONS = int(os.environ.get("SOAK_RESOLUTIONS", "800"))


def make_resolved_conflicts(n: int) -> list[str]:
    """``n`` resolved conflicts (bulk: the set-up, not what is tested) of one organization."""
    organization = Organization.objects.ensure("org-soak")
    at = timezone.now() - dt.timedelta(minutes=5)
    rows = []
    for i in range(n):
        item = f"soak-item-{i:05}"
        change = {"itemId": item, "source": "linear", "itemType": "story", "itemData": {"title": f"T{i}"}}
        rows.append(
            Conflict(
                id=f"conflict-{i:05}",
                organization=organization,
                confluence_page_id="soak-page",
                linear_team_id="soak-team",
                linear_change=change,
                confluence_change={**change, "source": "confluence", "itemData": {"title": f"C{i}"}},
                resolved_change={**change, "id": f"resolved-conflict-{i:05}"},
                item_type="story",
                item_id=item,
                is_resolved=True,
                resolution_strategy="linear",
                resolved_at=at,
            )
        )
    Conflict.objects.bulk_create(rows, batch_size=1000)
    return [row.id for row in rows]


def test_eight_workers_one_killed_half_way_apply_each_resolution_exactly_once_with_retries(soak_tables):
    ids = make_resolved_conflicts(RESOLUTIONS)
    workers = Workers()
    deadline = time.monotonic() + max(DEADLINE, RESOLUTIONS * 0.03)
    db_name = connection.settings_dict["NAME"]

    def applied() -> int:
        return fetch(f"SELECT COUNT(*) FROM {APPLIED}")[0][0]

    try:
        for i in range(8):
            name = f"apply-{i}"
            workers.start(name, apply_worker, db_name, name, workers.go, workers.stop, workers.results)
        workers.go.set()
        workers.wait_for(lambda: applied() >= RESOLUTIONS // 2, "half of the resolutions", deadline)
        workers.processes["apply-0"].kill()
        workers.processes["apply-0"].join(10)
        workers.wait_for(
            lambda: applied() == RESOLUTIONS and not Conflict.objects.awaiting_application().exists(),
            "every resolution to be applied",
            deadline,
        )
    finally:
        workers.finish(deadline)

    assert workers.errors == []  # an IntegrityError here would be a resolution applied twice
    assert workers.processes["apply-0"].exitcode == -9
    rows = dict(fetch(f"SELECT conflict_id, worker FROM {APPLIED}"))
    assert sorted(rows) == sorted(ids)
    marked = dict(Conflict.objects.values_list("id", "applied_by"))
    assert marked == rows  # the application and its mark were committed together
    attempts = dict(Conflict.objects.values_list("id", "apply_attempts"))
    retried = {conflict_id for conflict_id in ids if fails_first_time(conflict_id)}
    assert dict.fromkeys(retried, 2) == {c: attempts[c] for c in retried}
    assert {attempts[c] for c in ids if c not in retried} == {1}
    assert Conflict.objects.exclude(apply_lease_owner="").count() == 0
    assert Conflict.objects.applied().count() == RESOLUTIONS


# --- the benchmark's own measuring code ---


def test_the_workers_benchmark_measures_a_small_run_and_checks_it(soak_tables):
    from benchmarks import workers as bench

    rate = bench.measure(2, 40, 2, 0.001)

    assert rate > 0
    assert bench._check(40, 2) == ""
    assert fetch(f"SELECT COUNT(*), COUNT(DISTINCT worker) FROM {SYNC_LOG}") == [(80, 2)]
    # A log that breaks the soak rules is reported, not measured.
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {SYNC_LOG} WHERE id = (SELECT MIN(id) FROM {SYNC_LOG})")
    assert bench._check(40, 2).startswith("soak check failed: 79 syncs")
