"""16 threads running the hot-path mix under one connection set-up: operations per second.

    DATABASE_URL=... [DB_POOL=true | CONN_MAX_AGE=60] python -m benchmarks.connections --engine postgresql

The connection set-up comes from the environment, read by config/settings.py as in production; the
runner starts one process per set-up (none, ``CONN_MAX_AGE=60``, ``DB_POOL``) and reports each one's
operations/s against a new connection per operation. Each operation is bracketed by
``close_old_connections()``, which is what Django's ``request_started`` and ``request_finished``
signals run around every request: with ``CONN_MAX_AGE=0`` it closes the connection, with
``CONN_MAX_AGE`` it keeps it (after a health check), with the pool it returns it to the pool.
"""

from __future__ import annotations

import itertools
import logging
import statistics
import sys
import threading
import time
from typing import Any

from benchmarks.common import engine_name, error_result, main, make_result
from benchmarks.hot_paths import OPERATIONS, QUICK, TINY, api_calls, seed

logger = logging.getLogger(__name__)

#: How often each hot path appears in the mix: reads dominate, as in a sync run.
MIX_WEIGHTS = {
    "LinearToken.objects.store": 1,
    "LinearToken.objects.for_organization+decrypt": 3,
    "SyncState.objects.last_synced_at": 3,
    "SyncState.objects.mark_synced": 1,
    "Conflict.objects.unresolved()[:50]": 1,
    "SyncHistory.objects.record": 1,
    "SyncHistory.objects.for_pair()[:50]": 2,
}


def describe_setup() -> str:
    """The connection set-up this process runs with, from the settings."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    pool = database.get("OPTIONS", {}).get("pool")
    if pool:
        sizes = pool if isinstance(pool, dict) else {}
        return f"DB_POOL (min {sizes.get('min_size', '?')}, max {sizes.get('max_size', '?')})"
    return f"CONN_MAX_AGE={database.get('CONN_MAX_AGE', 0)}"


def run(
    *,
    quick: bool = False,
    label: str = "",
    threads: int | str = 16,
    operations: int | str | None = None,
    scale: str | None = None,
    prefix: str = "bench",
) -> list[dict[str, Any]]:
    """Seed, run ``operations`` operations from ``threads`` threads; one result row (operations/s)."""
    from django.db import close_old_connections, connection

    engine = engine_name()
    threads = int(threads)
    total = int(operations) if operations is not None else (320 if quick else 4000)
    keys = seed(TINY if scale == "tiny" else QUICK, prefix)
    calls = api_calls(keys)
    mix = [calls[name] for name in OPERATIONS for _ in range(MIX_WEIGHTS[name])]
    connection.close()
    counter = itertools.count()
    latencies: list[list[float]] = [[] for _ in range(threads)]
    failures: list[BaseException] = []

    def worker(slot: int) -> None:
        clock = time.perf_counter
        try:
            while (i := next(counter)) < total:
                start = clock()
                close_old_connections()
                mix[i % len(mix)](i)
                close_old_connections()
                latencies[slot].append(clock() - start)
        except Exception as exc:
            logger.exception("worker %s failed", slot)
            failures.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=worker, args=(slot,)) for slot in range(threads)]
    started = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - started
    setup = label or describe_setup()
    name = f"connections ({threads} threads): {setup}"
    if failures:
        return [error_result(name, engine, failures[0])]
    every = sorted(itertools.chain.from_iterable(latencies))
    p50 = statistics.median(every) * 1000
    p95 = every[int(len(every) * 0.95) - 1] * 1000
    return [
        make_result(
            name,
            engine=engine,
            metric="operations_per_s",
            value=total / elapsed,
            baseline=None,
            unit="operations/s",
            note=f"{total} operations; latency p50 {p50:.1f} ms, p95 {p95:.1f} ms",
        )
    ]


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0]))
