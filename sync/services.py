"""Writes of the sync app that span many rows: bulk conflict resolution (at once or in batches), three-way
reconciliation."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Organization
from accounts.validation import clean_identifier, clean_non_negative_int
from sync.diff import json_equal
from sync.merge import Merge, three_way
from sync.models import (
    Conflict,
    ConflictAlreadyResolved,
    ConflictResolution,
    FieldOwnership,
    ItemSnapshot,
    ResolutionAction,
    ResolutionStrategy,
    SyncState,
    clean_acting_user,
    clean_change,
    clean_resolution,
)
from sync.models.conflicts import _change_time, clean_expected_version
from sync.models.snapshots import owners_from_rules

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BulkResolution:
    """What :func:`resolve_conflicts` did with each requested id (each list in the order asked)."""

    resolved: list[str] = field(default_factory=list)
    #: Already resolved when the row was locked (by someone else, or earlier).
    skipped: list[str] = field(default_factory=list)
    #: No conflict with this id (never stored, or deleted meanwhile).
    missing: list[str] = field(default_factory=list)
    #: Its version was not the one the caller showed (a store changed it meanwhile): not resolved.
    changed: list[str] = field(default_factory=list)


def resolve_conflicts(
    conflict_ids: Iterable[Any],
    strategy: Any,
    *,
    by: Any,
    expected_versions: Mapping[str, int] | None = None,
) -> BulkResolution:
    """Resolve many conflicts with one strategy (``linear`` or ``confluence``) in one transaction.

    ``expected_versions`` (conflict id -> the version the caller showed): a conflict whose version is
    another one now is not resolved and is reported in ``changed``.

    The rows are locked (``select_for_update``, in id order so that two bulk resolutions cannot
    deadlock) and each goes through ``Conflict._apply_resolution``, the code ``conflict.resolve()``
    runs. Conflicts already resolved are skipped, not overwritten; unknown ids are reported as missing.
    ``manual`` is refused: a manual resolution needs its own resolved change per conflict.
    """
    if isinstance(conflict_ids, str | bytes):
        raise ValueError("conflict_ids must be an iterable of ids, not a single string.")
    try:
        conflict_ids = iter(conflict_ids)
    except TypeError as exc:
        raise ValueError(
            f"conflict_ids must be an iterable of ids, not {type(conflict_ids).__name__}."
        ) from exc
    # A dict keeps the order asked and drops repeated ids.
    ids = list(
        dict.fromkeys(
            clean_identifier(conflict_id, f"conflict_ids[{position}]")
            for position, conflict_id in enumerate(conflict_ids)
        )
    )
    if strategy == ResolutionStrategy.MANUAL:
        raise ValidationError(
            "Bulk resolution keeps one side (linear or confluence); resolve manual conflicts one by one.",
            code="invalid_strategy",
        )
    strategy, _ = clean_resolution(strategy, None)
    if strategy not in (ResolutionStrategy.LINEAR, ResolutionStrategy.CONFLUENCE):
        raise ValidationError(
            f"Bulk resolution keeps one side (linear or confluence), not {strategy!r}.",
            code="invalid_strategy",
        )
    by = clean_acting_user(by)
    if expected_versions is not None and not isinstance(expected_versions, Mapping):
        raise ValueError(
            "expected_versions must be a dict of conflict id -> version, "
            f"not {type(expected_versions).__name__}."
        )
    versions = {
        clean_identifier(key, "expected_versions key"): clean_expected_version(value)
        for key, value in (expected_versions or {}).items()
    }

    resolved: list[str] = []
    skipped: list[str] = []
    changed: list[str] = []
    with transaction.atomic():
        locked = {
            conflict.pk: conflict
            # No select_related: PostgreSQL re-reads a locked row after waiting, not its joined rows.
            for conflict in Conflict.objects.select_for_update().filter(pk__in=ids).order_by("pk")
        }
        at = timezone.now()
        for conflict_id in ids:
            conflict = locked.get(conflict_id)
            if conflict is None:
                continue
            expected = versions.get(conflict_id)
            if expected is not None and conflict.version != expected:
                changed.append(conflict_id)
                continue
            try:
                conflict._apply_resolution(strategy, None, by=by, at=at)
            except ConflictAlreadyResolved:
                skipped.append(conflict_id)
            else:
                resolved.append(conflict_id)
        SyncState.objects.refresh_conflict_counts(locked[pk].pair for pk in resolved)
    missing = [conflict_id for conflict_id in ids if conflict_id not in locked]
    logger.info(
        "Bulk resolution (%s): %d resolved, %d skipped, %d changed, %d missing",
        strategy,
        len(resolved),
        len(skipped),
        len(changed),
        len(missing),
    )
    return BulkResolution(resolved=resolved, skipped=skipped, missing=missing, changed=changed)


async def aresolve_conflicts(
    conflict_ids: Iterable[Any],
    strategy: Any,
    *,
    by: Any,
    expected_versions: Mapping[str, int] | None = None,
) -> BulkResolution:
    """Async twin of :func:`resolve_conflicts`."""
    return await sync_to_async(resolve_conflicts)(
        conflict_ids, strategy, by=by, expected_versions=expected_versions
    )


# --- Three-way reconciliation ----------------------------------------------------------------------

#: Items per batch of ``reconcile_many``: each batch is its own transaction with a fixed set of queries.
RECONCILE_BATCH_SIZE = 500

Outcome = Literal["in_sync", "merged", "conflict"]


@dataclass(frozen=True)
class Reconciliation:
    """What :func:`reconcile` found for one item."""

    item_id: str
    #: ``in_sync`` (both sides equal), ``merged`` (no conflict: the merge's updates bring both sides
    #: there) or ``conflict`` (a person decides the ``merge.conflicts`` paths).
    outcome: Outcome
    merge: Merge
    #: The stored conflict (``conflict``), else ``None``.
    conflict: Conflict | None = None
    #: An open conflict of this item that the merge made disappear (resolved as ``merged``).
    resolved_conflict_id: str | None = None


def reconcile(
    organization_id: str,
    linear_change: dict[str, Any],
    confluence_change: dict[str, Any],
    *,
    confluence_page_id: str,
    linear_team_id: str,
) -> Reconciliation:
    """Merge one item's two changes against its last-synced snapshot, with the owner rules in force.

    ``in_sync``/``merged``: no Conflict is stored, and an open conflict for the item is resolved with
    strategy ``merged`` by no user (logged). ``conflict``: ``Conflict.objects.store`` with
    ``base_change`` and ``conflicting_fields`` set (id ``conflict-<itemId>``). The snapshot does not
    move: the agent records it (``ItemSnapshot.objects.record_synced``) after applying the updates.
    """
    return reconcile_many(
        organization_id,
        [(linear_change, confluence_change)],
        confluence_page_id=confluence_page_id,
        linear_team_id=linear_team_id,
    )[0]


async def areconcile(
    organization_id: str,
    linear_change: dict[str, Any],
    confluence_change: dict[str, Any],
    *,
    confluence_page_id: str,
    linear_team_id: str,
) -> Reconciliation:
    """Async twin of :func:`reconcile`."""
    return await sync_to_async(reconcile)(
        organization_id,
        linear_change,
        confluence_change,
        confluence_page_id=confluence_page_id,
        linear_team_id=linear_team_id,
    )


def reconcile_many(
    organization_id: str,
    pairs: Iterable[tuple[dict[str, Any], dict[str, Any]]],
    *,
    confluence_page_id: str,
    linear_team_id: str,
    batch_size: int = RECONCILE_BATCH_SIZE,
) -> list[Reconciliation]:
    """:func:`reconcile` for many items of one (page, team); results in input order.

    Every pair is checked before anything is written (an item may appear once per call), and so is
    every merge: each batch of ``batch_size`` items reads its snapshots (one query), merges, and reads
    which of its conflicting items already have a conflict row (one query), so that a conflict id
    another organization holds is refused before the first batch writes. The owner rules are read
    once per call. Then per batch: the new conflicts inserted in a short transaction of their own, and
    in a second one the items' existing conflicts locked (in id order), the changed ones updated, the
    log entries inserted and the pair's ``conflict_count`` refreshed: a constant number of queries per
    batch.

    Each batch commits on its own (STYLE.md: bulk work in bounded batches, each a short transaction),
    so a failure of the database midway leaves the earlier batches stored, each whole and counted; the
    same call again stores nothing twice (conflict ids are ``conflict-<itemId>``).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError("batch_size must be a positive integer.")
    linear_id = clean_identifier(organization_id, "organization_id")
    page = clean_identifier(confluence_page_id, "confluence_page_id")
    team = clean_identifier(linear_team_id, "linear_team_id")
    cleaned = _clean_pairs(pairs)
    if not cleaned:
        return []
    rules = FieldOwnership.objects.rules_for_pair(linear_id, confluence_page_id=page, linear_team_id=team)
    organization = Organization.objects.ensure(linear_id)
    batches = [
        _merge_batch(organization, cleaned[start : start + batch_size], rules)
        for start in range(0, len(cleaned), batch_size)
    ]
    results: list[Reconciliation] = []
    for batch in batches:
        inserted, counted = _insert_new_conflicts(organization, batch, page, team)
        results += _write_batch(organization, batch, page, team, inserted, counted=counted)
    return results


