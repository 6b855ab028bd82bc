"""Agent worker loops run in child processes (multiprocessing 'spawn') by the many-worker soak tests
and by ``benchmarks/workers.py``.

Like ``tests.reliability.workers``: a spawned child imports nothing but Django and this file, points
its connection at the parent's (test) database and reports on a queue. Each worker is a separate
process with its own PostgreSQL connection, as agent workers on several machines would be.

The sync log (:data:`SYNC_LOG`) gets one row per sync a worker starts (``started_at``) and finishes
(``ended_at``), with the database's ``clock_timestamp()``, so the parent can prove that no pair was
ever held by two workers at once.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

#: One row per sync started by a worker (PostgreSQL only; created by :func:`create_tables`).
SYNC_LOG = "soak_sync_log"
#: One row per applied resolution; its primary key makes a second application fail loudly.
APPLIED = "soak_applied_resolution"
#: ``next_sync_at`` a released pair gets in a soak round: the parent makes pairs due again itself.
FAR_FUTURE = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)


def create_tables(cursor: Any) -> None:
    """Create the soak tables (on the parent's connection)."""
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {SYNC_LOG} (id bigserial PRIMARY KEY, pair_id bigint NOT NULL, "
        "worker text NOT NULL, round integer NOT NULL, lease_expires_at timestamptz NOT NULL, "
        "started_at timestamptz NOT NULL, ended_at timestamptz)"
    )
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {APPLIED} (conflict_id varchar(255) PRIMARY KEY, worker text NOT NULL)"
    )


def drop_tables(cursor: Any) -> None:
    cursor.execute(f"DROP TABLE IF EXISTS {SYNC_LOG}")
    cursor.execute(f"DROP TABLE IF EXISTS {APPLIED}")


def _setup(db_name: str, environment: dict[str, str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.update(environment or {})
    import django

    django.setup()
    from django.db import connections

    # The child reads the same settings as the parent; only the test database's name differs.
    connections["default"].settings_dict["NAME"] = db_name


def sync_worker(
    db_name: str,
    name: str,
    round_number: Any,
    go: Any,
    stop: Any,
    results: Any,
    *,
    lease_seconds: float = 30.0,
    batch: int = 10,
    sync_seconds: float = 0.003,
    hang: bool = False,
) -> None:
    """Claim due pairs, "sync" each (log start, sleep, log end), release with success, until ``stop``.

    Released pairs are scheduled at :data:`FAR_FUTURE`; the parent makes them due for the next round.
    ``hang``: after claiming its first batch and starting the first sync, report ``("hung", name,
    [claimed pks])`` and sleep (the parent kills the process, -9, in the middle of its leases).
    Reports ``("ready", name, 0)`` once set up, ``("done", name, syncs)`` at the end, and
    ``("error", name, message)`` for any failure.
    """
    _setup(db_name)
    from django.db import connection

    from sync.models import SyncState

    lease = dt.timedelta(seconds=lease_seconds)
    syncs = 0
    try:
        results.put(("ready", name, 0))
        go.wait(120)
        while not stop.is_set():
            claimed = SyncState.objects.claim_due(worker=name, limit=batch, lease=lease)
            if not claimed:
                time.sleep(0.005)
                continue
            for state in claimed:
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"INSERT INTO {SYNC_LOG} (pair_id, worker, round, lease_expires_at, started_at) "
                        "VALUES (%s, %s, %s, %s, clock_timestamp()) RETURNING id",
                        [state.pk, name, round_number.value, state.lease_expires_at],
                    )
                    (log_id,) = cursor.fetchone()
                if hang:
                    results.put(("hung", name, [s.pk for s in claimed]))
                    time.sleep(3600)
                time.sleep(sync_seconds)
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"UPDATE {SYNC_LOG} SET ended_at = clock_timestamp() WHERE id = %s", [log_id]
                    )
                state.release(worker=name, success=True, next_sync_at=FAR_FUTURE)
                syncs += 1
    except BaseException as exc:  # reported to the parent, which fails the test with it
        results.put(("error", name, f"{type(exc).__name__}: {exc}"))
    finally:
        connection.close()
        results.put(("done", name, syncs))


def fails_first_time(conflict_id: str) -> bool:
    """The resolutions whose first application fails in the outbox soak (every seventh)."""
    return int(conflict_id.rsplit("-", 1)[1]) % 7 == 0


def apply_worker(
    db_name: str,
    name: str,
    go: Any,
    stop: Any,
    results: Any,
    *,
    lease_seconds: float = 2.0,
    batch: int = 20,
    apply_seconds: float = 0.0,
) -> None:
    """Claim resolutions and apply each exactly once, until ``stop``.

    "Applying" inserts the conflict id into :data:`APPLIED` (primary key) in the same transaction as
    ``mark_applied``: a second application of one resolution raises ``IntegrityError`` and is
    reported. The first attempt of every resolution :func:`fails_first_time` picks fails instead
    (``mark_apply_failed``) and is retried after the back-off (1 s here).
    """
    _setup(db_name, {"APPLY_RETRY_BASE_SECONDS": "1", "APPLY_RETRY_MAX_SECONDS": "2"})
    from django.db import connection, transaction

    from sync.models import Conflict, LeaseLost

    lease = dt.timedelta(seconds=lease_seconds)
    applied = 0
    try:
        go.wait(120)
        while not stop.is_set():
            claimed = Conflict.objects.claim_resolutions(worker=name, limit=batch, lease=lease)
            if not claimed:
                time.sleep(0.01)
                continue
            for conflict in claimed:
                if apply_seconds:
                    time.sleep(apply_seconds)
                try:
                    if conflict.apply_attempts == 0 and fails_first_time(conflict.pk):
                        conflict.mark_apply_failed(worker=name, error="Linear answered 503")
                        continue
                    with transaction.atomic():
                        conflict.mark_applied(worker=name)
                        with connection.cursor() as cursor:
                            cursor.execute(
                                f"INSERT INTO {APPLIED} (conflict_id, worker) VALUES (%s, %s)",
                                [conflict.pk, name],
                            )
                    applied += 1
                except LeaseLost:
                    continue  # another worker took it over after this lease ran out: not ours now
    except BaseException as exc:  # reported to the parent, which fails the test with it
        results.put(("error", name, f"{type(exc).__name__}: {exc}"))
    finally:
        connection.close()
        results.put(("done", name, applied))
