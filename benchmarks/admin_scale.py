"""How the conflict changelist scales: its render time at 10,000 and at 1,000,000 conflicts.

    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
        python -m benchmarks.admin_scale [--quick]

PostgreSQL only (the scale the console is built for). The benchmark creates its own scratch database
(``bench_admin_scale_<pid>``, migrated, dropped at the end, whatever ``DATABASE_URL`` names), fills it
with one ``INSERT ... SELECT FROM generate_series`` per size, runs ``ANALYZE``, and renders the
changelist through Django's test client as a logged-in superuser: the default view (unresolved), all
conflicts, and one page filter. The ratio is the median render time at 1M over the one at 10k; a ratio
near 1 means the page does not slow down with the table (no full ``COUNT(*)``, no JSON loaded, indexed
ordering). ``--quick`` uses 100,000 rows instead of a million.

Searches (issue 19) are measured the same way: a Linear identifier, words of a title, a team name from
the directory of names and a fragment of an id, each rendered as the changelist with ``?q=``. On
PostgreSQL they are answered by the pg_trgm GIN index of migration ``sync/0009_search_indexes`` (and
the team index for names); the value column is the median render at 1M, which should stay well under a
second.
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from typing import Any

from benchmarks.common import main, make_result

logger = logging.getLogger(__name__)

SMALL = 10_000
LARGE = 1_000_000
QUICK_LARGE = 100_000
RENDERS = 15
VIEWS = [
    ("unresolved (default)", ""),
    ("all conflicts", "?status=all"),
    ("one page", "?confluence_page_id=page-7"),
    ("search: Linear identifier PAY-4123", "?q=PAY-4123"),
    ("search: title words 'checkout redesign'", "?q=checkout+redesign"),
    ("search: team name 'Payments'", "?q=Payments"),
    ("search: id fragment 'ISS-98765'", "?q=ISS-98765"),
    # The worst case: a team whose conflicts are all resolved, searched in the default (unresolved)
    # view. The planner expects many matches and walks the date index; nothing matches.
    ("search: team with only resolved conflicts", "?q=Legacy+Imports"),
]

#: Title words: 20 x 25 combinations, so a two-word search matches one conflict in 500 (not aligned
#: with the resolved ones, every 10th).
TITLE_FIRST = [
    "Checkout", "Payment", "Search", "Login", "Invoice", "Shipping", "Refund", "Catalog", "Cart", "Profile",
    "Onboarding", "Billing", "Export", "Import", "Reporting", "Inventory", "Pricing", "Coupon", "Review",
    "Wishlist",
]  # fmt: skip
TITLE_SECOND = [
    "redesign", "latency", "migration", "audit", "timeout", "retry", "accessibility", "localisation",
    "caching", "pagination", "validation", "logging", "alerts", "rollout", "cleanup", "metrics", "tests",
    "permissions", "dark mode", "webhooks", "rate limits", "backfill", "search", "filters", "emails",
]  # fmt: skip
#: The directory's team names of team-0 .. team-20.
TEAM_NAMES = [
    "Payments", "Storefront", "Routing", "Warehouse", "Core Banking", "Identity", "Search", "Mobile",
    "Growth", "Platform", "Data", "Billing", "Support Tools", "Checkout", "Catalog", "Logistics", "Fraud",
    "Notifications", "Partners", "Design System", "Legacy Imports",
]  # fmt: skip

#: One statement that writes conflicts n = %(start)s .. %(stop)s; every 10th is resolved; 100 pages,
#: 20 teams; creation times one second apart; ~500 bytes of JSON per side like a real Linear issue.
INSERT_CONFLICTS = """
INSERT INTO sync_conflict (
    id, confluence_page_id, linear_team_id, linear_change, confluence_change, resolved_change,
    item_type, item_id, differing_field_count, is_resolved, resolution_strategy, resolved_at,
    resolved_by_id, created_at, updated_at
)
SELECT
    'conflict-ISS-' || n,
    'page-' || (n %% 100),
    -- Teams cut across the resolved rows (every 10th); team-20 holds only resolved conflicts
    -- (one in 30 above n = 5000: the tests' small tables keep their shape).
    CASE WHEN n %% 30 = 0 AND n > 5000 THEN 'team-20' ELSE 'team-' || ((n / 10) %% 20) END,
    jsonb_build_object(
        'id', 'linear-change-ISS-' || n, 'type', 'updated', 'source', 'linear', 'itemType', 'story',
        'itemId', 'ISS-' || n, 'timestamp', 1767225600000 + n * 1000,
        'itemData', jsonb_build_object('title', (%(first)s::text[])[1 + (n / 7) %% 20] || ' '
                                                || (%(second)s::text[])[1 + (n / 140) %% 25] || ' #' || n,
                                       'identifier', 'PAY-' || n, 'estimate', n %% 8,
                                       'description', repeat('Linear text. ', 25),
                                       'labels', jsonb_build_array('a', 'b'))),
    jsonb_build_object(
        'id', 'confluence-change-ISS-' || n, 'type', 'updated', 'source', 'confluence',
        'itemType', 'story', 'itemId', 'ISS-' || n, 'timestamp', 1767225600000 + n * 1000 + 5,
        'itemData', jsonb_build_object('title', (%(first)s::text[])[1 + (n / 7) %% 20] || ' '
                                                || (%(second)s::text[])[1 + (n / 140) %% 25] || ' #' || n
                                                || ' (edited)',
                                       'identifier', 'PAY-' || n, 'estimate', n %% 5,
                                       'description', repeat('Confluence text. ', 20),
                                       'labels', jsonb_build_array('a', 'b'))),
    CASE WHEN n %% 10 = 0 THEN '{}'::jsonb END,
    'story',
    'ISS-' || n,
    3,
    n %% 10 = 0,
    CASE WHEN n %% 10 = 0 THEN 'linear' ELSE '' END,
    CASE WHEN n %% 10 = 0 THEN now() END,
    NULL,
    now() - make_interval(secs => %(stop)s - n),
    now()
FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS n
"""


def insert_conflicts(cursor: Any, start: int, stop: int) -> None:
    """Insert conflicts number ``start`` to ``stop`` (inclusive) in one statement (PostgreSQL)."""
    cursor.execute(
        INSERT_CONFLICTS, {"start": start, "stop": stop, "first": TITLE_FIRST, "second": TITLE_SECOND}
    )


def search_indexes() -> dict[str, tuple[str, str]]:
    """The trigram indexes of migration sync/0006 (name -> (table, expression))."""
    import importlib

    return importlib.import_module("sync.migrations.0009_search_indexes").INDEXES


def _result(name: str, **fields: Any) -> dict[str, Any]:
    """One result row of this PostgreSQL-only benchmark, in milliseconds."""
    return make_result(name, engine="postgresql", unit="ms", **fields)


def _measure(client: Any, url: str) -> tuple[float, int, bool]:
    """Median milliseconds of RENDERS renders of ``url`` (after one warm-up), its query count, and
    whether any query was an unbounded COUNT over the conflict table."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # The log keeps at most 9,000 entries and the migrations filled it: empty it so the capture counts.
    connection.queries_log.clear()
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}")
    # Read now: captured_queries is a view on the log, which the next request empties.
    queries = list(captured.captured_queries)
    # A COUNT bounded by a LIMIT subquery reads at most the paginator's bound; an unbounded one would
    # read the whole (filtered) table.
    counted = any(
        "COUNT(" in query["sql"].upper() and "sync_conflict" in query["sql"] and " LIMIT " not in query["sql"]
        for query in queries
    )
    times = []
    for _ in range(RENDERS):
        start = time.perf_counter()
        response = client.get(url)
        response.content  # noqa: B018 - the body is rendered lazily; force it inside the timing
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), len(queries), counted


