"""Leases and retry back-off shared by the sync scheduler (``SyncState``) and the outbox (``Conflict``).

A lease is a row's ``*_owner`` (the worker's name) and ``*_expires_at``: the row is held while the
expiry is in the future. Workers take rows with ``SELECT … FOR UPDATE SKIP LOCKED`` (PostgreSQL) in one
short transaction, so two workers never take the same row; a worker that dies lets its leases run out
and the rows become claimable again. Times come from the caller's ``at`` (default ``timezone.now()``),
so every machine's clock must agree to well under the shortest lease (NTP).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from accounts.validation import clean_aware_datetime, clean_identifier, clean_optional_identifier
from config.logging import redact

#: Shortest lease honoured: a worker's lease of one second is never handed to another worker early.
MIN_LEASE = dt.timedelta(seconds=1)
#: Longest lease accepted: a worker that dies holding it keeps its rows from everyone for this long.
MAX_LEASE = dt.timedelta(days=1)
#: Most rows one claim hands out (one short transaction, one bounded statement).
MAX_CLAIM = 1000
#: Longest error text kept (``last_error``, ``last_apply_error``); longer text is cut, not refused.
MAX_ERROR_LENGTH = 4000
#: Largest jitter added to a back-off delay, as a fraction of it (+10 % at most).
MAX_JITTER = 0.1


_Row = TypeVar("_Row", bound=models.Model)


class LeaseLost(ValidationError):
    """The worker no longer holds the lease it acts under (expired and taken, released, or withdrawn)."""

    def __init__(self, what: str, worker: str, holder: str) -> None:
        now_held = f"now held by {holder!r}" if holder else "not held by any worker"
        super().__init__(f"{what}: worker {worker!r} lost its lease ({now_held}).", code="lease_lost")
        self.worker = worker
        self.holder = holder


def clean_worker(value: Any) -> str:
    """A worker's name (``host:pid`` or any stable id): a non-empty identifier."""
    return clean_identifier(value, "worker")


def clean_lease(value: Any, name: str = "lease") -> dt.timedelta:
    """A lease length: a ``timedelta`` from one second to one day."""
    if not isinstance(value, dt.timedelta):
        raise ValueError(f"{name} must be a timedelta, not {type(value).__name__}.")
    if not MIN_LEASE <= value <= MAX_LEASE:
        raise ValidationError(
            f"{name} must be between {MIN_LEASE} and {MAX_LEASE} (got {value}).", code="invalid_lease"
        )
    return value


def clean_limit(value: Any) -> int:
    """How many rows one claim may take: 1 to :data:`MAX_CLAIM`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"limit must be an integer, not {type(value).__name__}.")
    if not 1 <= value <= MAX_CLAIM:
        raise ValidationError(f"limit must be between 1 and {MAX_CLAIM} (got {value}).", code="invalid_limit")
    return value


def clean_at(value: Any, default: dt.datetime) -> dt.datetime:
    """The caller's ``at`` (aware) or ``default``."""
    return clean_aware_datetime(value, "at", required=False) or default


def clean_error(value: Any) -> str:
    """An error report as stored: text, secrets redacted, NULs replaced, cut to :data:`MAX_ERROR_LENGTH`.

    A failure report is never refused for its content (the worker is already handling a failure);
    only a wrong type is (``ValueError``).
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"error must be a string or None, not {type(value).__name__}.")
    text = redact(value.replace("\x00", "\ufffd"))
    if len(text) > MAX_ERROR_LENGTH:
        text = text[: MAX_ERROR_LENGTH - 1] + "…"
    return text


def jitter_fraction() -> float:
    """A random fraction in [0, :data:`MAX_JITTER`] (tests replace this to pin the jitter)."""
    return random.uniform(0.0, MAX_JITTER)


def retry_delay(failures: int, *, base: dt.timedelta, cap: dt.timedelta) -> dt.timedelta:
    """The wait before retry number ``failures`` (1 = after the first failure).

    ``base`` doubled per consecutive failure beyond the first, at most ``cap``, plus a jitter of at most
    +10 % so that workers that failed together do not all retry in the same instant.
    """
    if failures < 1:
        raise ValueError(f"failures must be at least 1 (got {failures}).")
    # 2 ** 40 * base is far beyond any cap; bounding the exponent keeps the product from overflowing.
    delay = min(base * (2 ** min(failures - 1, 40)), cap)
    return delay * (1 + jitter_fraction())


def sync_retry_delay(failures: int) -> dt.timedelta:
    """:func:`retry_delay` with ``SYNC_RETRY_BASE_SECONDS`` and ``SYNC_RETRY_MAX_SECONDS``."""
    return retry_delay(
        failures,
        base=dt.timedelta(seconds=settings.SYNC_RETRY_BASE_SECONDS),
        cap=dt.timedelta(seconds=settings.SYNC_RETRY_MAX_SECONDS),
    )


def apply_retry_delay(attempts: int) -> dt.timedelta:
    """:func:`retry_delay` with ``APPLY_RETRY_BASE_SECONDS`` and ``APPLY_RETRY_MAX_SECONDS``."""
    return retry_delay(
        attempts,
        base=dt.timedelta(seconds=settings.APPLY_RETRY_BASE_SECONDS),
        cap=dt.timedelta(seconds=settings.APPLY_RETRY_MAX_SECONDS),
    )


def claim_under_lease(
    manager: models.Manager[_Row],
    due: Callable[[dt.datetime], models.QuerySet[_Row]],
    *,
    worker: Any,
    limit: Any,
    lease: Any,
    organization_id: Any,
    at: Any,
    order_by: Sequence[Any],
    claim: Callable[[str, dt.datetime, dt.datetime], dict[str, Any]],
) -> list[_Row]:
    """The body of ``claim_due`` and ``claim_resolutions``: lease up to ``limit`` due rows to ``worker``.

    Cleans the arguments (before any query), takes ``due(at)`` rows (of one Linear organization when
    ``organization_id`` is given) in ``order_by`` with ``SELECT … FOR UPDATE SKIP LOCKED … LIMIT``, and
    sets ``claim(worker, expires, at)`` (field -> value) on them with one ``UPDATE`` in the same short
    transaction, and on the returned rows.
    """
    worker = clean_worker(worker)
    limit = clean_limit(limit)
    lease = clean_lease(lease)
    organization = clean_optional_identifier(organization_id, "organization_id")
    at = clean_at(at, timezone.now())
    candidates = due(at)
    if organization is not None:
        candidates = candidates.filter(organization__linear_id=organization)
    changes = claim(worker, at + lease, at)
    with transaction.atomic(using=manager.db):
        # of=("self",): lock the claimed rows only, never the organization row the filter joins; and no
        # select_related, as PostgreSQL re-reads a locked row after waiting, not its joined rows.
        locked = candidates.select_for_update(skip_locked=True, of=("self",))
        claimed = list(locked.order_by(*order_by)[:limit])
        if claimed:
            manager.filter(pk__in=[row.pk for row in claimed]).update(**changes)
    for row in claimed:
        for field, value in changes.items():
            setattr(row, field, value)
    return claimed
