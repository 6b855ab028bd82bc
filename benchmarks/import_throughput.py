"""How fast ``import_legacy`` moves a generated old deployment of 200,000 rows into PostgreSQL.

    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
        python -m benchmarks.import_throughput [--quick]

PostgreSQL only. The benchmark creates two scratch databases on the server ``DATABASE_URL`` names (the
default is the local server): the old deployment (``bench_import_src_<pid>``, filled by
:func:`legacy.old_deployment.generate_deployment` with COPY) and the target (``bench_import_target_<pid>``,
migrated); both are dropped at the end. It measures:

* **throughput**: old rows read per second by one ``import_legacy`` run (all tables, one transaction),
  against the baseline of a raw binary ``COPY`` of the same old tables from the source into copies of
  them in the target (no conversion, no checks, no encryption, no import map): the floor of any import;
* **re-run**: the second run, which finds every row in the import map and writes nothing;
* **memory**: peak Python heap (``tracemalloc``) of a dry run at full size against one at a tenth of
  the size; a ratio near 1 means memory does not grow with the tables (server-side cursors, batches).

``--quick`` uses 20,000 rows (10,000 for the memory baseline).
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
import tracemalloc
from typing import Any

from benchmarks.common import main, make_result

logger = logging.getLogger(__name__)

ROWS = 200_000
QUICK_ROWS = 20_000
BATCH_SIZE = 5000
#: Batch size of the memory runs: small enough that every large table fills its batches at both sizes.
MEMORY_BATCH_SIZE = 500
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"
TARGET_ROWS_PER_SECOND = 20_000


def _use_postgresql() -> None:
    """Point ``DATABASE_URL`` at the local server unless it names a PostgreSQL one (before Django reads it).

    The measurement is defined on PostgreSQL.
    """
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        os.environ["DATABASE_URL"] = DEFAULT_PG_URL


def _server_url(database: str) -> str:
    from django.db import connection

    cfg = connection.settings_dict
    user = cfg.get("USER") or "postgres"
    password = f":{cfg['PASSWORD']}" if cfg.get("PASSWORD") else ""
    host = cfg.get("HOST") or "127.0.0.1"
    port = cfg.get("PORT") or 5432
    return f"postgresql://{user}{password}@{host}:{port}/{database}"


def _result(name: str, **fields: Any) -> dict[str, Any]:
    """One result row of this PostgreSQL-only benchmark."""
    return make_result(name, engine="postgresql", **fields)


def _raw_copy_seconds(source_url: str, target_url: str, tables: list[str]) -> float:
    """Seconds to COPY the old tables byte for byte into same-shaped tables of the target."""
    import psycopg

    from legacy.old_deployment import SECOND_SHAPE_FILES, apply_old_migrations

    with psycopg.connect(target_url) as target:
        target.execute("CREATE SCHEMA rawcopy")
        target.execute("SET search_path TO rawcopy")
        apply_old_migrations(target, SECOND_SHAPE_FILES)
        target.commit()
        with psycopg.connect(source_url) as source:
            started = time.perf_counter()
            for table in tables:
                with (
                    source.cursor().copy(f"COPY {table} TO STDOUT (FORMAT BINARY)") as out,
                    target.cursor().copy(f"COPY rawcopy.{table} FROM STDIN (FORMAT BINARY)") as into,
                ):
                    for block in out:
                        into.write(block)
            target.commit()
            elapsed = time.perf_counter() - started
        target.execute("DROP SCHEMA rawcopy CASCADE")
        target.commit()
    return elapsed


def _generate(admin_url: str, name: str, rows: int) -> tuple[str, dict[str, int], float]:
    import psycopg

    from legacy.old_deployment import generate_deployment

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        counts = generate_deployment(conn, rows=rows)
        conn.commit()
        conn.execute("ANALYZE")
    return url, counts, time.perf_counter() - started


def _drop(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _clear_target() -> None:
    """Empty every table the import writes, so that each measured run starts from the same state."""
    from django.db import connection

    from accounts.models import Organization
    from legacy.models import ImportedRow, ImportSource
    from legacy.services import TARGET_MODELS
    from sync.models import ConflictResolution

    tables = [
        m._meta.db_table
        for m in [*TARGET_MODELS, ImportedRow, ImportSource, ConflictResolution, Organization]
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def _peak_memory(source_url: str) -> float:
    """Peak traced Python memory (MiB) of a dry run of the import."""
    from legacy.services import import_legacy

    tracemalloc.start()
    try:
        import_legacy(source_url=source_url, dry_run=True, batch_size=MEMORY_BATCH_SIZE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def run(*, quick: bool = False) -> list[dict]:
    """Generate, import, re-import and dry-run an old deployment; one result row per measurement."""
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    from legacy.services import import_legacy

    rows = QUICK_ROWS if quick else ROWS
    # Every large table must fill its memory-run batches at the small size too.
    small_rows = rows // 2 if quick else rows // 10
    admin_url = _server_url("postgres")
    source_name = f"bench_import_src_{os.getpid()}"
    small_name = f"bench_import_small_{os.getpid()}"
    connection.settings_dict.setdefault("TEST", {})
    connection.settings_dict["TEST"]["NAME"] = f"bench_import_target_{os.getpid()}"
    old_config = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    try:
        source_url, counts, generate_seconds = _generate(admin_url, source_name, rows)
        small_url, _, _ = _generate(admin_url, small_name, small_rows)
        target_url = _server_url(connection.settings_dict["NAME"])
        raw_seconds = _raw_copy_seconds(source_url, target_url, list(counts))

        load_before = os.getloadavg()[0]
        rusage_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        cpu_started = time.process_time()
        report = import_legacy(source_url=source_url, batch_size=BATCH_SIZE)
        import_seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        rusage_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        imported_rows = report.total("read")

        started = time.perf_counter()
        rerun = import_legacy(source_url=source_url, batch_size=BATCH_SIZE)
        rerun_seconds = time.perf_counter() - started

        _clear_target()
        peak_big = _peak_memory(source_url)
        _clear_target()
        peak_small = _peak_memory(small_url)
    finally:
        connection.close()
        teardown_databases(old_config, verbosity=0)
        _drop(admin_url, source_name)
        _drop(admin_url, small_name)

    total = sum(counts.values())
    rate = imported_rows / import_seconds
    raw_rate = total / raw_seconds
    return [
        _result(
            "legacy import throughput",
            metric=f"old rows/s into PostgreSQL ({total:,} rows; baseline: raw binary COPY of the tables)",
            value=rate,
            baseline=raw_rate,
            unit="rows/s",
            note=(
                f"{'meets' if rate >= TARGET_ROWS_PER_SECOND else 'BELOW'} the "
                f"{TARGET_ROWS_PER_SECOND:,} rows/s target; import {import_seconds:.1f}s wall, "
                f"{cpu_seconds:.1f}s CPU in this process, "
                f"batch {BATCH_SIZE}; raw COPY {raw_seconds:.2f}s; generating the old deployment took "
                f"{generate_seconds:.1f}s; max RSS {rusage_before // 1024}→{rusage_after // 1024} MiB; "
                f"load average {load_before:.1f} on {os.cpu_count()} CPUs (client and server share them)"
            ),
        ),
        _result(
            "legacy import re-run",
            metric="old rows/s checked by a second run (imports nothing; baseline first run)",
            value=rerun.total("read") / rerun_seconds,
            baseline=rate,
            unit="rows/s",
            note=f"{rerun.total('already'):,} rows already imported, {rerun.total('imported')} imported",
        ),
        _result(
            "legacy import memory",
            metric=f"peak traced Python memory, dry run, batch {MEMORY_BATCH_SIZE}: {total:,} rows "
            f"(baseline {small_rows:,})",
            value=peak_big,
            baseline=peak_small,
            unit="MiB",
            note="ratio near 1: memory does not grow with the tables (server-side cursors, batches)",
        ),
    ]


if __name__ == "__main__":
    _use_postgresql()
    sys.exit(main(run, __doc__))
