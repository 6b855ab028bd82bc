"""Three-way sync in bulk: ``ItemSnapshot.objects.record_synced`` and ``reconcile_many`` against raw SQL.

    DATABASE_URL=... python -m benchmarks.three_way --engine postgresql|sqlite [--quick] [--json-out F]

* ``record_synced`` of 20,000 items (new ids, then the same ids with new data). Baseline: the
  organization lookup and ``INSERT … ON CONFLICT (organization_id, item_id) DO UPDATE`` in bulk on the
  raw connection, in one transaction, with the same per-item work (canonical JSON and its SHA-256).
* ``reconcile_many`` of 10,000 items of one (page, team) whose snapshots exist: a quarter in sync, half
  merged (one side changed), a quarter in conflict. Baseline: the same work on the raw connection —
  the snapshots and owner rules read in one query each, ``sync.merge.three_way`` per item (the merge is
  the work, not an overhead), the new conflicts inserted in bulk (``ON CONFLICT (id) DO NOTHING``) and the
  pair's conflict count recomputed, in one transaction. Fresh item ids every round on both sides, so
  both insert the same number of conflicts. On PostgreSQL each round's set-up (untimed) ends with an
  ``ANALYZE`` of the three tables, as autovacuum would have run by then in production (it is off on
  the CI and benchmark server): without it, a statement that psycopg prepared while a table was
  nearly empty keeps the generic plan PostgreSQL chose then, a sequential scan, however large the table
  grows (nothing invalidates it). Both sides' connections prepare statements, and both are re-planned.

Each figure is items/s of the median call; the ratio is API time ÷ raw time. Goals on PostgreSQL:
record_synced ≥ 20,000 items/s, reconcile_many ≥ 5,000 items/s.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from benchmarks.common import (
    RawDB,
    Timing,
    count_queries,
    engine_name,
    error_result,
    main,
    make_result,
    median_timing,
    timed,
)

logger = logging.getLogger(__name__)

PAGE, TEAM = "bench-page", "bench-team"


def item_data(n: int, version: int) -> dict[str, Any]:
    """A Linear issue's worth of itemData (about 600 bytes of JSON)."""
    return {
        "title": f"Story {n}: as a returning customer I can pay with a saved card (v{version})",
        "description": "Acceptance: the card list shows the last four digits and the expiry date. " * 3,
        "state": {"name": "In Progress" if version % 2 else "Todo", "type": "started"},
        "estimate": 3 + version % 5,
        "priority": 2,
        "labels": ["payments", "checkout"],
        "assignee": {"id": f"usr_{n % 97}", "name": f"Engineer {n % 97}"},
        "url": f"https://linear.app/acme/issue/PAY-{n}",
    }


def _result(name: str, engine: str, items: int, api: list[Timing], raw: list[Timing], note: str) -> dict:
    api_t, raw_t = median_timing(api), median_timing(raw)
    return make_result(
        name,
        engine=engine,
        metric="items_per_s",
        value=items / api_t.wall,
        baseline=items / raw_t.wall,
        ratio=api_t.wall / raw_t.wall,
        unit="items/s",
        note=f"{note}; client CPU {api_t.cpu * 1000:.0f} vs {raw_t.cpu * 1000:.0f} ms per call",
    )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# --- record_synced ---------------------------------------------------------------------------------