async def areconcile_many(
    organization_id: str,
    pairs: Iterable[tuple[dict[str, Any], dict[str, Any]]],
    *,
    confluence_page_id: str,
    linear_team_id: str,
    batch_size: int = RECONCILE_BATCH_SIZE,
) -> list[Reconciliation]:
    """Async twin of :func:`reconcile_many`."""
    return await sync_to_async(reconcile_many)(
        organization_id,
        pairs,
        confluence_page_id=confluence_page_id,
        linear_team_id=linear_team_id,
        batch_size=batch_size,
    )


def _clean_pairs(pairs: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    if isinstance(pairs, dict | str | bytes):
        raise ValueError("pairs must be an iterable of (linear_change, confluence_change) tuples.")
    try:
        iterator = iter(pairs)
    except TypeError as exc:
        raise ValueError(f"pairs must be an iterable of tuples, not {type(pairs).__name__}.") from exc
    cleaned: list[tuple[dict[str, Any], dict[str, Any]]] = []
    seen: set[str] = set()
    for position, pair in enumerate(iterator):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"pairs[{position}] must be a (linear_change, confluence_change) tuple.")
        linear = clean_change(pair[0], f"pairs[{position}] linear_change")
        confluence = clean_change(pair[1], f"pairs[{position}] confluence_change")
        item_id = linear["itemId"]
        if confluence["itemId"] != item_id:
            raise ValidationError(
                f"pairs[{position}]: linear_change and confluence_change are about different items "
                f"({item_id!r} and {confluence['itemId']!r}).",
                code="item_mismatch",
            )
        if item_id in seen:
            raise ValidationError(
                f"pairs[{position}]: item {item_id!r} appears twice in one call.", code="duplicate_item"
            )
        seen.add(item_id)
        cleaned.append((linear, confluence))
    return cleaned