def _scratch_database() -> tuple[Any, Any]:
    """Create and migrate this benchmark's own database; returns what teardown needs."""
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_databases

    # The test client's host; not setup_test_environment(), whose template instrumentation would copy
    # every template context and be charged to the page.
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    connection.settings_dict.setdefault("TEST", {})
    connection.settings_dict["TEST"]["NAME"] = f"bench_admin_scale_{os.getpid()}"
    old_config = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    return old_config, connection.settings_dict["NAME"]


def run(*, quick: bool = False) -> list[dict]:
    """Render the conflict changelist at 10k and at 1M (100k with ``quick``) conflicts; one row per view."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return [
            make_result(
                "admin changelist at scale",
                engine=connection.vendor,
                metric="skipped",
                value=None,
                baseline=None,
                unit="ms",
                note="PostgreSQL only: set DATABASE_URL to a PostgreSQL server.",
            )
        ]
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import teardown_databases
    from django.urls import reverse

    from sync.models import Conflict, LinearTeam

    large = QUICK_LARGE if quick else LARGE
    old_config, database = _scratch_database()
    try:
        user = get_user_model().objects.create_superuser(username="bench", password=None)
        client = Client()
        client.force_login(user)
        changelist = reverse("admin:sync_conflict_changelist")
        LinearTeam.objects.upsert_many(
            "bench-org",
            [{"id": f"team-{n}", "key": f"T{n}", "name": name} for n, name in enumerate(TEAM_NAMES)],
        )
        trigram = {
            name: (table, expression)
            for name, (table, expression) in search_indexes().items()
            if table == Conflict._meta.db_table
        }

        def fill(start: int, stop: int) -> float:
            """Insert, then VACUUM ANALYZE: statistics and visibility map as autovacuum would leave them."""
            began = time.perf_counter()
            # A bulk load builds the secondary indexes once afterwards rather than row by row.
            with connection.schema_editor() as editor:
                for index in Conflict._meta.indexes:
                    editor.remove_index(Conflict, index)
            with connection.cursor() as cursor:
                for name in trigram:
                    cursor.execute(f"DROP INDEX {name}")
                insert_conflicts(cursor, start, stop)
            with connection.schema_editor() as editor:
                for index in Conflict._meta.indexes:
                    editor.add_index(Conflict, index)
            with connection.cursor() as cursor:
                for name, (table, expression) in trigram.items():
                    cursor.execute(f"CREATE INDEX {name} ON {table} USING gin (({expression}) gin_trgm_ops)")
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE sync_conflict")
            return time.perf_counter() - began

        fill(1, SMALL)
        small = {label: _measure(client, changelist + query) for label, query in VIEWS}
        fill_seconds = fill(SMALL + 1, large)
        big = {label: _measure(client, changelist + query) for label, query in VIEWS}
    finally:
        connection.close()
        teardown_databases(old_config, verbosity=0)
    logger.info("admin_scale: %s dropped", database)

    rows = []
    for label, _ in VIEWS:
        small_ms, small_queries, small_counted = small[label]
        big_ms, big_queries, big_counted = big[label]
        rows.append(
            _result(
                f"admin changelist: {label}",
                metric=f"median render at {large:,} conflicts (baseline {SMALL:,})",
                value=big_ms,
                baseline=small_ms,
                note=(
                    f"queries {small_queries} at {SMALL:,}, {big_queries} at {large:,}; "
                    f"unbounded COUNT on sync_conflict: {'yes' if small_counted or big_counted else 'none'}; "
                    f"{large - SMALL:,} rows inserted in {fill_seconds:.0f}s"
                ),
            )
        )
    return rows


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