def bench_record_synced(raw: RawDB, *, iterations: int, items: int, prefix: str) -> list[dict[str, Any]]:
    """Time ``record_synced`` of new and of existing items against a raw bulk upsert."""
    from sync.models import ItemSnapshot

    engine = engine_name()
    organization_id = f"{prefix}-snapshot-org"
    sql = raw.sql
    select_org = sql("SELECT id FROM accounts_organization WHERE linear_id = %s")
    head = (
        "INSERT INTO sync_itemsnapshot (organization_id, item_id, item_type, confluence_page_id, "
        "linear_team_id, item_data, content_hash, synced_at)"
    )
    tail = (
        "ON CONFLICT (organization_id, item_id) DO UPDATE SET item_type = EXCLUDED.item_type, "
        "confluence_page_id = EXCLUDED.confluence_page_id, linear_team_id = EXCLUDED.linear_team_id, "
        "item_data = EXCLUDED.item_data, content_hash = EXCLUDED.content_hash, synced_at = EXCLUDED.synced_at"
    )

    def record_raw(batch: list[dict[str, Any]]) -> None:
        now = dt.datetime.now(dt.UTC)
        stamp = now if raw.is_postgresql else str(now.replace(tzinfo=None))
        rows = []
        for item in batch:
            text = _canonical(item["itemData"])
            rows.append((item["itemId"], item["itemType"], text, hashlib.sha256(text.encode()).hexdigest()))
        rows.sort()
        with raw.atomic():
            org = raw.fetchone(select_org, (organization_id,))[0]
            raw.insert_many(
                head,
                "(%s, %s, %s, %s, %s, %s, %s, %s)",
                tail,
                [
                    (org, item_id, kind, PAGE, TEAM, text, digest, stamp)
                    for item_id, kind, text, digest in rows
                ],
            )

    def batch(tag: str, version: int) -> list[dict[str, Any]]:
        return [
            {"itemId": f"{prefix}-{tag}-{n:08d}", "itemType": "story", "itemData": item_data(n, version)}
            for n in range(items)
        ]

    def record_api(b: list[dict[str, Any]]) -> int:
        return ItemSnapshot.objects.record_synced(
            organization_id, b, confluence_page_id=PAGE, linear_team_id=TEAM
        )

    record_api(batch("warm", 0)[:100])  # creates the organization
    record_raw(batch("warm-raw", 0)[:100])
    timings: dict[str, list[Timing]] = {"api_new": [], "api_existing": [], "raw_new": [], "raw_existing": []}
    for n in range(iterations):
        api_batch, raw_batch = batch(f"api{n}", 0), batch(f"raw{n}", 0)
        api_changed, raw_changed = batch(f"api{n}", 1), batch(f"raw{n}", 1)
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("api_new", lambda b=api_batch: record_api(b)),
            ("raw_new", lambda b=raw_batch: record_raw(b)),
            ("api_existing", lambda b=api_changed: record_api(b)),
            ("raw_existing", lambda b=raw_changed: record_raw(b)),
        ]
        for key, step in steps:
            seconds, _ = timed(step)
            timings[key].append(seconds)
    queries, _ = count_queries(lambda: record_api(batch("count", 0)))
    extra = " + 1 COPY per 5,000 items" if engine == "postgresql" else ""
    return [
        _result(
            "ItemSnapshot.record_synced (new items)",
            engine,
            items,
            timings["api_new"],
            timings["raw_new"],
            f"{items} items; {queries} API statements{extra} vs 1 + 1 per 1,000 rows raw; "
            f"median of {iterations}",
        ),
        _result(
            "ItemSnapshot.record_synced (existing items)",
            engine,
            items,
            timings["api_existing"],
            timings["raw_existing"],
            f"{items} items, new data; median of {iterations}",
        ),
    ]


# --- reconcile_many --------------------------------------------------------------------------------


def _pairs(prefix: str, items: int) -> tuple[list[dict[str, Any]], list[tuple[dict, dict]]]:
    """Snapshots and (linear, confluence) changes: 1/4 in sync, 1/2 merged, 1/4 in conflict."""
    snapshots = []
    pairs = []
    for n in range(items):
        item_id = f"{prefix}-{n:08d}"
        base = item_data(n, 0)
        snapshots.append({"itemId": item_id, "itemType": "story", "itemData": base})
        linear, confluence = dict(base), dict(base)
        kind = n % 4
        if kind in (1, 2):  # merged: one side changed a field
            (linear if kind == 1 else confluence)["estimate"] = 13
        elif kind == 3:  # conflict: both changed the title differently
            linear["title"] = f"Linear title {n}"
            confluence["title"] = f"Confluence title {n}"
        common = {"type": "updated", "itemType": "story", "itemId": item_id, "timestamp": 1_767_225_600_000}
        pairs.append(
            (
                {**common, "id": f"linear-change-{item_id}", "source": "linear", "itemData": linear},
                {
                    **common,
                    "id": f"confluence-change-{item_id}",
                    "source": "confluence",
                    "itemData": confluence,
                },
            )
        )
    return snapshots, pairs


