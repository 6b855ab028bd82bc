"""Database helpers shared by the apps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from django.db import models

ModelT = TypeVar("ModelT", bound=models.Model)


def upsert_one(
    manager: models.Manager[ModelT],
    obj: ModelT,
    *,
    unique_fields: Sequence[str],
    update_fields: Sequence[str],
) -> ModelT:
    """Insert ``obj``, or update ``update_fields`` of the row it collides with: one statement.

    ``INSERT … ON CONFLICT (unique_fields) DO UPDATE SET … RETURNING <every column>``, compiled by
    Django's own insert compiler with the options ``bulk_create([obj], update_conflicts=True, …)``
    takes and checks, with two differences that are the reason this exists:

    - It opens no transaction. ``bulk_create`` always wraps itself in one (it may run several
      batches), which on PostgreSQL adds a ``BEGIN`` and a ``COMMIT`` round trip around a statement
      that is atomic by itself. Inside the caller's ``atomic()`` block the statement joins that
      transaction as any other would.
    - It returns the row as stored after the upsert (every column, from ``RETURNING``), so the caller
      needs no re-read to learn what the update kept: ``created_at``, counters, a foreign key it did
      not touch.

    Returns a new instance built from the returned row, as a query would have built it, with the
    related objects ``obj`` held where the row still points at them; ``obj`` is not changed beyond
    what ``bulk_create`` does to it (its primary key default, its related ids). It
    inserts through ``QuerySet._insert``, the method ``Model.save()`` and ``bulk_create()`` insert
    through (Django exposes it on managers for ``save()``); ``tests/test_db.py`` pins the statement
    and the returned row on both databases, so a Django upgrade that changes it fails there first.
    """
    model = manager.model
    opts = model._meta
    queryset = manager.get_queryset()
    queryset._for_write = True
    unique = [opts.get_field(opts.pk.name if name == "pk" else name) for name in unique_fields]
    update = [opts.get_field(name) for name in update_fields]
    on_conflict = queryset._check_bulk_create_options(False, True, update, unique)
    queryset._prepare_for_bulk_create([obj])
    pk_set = obj._is_pk_set()
    fields = [
        f for f in opts.concrete_fields if not f.generated and (pk_set or not isinstance(f, models.AutoField))
    ]
    returning = [f for f in opts.concrete_fields if not f.generated]
    (row,) = queryset._insert(
        [obj],
        fields=fields,
        returning_fields=returning,
        on_conflict=on_conflict,
        update_fields=update,
        unique_fields=unique,
    )
    stored = model.from_db(queryset.db, [f.attname for f in returning], row)
    for field in opts.concrete_fields:
        # Related objects the caller passed stay attached when the stored row still points at them.
        if field.is_relation and field.is_cached(obj):
            related = field.get_cached_value(obj)
            if related is not None and related.pk == getattr(stored, field.attname):
                field.set_cached_value(stored, related)
    return stored
