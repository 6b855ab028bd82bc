"""Writes on accounts that span models or rows: re-encrypting every token with the current key, and
offboarding an organization."""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from cryptography.fernet import InvalidToken
from django.db import models, transaction

from accounts.fields import EncryptedTokenField, EncryptedValue
from accounts.models import ConfluenceToken, LinearToken, _in_own_thread
from accounts.validation import MAX_NON_NEGATIVE_INT, clean_identifier, clean_non_negative_int

logger = logging.getLogger(__name__)

#: The models whose tokens :func:`rotate_token_keys` re-encrypts, in this order.
TOKEN_MODELS: tuple[type[models.Model], ...] = (LinearToken, ConfluenceToken)

DEFAULT_BATCH_SIZE = 500
#: Largest batch accepted (the bound of ``clean_non_negative_int``); far above any useful size.
MAX_BATCH_SIZE = MAX_NON_NEGATIVE_INT


@dataclasses.dataclass(frozen=True)
class UndecryptableToken:
    """A stored token no configured key decrypts: where it is, never what it is."""

    table: str
    row_id: int
    field: str

    def __str__(self) -> str:
        return f"{self.table} id={self.row_id} ({self.field})"


@dataclasses.dataclass(frozen=True)
class RotationProgress:
    """Reported after each batch: how far :func:`rotate_token_keys` is through one model's table."""

    table: str
    done: int
    total: int


@dataclasses.dataclass
class RotationResult:
    """Row counts of one :func:`rotate_token_keys` run (a row counts once, by its worst field)."""

    rewritten: int = 0
    already_current: int = 0
    undecryptable: list[UndecryptableToken] = dataclasses.field(default_factory=list)

    @property
    def undecryptable_rows(self) -> int:
        """How many rows hold at least one token no configured key decrypts."""
        return len({(item.table, item.row_id) for item in self.undecryptable})


def rotate_token_keys(
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[RotationProgress], None] | None = None,
) -> RotationResult:
    """Re-encrypt every stored token with the first key of ``FERNET_KEYS``.

    Works on the stored ciphertext with ``MultiFernet.rotate``, so no plaintext token is built. Rows are
    processed in primary-key order, ``batch_size`` at a time; each batch is one short transaction holding
    ``select_for_update`` locks on the rows no one else holds (``SKIP LOCKED``), and an interrupted run
    keeps every committed batch. A row another transaction holds (a refresh waiting on its provider) is
    rotated after the batches, alone in its transaction: the rotation then waits for that holder, but
    never makes another organization's store or refresh wait for it. Tokens already under the first key
    are left alone, which makes a second run a no-op. ``updated_at`` is not touched: the tokens did not
    change.
    """
    batch_size = clean_non_negative_int(batch_size, "batch_size")
    if batch_size == 0:
        raise ValueError("batch_size must be at least 1.")
    result = RotationResult()
    for model in TOKEN_MODELS:
        _rotate_model(model, batch_size=batch_size, on_progress=on_progress, result=result)
    logger.info(
        "Token key rotation: %d rows rewritten, %d already current, %d could not be decrypted",
        result.rewritten,
        result.already_current,
        result.undecryptable_rows,
    )
    return result


