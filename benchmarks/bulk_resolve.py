"""Bulk resolution of "select all" in batches: lock time per batch and throughput at 10k and 1M conflicts.

    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
        python -m benchmarks.bulk_resolve [--quick] [--json-out FILE]

PostgreSQL only. Own scratch database (like benchmarks/admin_scale.py), filled with
``benchmarks.admin_scale.insert_conflicts`` (every 10th conflict already resolved).

At 10,000 conflicts, the baseline is the old path: ``resolve_conflicts`` over every unresolved id in one
transaction, which holds every row lock until the end. The same selection is then resolved with
``resolve_next_batch`` (``DEFAULT_BULK_BATCH_SIZE`` per transaction, the admin's setting) on the same
rows made unresolved again, while a second thread plays the agent: it updates one conflict of the
selection every 20 ms and records how long each update waited for its row lock. The ratio is the
agent's longest wait with batches over its longest wait with one transaction.

At 1,000,000 conflicts (``--quick``: 100,000) the batches run for ``LARGE_SECONDS`` seconds (the whole
selection would take far longer than a benchmark should); the figures are the per-batch time and the
agent's longest wait there, and the extrapolated time for the whole selection is in the note.
"""

from __future__ import annotations

import logging
import statistics
import sys
import threading
import time
from typing import Any

from benchmarks.admin_scale import _scratch_database, insert_conflicts
from benchmarks.common import main, make_result

logger = logging.getLogger(__name__)

SMALL = 10_000
LARGE = 1_000_000
QUICK_LARGE = 100_000
#: ``sync.services.DEFAULT_BULK_BATCH_SIZE`` (checked in ``run``: Django is not set up at import).
BATCH_SIZE = 50
LARGE_SECONDS = 60.0
AGENT_PERIOD = 0.02