def _conflict_id(item_id: str) -> str:
    return f"conflict-{item_id}"


@dataclass(frozen=True)
class _Batch:
    """One batch of :func:`reconcile_many`, merged and not yet written."""

    pairs: list[tuple[dict[str, Any], dict[str, Any]]]
    merges: list[Merge]
    #: itemId -> the snapshot's itemData (the base of its merge).
    bases: dict[str, dict[str, Any]]
    #: Ids of the conflicts that existed for the batch's conflicting items when it was merged.
    present: set[str]


def _merge_batch(
    organization: Organization,
    pairs: list[tuple[dict[str, Any], dict[str, Any]]],
    rules: list[tuple[str, str, str, str, str]],
) -> _Batch:
    """Merge a batch against its snapshots; refuse it if a conflict it would store is another's.

    Reads only: the snapshots, and the ids and organizations of the conflicts that the conflicting
    items already have (``ValidationError`` ``other_organization`` for one of another organization).
    """
    item_ids = [linear["itemId"] for linear, _ in pairs]
    bases = ItemSnapshot.objects.base_for(organization.linear_id, item_ids)
    owners_by_type: dict[str, dict[str, str]] = {}
    merges: list[Merge] = []
    for linear, confluence in pairs:
        item_type = linear.get("itemType") or confluence.get("itemType") or ""
        if item_type not in owners_by_type:
            owners_by_type[item_type] = owners_from_rules(rules, item_type=item_type)
        owners = owners_by_type[item_type]
        linear_at, confluence_at = _change_time(linear), _change_time(confluence)
        if linear_at is None or confluence_at is None:
            owners = {path: owner for path, owner in owners.items() if owner != "newest"}
        merges.append(
            three_way(
                bases.get(linear["itemId"]),
                linear["itemData"],
                confluence["itemData"],
                owners=owners,
                linear_at=linear_at,
                confluence_at=confluence_at,
            )
        )
    wanted = {
        _conflict_id(linear["itemId"]): linear["itemId"]
        for (linear, _), merge in zip(pairs, merges, strict=True)
        if merge.conflicts
    }
    # conflict id -> its organization's pk (None: imported without one), for those that exist
    holders: dict[str, int | None] = {}
    if wanted:
        holders = dict(Conflict.objects.filter(pk__any=list(wanted)).values_list("pk", "organization_id"))
    for conflict_id, item_id in wanted.items():
        if holders.get(conflict_id) not in (None, organization.pk):
            raise ValidationError(
                f"Conflict {conflict_id!r} belongs to another organization; item {item_id!r} cannot "
                f"be stored for {organization.linear_id!r}.",
                code="other_organization",
            )
    return _Batch(pairs=pairs, merges=merges, bases=bases, present=set(holders))


