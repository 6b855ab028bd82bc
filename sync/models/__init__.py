"""Sync state, conflicts, sync history and the Linear issue cache.

The public API mirrors the old TypeScript functions (see ``shared/legacy-schema.md``):

- ``getLastSyncTimestamp`` / ``updateLastSyncTimestamp`` → ``SyncState.objects.last_synced_at`` /
  ``mark_synced``;
- ``storeConflict``, ``getUnresolvedConflicts``, ``getResolvedConflicts``, ``deleteConflict``,
  ``clearConflicts`` → ``Conflict.objects.store``, ``unresolved``, ``resolved``, ``discard``, ``clear``,
  plus ``conflict.resolve()`` / ``conflict.reopen()``;
- ``recordSyncHistory`` / ``getSyncHistory`` → ``SyncHistory.objects.record`` / ``for_pair``.

One module per concern: ``values`` (checks of stored JSON and ids), ``state``, ``conflicts`` (with the
resolution log), ``snapshots`` (three-way sync: last-synced items and field ownership), ``history``,
``cache``. Import every public name from ``sync.models``.

Timestamps default to ``timezone.now`` instead of ``auto_now``/``auto_now_add`` so that the legacy import
can keep the old rows' times; the write methods here set ``updated_at`` themselves.
"""

from sync.models.cache import LinearIssueCache, LinearIssueCacheManager, LinearIssueCacheQuerySet
from sync.models.conflicts import (
    AppendOnlyError,
    Conflict,
    ConflictAlreadyResolved,
    ConflictChanged,
    ConflictManager,
    ConflictQuerySet,
    ConflictResolution,
    ConflictResolutionQuerySet,
    ResolutionAction,
    ResolutionStrategy,
    clean_resolution,
)
from sync.models.history import SyncHistory, SyncHistoryManager, SyncHistoryQuerySet
from sync.models.snapshots import (
    FieldOwner,
    FieldOwnership,
    FieldOwnershipManager,
    FieldOwnershipQuerySet,
    ItemSnapshot,
    ItemSnapshotManager,
    ItemSnapshotQuerySet,
    clean_field_path,
    clean_owner,
    item_data_hash,
)
from sync.models.state import SyncState, SyncStateManager, SyncStateQuerySet, SyncStatus
from sync.models.values import (
    CHANGE_REQUIRED_KEYS,
    ITEM_TYPE_MAX_LENGTH,
    clean_acting_user,
    clean_change,
    clean_json,
)

__all__ = [
    "CHANGE_REQUIRED_KEYS",
    "ITEM_TYPE_MAX_LENGTH",
    "AppendOnlyError",
    "Conflict",
    "ConflictAlreadyResolved",
    "ConflictChanged",
    "ConflictManager",
    "ConflictQuerySet",
    "ConflictResolution",
    "ConflictResolutionQuerySet",
    "FieldOwner",
    "FieldOwnership",
    "FieldOwnershipManager",
    "FieldOwnershipQuerySet",
    "ItemSnapshot",
    "ItemSnapshotManager",
    "ItemSnapshotQuerySet",
    "LinearIssueCache",
    "LinearIssueCacheManager",
    "LinearIssueCacheQuerySet",
    "ResolutionAction",
    "ResolutionStrategy",
    "SyncHistory",
    "SyncHistoryManager",
    "SyncHistoryQuerySet",
    "SyncState",
    "SyncStateManager",
    "SyncStateQuerySet",
    "SyncStatus",
    "clean_acting_user",
    "clean_change",
    "clean_field_path",
    "clean_json",
    "clean_owner",
    "clean_resolution",
    "item_data_hash",
]
