"""Sync state, conflicts, sync history and the Linear issue cache.

The public API mirrors the old TypeScript functions (see ``shared/legacy-schema.md``):

- ``getLastSyncTimestamp`` / ``updateLastSyncTimestamp`` → ``SyncState.objects.last_synced_at`` /
  ``mark_synced``;
- ``storeConflict``, ``getUnresolvedConflicts``, ``getResolvedConflicts``, ``deleteConflict``,
  ``clearConflicts`` → ``Conflict.objects.store``, ``unresolved``, ``resolved``, ``discard``, ``clear``,
  plus ``conflict.resolve()`` / ``conflict.reopen()``;
- ``recordSyncHistory`` / ``getSyncHistory`` → ``SyncHistory.objects.record`` / ``for_pair``.

Timestamps default to ``timezone.now`` instead of ``auto_now``/``auto_now_add`` so that the legacy import
can keep the old rows' times; the write methods here set ``updated_at`` themselves.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connections, models, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Organization
from accounts.validation import (
    clean_aware_datetime,
    clean_identifier,
    clean_non_negative_int,
    clean_optional_identifier,
    clean_text,
)
from config.db import CompiledQuery, FastLoadMixin, upsert_one
from sync.diff import DiffRow, differing_field_count, item_data_diff, json_equal

logger = logging.getLogger(__name__)

#: Longest ``itemType`` accepted (the agent writes epic, feature, story, enabler).
ITEM_TYPE_MAX_LENGTH = 64

#: Keys every change object must have (``legacy-schema.md``, "Conflict JSON").
CHANGE_REQUIRED_KEYS = ("itemId", "source", "itemData")


# --- JSON values ---------------------------------------------------------------------------------

#: ``\u0000`` in JSON text that is an escape, not an escaped backslash followed by "u0000".
_JSON_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def clean_json(value: Any, name: str) -> Any:
    """Return ``value`` if it can be stored in a JSON column on both databases, else raise.

    Refused with a ``ValidationError`` naming ``name``: values ``json`` cannot serialise (sets, datetimes,
    Decimals, objects), non-finite floats (JSON has no NaN/Infinity) and NUL characters in any string or
    key (PostgreSQL's ``jsonb`` refuses ``\\u0000``). Any other JSON — unicode, deep nesting — passes.
    """
    try:
        dumped = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name} is not valid JSON: {exc}.", code="invalid_json") from exc
    except RecursionError as exc:
        raise ValidationError(f"{name} is nested too deeply.", code="invalid_json") from exc
    # json.dumps writes a NUL in any string or key as the escape \u0000: a substring search of its
    # output (the regex only when that finds one) instead of walking the value again, which cost
    # LinearIssueCache.upsert_many a tenth of its time (it checks every issue).
    if "\\u0000" in dumped and _JSON_NUL_ESCAPE.search(dumped):
        raise ValidationError(f"{name} must not contain NUL characters.", code="invalid_json")
    return value


def clean_change(value: Any, name: str) -> dict[str, Any]:
    """Return ``value`` if it is a change object (``itemId``, ``source``, ``itemData``), else raise.

    ``name`` says which side is checked (``linear_change``, ``confluence_change``, ``resolved_change``)
    and appears in the message together with the missing or bad key.
    """
    if not isinstance(value, dict):
        raise ValidationError(
            f"{name} must be a JSON object, not {type(value).__name__}.", code="invalid_change"
        )
    for key in CHANGE_REQUIRED_KEYS:
        if key not in value:
            raise ValidationError(f"{name} has no '{key}' key.", code="missing_key")
    for key in ("itemId", "source"):
        if not isinstance(value[key], str) or not value[key].strip():
            raise ValidationError(f"{name}['{key}'] must be a non-empty string.", code="invalid_change")
    clean_identifier(value["itemId"], f"{name}['itemId']")
    if not isinstance(value["itemData"], dict):
        raise ValidationError(
            f"{name}['itemData'] must be a JSON object, not {type(value['itemData']).__name__}.",
            code="invalid_change",
        )
    item_type = value.get("itemType")
    if item_type is not None:
        if not isinstance(item_type, str):
            raise ValidationError(f"{name}['itemType'] must be a string.", code="invalid_change")
        clean_text(item_type, f"{name}['itemType']", required=False, max_length=ITEM_TYPE_MAX_LENGTH)
    return clean_json(value, name)


def clean_acting_user(by: Any) -> Any:
    """The acting user for a resolution: ``None`` (agent code) or a saved user instance."""
    if by is None:
        return None
    user_model = Conflict._meta.get_field("resolved_by").related_model
    if not isinstance(by, user_model):
        raise ValueError(f"by must be a {user_model.__name__} or None, not {type(by).__name__}.")
    if by.pk is None:
        raise ValueError("by must be a saved user.")
    return by


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


# --- Conflict --------------------------------------------------------------------------------------


class ResolutionStrategy(models.TextChoices):
    LINEAR = "linear", "Keep Linear"
    CONFLUENCE = "confluence", "Keep Confluence"
    MANUAL = "manual", "Manual (operator-written)"


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
    else:
        winner = resolved_change
    # As the old resolveConflict did: {...winningChange, id: `resolved-${conflictId}`}.
    return {**winner, "id": f"resolved-{conflict.pk}"}


def clean_resolution(strategy: Any, resolved_change: Any) -> tuple[str, dict[str, Any] | None]:
    """Check a strategy and its resolved change before anything is locked or written."""
    if not isinstance(strategy, str):
        raise ValueError(f"strategy must be a string, not {type(strategy).__name__}.")
    if strategy not in ResolutionStrategy.values:
        raise ValidationError(
            f"strategy must be one of {', '.join(ResolutionStrategy.values)} (got {strategy!r}).",
            code="invalid_strategy",
        )
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


class ConflictQuerySet(models.QuerySet["Conflict"]):
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


class ConflictManager(models.Manager["Conflict"]):
    def store(
        self,
        conflict_id: Any,
        *,
        linear_change: Any,
        confluence_change: Any,
        confluence_page_id: Any = None,
        linear_team_id: Any = None,
    ) -> Conflict:
        """Insert or update the conflict with this id (the old storeConflict); race-safe.

        The same changes again change nothing. Different changes replace them, and a resolved conflict
        is reopened (a new disagreement on the item), logged as a ``reopened`` ConflictResolution.
        ``None`` for page or team keeps what the row has; a value sets it. The pair's SyncState row is
        created when absent (both page and team given) so its ``conflict_count`` is right from the
        first conflict on.
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
        item_type = linear_change.get("itemType") or confluence_change.get("itemType") or ""
        count = differing_field_count(linear_change["itemData"], confluence_change["itemData"])

        with transaction.atomic():
            conflict = self.select_for_update().filter(pk=conflict_id).first()
            if conflict is None:
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
                            created_at=now,
                            updated_at=now,
                        )
                except IntegrityError:
                    conflict = self.select_for_update().get(pk=conflict_id)
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

    def clear(self, confluence_page_id: Any = None, linear_team_id: Any = None) -> int:
        """Delete the conflicts of a page and/or team, or all of them (the old clearConflicts); count."""
        qs = self.get_queryset().for_pair(confluence_page_id, linear_team_id)
        with transaction.atomic():
            pairs = list(
                qs.filter(is_resolved=False)
                .order_by()
                .values_list("confluence_page_id", "linear_team_id")
                .distinct()
            )
            deleted, _ = qs.delete()
            SyncState.objects.refresh_conflict_counts(pairs)
        return deleted


