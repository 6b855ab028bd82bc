"""The resolution outbox: resolved conflicts wait here until an agent worker has applied them.

A reviewer's decision (``conflict.resolve``) has to reach Linear and Confluence. Each resolved conflict
is due for application; ``Conflict.objects.claim_resolutions`` leases due ones to one worker at a time
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL), the worker writes the resolved item to both sides and calls
``conflict.mark_applied`` (which also records the item as its new ``ItemSnapshot``) or
``conflict.mark_apply_failed`` (retried later with back-off). Reopening or re-storing a conflict
withdraws a pending application: its outbox fields are reset with the resolution.

Kept apart from ``conflicts`` as an abstract model (the methods) and queryset/manager bases that
``Conflict`` builds on, so the outbox reads as one piece; the fields are declared on ``Conflict``.
Outbox bookkeeping never touches ``updated_at``: that is the order of ``Conflict.objects.resolved()``
(the old getResolvedConflicts).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from sync.models.leases import (
    LeaseLost,
    apply_retry_delay,
    claim_under_lease,
    clean_at,
    clean_error,
    clean_worker,
)
from sync.models.snapshots import ItemSnapshot

if TYPE_CHECKING:
    from sync.models.conflicts import Conflict

#: The lease ``claim_resolutions`` gives when none is named.
DEFAULT_APPLY_LEASE = dt.timedelta(minutes=5)

#: Resolutions the outbox does not carry: ``reconcile`` resolves an open conflict with ``merged`` when
#: a later sync merged the item by itself, and that sync writes the merge to both sides.
NOT_FOR_THE_OUTBOX = ("merged",)

#: The outbox fields a new resolution, a reopening or a re-store resets (saved with the resolution).
OUTBOX_FIELDS = [
    "applied_at",
    "applied_by",
    "apply_attempts",
    "next_apply_at",
    "last_apply_error",
    "apply_lease_owner",
    "apply_lease_expires_at",
]

class ResolutionOutboxQuerySet(models.QuerySet["Conflict"]):
    def awaiting_application(self) -> ResolutionOutboxQuerySet:
        """Resolved conflicts not applied yet (due now or later, leased or not)."""
        return self.filter(is_resolved=True, applied_at__isnull=True).exclude(
            resolution_strategy__in=NOT_FOR_THE_OUTBOX
        )

    def due_for_application(self, at: dt.datetime) -> ResolutionOutboxQuerySet:
        """Resolutions waiting, due by ``at`` and held by no worker."""
        return self.awaiting_application().filter(
            Q(next_apply_at__isnull=True) | Q(next_apply_at__lte=at),
            Q(apply_lease_expires_at__isnull=True) | Q(apply_lease_expires_at__lte=at),
        )

    def applied(self) -> ResolutionOutboxQuerySet:
        """Resolutions a worker has applied."""
        return self.filter(applied_at__isnull=False)

    def failing_to_apply(self) -> ResolutionOutboxQuerySet:
        """Resolutions waiting whose last application failed, most attempts first."""
        return (
            self.awaiting_application()
            .filter(apply_attempts__gt=0)
            .order_by("-apply_attempts", "next_apply_at", "pk")
        )


class ResolutionOutboxManager(models.Manager["Conflict"]):
    def claim_resolutions(
        self,
        *,
        worker: str,
        limit: int = 100,
        lease: dt.timedelta = DEFAULT_APPLY_LEASE,
        organization_id: str | None = None,
        at: dt.datetime | None = None,
    ) -> list[Conflict]:
        """Lease up to ``limit`` resolutions due for application to ``worker``; each goes to one worker.

        Due: resolved, not applied, ``next_apply_at`` empty or not after ``at`` (default now), no lease
        running past ``at``. Retries that waited longest first, then the oldest resolutions. One short
        transaction (``SELECT … FOR UPDATE SKIP LOCKED … LIMIT``, one ``UPDATE``); on SQLite one claim
        at a time. ``organization_id`` (a Linear organization id) limits the claim to one tenant.
        """
        return claim_under_lease(
            self,
            self.get_queryset().due_for_application,
            worker=worker,
            limit=limit,
            lease=lease,
            organization_id=organization_id,
            at=at,
            order_by=(F("next_apply_at").asc(nulls_first=True), "resolved_at", "pk"),
            claim=lambda worker, expires, _at: {
                "apply_lease_owner": worker,
                "apply_lease_expires_at": expires,
            },
        )

    async def aclaim_resolutions(
        self,
        *,
        worker: str,
        limit: int = 100,
        lease: dt.timedelta = DEFAULT_APPLY_LEASE,
        organization_id: str | None = None,
        at: dt.datetime | None = None,
    ) -> list[Conflict]:
        """Async twin of :meth:`claim_resolutions`."""
        return await sync_to_async(self.claim_resolutions)(
            worker=worker, limit=limit, lease=lease, organization_id=organization_id, at=at
        )


class ResolutionOutbox(models.Model):
    """The outbox methods of ``Conflict`` (abstract). The fields (:data:`OUTBOX_FIELDS`) are declared on
    ``Conflict`` itself, after its own: an abstract parent's fields would come first in every SELECT."""

    class Meta:
        abstract = True

    # What the methods below read and write, declared for type checkers only: the fields are Conflict's.
    is_resolved: bool
    resolved_at: dt.datetime | None
    applied_at: dt.datetime | None
    apply_attempts: int
    next_apply_at: dt.datetime | None
    last_apply_error: str
    apply_lease_owner: str
    apply_lease_expires_at: dt.datetime | None

    def mark_applied(self, *, worker: str, at: dt.datetime | None = None) -> Conflict:
        """Record that ``worker`` applied this resolution at ``at`` (default now); returns ``self``.

        The row is locked and re-read. :class:`~sync.models.LeaseLost` when ``worker`` does not hold the
        resolution's lease any more (it ran out and another worker took it, or a reopening, a re-store or
        a new resolution withdrew it) — nothing is written then, so a caller that writes its own record
        of the application in the same ``transaction.atomic()`` block rolls it back with it. The resolved
        item (``resolved_change``) becomes the item's ``ItemSnapshot`` — the base of its next three-way
        sync — in the same transaction; legacy conflicts without an organization or pair have none.
        """
        worker = clean_worker(worker)
        at = clean_at(at, timezone.now())
        with transaction.atomic(using=self._state.db):
            locked = self._locked_for_outbox(worker)
            locked.applied_at = at
            locked.applied_by = worker
            locked.apply_attempts += 1
            locked.last_apply_error = ""
            locked.next_apply_at = None
            locked.apply_lease_owner = ""
            locked.apply_lease_expires_at = None
            locked.save(update_fields=OUTBOX_FIELDS)
            change = locked.resolved_change or {}
            if locked.organization_id and locked.confluence_page_id and locked.linear_team_id:
                ItemSnapshot.objects.record_synced(
                    locked.organization.linear_id,
                    [
                        {
                            "itemId": change.get("itemId") or locked.item_id,
                            "itemType": change.get("itemType") or locked.item_type,
                            "itemData": change.get("itemData") or {},
                        }
                    ],
                    confluence_page_id=locked.confluence_page_id,
                    linear_team_id=locked.linear_team_id,
                    at=at,
                )
        self._copy_outbox_from(locked)
        return self  # type: ignore[return-value]

    def mark_apply_failed(self, *, worker: str, error: str | None, at: dt.datetime | None = None) -> Conflict:
        """Record that ``worker`` failed to apply this resolution; it is retried later with back-off.

        ``apply_attempts`` + 1, ``error`` kept in ``last_apply_error`` (secrets redacted, cut to 4,000
        characters), next attempt after ``APPLY_RETRY_BASE_SECONDS`` doubled per failed attempt up to
        ``APPLY_RETRY_MAX_SECONDS`` (+ at most 10 % jitter), lease released. :class:`LeaseLost` as for
        :meth:`mark_applied`. Returns ``self``.
        """
        worker = clean_worker(worker)
        error_text = clean_error(error)
        at = clean_at(at, timezone.now())
        with transaction.atomic(using=self._state.db):
            locked = self._locked_for_outbox(worker)
            locked.apply_attempts += 1
            locked.last_apply_error = error_text
            locked.next_apply_at = at + apply_retry_delay(locked.apply_attempts)
            locked.apply_lease_owner = ""
            locked.apply_lease_expires_at = None
            locked.save(update_fields=OUTBOX_FIELDS)
        self._copy_outbox_from(locked)
        return self  # type: ignore[return-value]

    async def amark_applied(self, *, worker: str, at: dt.datetime | None = None) -> Conflict:
        """Async twin of :meth:`mark_applied`."""
        return await sync_to_async(self.mark_applied)(worker=worker, at=at)

    async def amark_apply_failed(
        self, *, worker: str, error: str | None, at: dt.datetime | None = None
    ) -> Conflict:
        """Async twin of :meth:`mark_apply_failed`."""
        return await sync_to_async(self.mark_apply_failed)(worker=worker, error=error, at=at)

    # Internals ------------------------------------------------------------------------------------

    def _locked_for_outbox(self, worker: str) -> Any:
        """This row under ``select_for_update``, checked to be the resolution ``worker`` claimed."""
        locked = type(self)._default_manager.select_for_update().filter(pk=self.pk).first()
        if locked is None:
            raise ValidationError(f"Conflict {self.pk!r} no longer exists.", code="does_not_exist")
        # The claimed copy's resolved_at tells this resolution from a later one the same worker may
        # have claimed again after a reopening.
        if (
            locked.apply_lease_owner != worker
            or not locked.is_resolved
            or locked.applied_at is not None
            or locked.resolved_at != self.resolved_at
        ):
            raise LeaseLost(f"Resolution of conflict {self.pk!r}", worker, locked.apply_lease_owner)
        return locked

    def _withdraw_application(self) -> None:
        """Reset the outbox fields (a new resolution, a reopening, a re-store); the caller saves."""
        self.applied_at = None
        self.applied_by = ""
        self.apply_attempts = 0
        self.next_apply_at = None
        self.last_apply_error = ""
        self.apply_lease_owner = ""
        self.apply_lease_expires_at = None

    def _copy_outbox_from(self, other: ResolutionOutbox) -> None:
        for name in OUTBOX_FIELDS:
            setattr(self, name, getattr(other, name))


OUTBOX_CONSTRAINTS = [
    models.CheckConstraint(
        condition=Q(applied_at__isnull=True) | Q(is_resolved=True), name="sync_conflict_applied_only_resolved"
    ),
    models.CheckConstraint(
        condition=Q(applied_at__isnull=True, applied_by="")
        | (Q(applied_at__isnull=False) & ~Q(applied_by="")),
        name="sync_conflict_applied_at_iff_by",
    ),
    models.CheckConstraint(
        condition=Q(apply_lease_owner="", apply_lease_expires_at__isnull=True)
        | (~Q(apply_lease_owner="") & Q(apply_lease_expires_at__isnull=False)),
        name="sync_conflict_apply_lease_owner_iff_expiry",
    ),
    models.CheckConstraint(
        condition=Q(apply_attempts__gte=0), name="sync_conflict_apply_attempts_non_negative"
    ),
]

OUTBOX_INDEXES = [
    # claim_resolutions and the admin's "waiting to be applied": only rows awaiting application.
    models.Index(
        fields=["next_apply_at", "resolved_at", "id"],
        condition=Q(is_resolved=True, applied_at__isnull=True),
        name="sync_conflict_outbox_idx",
    ),
]
