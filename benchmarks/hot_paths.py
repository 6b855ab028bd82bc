"""The agent's hot paths through the public API against the same SQL run through the driver.

    DATABASE_URL=... python -m benchmarks.hot_paths --engine postgresql|sqlite [--quick] [--json-out F]

The database must be migrated (``benchmarks.run`` gives this process a fresh copy). The module seeds
realistic row counts, then times each operation through the API and through a raw DB-API connection
opened with Django's own connection settings (:class:`benchmarks.common.RawDB`), alternating rounds,
and reports the median time per operation and the ratio API ÷ raw.

The raw side does the work the caller needs done, in the fewest statements a careful hand-written
implementation would use: the same Fernet encryption/decryption (the field's own ``MultiFernet``), the
same JSON parsing of JSON columns, the same timestamp format on SQLite. So a ratio above 1 is the cost
of the ORM *and* of any extra round trip the API makes; the note gives both statement counts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.common import (
    RawDB,
    count_queries,
    engine_name,
    error_result,
    field_fernet,
    main,
    make_result,
    median_sides,
    swapped_connection,
    using_connection,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scale:
    """Rows seeded before timing, and how many timed calls per side."""

    organizations: int
    sync_states: int
    conflicts: int
    conflict_pairs: int
    history: int
    history_pairs: int
    iterations: int
    warmup: int


FULL = Scale(
    organizations=1000,
    sync_states=2000,
    conflicts=10_000,
    conflict_pairs=200,
    history=30_000,
    history_pairs=300,
    iterations=500,
    warmup=30,
)
QUICK = Scale(
    organizations=100,
    sync_states=200,
    conflicts=1000,
    conflict_pairs=20,
    history=2000,
    history_pairs=20,
    iterations=100,
    warmup=10,
)
TINY = Scale(
    organizations=5,
    sync_states=5,
    conflicts=60,
    conflict_pairs=2,
    history=60,
    history_pairs=2,
    iterations=4,
    warmup=1,
)
SCALES = {"full": FULL, "quick": QUICK, "tiny": TINY}

#: The operations, in report order (the smoke test checks every one has a ratio).
OPERATIONS = (
    "LinearToken.objects.store",
    "LinearToken.objects.for_organization+decrypt",
    "SyncState.objects.last_synced_at",
    "SyncState.objects.mark_synced",
    "Conflict.objects.unresolved()[:50]",
    "SyncHistory.objects.record",
    "SyncHistory.objects.for_pair()[:50]",
)


@dataclass
class Operation:
    """One hot path: the API call, the raw equivalent and how many statements the raw side runs."""

    name: str
    api: Callable[[int], Any]
    raw: Callable[[int], Any]
    raw_statements: int


def _item_data(n: int) -> dict[str, Any]:
    """An ``itemData`` object the size the agent stores (a Linear issue's synced fields)."""
    return {
        "title": f"Story {n}: make the importer resumable",
        "description": "As an operator I want to resume an import after a failure. " * 4,
        "state": "In Progress" if n % 2 else "Todo",
        "priority": n % 5,
        "estimate": n % 8,
        "labels": ["backend", "import", f"team-{n % 7}"],
        "assignee": f"user-{n % 40}",
        "updatedAt": "2026-11-20T10:00:00.000Z",
    }


def _change(item_id: str, source: str, n: int) -> dict[str, Any]:
    data = _item_data(n)
    if source == "confluence":
        data = {**data, "title": data["title"] + " (edited)", "estimate": n % 8 + 1}
    return {
        "id": f"{source}-{item_id}",
        "itemId": item_id,
        "itemType": "story",
        "source": source,
        "changeType": "update",
        "timestamp": 1_763_600_000_000 + n,
        "itemData": data,
    }


def seed(scale: Scale, prefix: str) -> dict[str, list[Any]]:
    """Insert the rows the operations read and write (not timed); return their keys."""
    from django.db import connection
    from django.utils import timezone

    from accounts.models import LinearToken, Organization
    from sync.models import Conflict, SyncHistory, SyncState

    now = timezone.now()
    organizations = Organization.objects.bulk_create(
        [Organization(linear_id=f"{prefix}-org-{i}", name=f"Org {i}") for i in range(scale.organizations)]
    )
    if organizations[0].pk is None:  # engines that return no ids from bulk inserts
        organizations = list(Organization.objects.filter(linear_id__startswith=f"{prefix}-org-"))
    LinearToken.objects.bulk_create(
        [
            LinearToken(
                organization=org,
                access_token=f"lin_oauth_access_{i:040d}",
                refresh_token=f"lin_oauth_refresh_{i:040d}",
                app_user_id=f"app-user-{i}",
                expires_at=now + dt.timedelta(hours=1),
                scope="read,write",
            )
            for i, org in enumerate(organizations)
        ],
        batch_size=500,
    )
    states = [(f"{prefix}-page-{i}", f"team-{i % 50}") for i in range(scale.sync_states)]
    SyncState.objects.bulk_create(
        [
            SyncState(
                confluence_page_id=page, linear_team_id=team, last_synced_at=now - dt.timedelta(minutes=i)
            )
            for i, (page, team) in enumerate(states)
        ],
        batch_size=500,
    )
    conflicts = []
    for i in range(scale.conflicts):
        item_id = f"{prefix}-issue-{i}"
        resolved = i % 4 == 0
        created = now - dt.timedelta(seconds=scale.conflicts - i)
        linear, confluence = _change(item_id, "linear", i), _change(item_id, "confluence", i)
        conflicts.append(
            Conflict(
                id=f"conflict-{item_id}",
                confluence_page_id=f"{prefix}-page-{i % scale.conflict_pairs}",
                linear_team_id=f"team-{i % scale.conflict_pairs % 50}",
                linear_change=linear,
                confluence_change=confluence,
                item_type="story",
                item_id=item_id,
                differing_field_count=2,
                is_resolved=resolved,
                resolution_strategy="linear" if resolved else "",
                resolved_at=created if resolved else None,
                resolved_change={**linear, "id": f"resolved-conflict-{item_id}"} if resolved else None,
                created_at=created,
                updated_at=created,
            )
        )
    Conflict.objects.bulk_create(conflicts, batch_size=500)
    history_pairs = [(f"{prefix}-page-{i}", f"team-{i % 50}") for i in range(scale.history_pairs)]
    SyncHistory.objects.bulk_create(
        [
            SyncHistory(
                confluence_page_id=history_pairs[i % len(history_pairs)][0],
                linear_team_id=history_pairs[i % len(history_pairs)][1],
                success=i % 10 != 0,
                error="" if i % 10 else "Linear API returned 502",
                created_issues=i % 5,
                updated_issues=i % 7,
                synced_at=now - dt.timedelta(seconds=scale.history - i),
            )
            for i in range(scale.history)
        ],
        batch_size=1000,
    )
    if connection.vendor == "postgresql":
        # Plans must reflect the seeded row counts, as they would after autovacuum in production.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return {
        "organizations": [org.linear_id for org in organizations],
        "states": states,
        "history_pairs": history_pairs,
    }


