"""Writes of the sync app that span many rows: bulk conflict resolution."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.validation import clean_identifier
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