def _new_conflict(
    organization: Organization,
    linear: dict[str, Any],
    confluence: dict[str, Any],
    merge: Merge,
    base: dict[str, Any] | None,
    page: str,
    team: str,
    now: Any,
) -> Conflict:
    item_id = linear["itemId"]
    item_type = linear.get("itemType") or confluence.get("itemType") or ""
    return Conflict(
        id=_conflict_id(item_id),
        confluence_page_id=page,
        linear_team_id=team,
        linear_change=linear,
        confluence_change=confluence,
        base_change=_base_change(item_id, item_type, base),
        conflicting_fields=merge.conflicts,
        item_type=item_type,
        item_id=item_id,
        differing_field_count=len(merge.conflicts),
        organization=organization,
        created_at=now,
        updated_at=now,
    )


def _insert_new_conflicts(
    organization: Organization, batch: _Batch, page: str, team: str
) -> tuple[dict[str, Conflict], bool]:
    """Insert the batch's new conflicts in a short transaction of their own, before any row is locked.

    Returns the rows known to be inserted by this call (PostgreSQL reports them; on SQLite none are
    reported, and the batch re-reads them), which the batch need not load again, and whether the
    pair's state row was made and its ``conflict_count`` refreshed after the insert.

    Inserting while holding locks on existing rows deadlocked on PostgreSQL (tests/sync/
    test_reconcile_concurrency.py): a batch waiting on another's uncommitted insert while that one
    waited to insert over a row the first had updated. Here the only locks held are the new rows'
    (taken in id order by one statement, ``ON CONFLICT DO NOTHING``) and then the pair's sync state,
    which is what every conflict write takes last.
    """
    wanted = {
        _conflict_id(linear["itemId"]): (linear, confluence, merge)
        for (linear, confluence), merge in zip(batch.pairs, batch.merges, strict=True)
        if merge.conflicts
    }
    now = timezone.now()
    # A row that appeared since the batch was merged is skipped by ON CONFLICT DO NOTHING and updated
    # by the next step; one that disappeared is stored again there.
    rows = [
        _new_conflict(
            organization, linear, confluence, merge, batch.bases.get(linear["itemId"]), page, team, now
        )
        for conflict_id, (linear, confluence, merge) in sorted(wanted.items())
        if conflict_id not in batch.present
    ]
    if not rows:
        return {}, False
    with transaction.atomic():
        inserted: set[str] = set()
        if connection.vendor == "postgresql":
            inserted = _insert_conflicts_postgresql(rows)
        else:
            Conflict.objects.bulk_create(rows, ignore_conflicts=True)
        SyncState.objects.refresh_conflict_counts([(page, team)], create=True)
    fresh = {}
    for row in rows:
        if row.pk in inserted:
            row._state.adding = False  # it is a stored row now, as if loaded
            row._state.db = Conflict.objects.db
            fresh[row.pk] = row
    return fresh, True