class Conflict(FastLoadMixin, models.Model):
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
        default=0, help_text="Top-level itemData keys that differ between the two sides."
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

    def resolve(self, strategy: Any, resolved_change: Any = None, *, by: Any = None) -> Conflict:
        """Resolve with ``linear``, ``confluence`` or ``manual`` (which needs ``resolved_change``).

        The row is locked and re-read, so a caller holding a stale copy of a conflict that someone
        else resolved meanwhile gets :class:`ConflictAlreadyResolved` and nothing is written. Writes a
        ``resolved`` ConflictResolution and updates the pair's ``conflict_count`` in the same
        transaction. Returns ``self``, refreshed.
        """
        strategy, resolved_change = clean_resolution(strategy, resolved_change)
        by = clean_acting_user(by)
        with transaction.atomic():
            locked = self._locked()
            locked._apply_resolution(strategy, resolved_change, by=by, at=timezone.now())
            SyncState.objects.refresh_conflict_counts([locked.pair])
        self._copy_from(locked)
        return self

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
    ) -> Conflict:
        """The update half of ``store`` on this locked row."""
        old_pair = self.pair
        changed_fields: list[str] = []
        if page is not None and page != self.confluence_page_id:
            self.confluence_page_id = page
            changed_fields.append("confluence_page_id")
        if team is not None and team != self.linear_team_id:
            self.linear_team_id = team
            changed_fields.append("linear_team_id")
        same_changes = json_equal(self.linear_change, linear_change) and json_equal(
            self.confluence_change, confluence_change
        )
        now = timezone.now()
        if not same_changes:
            self.linear_change = linear_change
            self.confluence_change = confluence_change
            self.item_type = item_type
            self.item_id = linear_change["itemId"]
            self.differing_field_count = differing
            changed_fields += ["linear_change", "confluence_change", "item_type", "item_id"]
            changed_fields.append("differing_field_count")
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