class Agent(threading.Thread):
    """Updates conflicts of the selection one at a time (as ``Conflict.objects.store`` would) and
    records how long each update took (mostly: waiting for the row lock a batch holds)."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.ids = ids
        self.waits: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from django.db import connection, transaction

        try:
            n = 0
            while not self.stop.is_set():
                conflict_id = self.ids[(n * 7919) % len(self.ids)]
                n += 1
                began = time.perf_counter()
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute("UPDATE sync_conflict SET updated_at = now() WHERE id = %s", [conflict_id])
                self.waits.append(time.perf_counter() - began)
                time.sleep(AGENT_PERIOD)
        finally:
            connection.close()


def _batches(user: Any, *, seconds: float | None) -> tuple[list[float], int, float]:
    """Resolve unresolved conflicts batch by batch (all, or for ``seconds``); per-batch times, rows."""
    from sync.models import Conflict
    from sync.services import resolve_next_batch

    times: list[float] = []
    resolved = 0
    after = None
    began = time.perf_counter()
    while True:
        start = time.perf_counter()
        batch = resolve_next_batch(
            Conflict.objects.all(), "linear", by=user, after=after, batch_size=BATCH_SIZE
        )
        times.append(time.perf_counter() - start)
        resolved += len(batch.resolved)
        after = batch.last_id
        if batch.finished or (seconds is not None and time.perf_counter() - began >= seconds):
            return times, resolved, time.perf_counter() - began


def _with_agent(ids: list[str], work: Any) -> tuple[Any, list[float]]:
    agent = Agent(ids)
    agent.start()
    try:
        result = work()
    finally:
        agent.stop.set()
        agent.join(timeout=30)
    return result, agent.waits


def run(*, quick: bool = False) -> list[dict]:
    from django.db import connection

    if connection.vendor != "postgresql":
        return [
            make_result(
                "bulk resolve in batches",
                engine=connection.vendor,
                metric="skipped",
                value=None,
                baseline=None,
                unit="s",
                note="PostgreSQL only: set DATABASE_URL to a PostgreSQL server.",
            )
        ]
    from django.contrib.auth import get_user_model
    from django.test.utils import teardown_databases

    from sync.models import Conflict, SyncState
    from sync.services import DEFAULT_BULK_BATCH_SIZE, resolve_conflicts

    if DEFAULT_BULK_BATCH_SIZE != BATCH_SIZE:
        raise RuntimeError("benchmarks.bulk_resolve.BATCH_SIZE differs from the admin's batch size.")

    large = QUICK_LARGE if quick else LARGE
    old_config, database = _scratch_database()
    try:
        user = get_user_model().objects.create_superuser(username="bench", password=None)
        with connection.cursor() as cursor:
            insert_conflicts(cursor, 1, SMALL)
            cursor.execute("ANALYZE sync_conflict")
        ids = list(Conflict.objects.filter(is_resolved=False).order_by("pk").values_list("pk", flat=True))

        # Baseline: one transaction over the whole selection.
        def one_transaction() -> float:
            began = time.perf_counter()
            resolve_conflicts(ids, "linear", by=user)
            return time.perf_counter() - began

        one_seconds, one_waits = _with_agent(ids, one_transaction)
        # The same rows unresolved again (the log is append-only and stays), then in batches.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE sync_conflict SET is_resolved = false, resolution_strategy = '', resolved_at = NULL, "
                "resolved_change = NULL, resolved_by_id = NULL WHERE id = ANY(%s)",
                [ids],
            )
        SyncState.objects.all().delete()
        (small_times, small_rows, small_total), small_waits = _with_agent(
            ids, lambda: _batches(user, seconds=None)
        )

        with connection.cursor() as cursor:
            insert_conflicts(cursor, SMALL + 1, large)
            cursor.execute("VACUUM ANALYZE sync_conflict")
        big_ids = list(
            Conflict.objects.filter(is_resolved=False).order_by("pk").values_list("pk", flat=True)[:100_000]
        )
        (big_times, big_rows, big_total), big_waits = _with_agent(
            big_ids, lambda: _batches(user, seconds=LARGE_SECONDS)
        )
        unresolved_large = int(large * 0.9)
    finally:
        connection.close()
        teardown_databases(old_config, verbosity=0)
    logger.info("bulk_resolve: %s dropped", database)

    rows_per_second = big_rows / big_total if big_total else 0.0
    return [
        make_result(
            f"bulk resolve {len(ids):,} conflicts: agent's longest lock wait",
            engine="postgresql",
            metric=f"longest wait of an agent write, batches of {BATCH_SIZE} (baseline: one transaction)",
            value=max(small_waits, default=0.0),
            baseline=max(one_waits, default=0.0),
            unit="s",
            note=(
                f"one transaction held every lock {one_seconds:.1f}s; batches: {len(small_times)} of "
                f"{BATCH_SIZE}, longest {max(small_times):.2f}s, "
                f"median {statistics.median(small_times):.2f}s, "
                f"{small_rows:,} resolved in {small_total:.1f}s; agent writes measured: "
                f"{len(small_waits)} (batches) / {len(one_waits)} (one transaction)"
            ),
        ),
        make_result(
            f"bulk resolve at {large:,} conflicts: one batch",
            engine="postgresql",
            metric=f"longest batch of {BATCH_SIZE} at {large:,} rows (baseline: at {SMALL:,})",
            value=max(big_times),
            baseline=max(small_times),
            unit="s",
            note=(
                f"{len(big_times)} batches in {big_total:.0f}s, "
                f"{big_rows:,} resolved ({rows_per_second:.0f}/s); "
                f"agent's longest wait {max(big_waits, default=0.0):.2f}s over {len(big_waits)} writes; "
                f"the whole selection ({unresolved_large:,} unresolved) extrapolates to "
                f"{unresolved_large / rows_per_second / 60:.0f} min of progress-page steps"
                if rows_per_second
                else "no batch finished"
            ),
        ),
    ]


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
