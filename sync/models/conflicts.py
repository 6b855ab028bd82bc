"""Conflicts between a Linear and a Confluence change, and their append-only resolution log."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from accounts.tenancy import visible_to
from accounts.validation import (
    clean_identifier,
    clean_optional_identifier,
)
from config.db import FastLoadMixin
from sync.diff import DiffRow, differing_field_count, item_data_diff, json_equal
from sync.merge import Merge, clean_field_path, pick_sides, three_way
from sync.models.outbox import (
    OUTBOX_CONSTRAINTS,
    OUTBOX_FIELDS,
    OUTBOX_INDEXES,
    ResolutionOutbox,
    ResolutionOutboxManager,
    ResolutionOutboxQuerySet,
)
from sync.models.state import SyncState
from sync.models.values import (
    ITEM_TYPE_MAX_LENGTH,
    clean_acting_user,
    clean_change,
)

logger = logging.getLogger(__name__)

# --- Conflict --------------------------------------------------------------------------------------

# LOCK_ORDER. Every path that locks conflicts and sync states (store, resolve, reopen, discard, clear,
# services.resolve_conflicts) takes them in one order, so that no two of them can deadlock:
#   1. Conflict rows, by id ascending (select_for_update().order_by("pk"), or one row);
#   2. then SyncState rows, by (confluence_page_id, linear_team_id) ascending
#      (SyncState.objects.refresh_conflict_counts, always last in the transaction).
# Never lock a conflict after a sync state in the same transaction.

#: Times ``store`` inserts again when concurrent clears keep deleting the row it collided with.
_STORE_INSERT_ATTEMPTS = 3
#: Ids per ``DELETE ... WHERE id IN (...)`` of ``clear``: within SQLite's 999 parameters.
_IDS_PER_STATEMENT = 500


class ResolutionStrategy(models.TextChoices):
    LINEAR = "linear", "Keep Linear"
    CONFLUENCE = "confluence", "Keep Confluence"
    MANUAL = "manual", "Manual (operator-written)"
    FIELDS = "fields", "Picked per field"
    NEWEST = "newest", "Keep the newest change"
    MERGED = "merged", "Merged automatically"


class ConflictChanged(ValidationError):
    """A resolution was asked against a version of the conflict that is no longer its content."""

    def __init__(self, conflict: Conflict, expected_version: int) -> None:
        super().__init__(
            f"Conflict {conflict.pk!r} changed since it was read: expected version {expected_version}, "
            f"it is now version {conflict.version}. Read it again and decide on what it says now.",
            code="conflict_changed",
        )
        self.conflict = conflict
        self.expected_version = expected_version
        self.current_version = conflict.version


class ConflictAlreadyResolved(ValidationError):
    """A resolution was asked for a conflict that someone else resolved first."""

    def __init__(self, conflict: Conflict) -> None:
        who = conflict.resolved_by.get_username() if conflict.resolved_by_id else "agent code"
        when = conflict.resolved_at.isoformat() if conflict.resolved_at else "an unknown time"
        super().__init__(
            f"Conflict {conflict.pk!r} was already resolved ({conflict.resolution_strategy}) by {who} "
            f"at {when}; reopen it first to resolve it again.",
            code="already_resolved",
        )
        self.conflict = conflict


def _build_resolved_change(conflict: Conflict, strategy: str, resolved_change: Any) -> dict[str, Any]:
    """The change a resolution stores: the winning side, or the operator's change, with id resolved-<id>."""
    if strategy == ResolutionStrategy.LINEAR:
        winner = conflict.linear_change
    elif strategy == ResolutionStrategy.CONFLUENCE:
        winner = conflict.confluence_change
    else:  # manual, or fields/newest/merged: the change built from the merge
        winner = resolved_change
    # As the old resolveConflict did: {...winningChange, id: `resolved-${conflictId}`}.
    return {**winner, "id": f"resolved-{conflict.pk}"}


def clean_conflicting_fields(value: Any) -> list[str]:
    """A sorted list of distinct dotted field paths (``None`` is no list: ``[]``)."""
    if value is None:
        return []
    if isinstance(value, str | bytes | dict) or not isinstance(value, Sequence | set | frozenset):
        raise ValueError(f"conflicting_fields must be a list of field paths, not {type(value).__name__}.")
    return sorted({clean_field_path(path, f"conflicting_fields[{n}]") for n, path in enumerate(value)})