def api_calls(keys: dict[str, list[Any]]) -> dict[str, Callable[[int], Any]]:
    """The seven hot paths through the public API, by operation name; each takes a running index."""
    from django.utils import timezone

    from accounts.models import LinearToken
    from sync.models import Conflict, SyncHistory, SyncState

    organizations = keys["organizations"]
    states = keys["states"]
    history_pairs = keys["history_pairs"]
    expires_at = timezone.now() + dt.timedelta(hours=1)

    def store(i: int) -> Any:
        return LinearToken.objects.store(
            organizations[i % len(organizations)],
            access_token=f"lin_oauth_access_new_{i:032d}",
            refresh_token=f"lin_oauth_refresh_new_{i:032d}",
            app_user_id=f"app-user-{i}",
            expires_at=expires_at,
        )

    def for_organization(i: int) -> Any:
        token = LinearToken.objects.for_organization(organizations[i % len(organizations)])
        return token.access_token, token.refresh_token

    def last_synced_at(i: int) -> Any:
        page, team = states[i % len(states)]
        return SyncState.objects.last_synced_at(page, team)

    def mark_synced(i: int) -> Any:
        page, team = states[i % len(states)]
        return SyncState.objects.mark_synced(page, team)

    def unresolved(i: int) -> Any:
        return list(Conflict.objects.unresolved()[:50])

    def record(i: int) -> Any:
        page, team = history_pairs[i % len(history_pairs)]
        return SyncHistory.objects.record(
            page,
            team,
            success=True,
            created_issues=3,
            updated_issues=5,
            confluence_changes=2,
            conflicts_detected=1,
        )

    def for_pair(i: int) -> Any:
        page, team = history_pairs[i % len(history_pairs)]
        return list(SyncHistory.objects.for_pair(page, team)[:50])

    return dict(
        zip(
            OPERATIONS,
            (store, for_organization, last_synced_at, mark_synced, unresolved, record, for_pair),
            strict=True,
        )
    )


