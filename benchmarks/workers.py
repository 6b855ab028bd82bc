"""Many agent worker processes on one PostgreSQL: pairs synced per second for 1, 2, 4 and 8 workers.

    DATABASE_URL=postgres://... python -m benchmarks.workers --engine postgresql [--quick]

The issue's soak at full size: 2,000 (page, team) pairs × 3 rounds, every pair due at the start of each
round, each worker a separate process with its own connection running the loop of
``tests.reliability.lease_workers.sync_worker``: ``SyncState.objects.claim_due`` (10 at a time), a fake
sync of 3 ms that logs its start and end, ``state.release(success=True)``. Timed from the moment every
worker is ready to the end of the last round. The baseline is one worker, measured in the same run; the
ratio is a time ratio like the other groups' (one worker's rate ÷ this rate: 0.25 is four times faster).
Each run also checks what the soak test checks: every pair synced exactly once per round, no pair ever
held by two workers at once. PostgreSQL only: on SQLite one worker is the supported set-up.
"""

from __future__ import annotations

import multiprocessing
import queue
import sys
import time
from typing import Any

from benchmarks.common import engine_name, error_result, main, make_result

PAIRS = 2000
ROUNDS = 3
WORKER_COUNTS = (1, 2, 4, 8)
SYNC_SECONDS = 0.003
#: Seconds one configuration may take before it is reported as an error.
TIMEOUT = 600


def _reset(pairs: int) -> None:
    from django.db import connection

    from sync.models import SyncState
    from tests.reliability.lease_workers import SYNC_LOG, create_tables

    with connection.cursor() as cursor:
        create_tables(cursor)
        cursor.execute(f"TRUNCATE {SYNC_LOG}")
    SyncState.objects.all().delete()
    SyncState.objects.bulk_create(
        [SyncState(confluence_page_id=f"bench-{i:05}", linear_team_id="bench-team") for i in range(pairs)],
        batch_size=1000,
    )


def _check(pairs: int, rounds: int) -> str:
    """What the soak test asserts, on this run's log; an empty string when all holds."""
    from django.db import connection

    from tests.reliability.lease_workers import SYNC_LOG

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*), COUNT(DISTINCT (round, pair_id)), COUNT(ended_at) FROM {SYNC_LOG}")
        total, distinct, ended = cursor.fetchone()
        cursor.execute(
            f"SELECT COUNT(*) FROM {SYNC_LOG} a JOIN {SYNC_LOG} b ON a.pair_id = b.pair_id AND a.id < b.id "
            "AND b.started_at < a.ended_at AND a.started_at < b.ended_at"
        )
        (overlaps,) = cursor.fetchone()
    expected = pairs * rounds
    if (total, distinct, ended, overlaps) != (expected, expected, expected, 0):
        return f"soak check failed: {total} syncs, {distinct} distinct, {ended} ended, {overlaps} overlaps"
    return ""


def measure(workers: int, pairs: int, rounds: int, sync_seconds: float) -> float:
    """Pairs synced per second by ``workers`` processes over ``rounds`` rounds of ``pairs`` pairs."""
    from django.db import connection

    from sync.models import SyncState
    from tests.reliability.lease_workers import FAR_FUTURE, sync_worker

    _reset(pairs)
    ctx = multiprocessing.get_context("spawn")
    results, go, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    round_number = ctx.Value("i", 0)
    db_name = connection.settings_dict["NAME"]
    processes = [
        ctx.Process(
            target=sync_worker,
            args=(db_name, f"bench-{i}", round_number, go, stop, results),
            kwargs={"sync_seconds": sync_seconds},
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    deadline = time.monotonic() + TIMEOUT
    try:
        ready = 0
        while ready < workers:
            kind, name, value = results.get(timeout=120)
            if kind == "error":
                raise RuntimeError(f"{name}: {value}")
            ready += kind == "ready"
        started = time.perf_counter()
        go.set()
        for current in range(rounds):
            while SyncState.objects.filter(next_sync_at=FAR_FUTURE, lease_owner="").count() < pairs:
                try:
                    kind, name, value = results.get(timeout=0.01)
                except queue.Empty:
                    pass
                else:
                    if kind == "error":
                        raise RuntimeError(f"{name}: {value}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{workers} workers did not finish round {current} in {TIMEOUT}s")
            if current + 1 < rounds:
                round_number.value = current + 1
                SyncState.objects.update(next_sync_at=None)
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        go.set()
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    problem = _check(pairs, rounds)
    if problem:
        raise RuntimeError(problem)
    return pairs * rounds / elapsed


def run(
    *, quick: bool = False, pairs: int | str = PAIRS, rounds: int | str = ROUNDS, sync_ms: float | str = 3
) -> list[dict[str, Any]]:
    """Pairs/s for each worker count, against one worker."""
    engine = engine_name()
    pairs, rounds, sync_seconds = int(pairs), int(rounds), float(sync_ms) / 1000
    if quick:
        pairs, rounds = 200, 1
    if engine != "postgresql":
        return [error_result("workers", engine, RuntimeError("many workers need PostgreSQL"))]
    rates: dict[int, float] = {}
    rows = []
    for workers in WORKER_COUNTS:
        name = f"claim_due/release: {workers} worker process{'es' if workers > 1 else ''}"
        try:
            rates[workers] = measure(workers, pairs, rounds, sync_seconds)
        except (RuntimeError, TimeoutError) as exc:
            rows.append(error_result(name, engine, exc))
            continue
        baseline = rates.get(1)
        rows.append(
            make_result(
                name,
                engine=engine,
                metric="pairs_per_second",
                value=rates[workers],
                baseline=baseline,
                unit="pairs/s",
                ratio=baseline / rates[workers] if baseline else None,
                note=(
                    f"{pairs} pairs × {rounds} rounds, fake sync {sync_seconds * 1000:g} ms, claims of 10; "
                    f"each pair once per round, never held twice (checked); "
                    f"{rates[workers] * sync_seconds / workers:.0%} of the workers' time in the fake sync"
                ),
            )
        )
    return rows


if __name__ == "__main__":
    sys.exit(main(run, __doc__ or ""))
