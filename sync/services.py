"""Writes of the sync app that span many rows: bulk conflict resolution, in one go or in batches."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.validation import clean_identifier, clean_non_negative_int
from sync.models import (
    Conflict,
    ConflictAlreadyResolved,
    ResolutionStrategy,
    SyncState,
    clean_acting_user,
    clean_resolution,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BulkResolution:
    """What :func:`resolve_conflicts` did with each requested id (each list in the order asked)."""

    resolved: list[str] = field(default_factory=list)
    #: Already resolved when the row was locked (by someone else, or earlier).
    skipped: list[str] = field(default_factory=list)
    #: No conflict with this id (never stored, or deleted meanwhile).
    missing: list[str] = field(default_factory=list)


def resolve_conflicts(conflict_ids: Iterable[Any], strategy: Any, *, by: Any) -> BulkResolution:
    """Resolve many conflicts with one strategy (``linear`` or ``confluence``) in one transaction.

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
    by = clean_acting_user(by)

    resolved: list[str] = []
    skipped: list[str] = []
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
            try:
                conflict._apply_resolution(strategy, None, by=by, at=at)
            except ConflictAlreadyResolved:
                skipped.append(conflict_id)
            else:
                resolved.append(conflict_id)
        SyncState.objects.refresh_conflict_counts(locked[pk].pair for pk in resolved)
    missing = [conflict_id for conflict_id in ids if conflict_id not in locked]
    logger.info(
        "Bulk resolution (%s): %d resolved, %d skipped, %d missing",
        strategy,
        len(resolved),
        len(skipped),
        len(missing),
    )
    return BulkResolution(resolved=resolved, skipped=skipped, missing=missing)


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
        last_id=ids[-1],
        finished=len(ids) < batch_size,
    )


def resolve_conflicts_in_batches(
    conflict_ids: Iterable[Any], strategy: Any, *, by: Any, batch_size: int = DEFAULT_BULK_BATCH_SIZE
) -> BulkResolution:
    """:func:`resolve_conflicts` over many ids, ``batch_size`` per transaction; one combined report."""
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
    for start in range(0, len(ids), batch_size):
        result = resolve_conflicts(ids[start : start + batch_size], strategy, by=by)
        resolved += result.resolved
        skipped += result.skipped
        missing += result.missing
    return BulkResolution(resolved=resolved, skipped=skipped, missing=missing)


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
    conflict_ids: Iterable[Any], strategy: Any, *, by: Any, batch_size: int = DEFAULT_BULK_BATCH_SIZE
) -> BulkResolution:
    """Async twin of :func:`resolve_conflicts_in_batches`."""
    return await sync_to_async(resolve_conflicts_in_batches)(
        conflict_ids, strategy, by=by, batch_size=batch_size
    )
