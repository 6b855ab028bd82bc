"""The append-only record of sync runs (old ``sync_history``)."""

from __future__ import annotations

import datetime as dt

from asgiref.sync import sync_to_async
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from accounts.validation import (
    clean_aware_datetime,
    clean_error,
    clean_identifier,
    clean_non_negative_int,
    clean_text,
)
from config.db import FastLoadMixin, insert_one

# --- SyncHistory ---------------------------------------------------------------------------------

_HISTORY_COUNTERS = (
    "created_issues",
    "updated_issues",
    "confluence_changes",
    "conflicts_detected",
    "conflicts_resolved",
)


class SyncHistoryQuerySet(models.QuerySet["SyncHistory"]):
    def for_pair(self, confluence_page_id: str, linear_team_id: str) -> SyncHistoryQuerySet:
        """The runs of one (page, team), newest first (the old getSyncHistory; the caller slices)."""
        page = clean_identifier(confluence_page_id, "confluence_page_id")
        team = clean_identifier(linear_team_id, "linear_team_id")
        return self.filter(confluence_page_id=page, linear_team_id=team).order_by("-synced_at", "-id")


class SyncHistoryManager(models.Manager["SyncHistory"]):
    def record(
        self,
        confluence_page_id: str,
        linear_team_id: str,
        *,
        success: bool,
        error: str | None = None,
        created_issues: int = 0,
        updated_issues: int = 0,
        confluence_changes: int = 0,
        conflicts_detected: int = 0,
        conflicts_resolved: int = 0,
        synced_at: dt.datetime | None = None,
        organization_id: str | None = None,
        direction: str = "",
        deleted_issues: int | None = None,
    ) -> SyncHistory:
        """Append one sync run (the old recordSyncHistory); ``synced_at`` defaults to now.

        ``direction`` and ``deleted_issues`` exist for runs imported from the old first-shape
        ``sync_history``; agent code leaves them out.
        """
        page = clean_identifier(confluence_page_id, "confluence_page_id")
        team = clean_identifier(linear_team_id, "linear_team_id")
        direction = clean_text(direction, "direction", required=False, max_length=32)
        if deleted_issues is not None:
            deleted_issues = clean_non_negative_int(deleted_issues, "deleted_issues")
        if not isinstance(success, bool):
            raise ValueError(f"success must be a bool, not {type(success).__name__}.")
        error = clean_error(error, "error")
        counters = {
            name: clean_non_negative_int(value, name)
            for name, value in zip(
                _HISTORY_COUNTERS,
                (created_issues, updated_issues, confluence_changes, conflicts_detected, conflicts_resolved),
                strict=True,
            )
        }
        synced_at = clean_aware_datetime(synced_at, "synced_at", required=False) or timezone.now()
        organization = None
        if organization_id is not None:
            organization = Organization.objects.ensure(organization_id)
        # One INSERT ... RETURNING id, compiled once per connection (config.db.insert_one).
        return insert_one(
            self,
            SyncHistory(
                organization=organization,
                confluence_page_id=page,
                linear_team_id=team,
                success=success,
                error=error,
                synced_at=synced_at,
                direction=direction,
                deleted_issues=deleted_issues,
                **counters,
            ),
        )

    async def arecord(
        self,
        confluence_page_id: str,
        linear_team_id: str,
        *,
        success: bool,
        error: str | None = None,
        created_issues: int = 0,
        updated_issues: int = 0,
        confluence_changes: int = 0,
        conflicts_detected: int = 0,
        conflicts_resolved: int = 0,
        synced_at: dt.datetime | None = None,
        organization_id: str | None = None,
        direction: str = "",
        deleted_issues: int | None = None,
    ) -> SyncHistory:
        """Async twin of :meth:`record`."""
        return await sync_to_async(self.record)(
            confluence_page_id,
            linear_team_id,
            success=success,
            error=error,
            created_issues=created_issues,
            updated_issues=updated_issues,
            confluence_changes=confluence_changes,
            conflicts_detected=conflicts_detected,
            conflicts_resolved=conflicts_resolved,
            synced_at=synced_at,
            organization_id=organization_id,
            direction=direction,
            deleted_issues=deleted_issues,
        )


class SyncHistory(FastLoadMixin, models.Model):
    """One sync run of a (page, team) pair; append-only (old ``sync_history``, both shapes).

    ``direction`` and ``deleted_issues`` only hold values for runs imported from the old first-shape
    table (``sync_configs.direction``, ``changes_deleted``); that shape's ``frequency`` has no place
    here (it describes the sync configuration, not a run).
    """

    organization = models.ForeignKey(
        Organization,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="sync_history",
        help_text="Empty for runs recorded without one (the old second-shape table had none).",
    )
    confluence_page_id = models.CharField(max_length=255)
    linear_team_id = models.CharField(max_length=255)
    success = models.BooleanField()
    error = models.TextField(blank=True, default="")
    created_issues = models.PositiveIntegerField(default=0)
    updated_issues = models.PositiveIntegerField(default=0)
    confluence_changes = models.PositiveIntegerField(default=0)
    conflicts_detected = models.PositiveIntegerField(default=0)
    conflicts_resolved = models.PositiveIntegerField(default=0)
    direction = models.CharField(
        max_length=32,
        blank=True,
        default="",
        help_text="Only for runs imported from the old first-shape sync_history (sync_configs.direction).",
    )
    deleted_issues = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Only for runs imported from the old first-shape sync_history (changes_deleted); "
        "empty when the source did not count deletions.",
    )
    synced_at = models.DateTimeField(default=timezone.now)

    objects = SyncHistoryManager.from_queryset(SyncHistoryQuerySet)()

    class Meta:
        verbose_name = "sync history entry"
        verbose_name_plural = "sync history"
        constraints = [
            models.CheckConstraint(
                condition=~Q(confluence_page_id="") & ~Q(linear_team_id=""),
                name="sync_synchistory_page_team_not_empty",
            ),
            *(
                models.CheckConstraint(
                    condition=Q(**{f"{name}__gte": 0}), name=f"sync_synchistory_{name}_non_negative"
                )
                for name in _HISTORY_COUNTERS
            ),
            models.CheckConstraint(
                condition=Q(deleted_issues__isnull=True) | Q(deleted_issues__gte=0),
                name="sync_synchistory_deleted_issues_non_negative",
            ),
        ]
        indexes = [
            models.Index(
                fields=["confluence_page_id", "linear_team_id", "-synced_at"], name="sync_history_pair_idx"
            ),
            models.Index(fields=["-synced_at"], name="sync_history_synced_at_idx"),
        ]

    def __str__(self) -> str:
        outcome = "ok" if self.success else "failed"
        when = f"{self.synced_at:%Y-%m-%d %H:%M}"
        return f"{self.confluence_page_id} ↔ {self.linear_team_id} at {when} ({outcome})"