def _rotate_model(
    model: type[models.Model],
    *,
    batch_size: int,
    on_progress: Callable[[RotationProgress], None] | None,
    result: RotationResult,
) -> None:
    token_fields = [field for field in model._meta.concrete_fields if isinstance(field, EncryptedTokenField)]
    names = [field.attname for field in token_fields]
    table = model._meta.db_table
    manager = model._default_manager
    total = manager.count()
    done = 0
    last_pk = 0
    # Rows another transaction holds (a refresh waiting on its provider, a store) are skipped and
    # rotated at the end, one row per transaction: waiting for one of them inside a batch would keep
    # every other row of the batch locked, and stall other organizations' stores and refreshes for as
    # long as that provider call takes.
    deferred: list[int] = []
    while True:
        ids = list(manager.filter(pk__gt=last_pk).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic():
            rows = list(
                manager.select_for_update(skip_locked=True)
                .filter(pk__in=ids)
                .order_by("pk")
                .only("pk", *names)
            )
            for row in rows:
                _rotate_row(model, row, token_fields, table=table, result=result)
        locked = {row.pk for row in rows}
        deferred += [pk for pk in ids if pk not in locked]
        last_pk = ids[-1]
        done += len(rows)
        if on_progress is not None:
            on_progress(RotationProgress(table=table, done=done, total=max(total, done + len(deferred))))
    for pk in deferred:
        with transaction.atomic():
            # Waits for the holder, holding no other row meanwhile. Gone since: nothing to rotate.
            held = manager.select_for_update().filter(pk=pk).only("pk", *names).first()
            if held is not None:
                _rotate_row(model, held, token_fields, table=table, result=result)
        done += 1
        if on_progress is not None:
            on_progress(RotationProgress(table=table, done=done, total=max(total, done)))


def _rotate_row(
    model: type[models.Model],
    row: models.Model,
    token_fields: list[EncryptedTokenField],
    *,
    table: str,
    result: RotationResult,
) -> None:
    updates: dict[str, EncryptedValue] = {}
    failed = False
    for field in token_fields:
        # The raw loaded value: an EncryptedValue, so nothing here ever holds plaintext.
        stored = row.__dict__.get(field.attname)
        if stored is None:
            continue
        if field.is_current(stored.ciphertext):
            continue
        try:
            updates[field.attname] = EncryptedValue(field.rotate_ciphertext(stored.ciphertext))
        except InvalidToken:
            failed = True
            result.undecryptable.append(UndecryptableToken(table=table, row_id=row.pk, field=field.name))
            logger.warning(
                "%s id=%s: %s cannot be decrypted with any configured key", table, row.pk, field.name
            )
    if updates:
        model._default_manager.filter(pk=row.pk).update(**updates)
    if failed:
        return
    if updates:
        result.rewritten += 1
    else:
        result.already_current += 1


# --- offboarding -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OffboardingResult:
    """What :func:`offboard_organization` removed (or, for a dry run, would remove), per model label."""

    linear_id: str
    name: str
    #: Rows deleted per model label (``"planning.PlanningSession"``), including the organization itself.
    deleted: dict[str, int]
    #: Rows kept but detached from the organization per model label (the conflict resolution log).
    kept: dict[str, int]
    dry_run: bool

    @property
    def total_deleted(self) -> int:
        """Rows deleted over every model."""
        return sum(self.deleted.values())

    def lines(self) -> list[str]:
        """The summary as lines for a command's output or an admin message."""
        verb = "Would delete" if self.dry_run else "Deleted"
        result = [f"{verb} {count} {label}" for label, count in sorted(self.deleted.items())]
        verb = "Would keep" if self.dry_run else "Kept"
        result += [
            f"{verb} {count} {label} (organization name recorded)"
            for label, count in sorted(self.kept.items())
        ]
        return result


def offboard_organization(linear_id: Any, *, dry_run: bool = False) -> OffboardingResult:
    """Delete an organization and every row that belongs to it, in one transaction; report per model.

    Which rows belong to it is :func:`accounts.tenancy.owned_by` over every installed model: a foreign
    key path to the organization, or a QuerySet's own ``owned_by``; ``accounts`` never imports the apps
    that hold them. Models whose QuerySet has
    ``detach_organization(organization)`` keep their rows and record the organization's name instead
    (the append-only conflict resolution log). Rows are deleted through Django's ``Collector``, so
    cascades (stories under features) are counted too, deepest first so that no ``PROTECT`` foreign key
    stands in the way. The organization's row is locked first: an agent write that names it waits.

    ``dry_run``: everything is done and then rolled back, so the counts are exact. Raises
    ``ValidationError`` for an unknown organization.
    """
    from django.apps import apps
    from django.core.exceptions import ValidationError
    from django.db import router
    from django.db.models.deletion import Collector

    from accounts.models import Organization
    from accounts.tenancy import is_tenant_owned, organization_path, owned_by

    linear_id = clean_identifier(linear_id, "linear_id")
    if not isinstance(dry_run, bool):
        raise ValueError(f"dry_run must be a bool, not {type(dry_run).__name__}.")
    using = router.db_for_write(Organization)
    deleted: collections.Counter[str] = collections.Counter()
    kept: dict[str, int] = {}
    with transaction.atomic(using=using):
        organization = (
            Organization.objects.using(using).select_for_update().filter(linear_id=linear_id).first()
        )
        if organization is None:
            raise ValidationError(f"No organization with linear_id {linear_id!r}.", code="not_found")
        owned = [model for model in apps.get_models() if model is not Organization and is_tenant_owned(model)]
        # Detach first: the log finds its entries through the conflicts, which are deleted below.
        for model in owned:
            queryset = model._default_manager.using(using).all()
            if callable(getattr(queryset, "detach_organization", None)):
                count = queryset.detach_organization(organization)
                if count:
                    kept[model._meta.label] = count
        # Rows tied to the organization without a foreign key first (found through rows deleted later),
        # then by foreign-key depth, deepest first.
        to_delete = [model for model in owned if not _detaches(model)]
        to_delete.sort(key=lambda model: (-_depth(organization_path(model)), model._meta.label))
        for model in to_delete:
            collector = Collector(using=using)
            collector.collect(owned_by(model._default_manager.using(using).all(), [organization.pk]))
            deleted.update(collector.delete()[1])
        collector = Collector(using=using)
        collector.collect([organization])
        deleted.update(collector.delete()[1])
        if dry_run:
            transaction.set_rollback(True, using=using)
    result = OffboardingResult(
        linear_id=linear_id,
        name=organization.name,
        deleted={label: count for label, count in deleted.items() if count},
        kept=kept,
        dry_run=dry_run,
    )
    logger.info(
        "Offboarding of organization %s%s: %d rows deleted (%s), %s kept",
        linear_id,
        " (dry run)" if dry_run else "",
        result.total_deleted,
        ", ".join(f"{count} {label}" for label, count in sorted(result.deleted.items())),
        ", ".join(f"{count} {label}" for label, count in sorted(kept.items())) or "nothing",
    )
    return result


def _detaches(model: type[models.Model]) -> bool:
    return callable(getattr(model._default_manager.all(), "detach_organization", None))


def _depth(path: str | None) -> int:
    """Foreign keys between a model and its organization; models without a path go first (deepest)."""
    if path is None:
        return 1_000
    return path.count("__") + 1


async def aoffboard_organization(linear_id: Any, *, dry_run: bool = False) -> OffboardingResult:
    """Async twin of :func:`offboard_organization`."""
    from asgiref.sync import sync_to_async

    return await sync_to_async(offboard_organization)(linear_id, dry_run=dry_run)
# --- async twin ------------------------------------------------------------------------------------


async def arotate_token_keys(
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[RotationProgress], None] | None = None,
) -> RotationResult:
    """Async twin of :func:`rotate_token_keys`.

    It runs on a thread of its own, as a refresh does, not on the thread that every task's
    ``sync_to_async`` ORM call shares: a rotation holds each batch's row locks for a while, and the
    agent's other tasks keep their database calls meanwhile. ``on_progress`` is called on that thread.
    """
    return await _in_own_thread(rotate_token_keys)(batch_size=batch_size, on_progress=on_progress)