def build_operations(keys: dict[str, list[Any]], raw: RawDB) -> list[Operation]:
    """The seven hot paths, each as an API call and its raw-SQL equivalent."""
    from django.utils import timezone

    from accounts.models import LinearToken
    from sync.models import Conflict, SyncHistory

    fernet = field_fernet(LinearToken, "access_token")
    organizations = keys["organizations"]
    states = keys["states"]
    history_pairs = keys["history_pairs"]
    expires_at = timezone.now() + dt.timedelta(hours=1)
    sql = raw.sql
    utc = dt.UTC

    if raw.is_postgresql:

        def db_time(value: dt.datetime) -> Any:
            return value
    else:

        def db_time(value: dt.datetime) -> Any:
            # The format Django's SQLite backend stores: naive UTC, space separator.
            return str(value.astimezone(utc).replace(tzinfo=None))

    def now() -> dt.datetime:
        return dt.datetime.now(utc)

    # --- LinearToken.objects.store ---------------------------------------------------------------
    select_org = sql("SELECT id FROM accounts_organization WHERE linear_id = %s")
    insert_org = sql(
        "INSERT INTO accounts_organization (linear_id, name, created_at, updated_at) VALUES (%s, '', %s, %s) "
        "ON CONFLICT (linear_id) DO UPDATE SET linear_id = EXCLUDED.linear_id RETURNING id"
    )
    upsert_token = sql(
        "INSERT INTO accounts_lineartoken (access_token, refresh_token, expires_at, scope, created_at, "
        "updated_at, organization_id, app_user_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (organization_id) DO UPDATE SET access_token = EXCLUDED.access_token, "
        "refresh_token = EXCLUDED.refresh_token, app_user_id = EXCLUDED.app_user_id, "
        "expires_at = EXCLUDED.expires_at, scope = EXCLUDED.scope, updated_at = EXCLUDED.updated_at "
        "RETURNING id, created_at"
    )

    def store_raw(i: int) -> Any:
        linear_id = organizations[i % len(organizations)]
        stamp = db_time(now())
        row = raw.fetchone(select_org, (linear_id,))
        if row is None:
            row = raw.fetchone(insert_org, (linear_id, stamp, stamp))
        access = fernet.encrypt(f"lin_oauth_access_new_{i:032d}".encode())
        refresh = fernet.encrypt(f"lin_oauth_refresh_new_{i:032d}".encode())
        return raw.fetchone(
            upsert_token, (access, refresh, db_time(expires_at), "", stamp, stamp, row[0], f"app-user-{i}")
        )

    # --- LinearToken.objects.for_organization + decryption ---------------------------------------
    select_token = sql(
        "SELECT t.id, t.access_token, t.refresh_token, t.expires_at, t.scope, t.reauthorization_required_at, "
        "t.created_at, t.updated_at, "
        "t.organization_id, t.app_user_id, o.id, o.linear_id, o.name, o.created_at, o.updated_at "
        "FROM accounts_lineartoken t INNER JOIN accounts_organization o ON o.id = t.organization_id "
        "WHERE o.linear_id = %s LIMIT 1"
    )

    def for_organization_raw(i: int) -> Any:
        row = raw.fetchone(select_token, (organizations[i % len(organizations)],))
        access = fernet.decrypt(bytes(row[1])).decode()
        refresh = fernet.decrypt(bytes(row[2])).decode() if row[2] is not None else None
        return access, refresh

    # --- SyncState -------------------------------------------------------------------------------
    select_last = sql(
        "SELECT last_synced_at FROM sync_syncstate "
        "WHERE confluence_page_id = %s AND linear_team_id = %s LIMIT 1"
    )

    def last_synced_raw(i: int) -> Any:
        row = raw.fetchone(select_last, states[i % len(states)])
        return row[0] if row else None

    upsert_state = sql(
        "INSERT INTO sync_syncstate (organization_id, confluence_page_id, linear_team_id, last_synced_at, "
        "status, conflict_count, created_at, updated_at) VALUES (NULL, %s, %s, %s, 'idle', 0, %s, %s) "
        "ON CONFLICT (confluence_page_id, linear_team_id) DO UPDATE SET last_synced_at = "
        "EXCLUDED.last_synced_at, status = EXCLUDED.status, updated_at = EXCLUDED.updated_at "
        "RETURNING id, organization_id, conflict_count, created_at"
    )

    def mark_synced_raw(i: int) -> Any:
        page, team = states[i % len(states)]
        stamp = db_time(now())
        return raw.fetchone(upsert_state, (page, team, stamp, stamp, stamp))

    # --- Conflict.objects.unresolved()[:50] ------------------------------------------------------
    conflict_columns = ", ".join(f.column for f in Conflict._meta.concrete_fields)
    json_positions = [
        i for i, f in enumerate(Conflict._meta.concrete_fields) if f.get_internal_type() == "JSONField"
    ]
    select_unresolved = sql(
        f"SELECT {conflict_columns} FROM sync_conflict WHERE NOT is_resolved "
        "ORDER BY created_at DESC, id DESC LIMIT 50"
    )
    loads = json.loads

    def unresolved_raw(i: int) -> Any:
        rows = []
        for row in raw.fetchall(select_unresolved):
            row = list(row)
            for position in json_positions:
                # psycopg's default adapters parse jsonb themselves (json.loads); Django's return text.
                if isinstance(row[position], str | bytes):
                    row[position] = loads(row[position])
            rows.append(row)
        return rows

    # --- SyncHistory -----------------------------------------------------------------------------
    insert_history = sql(
        "INSERT INTO sync_synchistory (organization_id, confluence_page_id, linear_team_id, success, error, "
        "created_issues, updated_issues, confluence_changes, conflicts_detected, conflicts_resolved, "
        "direction, deleted_issues, synced_at) "
        "VALUES (NULL, %s, %s, %s, '', %s, %s, %s, %s, %s, '', NULL, %s) "
        "RETURNING id"
    )

    def record_raw(i: int) -> Any:
        page, team = history_pairs[i % len(history_pairs)]
        return raw.fetchone(insert_history, (page, team, True, 3, 5, 2, 1, 0, db_time(now())))

    history_columns = ", ".join(f.column for f in SyncHistory._meta.concrete_fields)
    select_history = sql(
        f"SELECT {history_columns} FROM sync_synchistory "
        "WHERE confluence_page_id = %s AND linear_team_id = %s "
        "ORDER BY synced_at DESC, id DESC LIMIT 50"
    )

    def for_pair_raw(i: int) -> Any:
        return raw.fetchall(select_history, history_pairs[i % len(history_pairs)])

    api = api_calls(keys)
    raws = (
        (store_raw, 2),
        (for_organization_raw, 1),
        (last_synced_raw, 1),
        (mark_synced_raw, 1),
        (unresolved_raw, 1),
        (record_raw, 1),
        (for_pair_raw, 1),
    )
    return [
        Operation(name, api[name], fn, statements)
        for name, (fn, statements) in zip(OPERATIONS, raws, strict=True)
    ]