def clean_resolution(
    strategy: Any, resolved_change: Any, *, picks: Any = None, expected_version: Any = None
) -> tuple[str, dict[str, Any] | None]:
    """Check a strategy and its resolved change (and picks, expected version) before anything is written.

    ``merged`` is the system's strategy (``sync.services.reconcile`` sets it); callers choose
    ``linear``, ``confluence``, ``manual`` (with ``resolved_change``), ``fields`` (with ``picks``) or
    ``newest``.
    """
    if not isinstance(strategy, str):
        raise ValueError(f"strategy must be a string, not {type(strategy).__name__}.")
    chosen = [value for value in ResolutionStrategy.values if value != ResolutionStrategy.MERGED]
    if strategy not in chosen:
        raise ValidationError(
            f"strategy must be one of {', '.join(chosen)} (got {strategy!r}).",
            code="invalid_strategy",
        )
    clean_expected_version(expected_version)
    if picks is not None and strategy != ResolutionStrategy.FIELDS:
        raise ValidationError(
            f"picks are only for the fields strategy, not {strategy!r}.", code="picks_not_allowed"
        )
    if strategy == ResolutionStrategy.FIELDS:
        if picks is None:
            raise ValidationError(
                "The fields strategy needs picks: a side ('linear' or 'confluence') per conflicting path.",
                code="picks_required",
            )
        if not isinstance(picks, dict):
            raise ValueError(f"picks must be a dict of field path -> side, not {type(picks).__name__}.")
    if strategy == ResolutionStrategy.MANUAL:
        if resolved_change is None:
            raise ValidationError(
                "A manual resolution needs a resolved_change.", code="resolved_change_required"
            )
        return strategy, clean_change(resolved_change, "resolved_change")
    if resolved_change is not None:
        raise ValidationError(
            f"resolved_change is only for the manual strategy; {strategy!r} keeps that side's change.",
            code="resolved_change_not_allowed",
        )
    return strategy, None


def clean_expected_version(value: Any) -> int | None:
    """``None`` (no check) or a positive integer version."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected_version must be an integer or None, not {type(value).__name__}.")
    if value < 1:
        raise ValidationError(f"expected_version must be at least 1 (got {value}).", code="min_value")
    return value


def _change_time(change: dict[str, Any]) -> dt.datetime | None:
    """The change's ``timestamp`` (milliseconds since the epoch) as an aware datetime, if it has one."""
    value = change.get("timestamp")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


class ConflictQuerySet(ResolutionOutboxQuerySet):
    """Chainable queries. They return lazy QuerySets, so they need no async twin: iterate them with
    ``async for`` or call Django's own ``aget``/``acount``/``afirst`` on them."""

    def for_pair(self, confluence_page_id: Any = None, linear_team_id: Any = None) -> ConflictQuerySet:
        """Conflicts of a page and/or team; ``None`` leaves that side unfiltered."""
        page = clean_optional_identifier(confluence_page_id, "confluence_page_id")
        team = clean_optional_identifier(linear_team_id, "linear_team_id")
        qs = self
        if page is not None:
            qs = qs.filter(confluence_page_id=page)
        if team is not None:
            qs = qs.filter(linear_team_id=team)
        return qs

    def for_organization(self, organization_id: str) -> ConflictQuerySet:
        """Conflicts of one organization (by its Linear organization id); rows without one excluded."""
        return self.filter(organization__linear_id=clean_identifier(organization_id, "organization_id"))

    def fill_organizations(self) -> int:
        """Give these conflicts without an organization the one their (page, team) sync state knows.

        One ``UPDATE`` with a correlated subquery (the legacy import calls it: old conflicts had no
        organization). ``updated_at`` is left alone. Returns the number of conflicts that got one.
        """
        organization = (
            SyncState.objects.filter(
                confluence_page_id=models.OuterRef("confluence_page_id"),
                linear_team_id=models.OuterRef("linear_team_id"),
                organization__isnull=False,
            )
            .order_by()
            .values("organization_id")[:1]
        )
        return self.filter(models.Exists(organization), organization__isnull=True).update(
            organization=models.Subquery(organization)
        )

    async def afill_organizations(self) -> int:
        """Async twin of :meth:`fill_organizations`."""
        return await sync_to_async(self.fill_organizations)()

    def unresolved(self, confluence_page_id: Any = None, linear_team_id: Any = None) -> ConflictQuerySet:
        """Unresolved conflicts, newest (``created_at``) first, as the old getUnresolvedConflicts."""
        return (
            self.for_pair(confluence_page_id, linear_team_id)
            .filter(is_resolved=False)
            .order_by("-created_at", "-id")
        )

    def resolved(self, confluence_page_id: Any = None, linear_team_id: Any = None) -> ConflictQuerySet:
        """Resolved conflicts by ``updated_at`` newest first, as the old getResolvedConflicts."""
        return (
            self.for_pair(confluence_page_id, linear_team_id)
            .filter(is_resolved=True)
            .order_by("-updated_at", "-id")
        )

    def owned_by(self, organization_ids: Iterable[int]) -> ConflictQuerySet:
        """Conflicts of these organizations (primary keys): see :mod:`accounts.tenancy`.

        Conflicts imported from the old system without an organization belong to none.
        """
        return self.filter(organization__in=sorted(set(organization_ids)))

    def visible_to(self, user: Any) -> ConflictQuerySet:
        """The conflicts ``user`` may see (:func:`accounts.tenancy.visible_to`)."""
        return visible_to(self, user)