def bench_reconcile_many(raw: RawDB, *, iterations: int, items: int, prefix: str) -> list[dict[str, Any]]:
    """Time ``reconcile_many`` against the same reads, merges and writes on the raw connection."""
    from django.db import connection

    from sync.merge import three_way
    from sync.models import ItemSnapshot
    from sync.models.snapshots import owners_from_rules
    from sync.services import reconcile_many

    engine = engine_name()
    organization_id = f"{prefix}-reconcile-org"
    sql = raw.sql
    select_org = sql("SELECT id FROM accounts_organization WHERE linear_id = %s")
    select_rules = sql(
        "SELECT field_path, item_type, confluence_page_id, linear_team_id, owner FROM sync_fieldownership "
        "WHERE organization_id = %s AND confluence_page_id IN ('', %s) AND linear_team_id IN ('', %s)"
    )
    head = (
        "INSERT INTO sync_conflict (id, confluence_page_id, linear_team_id, linear_change, "
        "confluence_change, item_type, item_id, differing_field_count, is_resolved, resolution_strategy, "
        "created_at, updated_at, organization_id, version, base_change, conflicting_fields)"
    )
    recount = sql(
        "UPDATE sync_syncstate SET conflict_count = (SELECT COUNT(*) FROM sync_conflict c WHERE "
        "c.is_resolved = %s AND c.confluence_page_id = %s AND c.linear_team_id = %s) "
        "WHERE confluence_page_id = %s AND linear_team_id = %s"
    )
    dumps = json.dumps

    def reconcile_raw(pairs: list[tuple[dict, dict]]) -> None:
        now = dt.datetime.now(dt.UTC)
        stamp = now if raw.is_postgresql else str(now.replace(tzinfo=None))
        ids = [linear["itemId"] for linear, _ in pairs]
        with raw.atomic():
            org = raw.fetchone(select_org, (organization_id,))[0]
            rules = raw.fetchall(select_rules, (org, PAGE, TEAM))
            bases: dict[str, Any] = {}
            for start in range(0, len(ids), 5000):
                chunk = ids[start : start + 5000]
                marks = ", ".join(["%s"] * len(chunk))
                found = raw.fetchall(
                    sql(
                        "SELECT item_id, item_data FROM sync_itemsnapshot "
                        f"WHERE organization_id = %s AND item_id IN ({marks})"
                    ),
                    (org, *chunk),
                )
                bases.update(
                    (item_id, data if isinstance(data, dict) else json.loads(data)) for item_id, data in found
                )
            owners = owners_from_rules(rules, item_type="story")
            rows = []
            for linear, confluence in pairs:
                base = bases.get(linear["itemId"])
                merge = three_way(base, linear["itemData"], confluence["itemData"], owners=owners)
                if merge.conflicts:
                    base_change = {"itemId": linear["itemId"], "source": "snapshot", "itemData": base}
                    rows.append(
                        (
                            f"conflict-{linear['itemId']}",
                            PAGE,
                            TEAM,
                            dumps(linear),
                            dumps(confluence),
                            "story",
                            linear["itemId"],
                            len(merge.conflicts),
                            False,
                            "",
                            stamp,
                            stamp,
                            org,
                            1,
                            dumps(base_change),
                            dumps(merge.conflicts),
                        )
                    )
            rows.sort()
            if rows:
                raw.insert_many(head, "(" + ", ".join(["%s"] * 16) + ")", "ON CONFLICT (id) DO NOTHING", rows)
            raw.execute(recount, (False, PAGE, TEAM, PAGE, TEAM))

    def reconcile_api(pairs: list[tuple[dict, dict]]) -> Any:
        return reconcile_many(organization_id, pairs, confluence_page_id=PAGE, linear_team_id=TEAM)

    def prepared(tag: str) -> list[tuple[dict, dict]]:
        snapshots, pairs = _pairs(f"{prefix}-{tag}", items)
        ItemSnapshot.objects.record_synced(
            organization_id, snapshots, confluence_page_id=PAGE, linear_team_id=TEAM
        )
        if connection.vendor == "postgresql":
            # What autovacuum would have done by now (see the module docstring); untimed.
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE sync_itemsnapshot, sync_conflict, sync_syncstate")
        return pairs

    reconcile_api(prepared("warm")[:100])  # organization, sync state row
    reconcile_raw(prepared("warm-raw")[:100])
    api: list[Timing] = []
    rawt: list[Timing] = []
    for n in range(iterations):
        api_pairs, raw_pairs = prepared(f"api{n}"), prepared(f"raw{n}")
        seconds, results = timed(lambda p=api_pairs: reconcile_api(p))
        api.append(seconds)
        seconds, _ = timed(lambda p=raw_pairs: reconcile_raw(p))
        rawt.append(seconds)
    outcomes = {kind: sum(r.outcome == kind for r in results) for kind in ("in_sync", "merged", "conflict")}
    count_pairs = prepared("count")
    queries, _ = count_queries(lambda: reconcile_api(count_pairs))
    return [
        _result(
            "reconcile_many",
            engine,
            items,
            api,
            rawt,
            f"{items} items ({outcomes['in_sync']} in sync, {outcomes['merged']} merged, "
            f"{outcomes['conflict']} conflicts); {queries} API statements in batches of 500; "
            f"median of {iterations}",
        )
    ]


def run(
    *,
    quick: bool = False,
    iterations: int | str | None = None,
    items: int | str | None = None,
    prefix: str = "bench",
) -> list[dict[str, Any]]:
    """Run both three-way benchmarks and return their result rows."""
    engine = engine_name()
    iterations = int(iterations) if iterations is not None else (1 if quick else 5)
    items = int(items) if items is not None else (1000 if quick else 0)
    raw = RawDB()
    results: list[dict[str, Any]] = []
    try:
        for name, bench in (
            (
                "ItemSnapshot.record_synced",
                lambda: bench_record_synced(raw, iterations=iterations, items=items or 20_000, prefix=prefix),
            ),
            (
                "reconcile_many",
                lambda: bench_reconcile_many(
                    raw, iterations=iterations, items=items or 10_000, prefix=prefix
                ),
            ),
        ):
            try:
                results.extend(bench())
            except Exception as exc:
                logger.exception("%s failed", name)
                results.append(error_result(name, engine, exc))
    finally:
        raw.close()
    return results


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0]))
