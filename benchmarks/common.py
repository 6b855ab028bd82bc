"""What every benchmark module shares: Django set-up, raw connections, timing, results, the CLI.

A benchmark module runs in its own process, against the database ``DATABASE_URL`` names (already
migrated by the runner), and writes a JSON list of result dicts: ``name, engine, metric, value,
baseline, ratio, unit, note``. ``ratio`` is always computed from two figures measured in the same
process, moments apart, so a busy machine slows both sides alike.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RESULT_KEYS = ("name", "engine", "metric", "value", "baseline", "ratio", "unit", "note")


def configure_django(db_options: dict[str, Any] | None = None) -> None:
    """Set up Django from the environment, with per-query logging off as in production.

    ``db_options`` are merged into ``DATABASES["default"]["OPTIONS"]`` before any connection exists:
    how the runner tries a setting (e.g. psycopg's ``server_side_binding``) without editing config/.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    from django.conf import settings

    if db_options:
        settings.DATABASES["default"].setdefault("OPTIONS", {}).update(db_options)
    django.setup()
    # With DEBUG on, every cursor is a CursorDebugWrapper that records each query's SQL and time:
    # work production never does, which would be charged to the ORM side of every ratio.
    settings.DEBUG = False


def engine_name() -> str:
    """``postgresql`` or ``sqlite`` for the default database."""
    from django.db import connection

    return "postgresql" if connection.vendor == "postgresql" else connection.vendor


def make_result(
    name: str,
    *,
    engine: str,
    metric: str,
    value: float | None,
    baseline: float | None,
    unit: str,
    note: str = "",
    ratio: float | None = None,
) -> dict[str, Any]:
    """One result row; ``ratio`` defaults to value / baseline."""
    if ratio is None and value is not None and baseline:
        ratio = value / baseline
    return {
        "name": name,
        "engine": engine,
        "metric": metric,
        "value": None if value is None else round(value, 3),
        "baseline": None if baseline is None else round(baseline, 3),
        "ratio": None if ratio is None else round(ratio, 3),
        "unit": unit,
        "note": note,
    }


def error_result(name: str, engine: str, exc: BaseException) -> dict[str, Any]:
    """A row saying this measurement could not be taken, and why."""
    return make_result(
        name,
        engine=engine,
        metric="error",
        value=None,
        baseline=None,
        unit="",
        note=f"error: {type(exc).__name__}: {exc}"[:300],
    )


# --- raw connections -------------------------------------------------------------------------


class RawDB:
    """A DB-API connection used without Django: the baseline the hot paths are measured against.

    PostgreSQL: ``psycopg.connect()`` with psycopg's **own defaults** (server-side binding, statements
    prepared after ``prepare_threshold=5`` runs, its standard adapters) to the same server, database and
    user as Django's connection, in autocommit. That is "raw psycopg" as a hand-written data layer uses
    it, and what the project's speed targets compare against (issue 20). SQLite: Django's wrapper opens
    it (same PRAGMAs, time zone, autocommit), then the benchmarks call the driver directly. Either way
    the baseline pays for the SQL and the driver, not for the ORM.
    """

    def __init__(self) -> None:
        from django.db import connections

        self._wrapper = connections.create_connection("default")
        self.vendor = self._wrapper.vendor
        self.is_postgresql = self.vendor == "postgresql"
        self._own: Any = None
        if self.is_postgresql:
            import psycopg

            params = self._wrapper.get_connection_params()
            for django_only in (
                "cursor_factory",
                "prepare_threshold",
                "context",
                "server_side_binding",
                "pool",
            ):
                params.pop(django_only, None)
            self._own = psycopg.connect(**params, autocommit=True)
            self.connection = self._own
        else:
            self._wrapper.ensure_connection()
            self.connection = self._wrapper.connection

    def sql(self, text: str) -> str:
        """Translate ``%s`` placeholders to the driver's style (once, outside the timed code)."""
        return text if self.is_postgresql else text.replace("%s", "?")

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement and return its first row."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchone()
        finally:
            cursor.close()

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement and return all its rows."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()
        finally:
            cursor.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return its row count."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.rowcount
        finally:
            cursor.close()

    def insert_many(
        self, head: str, row: str, tail: str, rows: Sequence[Sequence[Any]], batch_size: int = 1000
    ) -> None:
        """``head VALUES row, row, … tail`` for every row, the fastest way the driver offers.

        PostgreSQL: multi-row ``VALUES`` of ``batch_size`` rows per statement (one round trip each;
        psycopg's ``executemany`` on Django's client-side-binding cursor makes one per row). SQLite:
        ``executemany`` (no round trips in-process).
        """
        cursor = self.connection.cursor()
        try:
            if not self.is_postgresql:
                cursor.executemany(self.sql(f"{head} VALUES {row} {tail}"), rows)
                return
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                statement = f"{head} VALUES {', '.join([row] * len(chunk))} {tail}"
                cursor.execute(statement, [value for values in chunk for value in values])
        finally:
            cursor.close()

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction, begun the way Django begins it on this engine."""
        if self.is_postgresql:
            with self.connection.transaction():
                yield
            return
        mode = getattr(self._wrapper, "transaction_mode", None)
        self.connection.execute(f"BEGIN {mode}" if mode else "BEGIN")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        if self._own is not None:
            self._own.close()
        self._wrapper.close()


def field_fernet(model: Any, field_name: str) -> Any:
    """The Fernet/MultiFernet object an encrypted model field uses, so the baseline does equal work."""
    field = model._meta.get_field(field_name)
    return field.fernet


# --- timing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Median wall-clock and client-CPU seconds per call of one side."""

    wall: float
    cpu: float


def median_sides(
    sides: Sequence[Callable[[int], Any]],
    *,
    iterations: int,
    warmup: int,
    rounds: int = 10,
) -> list[Timing]:
    """Median wall-clock and process-CPU seconds per call of each callable in ``sides``.

    Each callable gets a running index (to rotate over keys). Every round runs a slice of calls of
    each side, in an order that rotates from round to round, so a burst of load from another process
    lands on every side alike. The CPU figure is this process's CPU time only (not the database
    server's): on a busy machine it is steadier than wall-clock time, and it is the ORM's own cost.
    """
    for i in range(warmup):
        for fn in sides:
            fn(i)
    rounds = max(1, min(rounds, iterations))
    per_round = max(1, iterations // rounds)
    walls: list[list[int]] = [[] for _ in sides]
    cpus: list[list[int]] = [[] for _ in sides]
    clock, cpu_clock = time.perf_counter_ns, time.process_time_ns
    index = warmup
    for round_number in range(rounds):
        gc.collect()
        order = list(range(len(sides)))
        shift = round_number % len(sides)
        order = order[shift:] + order[:shift]
        if round_number % 2:
            order.reverse()
        for side in order:
            fn, side_walls, side_cpus = sides[side], walls[side], cpus[side]
            for i in range(index, index + per_round):
                cpu_start = cpu_clock()
                start = clock()
                fn(i)
                side_walls.append(clock() - start)
                side_cpus.append(cpu_clock() - cpu_start)
        index += per_round
    return [
        Timing(statistics.median(w) / 1e9, statistics.median(c) / 1e9)
        for w, c in zip(walls, cpus, strict=True)
    ]


def median_pair(
    api: Callable[[int], Any],
    raw: Callable[[int], Any],
    *,
    iterations: int,
    warmup: int,
    rounds: int = 10,
) -> tuple[float, float]:
    """Median seconds per call of ``api`` and of ``raw`` (see :func:`median_sides`)."""
    api_t, raw_t = median_sides([api, raw], iterations=iterations, warmup=warmup, rounds=rounds)
    return api_t.wall, raw_t.wall


def swapped_connection(options: dict[str, Any]) -> Any:
    """A second wrapper of the default database with ``options`` merged into its OPTIONS.

    Installed as ``connections["default"]`` around a call (:func:`using_connection`), it lets one
    process time the API under two settings in interleaved rounds.
    """
    import copy

    from django.db import connections
    from django.db.utils import load_backend

    settings_dict = copy.deepcopy(connections["default"].settings_dict)
    settings_dict["OPTIONS"] = {**settings_dict.get("OPTIONS", {}), **options}
    return load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, "default")


def using_connection(wrapper: Any, fn: Callable[[int], Any]) -> Callable[[int], Any]:
    """``fn`` run with ``wrapper`` as this thread's default connection."""
    from django.db import connections

    def call(i: int) -> Any:
        previous = connections["default"]
        connections["default"] = wrapper
        try:
            return fn(i)
        finally:
            connections["default"] = previous

    return call


def timed(fn: Callable[[], Any]) -> tuple[Timing, Any]:
    """Wall-clock and process-CPU seconds one call of ``fn`` took, and what it returned."""
    cpu_start = time.process_time()
    start = time.perf_counter()
    value = fn()
    return Timing(time.perf_counter() - start, time.process_time() - cpu_start), value


def median_timing(timings: Sequence[Timing]) -> Timing:
    """The median wall-clock and the median CPU time of several calls."""
    return Timing(statistics.median(t.wall for t in timings), statistics.median(t.cpu for t in timings))


def count_queries(fn: Callable[[], Any]) -> tuple[int, Any]:
    """How many SQL statements Django ran during ``fn()``, and what it returned."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        value = fn()
    return len(captured.captured_queries), value


def captured_sql(fn: Callable[[], Any]) -> list[str]:
    """The SQL statements Django ran during ``fn()`` (to print, or to check a baseline against)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        fn()
    return [query["sql"] for query in captured.captured_queries]


# --- machine ---------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    """CPU count and model, memory, Python, Django, psycopg and SQLite versions of this machine."""
    import sqlite3

    import django

    cpu_model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    try:
        import psycopg

        psycopg_version = psycopg.__version__
    except ImportError:
        psycopg_version = "not installed"
    return {
        "nproc": str(os.cpu_count() or "?"),
        "cpu": cpu_model or platform.processor() or "unknown",
        "memory": memory or "unknown",
        "python": platform.python_version(),
        "django": django.get_version(),
        "psycopg": psycopg_version,
        "sqlite": sqlite3.sqlite_version,
        "os": f"{platform.system()} {platform.release()}",
    }


# --- command line ----------------------------------------------------------------------------


def main(
    run: Callable[..., list[dict[str, Any]]], description: str, argv: Sequence[str] | None = None
) -> int:
    """The CLI of a benchmark module: ``--engine``, ``--quick``, ``--json-out``; runs ``run``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--engine", choices=["postgresql", "sqlite"], help="check DATABASE_URL is this engine"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--json-out", type=Path, help="write the results here as JSON (else stdout)")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="module-specific setting (repeatable)",
    )
    parser.add_argument(
        "--db-options",
        type=json.loads,
        default=None,
        metavar="JSON",
        help="merged into DATABASES OPTIONS, e.g. '{\"server_side_binding\": true}'",
    )
    args = parser.parse_args(argv)
    configure_django(args.db_options)
    engine = engine_name()
    if args.engine and args.engine != engine:
        parser.error(f"--engine {args.engine} but DATABASE_URL points at {engine}")
    options = dict(option.split("=", 1) for option in args.option)
    results = run(quick=args.quick, **options) if options else run(quick=args.quick)
    for row in results:
        missing = [key for key in RESULT_KEYS if key not in row]
        if missing:
            sys.stderr.write(f"a result row lacks {', '.join(missing)}: {row!r}\n")
            return 2
    payload = json.dumps(results, indent=2)
    if args.json_out:
        args.json_out.write_text(payload, encoding="utf-8")
    else:
        sys.stdout.write(payload + "\n")
    return 0
