"""Sync state per (Confluence page, Linear team): last sync, status, the unresolved conflict count, and
the schedule and lease that let many agent workers share the pairs (``claim_due``/``release``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Organization
from accounts.validation import (
    clean_aware_datetime,
    clean_identifier,
)
from config.db import CompiledQuery, FastLoadMixin, upsert_one
from sync.models.leases import (
    LeaseLost,
    claim_under_lease,
    clean_at,
    clean_error,
    clean_lease,
    clean_worker,
    sync_retry_delay,
)

# --- SyncState -------------------------------------------------------------------------------------


#: (page, team) pairs per statement of ``refresh_conflict_counts``: two parameters each, within SQLite's
#: 999 and PostgreSQL's 65,535 (server-side binding).
_PAIRS_PER_STATEMENT = 400


class SyncStatus(models.TextChoices):
    IDLE = "idle", "Idle"
    RUNNING = "running", "Running"
    FAILED = "failed", "Failed"


#: The lease ``claim_due`` and ``renew_lease`` give when none is named.
DEFAULT_LEASE = dt.timedelta(minutes=5)


def default_sync_interval() -> dt.timedelta:
    """A new pair's ``sync_interval``: ``SYNC_INTERVAL_SECONDS`` from the settings."""
    return dt.timedelta(seconds=settings.SYNC_INTERVAL_SECONDS)