#: Database OPTIONS tried on PostgreSQL against the project's defaults (prepared statements since
#: issue 20), in the same process: each variant's API calls are interleaved with the default API calls
#: (label -> OPTIONS). The first is what DB_PREPARED_STATEMENTS=false gives (poolers in transaction mode).
SETTINGS_VARIANTS: dict[str, dict[str, Any]] = {
    "DB_PREPARED_STATEMENTS=false (client-side binding)": {
        "server_side_binding": False,
        "prepare_threshold": None,
    },
    "server_side_binding, nothing prepared": {"server_side_binding": True, "prepare_threshold": None},
}

#: Async twins timed against their sync forms (group "async"): operation name -> twin name. The
#: ``last_synced_at`` twin is ``sync_to_async`` of the method where ``alast_synced_at`` is not there yet.
ASYNC_TWINS = {
    "LinearToken.objects.store": "astore",
    "LinearToken.objects.for_organization+decrypt": "afor_organization",
    "SyncState.objects.last_synced_at": "alast_synced_at",
    "SyncHistory.objects.record": "arecord",
}


def async_calls(keys: dict[str, list[Any]]) -> dict[str, Callable[[int], Any]]:
    """Coroutine functions of the twins of :data:`ASYNC_TWINS`, by operation name; same work as the sync."""
    from asgiref.sync import sync_to_async
    from django.utils import timezone

    from accounts.models import LinearToken
    from sync.models import SyncHistory, SyncState

    organizations = keys["organizations"]
    states = keys["states"]
    history_pairs = keys["history_pairs"]
    expires_at = timezone.now() + dt.timedelta(hours=1)
    alast_synced_at = getattr(SyncState.objects, "alast_synced_at", None) or sync_to_async(
        SyncState.objects.last_synced_at
    )

    async def store(i: int) -> Any:
        return await LinearToken.objects.astore(
            organizations[i % len(organizations)],
            access_token=f"lin_oauth_access_new_{i:032d}",
            refresh_token=f"lin_oauth_refresh_new_{i:032d}",
            app_user_id=f"app-user-{i}",
            expires_at=expires_at,
        )

    async def for_organization(i: int) -> Any:
        token = await LinearToken.objects.afor_organization(organizations[i % len(organizations)])
        return token.access_token, token.refresh_token

    async def last_synced_at(i: int) -> Any:
        page, team = states[i % len(states)]
        return await alast_synced_at(page, team)

    async def record(i: int) -> Any:
        page, team = history_pairs[i % len(history_pairs)]
        return await SyncHistory.objects.arecord(
            page,
            team,
            success=True,
            created_issues=3,
            updated_issues=5,
            confluence_changes=2,
            conflicts_detected=1,
        )

    return dict(zip(ASYNC_TWINS, (store, for_organization, last_synced_at, record), strict=True))