class ConflictManager(ResolutionOutboxManager):
    def store(
        self,
        conflict_id: Any,
        *,
        linear_change: Any,
        confluence_change: Any,
        confluence_page_id: Any = None,
        linear_team_id: Any = None,
        organization_id: str | None = None,
        base_change: dict[str, Any] | None = None,
        conflicting_fields: Sequence[str] | None = None,
    ) -> Conflict:
        """Insert or update the conflict with this id (the old storeConflict); race-safe.

        The same changes again change nothing. Different changes replace them, and a resolved conflict
        is reopened (a new disagreement on the item), logged as a ``reopened`` ConflictResolution.
        ``None`` for page or team keeps what the row has; a value sets it. The pair's SyncState row is
        created when absent (both page and team given) so its ``conflict_count`` is right from the
        first conflict on.

        Three-way sync (``sync.services.reconcile``) also passes ``organization_id`` (the Linear
        organization id; a conflict of another organization with this id is refused),
        ``base_change`` (the last-synced snapshot as a change, or ``None``) and
        ``conflicting_fields`` (the paths a person must decide; ``differing_field_count`` is then
        their number). The content is both changes, the base and the conflicting fields: when a store
        changes it, ``version`` goes up by one.
        """
        conflict_id = clean_identifier(conflict_id, "conflict_id")
        linear_change = clean_change(linear_change, "linear_change")
        confluence_change = clean_change(confluence_change, "confluence_change")
        if linear_change["itemId"] != confluence_change["itemId"]:
            raise ValidationError(
                f"linear_change and confluence_change are about different items "
                f"({linear_change['itemId']!r} and {confluence_change['itemId']!r}).",
                code="item_mismatch",
            )
        page = clean_optional_identifier(confluence_page_id, "confluence_page_id")
        team = clean_optional_identifier(linear_team_id, "linear_team_id")
        organization_linear_id = clean_optional_identifier(organization_id, "organization_id")
        if base_change is not None:
            base_change = clean_change(base_change, "base_change")
        fields = clean_conflicting_fields(conflicting_fields)
        item_type = linear_change.get("itemType") or confluence_change.get("itemType") or ""
        if conflicting_fields is None:
            count = differing_field_count(linear_change["itemData"], confluence_change["itemData"])
        else:
            count = len(fields)

        with transaction.atomic():
            organization = (
                Organization.objects.ensure(organization_linear_id) if organization_linear_id else None
            )
            conflict = self.select_for_update().filter(pk=conflict_id).first()
            unowned = conflict is None or conflict.organization_id is None
            if organization is None and page and team and unowned:
                # A first-part caller names no organization: the conflict takes its pair's (what
                # fill_organizations does for imported rows), so that tenant scoping, the console's
                # organization column and filter all see it as that organization's.
                organization = Organization.objects.filter(
                    sync_states__confluence_page_id=page, sync_states__linear_team_id=team
                ).first()
            # A concurrent store may insert the row after the read above (the insert then fails), and
            # a concurrent clear may delete that row again before it is read back: insert once more,
            # a bounded number of times, rather than fail on a row that is gone.
            attempts = 0
            while conflict is None:
                attempts += 1
                now = timezone.now()
                try:
                    # A savepoint: a concurrent store of the same id makes this insert fail, and
                    # the transaction must survive to update the row the other one wrote.
                    with transaction.atomic():
                        conflict = self.create(
                            id=conflict_id,
                            confluence_page_id=page or "",
                            linear_team_id=team or "",
                            linear_change=linear_change,
                            confluence_change=confluence_change,
                            item_type=item_type,
                            item_id=linear_change["itemId"],
                            differing_field_count=count,
                            organization=organization,
                            base_change=base_change,
                            conflicting_fields=fields,
                            created_at=now,
                            updated_at=now,
                        )
                except IntegrityError as exc:
                    conflict = self.select_for_update().filter(pk=conflict_id).first()
                    if conflict is None and attempts >= _STORE_INSERT_ATTEMPTS:
                        raise ValidationError(
                            f"Conflict {conflict_id!r} could not be stored: it was inserted and deleted "
                            f"again by concurrent writers {attempts} times; store it again.",
                            code="concurrent_delete",
                        ) from exc
                else:
                    SyncState.objects.refresh_conflict_counts(
                        [(conflict.confluence_page_id, conflict.linear_team_id)], create=True
                    )
                    return conflict
            return conflict._update_from_store(
                linear_change=linear_change,
                confluence_change=confluence_change,
                page=page,
                team=team,
                item_type=item_type,
                differing=count,
                organization=organization,
                base_change=base_change,
                conflicting_fields=fields,
            )

    async def astore(
        self,
        conflict_id: Any,
        *,
        linear_change: Any,
        confluence_change: Any,
        confluence_page_id: Any = None,
        linear_team_id: Any = None,
        organization_id: str | None = None,
        base_change: dict[str, Any] | None = None,
        conflicting_fields: Sequence[str] | None = None,
    ) -> Conflict:
        """Async twin of :meth:`store`."""
        return await sync_to_async(self.store)(
            conflict_id,
            linear_change=linear_change,
            confluence_change=confluence_change,
            confluence_page_id=confluence_page_id,
            linear_team_id=linear_team_id,
            organization_id=organization_id,
            base_change=base_change,
            conflicting_fields=conflicting_fields,
        )

    def discard(self, conflict_id: Any) -> bool:
        """Delete one conflict (the old deleteConflict); whether a row went. Its log entries stay."""
        conflict_id = clean_identifier(conflict_id, "conflict_id")
        with transaction.atomic():
            conflict = (
                self.select_for_update()
                .filter(pk=conflict_id)
                .only("pk", "confluence_page_id", "linear_team_id")
                .first()
            )
            if conflict is None:
                return False
            pair = (conflict.confluence_page_id, conflict.linear_team_id)
            self.filter(pk=conflict_id).delete()
            SyncState.objects.refresh_conflict_counts([pair])
        return True

    async def adiscard(self, conflict_id: Any) -> bool:
        """Async twin of :meth:`discard`."""
        return await sync_to_async(self.discard)(conflict_id)

    def clear(self, confluence_page_id: Any = None, linear_team_id: Any = None) -> int:
        """Delete the conflicts of a page and/or team, or all of them (the old clearConflicts); count."""
        qs = self.get_queryset().for_pair(confluence_page_id, linear_team_id)
        with transaction.atomic():
            # LOCK_ORDER: the rows first, in id order, as every other conflict write takes them. A bare
            # DELETE locked them in the table's physical order and deadlocked with resolve, store and
            # bulk resolution (tests/reliability/test_concurrency_conflict_locks.py).
            rows = list(
                qs.select_for_update()
                .order_by("pk")
                .values_list("pk", "confluence_page_id", "linear_team_id", "is_resolved")
            )
            ids = [row[0] for row in rows]
            deleted = 0
            for start in range(0, len(ids), _IDS_PER_STATEMENT):
                # By id: a conflict stored into the scope after the lock is not deleted uncounted.
                deleted += self.filter(pk__in=ids[start : start + _IDS_PER_STATEMENT]).delete()[0]
            SyncState.objects.refresh_conflict_counts(
                (page, team) for _, page, team, is_resolved in rows if not is_resolved
            )
        return deleted

    async def aclear(self, confluence_page_id: Any = None, linear_team_id: Any = None) -> int:
        """Async twin of :meth:`clear`."""
        return await sync_to_async(self.clear)(confluence_page_id, linear_team_id)