class SyncStateQuerySet(models.QuerySet["SyncState"]):
    def due(self, at: dt.datetime) -> SyncStateQuerySet:
        """Pairs due at ``at`` and held by no worker: never scheduled or scheduled by then, lease over."""
        return self.filter(
            Q(next_sync_at__isnull=True) | Q(next_sync_at__lte=at),
            Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=at),
        )

    def leased(self, at: dt.datetime) -> SyncStateQuerySet:
        """Pairs a worker holds at ``at`` (lease not expired)."""
        return self.filter(lease_expires_at__gt=at)

    def schedule_now(self) -> int:
        """Make these pairs due at once ("sync now"); the number of rows changed.

        ``next_sync_at`` is cleared (due now, ahead of every overdue pair); a pair a worker holds keeps
        its lease and is taken by the next claim after the lease ends, unless that worker's release
        schedules it anew.
        """
        return self.update(next_sync_at=None, updated_at=timezone.now())

    async def aschedule_now(self) -> int:
        """Async twin of :meth:`schedule_now`."""
        return await sync_to_async(self.schedule_now)()

    def failing(self) -> SyncStateQuerySet:
        """Pairs whose last sync failed (``failure_count`` > 0), most failures first."""
        return self.filter(failure_count__gt=0).order_by("-failure_count", "-updated_at", "pk")

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

    def claim_due(
        self,
        *,
        worker: str,
        limit: int = 10,
        lease: dt.timedelta = DEFAULT_LEASE,
        organization_id: str | None = None,
        at: dt.datetime | None = None,
    ) -> list[SyncState]:
        """Lease up to ``limit`` due pairs to ``worker`` for ``lease``; each due pair goes to one worker.

        A pair is due when ``next_sync_at`` is empty (never synced) or not after ``at`` (default now)
        and no lease on it runs past ``at``. Most overdue first (never scheduled before all), then by
        id. One short transaction: ``SELECT … FOR UPDATE SKIP LOCKED … LIMIT`` and one ``UPDATE``, so
        concurrent workers on PostgreSQL skip each other's rows instead of waiting or taking them
        twice. On SQLite (no row locks) the transaction takes the database's write lock at ``BEGIN``
        (``IMMEDIATE``): correct, one claim at a time; run one worker there. Claimed rows get
        ``status`` running. ``organization_id`` (a Linear organization id) limits the claim to one
        tenant. Returns the claimed rows, in claim order.
        """
        return claim_under_lease(
            self,
            self.get_queryset().due,
            worker=worker,
            limit=limit,
            lease=lease,
            organization_id=organization_id,
            at=at,
            order_by=(F("next_sync_at").asc(nulls_first=True), "pk"),
            claim=lambda worker, expires, at: {
                "lease_owner": worker,
                "lease_expires_at": expires,
                "status": SyncStatus.RUNNING,
                "updated_at": at,
            },
        )

    # Async twins (Django's naming: the sync body run by asgiref's sync_to_async) ----------------------

    async def alast_synced_at(self, confluence_page_id: Any, linear_team_id: Any) -> dt.datetime | None:
        """Async twin of :meth:`last_synced_at`."""
        return await sync_to_async(self.last_synced_at)(confluence_page_id, linear_team_id)

    async def amark_synced(
        self,
        confluence_page_id: Any,
        linear_team_id: Any,
        at: dt.datetime | None = None,
        *,
        organization_id: Any = None,
    ) -> SyncState:
        """Async twin of :meth:`mark_synced`."""
        return await sync_to_async(self.mark_synced)(
            confluence_page_id, linear_team_id, at, organization_id=organization_id
        )

    async def aset_status(self, confluence_page_id: Any, linear_team_id: Any, status: Any) -> SyncState:
        """Async twin of :meth:`set_status`."""
        return await sync_to_async(self.set_status)(confluence_page_id, linear_team_id, status)

    async def aclaim_due(
        self,
        *,
        worker: str,
        limit: int = 10,
        lease: dt.timedelta = DEFAULT_LEASE,
        organization_id: str | None = None,
        at: dt.datetime | None = None,
    ) -> list[SyncState]:
        """Async twin of :meth:`claim_due`."""
        return await sync_to_async(self.claim_due)(
            worker=worker, limit=limit, lease=lease, organization_id=organization_id, at=at
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


class SyncState(FastLoadMixin, models.Model):
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
    # Scheduling and the lease of the worker syncing the pair now (claim_due / release). db_default too:
    # rows written outside the ORM (the legacy import, the benchmarks' raw inserts) stay valid.
    sync_interval = models.DurationField(
        default=default_sync_interval,
        db_default=dt.timedelta(seconds=300),
        validators=[MinValueValidator(dt.timedelta(seconds=1))],
        help_text="Time between two syncs of this pair (at least 1 second), e.g. 00:05:00.",
    )
    next_sync_at = models.DateTimeField(
        null=True, blank=True, help_text="When the pair is due next; empty means due now."
    )
    lease_owner = models.CharField(
        max_length=255,
        blank=True,
        default="",
        db_default="",
        help_text="The worker syncing the pair now; empty when none.",
    )
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="When the worker's lease runs out and others may take the pair."
    )
    failure_count = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Consecutive failed syncs."
    )
    last_error = models.TextField(
        blank=True, default="", db_default="", help_text="The error of the last failed sync."
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
            models.CheckConstraint(
                condition=Q(failure_count__gte=0), name="sync_syncstate_failure_count_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(sync_interval__gte=dt.timedelta(seconds=1)),
                name="sync_syncstate_sync_interval_min_1s",
            ),
            # A lease is an owner and an expiry, or neither.
            models.CheckConstraint(
                condition=Q(lease_owner="", lease_expires_at__isnull=True)
                | (~Q(lease_owner="") & Q(lease_expires_at__isnull=False)),
                name="sync_syncstate_lease_owner_iff_expiry",
            ),
        ]
        indexes = [
            # claim_due: due pairs, most overdue first.
            models.Index(fields=["next_sync_at", "id"], name="sync_syncstate_next_sync_idx"),
            # The dashboard's failing pairs.
            models.Index(
                fields=["-failure_count"], condition=Q(failure_count__gt=0), name="sync_syncstate_failing_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.confluence_page_id} ↔ {self.linear_team_id}"

    @property
    def pair(self) -> tuple[str, str]:
        """The (Confluence page id, Linear team id) this row is about."""
        return (self.confluence_page_id, self.linear_team_id)

    # Leases (many workers) ------------------------------------------------------------------------

    def renew_lease(
        self, *, worker: str, lease: dt.timedelta = DEFAULT_LEASE, at: dt.datetime | None = None
    ) -> SyncState:
        """Extend ``worker``'s lease to ``at`` (default now) + ``lease``; :class:`LeaseLost` if not held.

        Held means the row names ``worker`` and its lease has not run out at ``at``: a worker whose lease
        expired must stop, since another worker may have taken the pair. One conditional ``UPDATE``.
        """
        worker = clean_worker(worker)
        lease = clean_lease(lease)
        at = clean_at(at, timezone.now())
        expires = at + lease
        renewed = (
            type(self)
            ._default_manager.filter(pk=self.pk, lease_owner=worker, lease_expires_at__gt=at)
            .update(lease_expires_at=expires, updated_at=at)
        )
        if not renewed:
            holder = (
                type(self)._default_manager.filter(pk=self.pk).values_list("lease_owner", flat=True).first()
            )
            raise LeaseLost(f"Sync state {self}", worker, holder or "")
        self.lease_expires_at = expires
        self.updated_at = at
        return self

    def release(
        self,
        *,
        worker: str,
        success: bool,
        error: str | None = None,
        next_sync_at: dt.datetime | None = None,
        at: dt.datetime | None = None,
    ) -> SyncState:
        """End ``worker``'s lease: record the sync's outcome and schedule the next one.

        ``success``: ``last_synced_at`` = ``at`` (default now), status idle, failures reset, next sync
        at ``at`` + ``sync_interval``. Failure: status failed, ``failure_count`` + 1, ``error`` kept in
        ``last_error`` (secrets redacted, cut to 4,000 characters), retry after
        ``SYNC_RETRY_BASE_SECONDS`` doubled per consecutive failure up to ``SYNC_RETRY_MAX_SECONDS``
        (+ at most 10 % jitter). ``next_sync_at`` overrides either schedule. The row is locked and
        re-read: :class:`LeaseLost` when another worker holds the pair now (this worker's lease ran out
        and the pair was claimed again) or nobody does; a lease that ran out with no one taking the
        pair over is still this worker's to release. Returns ``self``, refreshed.
        """
        worker = clean_worker(worker)
        if not isinstance(success, bool):
            raise ValueError(f"success must be a bool, not {type(success).__name__}.")
        if success and error is not None:
            raise ValidationError("error is only for a failed sync (success=False).", code="invalid")
        error_text = clean_error(error)
        next_sync_at = clean_aware_datetime(next_sync_at, "next_sync_at", required=False)
        at = clean_at(at, timezone.now())
        manager = type(self)._default_manager
        with transaction.atomic(using=manager.db):
            locked = manager.select_for_update().filter(pk=self.pk).first()
            if locked is None:
                raise ValidationError(f"Sync state {self} no longer exists.", code="does_not_exist")
            if locked.lease_owner != worker:
                raise LeaseLost(f"Sync state {locked}", worker, locked.lease_owner)
            if success:
                locked.last_synced_at = at
                locked.status = SyncStatus.IDLE
                locked.failure_count = 0
                locked.last_error = ""
                locked.next_sync_at = next_sync_at or at + locked.sync_interval
            else:
                locked.status = SyncStatus.FAILED
                locked.failure_count += 1
                locked.last_error = error_text
                locked.next_sync_at = next_sync_at or at + sync_retry_delay(locked.failure_count)
            locked.lease_owner = ""
            locked.lease_expires_at = None
            locked.updated_at = at
            locked.save(update_fields=_RELEASE_FIELDS)
        for field in self._meta.concrete_fields:
            setattr(self, field.attname, getattr(locked, field.attname))
        return self

    def lease_is_held(self, at: dt.datetime | None = None) -> bool:
        """Whether a worker holds this pair at ``at`` (default now), as far as this copy knows."""
        at = clean_at(at, timezone.now())
        return bool(self.lease_owner) and self.lease_expires_at is not None and self.lease_expires_at > at

    async def arenew_lease(
        self, *, worker: str, lease: dt.timedelta = DEFAULT_LEASE, at: dt.datetime | None = None
    ) -> SyncState:
        """Async twin of :meth:`renew_lease`."""
        return await sync_to_async(self.renew_lease)(worker=worker, lease=lease, at=at)

    async def arelease(
        self,
        *,
        worker: str,
        success: bool,
        error: str | None = None,
        next_sync_at: dt.datetime | None = None,
        at: dt.datetime | None = None,
    ) -> SyncState:
        """Async twin of :meth:`release`."""
        return await sync_to_async(self.release)(
            worker=worker, success=success, error=error, next_sync_at=next_sync_at, at=at
        )


_RELEASE_FIELDS = [
    "last_synced_at",
    "status",
    "failure_count",
    "last_error",
    "next_sync_at",
    "lease_owner",
    "lease_expires_at",
    "updated_at",
]