def time_async_twins(keys: dict[str, list[Any]], *, iterations: int, warmup: int) -> list[dict[str, Any]]:
    """Median wall time per call of each twin (awaited in a running event loop, as agent code awaits
    it: the call hops to asgiref's shared thread and back) against its sync form, rounds interleaved."""
    import asyncio
    import gc
    import statistics
    import time

    from asgiref.sync import sync_to_async
    from django.db import connections

    engine = engine_name()
    sync_forms = api_calls(keys)
    twins = async_calls(keys)
    rounds = 10
    per_round = max(1, iterations // rounds)
    rows = []

    async def run_twin(fn: Callable[[int], Any], start: int, count: int) -> list[int]:
        times = []
        for i in range(start, start + count):
            began = time.perf_counter_ns()
            await fn(i)
            times.append(time.perf_counter_ns() - began)
        return times

    try:
        for name, twin in twins.items():
            sync_fn = sync_forms[name]
            asyncio.run(run_twin(twin, 0, warmup))
            for i in range(warmup):
                sync_fn(i)
            sync_times: list[int] = []
            async_times: list[int] = []
            index = warmup
            for round_number in range(rounds):
                gc.collect()
                sides = ["sync", "async"] if round_number % 2 else ["async", "sync"]
                for side in sides:
                    if side == "async":
                        async_times += asyncio.run(run_twin(twin, index, per_round))
                    else:
                        for i in range(index, index + per_round):
                            began = time.perf_counter_ns()
                            sync_fn(i)
                            sync_times.append(time.perf_counter_ns() - began)
                index += per_round
            async_us = statistics.median(async_times) / 1e3
            sync_us = statistics.median(sync_times) / 1e3
            rows.append(
                {
                    **make_result(
                        f"{name} — async twin ({ASYNC_TWINS[name]})",
                        engine=engine,
                        metric="median_us",
                        value=async_us,
                        baseline=sync_us,
                        unit="µs/op",
                        note=f"awaited in an event loop vs the sync call; one thread hop costs "
                        f"{async_us - sync_us:.0f} µs; median of {len(async_times)} calls each",
                    ),
                    "group": "async",
                }
            )
    finally:
        # The shared thread's connection (sync_to_async ran there): closed so the database can be dropped.
        asyncio.run(sync_to_async(connections.close_all)())
    return rows


def run(
    *,
    quick: bool = False,
    scale: str | None = None,
    iterations: int | str | None = None,
    warmup: int | str | None = None,
    prefix: str = "bench",
    variants: str = "auto",
) -> list[dict[str, Any]]:
    """Seed, time every hot path against its raw equivalent and return one result row per operation.

    On PostgreSQL (unless ``variants="none"``) it also times the API under each of
    :data:`SETTINGS_VARIANTS`, interleaved with the same calls under the default settings, and adds a
    row per operation and variant (group ``settings``): API with the setting ÷ API with the defaults.
    """
    chosen = SCALES[scale or ("quick" if quick else "full")]
    iterations = int(iterations) if iterations is not None else chosen.iterations
    warmup = int(warmup) if warmup is not None else chosen.warmup
    engine = engine_name()
    keys = seed(chosen, prefix)
    raw = RawDB()
    wrappers: dict[str, Any] = {}
    if engine == "postgresql" and variants != "none":
        wrappers = {label: swapped_connection(options) for label, options in SETTINGS_VARIANTS.items()}
    results = []
    comparisons = []
    try:
        for operation in build_operations(keys, raw):
            try:
                queries, _ = count_queries(lambda op=operation: op.api(0))
                variant_calls = [using_connection(w, operation.api) for w in wrappers.values()]
                api_t, raw_t, *variant_t = median_sides(
                    [operation.api, operation.raw, *variant_calls], iterations=iterations, warmup=warmup
                )
            except Exception as exc:
                logger.exception("%s failed", operation.name)
                results.append(error_result(operation.name, engine, exc))
                continue
            results.append(
                make_result(
                    operation.name,
                    engine=engine,
                    metric="median_us",
                    value=api_t.wall * 1e6,
                    baseline=raw_t.wall * 1e6,
                    unit="µs/op",
                    note=f"{queries} API statements vs {operation.raw_statements} raw; client CPU "
                    f"{api_t.cpu * 1e6:.0f} vs {raw_t.cpu * 1e6:.0f} µs; median of {iterations} calls each",
                )
            )
            for label, timing in zip(wrappers, variant_t, strict=True):
                comparisons.append(
                    {
                        **make_result(
                            f"{operation.name} — {label}",
                            engine=engine,
                            metric="median_us",
                            value=timing.wall * 1e6,
                            baseline=api_t.wall * 1e6,
                            unit="µs/op",
                            note=f"API with the setting vs with the defaults, interleaved; client CPU "
                            f"{timing.cpu * 1e6:.0f} vs {api_t.cpu * 1e6:.0f} µs",
                        ),
                        "group": "settings",
                    }
                )
    finally:
        raw.close()
        for wrapper in wrappers.values():
            wrapper.close()
    twins: list[dict[str, Any]] = []
    if variants != "none":
        try:
            twins = time_async_twins(keys, iterations=iterations, warmup=warmup)
        except Exception as exc:
            logger.exception("async twins failed")
            twins = [{**error_result("async twins", engine, exc), "group": "async"}]
    return results + comparisons + twins


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0]))
