"""Sync state per (Confluence page, Linear team): last sync, status and the unresolved conflict count."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Organization
from accounts.validation import (
    clean_aware_datetime,
    clean_identifier,
)
from config.db import CompiledQuery, upsert_one

# --- SyncState -------------------------------------------------------------------------------------


#: (page, team) pairs per statement of ``refresh_conflict_counts``: two parameters each, within SQLite's
#: 999 and PostgreSQL's 65,535 (server-side binding).
_PAIRS_PER_STATEMENT = 400


class SyncStatus(models.TextChoices):
    IDLE = "idle", "Idle"
    RUNNING = "running", "Running"
    FAILED = "failed", "Failed"


class SyncStateQuerySet(models.QuerySet["SyncState"]):
    def for_pair(self, confluence_page_id: str, linear_team_id: str) -> SyncStateQuerySet:
        """The state of one (page, team) pair (zero or one row)."""
        return self.filter(confluence_page_id=confluence_page_id, linear_team_id=linear_team_id)

    def recount_conflicts(self, *, updated_at: dt.datetime | None = None) -> int:
        """Set ``conflict_count`` of these rows to their pair's unresolved conflicts where it differs.

        One ``UPDATE`` with a correlated count (answered from the conflicts' partial (page, team)
        index); rows whose count is right are not written. ``updated_at`` is set on the rows that
        change when given (the legacy import leaves it, to keep the old rows' times). Returns the
        number of rows changed. Lock the rows first where concurrent conflict writes must serialise
        (:meth:`SyncStateManager.refresh_conflict_counts`).
        """
        from sync.models.conflicts import Conflict  # conflicts import this module

        unresolved = (
            Conflict.objects.filter(
                is_resolved=False,
                confluence_page_id=models.OuterRef("confluence_page_id"),
                linear_team_id=models.OuterRef("linear_team_id"),
            )
            .order_by()
            .values("linear_team_id")
            .annotate(n=models.Count("pk"))
            .values("n")
        )
        count = Coalesce(models.Subquery(unresolved, output_field=models.IntegerField()), 0)
        changes: dict[str, Any] = {"conflict_count": count}
        if updated_at is not None:
            changes["updated_at"] = updated_at
        return self.exclude(conflict_count=count).update(**changes)


class SyncStateManager(models.Manager["SyncState"]):
    # Compiled once per connection (config.db.CompiledQuery): building and compiling this lookup
    # took longer than its round trip on every call (benchmarks/hot_paths.py).
    _last_synced_at_query: CompiledQuery[dt.datetime | None] = CompiledQuery(
        lambda page, team: (
            SyncState._base_manager.filter(confluence_page_id=page, linear_team_id=team)
            .order_by()
            .values_list("last_synced_at", flat=True)[:1]
        ),
        arguments=2,
    )

    def last_synced_at(self, confluence_page_id: Any, linear_team_id: Any) -> dt.datetime | None:
        """When the (page, team) pair last synced, or ``None`` (never synced, or no row)."""
        page = clean_identifier(confluence_page_id, "confluence_page_id")
        team = clean_identifier(linear_team_id, "linear_team_id")
        # (page, team) is unique: zero or one row, no ORDER BY.
        rows = self._last_synced_at_query(page, team, using=self.db)
        return rows[0] if rows else None

    def mark_synced(
        self,
        confluence_page_id: Any,
        linear_team_id: Any,
        at: dt.datetime | None = None,
        *,
        organization_id: Any = None,
    ) -> SyncState:
        """Record that the pair synced at ``at`` (default now): one race-safe upsert, status idle.

        ``at`` overwrites ``last_synced_at`` even when older, as the old ``updateLastSyncTimestamp``
        did: the caller is the authority on what it has synced, an operator may move the mark back to
        force a re-sync, and a mark that goes backwards only re-syncs changes (never skips any), which
        is the safe direction. ``organization_id`` (a Linear organization id) is set when given and
        left as it is when ``None``.
        """
        page = clean_identifier(confluence_page_id, "confluence_page_id")
        team = clean_identifier(linear_team_id, "linear_team_id")
        now = timezone.now()
        at = clean_aware_datetime(at, "at", required=False) or now
        organization = None
        update_fields = ["last_synced_at", "status", "updated_at"]
        if organization_id is not None:
            organization = Organization.objects.ensure(organization_id)
            update_fields.append("organization")
        # One INSERT ... ON CONFLICT (page, team) DO UPDATE ... RETURNING, outside any transaction of
        # its own: race-safe for concurrent first calls, and one round trip (bulk_create's BEGIN and
        # COMMIT, then a re-read, made it four on PostgreSQL: benchmarks/hot_paths.py).
        return upsert_one(
            self,
            SyncState(
                organization=organization,
                confluence_page_id=page,
                linear_team_id=team,
                last_synced_at=at,
                status=SyncStatus.IDLE,
                created_at=now,
                updated_at=now,
            ),
            unique_fields=["confluence_page_id", "linear_team_id"],
            update_fields=update_fields,
        )

    def set_status(self, confluence_page_id: Any, linear_team_id: Any, status: Any) -> SyncState:
        """Set the pair's status (idle, running, failed), creating the row when absent; race-safe."""
        page = clean_identifier(confluence_page_id, "confluence_page_id")
        team = clean_identifier(linear_team_id, "linear_team_id")
        if status not in SyncStatus.values:
            raise ValidationError(
                f"status must be one of {', '.join(SyncStatus.values)} (got {status!r}).", code="invalid"
            )
        now = timezone.now()
        return upsert_one(
            self,
            SyncState(
                confluence_page_id=page,
                linear_team_id=team,
                status=status,
                created_at=now,
                updated_at=now,
            ),
            unique_fields=["confluence_page_id", "linear_team_id"],
            update_fields=["status", "updated_at"],
        )

    def refresh_conflict_counts(self, pairs: Iterable[tuple[str, str]], *, create: bool = False) -> None:
        """Set ``conflict_count`` of each (page, team) pair to its number of unresolved conflicts.

        Called by every conflict write inside its transaction. It recounts rather than increments, so a
        count can never drift; the state rows are locked before counting so that concurrent writers
        serialise and the last one counts every committed change. Pairs with an empty page or team
        have no state row. ``create`` makes the row first when absent (``Conflict.objects.store`` does
        this, so a pair's count is right even before its first sync).
        """
        wanted = sorted({(page, team) for page, team in pairs if page and team})
        now = timezone.now()
        # Chunks keep each statement within SQLite's parameter limit (two per pair) and PostgreSQL's
        # with server-side binding; taken in sorted order, every writer still locks rows in one order
        # of (page, team), so writers touching several pairs cannot deadlock.
        for start in range(0, len(wanted), _PAIRS_PER_STATEMENT):
            chunk = wanted[start : start + _PAIRS_PER_STATEMENT]
            if create:
                rows = [
                    SyncState(confluence_page_id=page, linear_team_id=team, created_at=now, updated_at=now)
                    for page, team in chunk
                ]
                self.bulk_create(rows, ignore_conflicts=True)
            of_pairs = Q(
                *(Q(confluence_page_id=page, linear_team_id=team) for page, team in chunk), _connector=Q.OR
            )
            # The redundant page IN (...) lets PostgreSQL find the rows through the (page, team) index;
            # given only the OR, it scanned every row of a shared team and tested each pair on it.
            locked = list(
                self.select_for_update()
                .filter(of_pairs, confluence_page_id__in={page for page, _ in chunk})
                .order_by("confluence_page_id", "linear_team_id")
                .values_list("pk", flat=True)
            )
            if locked:
                self.filter(pk__in=locked).recount_conflicts(updated_at=now)


class SyncState(models.Model):
    """The last successful sync of one Confluence page with one Linear team (old ``sync_state``)."""

    organization = models.ForeignKey(
        Organization,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="sync_states",
        help_text="Empty for rows imported from the old system, which had no organization.",
    )
    confluence_page_id = models.CharField(max_length=255)
    linear_team_id = models.CharField(max_length=255)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=SyncStatus.choices, default=SyncStatus.IDLE)
    conflict_count = models.PositiveIntegerField(
        default=0, help_text="Unresolved conflicts of this pair; kept by the conflict methods."
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = SyncStateManager.from_queryset(SyncStateQuerySet)()

    class Meta:
        verbose_name = "sync state"
        constraints = [
            models.UniqueConstraint(
                fields=["confluence_page_id", "linear_team_id"], name="sync_syncstate_page_team_uniq"
            ),
            models.CheckConstraint(
                condition=~Q(confluence_page_id="") & ~Q(linear_team_id=""),
                name="sync_syncstate_page_team_not_empty",
            ),
            models.CheckConstraint(
                condition=Q(status__in=SyncStatus.values), name="sync_syncstate_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(conflict_count__gte=0), name="sync_syncstate_conflict_count_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.confluence_page_id} ↔ {self.linear_team_id}"