# --- SyncHistory ---------------------------------------------------------------------------------

_HISTORY_COUNTERS = (
    "created_issues",
    "updated_issues",
    "confluence_changes",
    "conflicts_detected",
    "conflicts_resolved",
)


class SyncHistoryQuerySet(models.QuerySet["SyncHistory"]):
    def for_pair(self, confluence_page_id: Any, linear_team_id: Any) -> SyncHistoryQuerySet:
        """The runs of one (page, team), newest first (the old getSyncHistory; the caller slices)."""
        page = clean_identifier(confluence_page_id, "confluence_page_id")
        team = clean_identifier(linear_team_id, "linear_team_id")
        return self.filter(confluence_page_id=page, linear_team_id=team).order_by("-synced_at", "-id")


class SyncHistoryManager(models.Manager["SyncHistory"]):
    def record(
        self,
        confluence_page_id: Any,
        linear_team_id: Any,
        *,
        success: Any,
        error: Any = None,
        created_issues: Any = 0,
        updated_issues: Any = 0,
        confluence_changes: Any = 0,
        conflicts_detected: Any = 0,
        conflicts_resolved: Any = 0,
        synced_at: Any = None,
        organization_id: Any = None,
        direction: Any = "",
        deleted_issues: Any = None,
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
        error = clean_text(error, "error", required=False)
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
        return self.create(
            organization=organization,
            confluence_page_id=page,
            linear_team_id=team,
            success=success,
            error=error,
            synced_at=synced_at,
            direction=direction,
            deleted_issues=deleted_issues,
            **counters,
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


# --- LinearIssueCache ----------------------------------------------------------------------------


class LinearIssueCacheQuerySet(models.QuerySet["LinearIssueCache"]):
    def older_than(self, age: dt.timedelta) -> LinearIssueCacheQuerySet:
        """Entries last updated more than ``age`` ago."""
        if not isinstance(age, dt.timedelta):
            raise ValueError(f"age must be a timedelta, not {type(age).__name__}.")
        if age < dt.timedelta(0):
            raise ValidationError("age must not be negative.", code="min_value")
        try:
            cutoff = timezone.now() - age
        except OverflowError:
            # As purge_issue_cache --older-than: an age reaching before year 1 is refused, not a crash.
            raise ValidationError(f"age {age} reaches before year 1.", code="max_value") from None
        return self.filter(last_updated__lt=cutoff)

    def stale(self, age: dt.timedelta = dt.timedelta(days=7)) -> LinearIssueCacheQuerySet:
        """Entries not refreshed within ``age`` (default seven days)."""
        return self.older_than(age)


class LinearIssueCacheManager(models.Manager["LinearIssueCache"]):
    def upsert_many(
        self, organization_id: Any, issues: Iterable[dict[str, Any]], *, batch_size: int = 1000
    ) -> int:
        """Insert or update cached Linear issues; one statement per batch; the number of issues written.

        Every issue is checked before anything is written; a duplicate ``id`` in one call keeps the
        last dict. All batches run in one transaction and set ``last_updated`` to now. Each batch is
        exactly one ``INSERT ... ON CONFLICT DO UPDATE``: on PostgreSQL of ``batch_size`` issues first
        copied (binary ``COPY``) to a temporary table; on SQLite of at most ``batch_size`` issues and
        at most what one statement takes (999 parameters: 249 issues).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError("batch_size must be a positive integer.")
        if isinstance(issues, dict | str | bytes):
            raise ValueError("issues must be an iterable of dicts, not a single value.")
        try:
            issues = iter(issues)
        except TypeError as exc:
            raise ValueError(f"issues must be an iterable of dicts, not {type(issues).__name__}.") from exc
        by_id: dict[str, dict[str, Any]] = {}
        for position, issue in enumerate(issues):
            if not isinstance(issue, dict):
                raise ValueError(f"issues[{position}] must be a dict, not {type(issue).__name__}.")
            if "id" not in issue:
                raise ValidationError(f"issues[{position}] has no 'id' key.", code="missing_key")
            issue_id = clean_identifier(issue["id"], f"issues[{position}]['id']")
            clean_json(issue, f"issues[{position}]")
            by_id[issue_id] = issue  # a later duplicate replaces the earlier one
        linear_id = clean_identifier(organization_id, "organization_id")
        if not by_id:
            return 0  # nothing to write: not even the organization
        now = timezone.now()
        # Sorted by id: concurrent upserts of overlapping issues then lock rows in the same order, so
        # PostgreSQL cannot deadlock them against each other.
        items = sorted(by_id.items(), key=lambda item: item[0])
        connection = connections[self.db]
        with transaction.atomic(using=self.db):
            # Inside the transaction: a failed upsert leaves no new organization behind.
            organization = Organization.objects.db_manager(self.db).ensure(linear_id)
            if connection.vendor == "postgresql":
                _upsert_issues_through_copy(connection, organization.pk, items, now, batch_size)
                return len(items)
            rows = [
                # organization_id, not organization: the related-object descriptor's __set__ cost a
                # tenth of this method's CPU for 10,000 issues (benchmarks/bulk.py).
                LinearIssueCache(
                    organization_id=organization.pk,
                    linear_issue_id=issue_id,
                    issue_data=data,
                    last_updated=now,
                )
                for issue_id, data in items
            ]
            # SQLite caps the parameters of one statement (999): a larger batch would be split by
            # bulk_create into several statements, so cap it here and keep one statement per batch.
            insert_fields = [
                LinearIssueCache._meta.get_field(name)
                for name in ("organization", "linear_issue_id", "issue_data", "last_updated")
            ]
            batch_size = min(batch_size, connection.ops.bulk_batch_size(insert_fields, rows))
            for start in range(0, len(rows), batch_size):
                self.bulk_create(
                    rows[start : start + batch_size],
                    update_conflicts=True,
                    unique_fields=["linear_issue_id"],
                    update_fields=["organization", "issue_data", "last_updated"],
                )
        return len(items)


#: The session's staging table of ``upsert_many`` on PostgreSQL (temporary, dropped at commit).
_ISSUE_UPLOAD_TABLE = "sync_issue_upload"


def _upsert_issues_through_copy(
    connection: Any,
    organization_pk: int,
    items: list[tuple[str, dict[str, Any]]],
    now: dt.datetime,
    batch_size: int,
) -> None:
    """PostgreSQL: per batch, binary ``COPY`` to a temporary table, then ``INSERT … SELECT … ON CONFLICT``.

    ``bulk_create`` spent about 60 µs of Python per issue (four values compiled, a model instance,
    the JSON text quoted by psycopg); binary ``COPY`` takes a few, as in the legacy import, and does
    three times the rows per second for 10,000 issues (benchmarks/bulk.py). Raw SQL because the ORM
    has no ``COPY``; the upsert writes the columns and conflict target ``bulk_create`` writes on
    SQLite (tests/sync/test_issue_cache.py runs the same behaviour on both). Runs inside the
    caller's transaction: the staging table is the session's own and is emptied after every batch,
    so a second call in the same transaction starts from an empty table.
    """
    from psycopg.types.json import Jsonb  # PostgreSQL only

    opts = LinearIssueCache._meta
    quote = connection.ops.quote_name
    table, staging = quote(opts.db_table), quote(_ISSUE_UPLOAD_TABLE)
    issue_id, data, organization, updated = (
        quote(opts.get_field(name).column)
        for name in ("linear_issue_id", "issue_data", "organization", "last_updated")
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} "
            f"({issue_id} text NOT NULL, {data} jsonb NOT NULL) ON COMMIT DROP"
        )
        for start in range(0, len(items), batch_size):
            with cursor.cursor.copy(
                f"COPY {staging} ({issue_id}, {data}) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["text", "jsonb"])
                for item in items[start : start + batch_size]:
                    copy.write_row((item[0], Jsonb(item[1])))
            # Names quoted from the model's _meta; the values are parameters.
            cursor.execute(
                f"INSERT INTO {table} ({organization}, {issue_id}, {data}, {updated}) "  # noqa: S608
                f"SELECT %s, {issue_id}, {data}, %s FROM {staging} ORDER BY {issue_id} "
                f"ON CONFLICT ({issue_id}) DO UPDATE SET {organization} = EXCLUDED.{organization}, "
                f"{data} = EXCLUDED.{data}, {updated} = EXCLUDED.{updated}",
                [organization_pk, now],
            )
            cursor.execute(f"TRUNCATE {staging}")


class LinearIssueCache(FastLoadMixin, models.Model):
    """A Linear issue as last fetched, keyed by its Linear id."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="cached_issues")
    linear_issue_id = models.CharField(max_length=255)
    issue_data = models.JSONField(default=dict)
    last_updated = models.DateTimeField(default=timezone.now)

    objects = LinearIssueCacheManager.from_queryset(LinearIssueCacheQuerySet)()

    class Meta:
        verbose_name = "cached Linear issue"
        constraints = [
            models.UniqueConstraint(fields=["linear_issue_id"], name="sync_linearissuecache_issue_uniq"),
            models.CheckConstraint(
                condition=~Q(linear_issue_id=""), name="sync_linearissuecache_issue_not_empty"
            ),
        ]
        indexes = [
            models.Index(fields=["last_updated"], name="sync_issuecache_updated_idx"),
        ]

    def __str__(self) -> str:
        return self.linear_issue_id