class Conflict(FastLoadMixin, ResolutionOutbox):
    """A disagreement between Linear and Confluence about one item (old ``conflicts``)."""

    id = models.CharField(primary_key=True, max_length=255, help_text="The agent's id, conflict-<itemId>.")
    confluence_page_id = models.CharField(max_length=255, blank=True, default="")
    linear_team_id = models.CharField(max_length=255, blank=True, default="")
    linear_change = models.JSONField(default=dict)
    confluence_change = models.JSONField(default=dict)
    resolved_change = models.JSONField(null=True, blank=True)
    item_type = models.CharField(max_length=ITEM_TYPE_MAX_LENGTH, blank=True, default="")
    item_id = models.CharField(max_length=255, blank=True, default="")
    differing_field_count = models.PositiveIntegerField(
        default=0,
        help_text="Conflicting field paths (three-way), or top-level itemData keys that differ (no base).",
    )
    organization = models.ForeignKey(
        Organization,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="conflicts",
        help_text="Empty only for rows imported from the old system, which had no organization.",
    )
    # db_default too: rows written outside the ORM (the legacy import's COPY, the benchmarks' seeds)
    # get the same values without naming the new columns.
    version = models.PositiveIntegerField(
        default=1, db_default=1, help_text="+1 whenever a store changes the content; resolutions check it."
    )
    base_change = models.JSONField(
        null=True, blank=True, help_text="What both sides last agreed on (the snapshot), when known."
    )
    conflicting_fields = models.JSONField(
        default=list,
        db_default=models.Value([], output_field=models.JSONField()),
        blank=True,
        help_text="Field paths both sides changed differently (three-way).",
    )
    is_resolved = models.BooleanField(default=False)
    resolution_strategy = models.CharField(
        max_length=16, choices=ResolutionStrategy.choices, blank=True, default=""
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="resolved_conflicts",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # The resolution outbox (sync.models.outbox). Text and counters have database defaults too: rows
    # written outside the ORM (the legacy import, seeds) stay valid.
    applied_at = models.DateTimeField(
        null=True, blank=True, help_text="When a worker applied the resolution to Linear and Confluence."
    )
    applied_by = models.CharField(
        max_length=255,
        blank=True,
        default="",
        db_default="",
        help_text="The worker that applied the resolution.",
    )
    apply_attempts = models.PositiveIntegerField(
        default=0,
        db_default=0,
        help_text="Finished attempts to apply this resolution (failed ones and the success).",
    )
    next_apply_at = models.DateTimeField(
        null=True, blank=True, help_text="When a failed application is retried; empty means due now."
    )
    last_apply_error = models.TextField(
        blank=True, default="", db_default="", help_text="The error of the last failed application."
    )
    apply_lease_owner = models.CharField(
        max_length=255,
        blank=True,
        default="",
        db_default="",
        help_text="The worker applying the resolution now.",
    )
    apply_lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="When that worker's lease runs out and others may take it."
    )

    objects = ConflictManager.from_queryset(ConflictQuerySet)()

    class Meta:
        permissions = [("resolve_conflict", "Can resolve sync conflicts")]
        constraints = [
            models.CheckConstraint(condition=~Q(id=""), name="sync_conflict_id_not_empty"),
            models.CheckConstraint(
                condition=Q(
                    is_resolved=True,
                    resolution_strategy__in=ResolutionStrategy.values,
                    resolved_at__isnull=False,
                )
                | Q(is_resolved=False, resolution_strategy="", resolved_at__isnull=True),
                name="sync_conflict_resolved_iff_strategy_and_time",
            ),
            models.CheckConstraint(
                condition=Q(resolution_strategy__in=[*ResolutionStrategy.values, ""]),
                name="sync_conflict_strategy_valid",
            ),
            models.CheckConstraint(
                condition=Q(differing_field_count__gte=0),
                name="sync_conflict_differing_field_count_non_negative",
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="sync_conflict_version_positive"),
            *OUTBOX_CONSTRAINTS,
        ]
        indexes = [
            # unresolved() newest first, and the console's default changelist.
            models.Index(
                fields=["-created_at", "-id"],
                condition=Q(is_resolved=False),
                name="sync_conflict_unresolved_idx",
            ),
            # resolved() by updated_at newest first.
            models.Index(
                fields=["-updated_at", "-id"],
                condition=Q(is_resolved=True),
                name="sync_conflict_resolved_idx",
            ),
            # The same two listings for one (page, team): equality on the pair, then the order.
            models.Index(
                fields=["confluence_page_id", "linear_team_id", "-created_at", "-id"],
                condition=Q(is_resolved=False),
                name="sync_conflict_pair_open_idx",
            ),
            models.Index(
                fields=["confluence_page_id", "linear_team_id", "-updated_at", "-id"],
                condition=Q(is_resolved=True),
                name="sync_conflict_pair_done_idx",
            ),
            models.Index(fields=["linear_team_id"], name="sync_conflict_team_idx"),
            models.Index(fields=["item_type"], name="sync_conflict_item_type_idx"),
            models.Index(fields=["item_id"], name="sync_conflict_item_id_idx"),
            models.Index(fields=["created_at"], name="sync_conflict_created_at_idx"),
            models.Index(fields=["organization", "item_id"], name="sync_conflict_org_item_idx"),
            *OUTBOX_INDEXES,
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def pair(self) -> tuple[str, str]:
        """The (page, team) this conflict belongs to (empty strings when unknown)."""
        return (self.confluence_page_id, self.linear_team_id)

    def item_data_diff(self) -> list[DiffRow]:
        """The side-by-side rows of the two ``itemData`` objects (see :func:`sync.diff.item_data_diff`)."""
        return item_data_diff(
            (self.linear_change or {}).get("itemData") or {},
            (self.confluence_change or {}).get("itemData") or {},
        )

    # Writes -------------------------------------------------------------------------------------

    def merge(self) -> Merge:
        """The three-way merge of this conflict's sides against its base, with the owner rules now in force.

        Conflicts stored without a base (old callers, imported rows) merge as if there were none: every
        differing field is a conflict unless an owner rule decides it. One query for the owner rules
        when the conflict has an organization, none otherwise.
        """
        owners: dict[str, str] = {}
        if self.organization_id is not None:
            from sync.models.snapshots import FieldOwnership  # snapshots imports merge only

            owners = FieldOwnership.objects.owners_for_pk(
                self.organization_id,
                item_type=self.item_type,
                confluence_page_id=self.confluence_page_id,
                linear_team_id=self.linear_team_id,
            )
        base = (self.base_change or {}).get("itemData") if self.base_change else None
        linear = self.linear_change or {}
        confluence = self.confluence_change or {}
        linear_at, confluence_at = _change_time(linear), _change_time(confluence)
        if linear_at is None or confluence_at is None:
            # 'newest' rules cannot decide without both times: leave those paths to a person.
            owners = {path: owner for path, owner in owners.items() if owner != "newest"}
        return three_way(
            base if isinstance(base, dict) else None,
            linear.get("itemData") or {},
            confluence.get("itemData") or {},
            owners=owners,
            linear_at=linear_at,
            confluence_at=confluence_at,
        )

    async def amerge(self) -> Merge:
        """Async twin of :meth:`merge`."""
        return await sync_to_async(self.merge)()

    def conflict_paths(self, merge: Merge | None = None) -> list[str]:
        """The paths a person decides: ``conflicting_fields`` as stored, else those of the merge."""
        if self.conflicting_fields:
            return list(self.conflicting_fields)
        return list((merge or self.merge()).conflicts)

    async def aconflict_paths(self, merge: Merge | None = None) -> list[str]:
        """Async twin of :meth:`conflict_paths`."""
        return await sync_to_async(self.conflict_paths)(merge)

    def resolve(
        self,
        strategy: Any,
        resolved_change: Any = None,
        *,
        by: Any = None,
        expected_version: int | None = None,
        picks: dict[str, str] | None = None,
    ) -> Conflict:
        """Resolve with ``linear``, ``confluence``, ``manual`` (needs ``resolved_change``), ``fields``
        (needs ``picks``: ``{path: "linear" | "confluence"}`` for every conflicting path; fields merged
        automatically stay merged) or ``newest`` (every conflicting path from the side whose change has
        the later ``timestamp``).

        The row is locked and re-read: a caller holding a stale copy of a conflict that someone else
        resolved meanwhile gets :class:`ConflictAlreadyResolved`; with ``expected_version`` (the version
        the caller showed or read), a conflict whose content a store changed since gets
        :class:`ConflictChanged`. Nothing is written then. Writes a ``resolved`` ConflictResolution and
        updates the pair's ``conflict_count`` in the same transaction. Returns ``self``, refreshed.
        """
        strategy, resolved_change = clean_resolution(
            strategy, resolved_change, picks=picks, expected_version=expected_version
        )
        by = clean_acting_user(by)
        with transaction.atomic():
            locked = self._locked()
            if expected_version is not None and locked.version != expected_version:
                raise ConflictChanged(locked, expected_version)
            if strategy in (ResolutionStrategy.FIELDS, ResolutionStrategy.NEWEST) and not locked.is_resolved:
                resolved_change = locked._picked_change(strategy, picks)
            locked._apply_resolution(strategy, resolved_change, by=by, at=timezone.now())
            SyncState.objects.refresh_conflict_counts([locked.pair])
        self._copy_from(locked)
        return self

    async def aresolve(
        self,
        strategy: Any,
        resolved_change: Any = None,
        *,
        by: Any = None,
        expected_version: int | None = None,
        picks: dict[str, str] | None = None,
    ) -> Conflict:
        """Async twin of :meth:`resolve`."""
        return await sync_to_async(self.resolve)(
            strategy, resolved_change, by=by, expected_version=expected_version, picks=picks
        )

    def _picked_change(self, strategy: str, picks: dict[str, str] | None) -> dict[str, Any]:
        """The resolved change of ``fields``/``newest``: the merge with each conflicting path picked."""
        merge = self.merge()
        paths = self.conflict_paths(merge)
        if strategy == ResolutionStrategy.NEWEST:
            linear_at = _change_time(self.linear_change or {})
            confluence_at = _change_time(self.confluence_change or {})
            if linear_at is None or confluence_at is None:
                raise ValidationError(
                    f"Conflict {self.pk!r}: the newest strategy needs a timestamp on both changes.",
                    code="newest_needs_times",
                )
            if linear_at == confluence_at:
                raise ValidationError(
                    f"Conflict {self.pk!r}: both changes have the same timestamp; pick the fields instead.",
                    code="newest_tie",
                )
            side = "linear" if linear_at > confluence_at else "confluence"
            picks = dict.fromkeys(paths, side)
        item_data = pick_sides(
            replace(merge, conflicts=paths),
            (self.linear_change or {}).get("itemData") or {},
            (self.confluence_change or {}).get("itemData") or {},
            picks or {},
        )
        return self._merged_change(item_data)

    def _merged_change(self, item_data: dict[str, Any]) -> dict[str, Any]:
        """A change carrying a merged ``itemData`` (source ``merged``), shaped as the sides are."""
        template = self.linear_change or self.confluence_change or {}
        return clean_change(
            {**template, "id": f"resolved-{self.pk}", "source": "merged", "itemData": item_data},
            "resolved_change",
        )

    def reopen(self, *, by: Any = None) -> Conflict:
        """Mark a resolved conflict unresolved again, logged as ``reopened``; returns ``self``."""
        by = clean_acting_user(by)
        with transaction.atomic():
            locked = self._locked()
            if not locked.is_resolved:
                raise ValidationError(f"Conflict {self.pk!r} is not resolved.", code="not_resolved")
            locked._reopen(by=by, at=timezone.now())
            locked.save(update_fields=_RESOLUTION_FIELDS)
            SyncState.objects.refresh_conflict_counts([locked.pair])
        self._copy_from(locked)
        return self

    async def areopen(self, *, by: Any = None) -> Conflict:
        """Async twin of :meth:`reopen`."""
        return await sync_to_async(self.reopen)(by=by)

    # Internals shared by resolve(), services.resolve_conflicts and Manager.store ---------------------

    def _locked(self) -> Conflict:
        """This conflict's row, re-read under ``select_for_update`` (call inside ``atomic``)."""
        # No select_related("resolved_by"): after waiting for the lock, PostgreSQL re-reads the locked
        # row but not a joined one, so the joined user would be the stale (missing) one.
        locked = type(self)._default_manager.select_for_update().filter(pk=self.pk).first()
        if locked is None:
            raise ValidationError(f"Conflict {self.pk!r} no longer exists.", code="does_not_exist")
        return locked

    def _apply_resolution(
        self, strategy: str, resolved_change: dict[str, Any] | None, *, by: Any, at: dt.datetime
    ) -> None:
        """Resolve this locked row (arguments already cleaned): save it and write the log entry.

        The one copy of the resolution logic: ``resolve()`` and ``services.resolve_conflicts`` call it.
        The caller refreshes the pair's ``conflict_count``.
        """
        if self.is_resolved:
            raise ConflictAlreadyResolved(self)
        self.resolved_change = _build_resolved_change(self, strategy, resolved_change)
        self.is_resolved = True
        self.resolution_strategy = strategy
        self.resolved_at = at
        self.resolved_by = by
        self.updated_at = at
        self._withdraw_application()  # a new decision is applied afresh (sync.models.outbox)
        self.save(update_fields=_RESOLUTION_FIELDS)
        ConflictResolution.objects.create(
            conflict_id=self.pk,
            action=ResolutionAction.RESOLVED,
            strategy=strategy,
            resolved_change=self.resolved_change,
            by=by,
            at=at,
        )
        logger.info("Conflict %s resolved (%s) by %s", self.pk, strategy, by.pk if by else "agent code")

    def _reopen(self, *, by: Any, at: dt.datetime) -> None:
        """Clear the resolution of this locked row and log it; the caller saves."""
        self.is_resolved = False
        self.resolution_strategy = ""
        self.resolved_at = None
        self.resolved_by = None
        self.resolved_change = None
        self.updated_at = at
        self._withdraw_application()  # nothing left to apply (sync.models.outbox)
        ConflictResolution.objects.create(conflict_id=self.pk, action=ResolutionAction.REOPENED, by=by, at=at)
        logger.info("Conflict %s reopened by %s", self.pk, by.pk if by else "agent code")

    def _update_from_store(
        self,
        *,
        linear_change: dict[str, Any],
        confluence_change: dict[str, Any],
        page: str | None,
        team: str | None,
        item_type: str,
        differing: int,
        organization: Organization | None = None,
        base_change: dict[str, Any] | None = None,
        conflicting_fields: list[str] | None = None,
    ) -> Conflict:
        """The update half of ``store`` on this locked row."""
        old_pair = self.pair
        changed_fields: list[str] = []
        if organization is not None and self.organization_id != organization.pk:
            if self.organization_id is not None:
                raise ValidationError(
                    f"Conflict {self.pk!r} belongs to another organization; it cannot be stored for "
                    f"{organization.linear_id!r}.",
                    code="other_organization",
                )
            self.organization = organization
            changed_fields.append("organization")
        if page is not None and page != self.confluence_page_id:
            self.confluence_page_id = page
            changed_fields.append("confluence_page_id")
        if team is not None and team != self.linear_team_id:
            self.linear_team_id = team
            changed_fields.append("linear_team_id")
        conflicting_fields = conflicting_fields or []
        same_changes = (
            json_equal(self.linear_change, linear_change)
            and json_equal(self.confluence_change, confluence_change)
            and json_equal(self.base_change, base_change)
            and list(self.conflicting_fields or []) == conflicting_fields
        )
        now = timezone.now()
        if not same_changes:
            self.linear_change = linear_change
            self.confluence_change = confluence_change
            self.base_change = base_change
            self.conflicting_fields = conflicting_fields
            self.item_type = item_type
            self.item_id = linear_change["itemId"]
            self.differing_field_count = differing
            self.version += 1
            changed_fields += ["linear_change", "confluence_change", "item_type", "item_id"]
            changed_fields += ["differing_field_count", "base_change", "conflicting_fields", "version"]
            if self.is_resolved:
                self._reopen(by=None, at=now)
                changed_fields += _RESOLUTION_FIELDS
        if not changed_fields:
            return self
        self.updated_at = now
        self.save(update_fields=sorted(set(changed_fields) | {"updated_at"}))
        SyncState.objects.refresh_conflict_counts({old_pair, self.pair}, create=True)
        return self

    def _copy_from(self, other: Conflict) -> None:
        for field in self._meta.concrete_fields:
            setattr(self, field.attname, getattr(other, field.attname))
        if other.resolved_by_id is not None:
            self.resolved_by = other.resolved_by


_RESOLUTION_FIELDS = [
    "is_resolved",
    "resolution_strategy",
    "resolved_at",
    "resolved_by",
    "resolved_change",
    "updated_at",
    *OUTBOX_FIELDS,
]


# --- ConflictResolution --------------------------------------------------------------------------


class ResolutionAction(models.TextChoices):
    RESOLVED = "resolved", "Resolved"
    REOPENED = "reopened", "Reopened"


class AppendOnlyError(PermissionDenied):
    """An update or delete of a ConflictResolution entry: the log is append-only."""


class ConflictResolutionQuerySet(models.QuerySet["ConflictResolution"]):
    """Entries of the log. ``update()`` and ``delete()`` refuse: the log is append-only.

    (Deleting a user still works: Django's collector sets ``by`` to NULL through the private
    ``_update``, and the entry stays.)
    """

    def update(self, **kwargs: Any) -> int:
        """Refused: the conflict resolution log is append-only."""
        raise AppendOnlyError("The conflict resolution log is append-only: entries cannot be updated.")

    def delete(self) -> tuple[int, dict[str, int]]:
        """Refused: the conflict resolution log is append-only."""
        raise AppendOnlyError("The conflict resolution log is append-only: entries cannot be deleted.")

    delete.queryset_only = True  # type: ignore[attr-defined]

    def owned_by(self, organization_ids: Iterable[int]) -> ConflictResolutionQuerySet:
        """Entries whose conflict belongs to these organizations (primary keys).

        The entry keeps only the conflict's id: once the conflict is gone (deleted, or its organization
        offboarded) the entry belongs to no organization, and only unlimited staff see it.
        """
        conflicts = Conflict.objects.owned_by(organization_ids).filter(pk=models.OuterRef("conflict_id"))
        return self.filter(models.Exists(conflicts))

    def visible_to(self, user: Any) -> ConflictResolutionQuerySet:
        """The entries ``user`` may see (:func:`accounts.tenancy.visible_to`)."""
        return visible_to(self, user)

    def detach_organization(self, organization: Any) -> int:
        """Record the organization's name on its entries before it is offboarded; the number of entries.

        Called by ``accounts.services.offboard_organization`` (before the conflicts go): the entries
        stay (append-only) and keep saying whose they were. The one write the log allows on existing
        entries, and only into an empty ``organization_name``.
        """
        name = str(organization)[:255]
        entries = self.owned_by([organization.pk]).filter(organization_name="")
        return models.QuerySet.update(entries, organization_name=name)

    async def adetach_organization(self, organization: Any) -> int:
        """Async twin of :meth:`detach_organization`."""
        return await sync_to_async(self.detach_organization)(organization)

    def for_conflict(self, conflict_id: Any) -> ConflictResolutionQuerySet:
        """The entries of one conflict, oldest first (the conflict need not exist any more)."""
        conflict_id = clean_identifier(conflict_id, "conflict_id")
        return self.filter(conflict_id=conflict_id).order_by("at", "id")


class ConflictResolution(models.Model):
    """One resolution or reopening of a conflict: who, when, strategy and the resolved change.

    Append-only: ``save()`` refuses to update an existing entry, ``delete()`` refuses, and so do the
    queryset's ``update()``/``delete()``. ``conflict_id`` is text, not a foreign key, so that deleting a
    conflict keeps its history.
    """

    conflict_id = models.CharField(max_length=255)
    action = models.CharField(max_length=16, choices=ResolutionAction.choices)
    strategy = models.CharField(max_length=16, choices=ResolutionStrategy.choices, blank=True, default="")
    resolved_change = models.JSONField(null=True, blank=True)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conflict_resolutions",
        help_text="The operator; empty for agent code.",
    )
    at = models.DateTimeField(default=timezone.now)
    organization_name = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="Recorded when the conflict's organization is offboarded: the log outlives its tenant.",
    )

    objects = ConflictResolutionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=ResolutionAction.values), name="sync_conflictresolution_action_valid"
            ),
            models.CheckConstraint(
                condition=~Q(conflict_id=""), name="sync_conflictresolution_conflict_id_not_empty"
            ),
            models.CheckConstraint(
                condition=Q(action=ResolutionAction.RESOLVED, strategy__in=ResolutionStrategy.values)
                | Q(action=ResolutionAction.REOPENED, strategy=""),
                name="sync_conflictresolution_strategy_matches_action",
            ),
        ]
        indexes = [
            models.Index(fields=["conflict_id", "at"], name="sync_confres_conflict_at_idx"),
            models.Index(fields=["-at"], name="sync_confres_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.conflict_id} {self.action} {self.strategy}".rstrip()

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Insert a new entry; an existing one cannot be saved again (append-only)."""
        if not self._state.adding:
            raise AppendOnlyError("The conflict resolution log is append-only: entries cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        """Refused: the conflict resolution log is append-only."""
        raise AppendOnlyError("The conflict resolution log is append-only: entries cannot be deleted.")