#: Columns ``_insert_conflicts_postgresql`` writes (every column a stored conflict has on insert).
_INSERT_COLUMNS = (
    "id",
    "confluence_page_id",
    "linear_team_id",
    "linear_change",
    "confluence_change",
    "base_change",
    "conflicting_fields",
    "item_type",
    "item_id",
    "differing_field_count",
    "organization",
    "version",
    "is_resolved",
    "resolution_strategy",
    "created_at",
    "updated_at",
)


def _insert_conflicts_postgresql(rows: list[Conflict]) -> set[str]:
    """PostgreSQL: one multi-row ``INSERT … ON CONFLICT (id) DO NOTHING`` per 500 conflicts.

    Raw SQL because Django 5.2's ``bulk_create`` on PostgreSQL inserts through ``UNNEST`` of arrays,
    and psycopg dumps each JSON value into the array's text form with a regular-expression escape:
    about 1.6 ms per conflict, half of ``reconcile_many``'s time (benchmarks/three_way.py). JSON goes as
    ``Jsonb`` parameters; names come from the model's ``_meta``. The same rows as ``bulk_create`` writes
    on SQLite (tests/sync/test_reconcile.py runs on both).
    """
    from psycopg.types.json import Jsonb  # PostgreSQL only

    opts = Conflict._meta
    quote = connection.ops.quote_name
    fields = {name: cast("models.Field[Any, Any]", opts.get_field(name)) for name in _INSERT_COLUMNS}
    columns = ", ".join(quote(fields[name].column) for name in _INSERT_COLUMNS)
    json_fields = {"linear_change", "confluence_change", "base_change", "conflicting_fields"}
    inserted: set[str] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            params: list[Any] = []
            for row in chunk:
                for name in _INSERT_COLUMNS:
                    value = getattr(row, fields[name].attname)
                    params.append(Jsonb(value) if name in json_fields and value is not None else value)
            values = ", ".join(["(" + ", ".join(["%s"] * len(_INSERT_COLUMNS)) + ")"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {quote(opts.db_table)} ({columns}) VALUES {values} "  # noqa: S608
                f"ON CONFLICT ({quote(opts.pk.column)}) DO NOTHING RETURNING {quote(opts.pk.column)}",
                params,
            )
            inserted.update(pk for (pk,) in cursor.fetchall())
    return inserted


def _base_change(item_id: str, item_type: str, base: dict[str, Any] | None) -> dict[str, Any] | None:
    if base is None:
        return None
    return {
        "id": f"snapshot-{item_id}",
        "type": "snapshot",
        "source": "snapshot",
        "itemType": item_type,
        "itemId": item_id,
        "itemData": base,
    }


def _write_batch(
    organization: Organization,
    batch: _Batch,
    page: str,
    team: str,
    inserted: dict[str, Conflict],
    *,
    counted: bool,
) -> list[Reconciliation]:
    """Update the batch's conflicts and resolve those it made disappear, in one transaction.

    The rows are locked in id order, then the pair's sync state: the order every conflict write uses.
    Rows this batch has just inserted (``inserted``) hold its content already and are not re-read.
    ``counted``: the insert step made the pair's state row and recounted it after its commit; when
    this step then changes no conflict, it leaves the count alone (a recount reads every open conflict
    of the pair: twice per batch was a fifth of ``reconcile_many`` on PostgreSQL).
    """
    conflict_ids = sorted(
        conflict_id
        for conflict_id in (_conflict_id(linear["itemId"]) for linear, _ in batch.pairs)
        if conflict_id not in inserted
    )
    with transaction.atomic():
        existing = {
            conflict.pk: conflict
            # Locked in id order, as every conflict write locks them (no deadlock between batches).
            for conflict in Conflict.objects.select_for_update().filter(pk__any=conflict_ids).order_by("pk")
        }
        now = timezone.now()
        updated: list[Conflict] = []
        update_fields: set[str] = set()
        log: list[ConflictResolution] = []
        pairs_touched: set[tuple[str, str]] = {(page, team)}
        stored_by_item: dict[str, Conflict] = {}
        resolved_by_item: dict[str, str] = {}
        for (linear, confluence), merge in zip(batch.pairs, batch.merges, strict=True):
            item_id = linear["itemId"]
            conflict_id = _conflict_id(item_id)
            if conflict_id in inserted and merge.conflicts:
                stored_by_item[item_id] = inserted[conflict_id]
                continue
            row = existing.get(conflict_id)
            other_organization = row is not None and row.organization_id not in (None, organization.pk)
            item_type = linear.get("itemType") or confluence.get("itemType") or ""
            if not merge.conflicts:
                # Another organization's conflict with this id is theirs: left alone.
                if row is not None and not row.is_resolved and not other_organization:
                    row.resolved_change = row._merged_change(merge.merged)
                    row.is_resolved = True
                    row.resolution_strategy = ResolutionStrategy.MERGED
                    row.resolved_at = now
                    row.resolved_by = None
                    row.updated_at = now
                    updated.append(row)
                    update_fields.update(_RESOLVE_FIELDS)
                    pairs_touched.add(row.pair)
                    log.append(
                        ConflictResolution(
                            conflict_id=conflict_id,
                            action=ResolutionAction.RESOLVED,
                            strategy=ResolutionStrategy.MERGED,
                            resolved_change=row.resolved_change,
                            at=now,
                        )
                    )
                    resolved_by_item[item_id] = conflict_id
                continue
            if other_organization:
                raise ValidationError(
                    f"Conflict {conflict_id!r} belongs to another organization; item {item_id!r} cannot "
                    f"be stored for {organization.linear_id!r}.",
                    code="other_organization",
                )
            base_change = _base_change(item_id, item_type, batch.bases.get(item_id))
            if row is None:
                # Deleted between the insert and this lock (a clear): stored again, as store() would.
                stored_by_item[item_id] = Conflict.objects.store(
                    conflict_id,
                    linear_change=linear,
                    confluence_change=confluence,
                    confluence_page_id=page,
                    linear_team_id=team,
                    organization_id=organization.linear_id,
                    base_change=base_change,
                    conflicting_fields=merge.conflicts,
                )
                continue
            stored_by_item[item_id] = row
            changed = _refresh_row(row, organization, linear, confluence, base_change, merge, page, team)
            if changed:
                pairs_touched.add(row.pair)
                if row.is_resolved and "linear_change" in changed:
                    # A new disagreement on a resolved item reopens it, as Conflict.objects.store does.
                    log.append(
                        ConflictResolution(conflict_id=conflict_id, action=ResolutionAction.REOPENED, at=now)
                    )
                    row.is_resolved = False
                    row.resolution_strategy = ""
                    row.resolved_at = None
                    row.resolved_by = None
                    row.resolved_change = None
                    changed |= set(_RESOLVE_FIELDS)
                row.updated_at = now
                updated.append(row)
                update_fields |= changed | {"updated_at"}
        if updated:
            Conflict.objects.bulk_update(updated, sorted(update_fields))
        if log:
            ConflictResolution.objects.bulk_create(log)
        if updated or not counted:
            # Every conflict this step changed is in ``updated`` (a reopened or resolved one too); a
            # conflict stored again by Conflict.objects.store above was counted by that call.
            SyncState.objects.refresh_conflict_counts(pairs_touched, create=True)
    results = []
    for (linear, _confluence), merge in zip(batch.pairs, batch.merges, strict=True):
        item_id = linear["itemId"]
        if merge.conflicts:
            outcome: Outcome = "conflict"
        elif merge.to_linear or merge.to_confluence:
            outcome = "merged"
        else:
            outcome = "in_sync"
        results.append(
            Reconciliation(
                item_id=item_id,
                outcome=outcome,
                merge=merge,
                conflict=stored_by_item.get(item_id),
                resolved_conflict_id=resolved_by_item.get(item_id),
            )
        )
    return results


_RESOLVE_FIELDS = ("is_resolved", "resolution_strategy", "resolved_at", "resolved_by", "resolved_change")


def _refresh_row(
    row: Conflict,
    organization: Organization,
    linear: dict[str, Any],
    confluence: dict[str, Any],
    base_change: dict[str, Any] | None,
    merge: Merge,
    page: str,
    team: str,
) -> set[str]:
    """Bring a locked conflict to this reconciliation's content; the fields changed ("" none)."""
    changed: set[str] = set()
    if row.organization_id is None:
        row.organization = organization
        changed.add("organization")
    if row.confluence_page_id != page:
        row.confluence_page_id = page
        changed.add("confluence_page_id")
    if row.linear_team_id != team:
        row.linear_team_id = team
        changed.add("linear_team_id")
    same = (
        json_equal(row.linear_change, linear)
        and json_equal(row.confluence_change, confluence)
        and json_equal(row.base_change, base_change)
        and list(row.conflicting_fields or []) == merge.conflicts
    )
    if not same:
        row.linear_change = linear
        row.confluence_change = confluence
        row.base_change = base_change
        row.conflicting_fields = merge.conflicts
        row.item_type = linear.get("itemType") or confluence.get("itemType") or ""
        row.differing_field_count = len(merge.conflicts)
        row.version += 1
        changed |= {
            "linear_change",
            "confluence_change",
            "base_change",
            "conflicting_fields",
            "item_type",
            "differing_field_count",
            "version",
        }
    return changed


#: Conflicts resolved per transaction by :func:`resolve_next_batch`: a batch holds its row locks for a
#: fraction of a second (docs/benchmarks.md, "Bulk resolve in batches"), so an agent write to one of
#: the rows never waits long.
DEFAULT_BULK_BATCH_SIZE = 50


@dataclass(frozen=True)
class BatchResolution:
    """One batch of :func:`resolve_next_batch`: what it did and where the next batch starts."""

    resolved: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    #: The greatest id this batch looked at (pass it as ``after`` to the next call); None if none.
    last_id: str | None = None
    #: No unresolved conflict is left after ``last_id``.
    finished: bool = False


def resolve_next_batch(
    conflicts: QuerySet[Conflict],
    strategy: Any,
    *,
    by: Any,
    after: str | None = None,
    batch_size: int = DEFAULT_BULK_BATCH_SIZE,
) -> BatchResolution:
    """Resolve the next ``batch_size`` unresolved conflicts of ``conflicts`` whose id is after ``after``.

    For bulk work on more rows than one request or one transaction should hold ("select all" over a
    million conflicts): call it again with ``after=result.last_id`` until ``result.finished``. Each
    call is one :func:`resolve_conflicts` transaction over at most ``batch_size`` rows (locked in id
    order), so no row stays locked longer than one batch. The ids are picked without locks, by keyset
    on the primary key (an index range scan, whatever the table's size); a conflict resolved by someone
    else in between is skipped and reported, never overwritten.
    """
    batch_size = clean_non_negative_int(batch_size, "batch_size")
    if batch_size == 0:
        raise ValueError("batch_size must be at least 1.")
    after = None if after is None else clean_identifier(after, "after")
    pending = conflicts.filter(is_resolved=False)
    if after is not None:
        pending = pending.filter(pk__gt=after)
    ids = list(pending.order_by("pk").values_list("pk", flat=True)[:batch_size])
    if not ids:
        return BatchResolution(last_id=after, finished=True)
    result = resolve_conflicts(ids, strategy, by=by)
    return BatchResolution(
        resolved=list(result.resolved),
        skipped=list(result.skipped),
        missing=list(result.missing),
        changed=list(result.changed),
        last_id=ids[-1],
        finished=len(ids) < batch_size,
    )


def resolve_conflicts_in_batches(
    conflict_ids: Iterable[Any],
    strategy: Any,
    *,
    by: Any,
    expected_versions: Mapping[str, int] | None = None,
    batch_size: int = DEFAULT_BULK_BATCH_SIZE,
) -> BulkResolution:
    """:func:`resolve_conflicts` over many ids, ``batch_size`` per transaction; one combined report.

    ``expected_versions`` as for :func:`resolve_conflicts` (each batch gets the versions of its ids).
    """
    batch_size = clean_non_negative_int(batch_size, "batch_size")
    if batch_size == 0:
        raise ValueError("batch_size must be at least 1.")
    if isinstance(conflict_ids, str | bytes):
        raise ValueError("conflict_ids must be an iterable of ids, not a single string.")
    # Every id is checked before the first batch commits: bad input writes nothing.
    ids = [clean_identifier(conflict_id, f"conflict_ids[{n}]") for n, conflict_id in enumerate(conflict_ids)]
    resolved: list[str] = []
    skipped: list[str] = []
    missing: list[str] = []
    changed: list[str] = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        versions = None
        if expected_versions is not None:
            versions = {key: value for key, value in expected_versions.items() if key in set(chunk)}
        result = resolve_conflicts(chunk, strategy, by=by, expected_versions=versions)
        resolved += result.resolved
        skipped += result.skipped
        missing += result.missing
        changed += result.changed
    return BulkResolution(resolved=resolved, skipped=skipped, missing=missing, changed=changed)


async def aresolve_next_batch(
    conflicts: QuerySet[Conflict],
    strategy: Any,
    *,
    by: Any,
    after: str | None = None,
    batch_size: int = DEFAULT_BULK_BATCH_SIZE,
) -> BatchResolution:
    """Async twin of :func:`resolve_next_batch`."""
    return await sync_to_async(resolve_next_batch)(
        conflicts, strategy, by=by, after=after, batch_size=batch_size
    )


async def aresolve_conflicts_in_batches(
    conflict_ids: Iterable[Any],
    strategy: Any,
    *,
    by: Any,
    expected_versions: Mapping[str, int] | None = None,
    batch_size: int = DEFAULT_BULK_BATCH_SIZE,
) -> BulkResolution:
    """Async twin of :func:`resolve_conflicts_in_batches`."""
    return await sync_to_async(resolve_conflicts_in_batches)(
        conflict_ids, strategy, by=by, expected_versions=expected_versions, batch_size=batch_size
    )
