"""Database helpers shared by the apps."""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.core.exceptions import EmptyResultSet
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.lookups import In
from django.db.models.query import FlatValuesListIterable, ModelIterable, get_related_populators
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init
from django.utils.datastructures import OrderedSet

ModelT = TypeVar("ModelT", bound=models.Model)
ResultT = TypeVar("ResultT")


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


class AnyOf(In):
    """``field__any=[...]``: ``__in`` whose values travel as one array parameter on PostgreSQL.

    PostgreSQL: ``field = ANY(%s::text[])`` with the values as one list. SQLite (and a subquery as
    the right-hand side anywhere): exactly ``__in``. Use it for bulk "these ids" reads whose id count
    varies. Under server-side binding (config/settings.py, ``DB_PREPARED_STATEMENTS``) psycopg
    prepares a statement after a few runs and PostgreSQL then plans it generically; for
    ``IN ($2, …, $501)`` its generic plan scanned the whole organization's rows and tested each
    against the 500 parameters (a quarter of a second at 30,000 snapshots), where ``= ANY($2)`` keeps
    the unique index. One statement text whatever the number of ids also means one prepared statement
    instead of one per count. Django compiles ``__in`` to ``IN (%s, …)`` on every backend (5.2);
    ticket #37211 proposes the same array form for it.

    Registered on ``CharField`` and ``TextField``; the array is ``text[]``, never ``varchar(n)[]``,
    whose cast would cut a longer value down to ``n`` characters and match a row it should not.
    """

    lookup_name = "any"

    def as_postgresql(self, compiler: Any, connection: BaseDatabaseWrapper) -> tuple[str, Any]:
        if not self.rhs_is_direct_value():
            return super().as_sql(compiler, connection)
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values: Collection[Any]
        try:
            values = OrderedSet(self.rhs)
            values.discard(None)  # NULL equals nothing, as for __in
        except TypeError:  # unhashable values: __in accepts them, and so does this
            values = [value for value in self.rhs if value is not None]
        if not values:
            raise EmptyResultSet
        # Plain values only here (an expression among them makes the right-hand side an ExpressionList,
        # which is not a direct value): each one prepared for the database, as __in prepares it.
        _, params = self.get_db_prep_lookup(values, connection)
        return f"{lhs} = ANY(%s::text[])", [*lhs_params, list(params)]


models.CharField.register_lookup(AnyOf)
models.TextField.register_lookup(AnyOf)


class CompiledQuery(Generic[ResultT]):
    """A query of fixed shape whose SQL Django compiles once per connection, then runs with new values.

    Django builds and compiles a queryset's SQL on every evaluation. For the agent's one-row lookups
    on a local PostgreSQL that costs more than the round trip itself (docs/benchmarks.md, finding 2).
    ``build`` receives one marker string per argument and returns the queryset with the markers where
    the arguments go: model instances (``select_related`` allowed) or ``values_list(flat=True)``. The
    first call on a connection compiles it with Django's own compiler and notes which SQL parameters
    are markers; every call then runs that SQL with the arguments in their place, through Django's
    cursor (so execute wrappers, query capture and DEBUG logging see it), and turns the rows into
    what the queryset would have returned, with the same converters.

    Arguments must be strings the caller has already validated (``clean_identifier``): they replace
    string parameters and nothing else. Compiled statements are kept per thread, like Django's
    connections, and dropped when the thread's connection object changes.
    """

    def __init__(self, build: Callable[..., models.QuerySet[Any]], *, arguments: int) -> None:
        self._build = build
        self._markers = tuple(f"\x00compiled-query-argument-{i}\x00" for i in range(arguments))
        self._local = threading.local()

    def __call__(self, *args: str, using: str = DEFAULT_DB_ALIAS) -> list[ResultT]:
        """The queryset's rows for these argument values, as a list."""
        if len(args) != len(self._markers):
            raise TypeError(f"expected {len(self._markers)} arguments, got {len(args)}")
        for value in args:
            if not isinstance(value, str):
                raise TypeError(f"arguments must be strings, not {type(value).__name__}")
        statement = self._statement(using)
        params = list(statement.params)
        for positions, value in zip(statement.positions, args, strict=True):
            for position in positions:
                params[position] = value
        with statement.compiler.connection.cursor() as cursor:
            cursor.execute(statement.sql, params)
            rows = cursor.fetchall()
        if statement.converters:
            rows = list(statement.compiler.apply_converters(rows, statement.converters))
        if statement.flat:
            return [row[0] for row in rows]
        start, end = statement.model_fields
        objs = []
        for row in rows:
            obj = statement.compiler.query.model.from_db(using, statement.init_list, row[start:end])
            for populator in statement.related_populators:
                populator.populate(row, obj)
            objs.append(obj)
        return objs

    def sql(self, using: str = DEFAULT_DB_ALIAS) -> str:
        """The compiled SQL on this thread's connection to ``using`` (for tests and EXPLAIN)."""
        return self._statement(using).sql

    def _statement(self, using: str) -> _Statement:
        cache: dict[str, _Statement] = self._local.__dict__.setdefault("statements", {})
        connection = connections[using]
        statement = cache.get(using)
        if statement is None or statement.compiler.connection is not connection:
            statement = cache[using] = self._compile(using, connection)
        return statement

    def _compile(self, using: str, connection: BaseDatabaseWrapper) -> _Statement:
        queryset = self._build(*self._markers).using(using)
        query = queryset.query
        flat = queryset._iterable_class is FlatValuesListIterable
        if not flat and queryset._iterable_class is not ModelIterable:
            raise TypeError("CompiledQuery runs querysets of model instances or values_list(flat=True)")
        if query.combinator or query.select_for_update or query.annotation_select or query.extra_select:
            raise TypeError("CompiledQuery does not run combined, locking or annotated querysets")
        compiler = query.get_compiler(using=using, connection=connection)
        sql, params = compiler.as_sql()
        positions = tuple(
            tuple(i for i, param in enumerate(params) if param == marker) for marker in self._markers
        )
        if not all(positions):
            raise TypeError("every argument must appear among the queryset's parameters")
        select = compiler.select
        converters = compiler.get_converters([column[0] for column in select[: compiler.col_count]])
        model_fields: tuple[int, int] = (0, 0)
        init_list: list[str] = []
        related_populators: list[Any] = []
        if not flat:
            select_fields = compiler.klass_info["select_fields"]
            model_fields = (select_fields[0], select_fields[-1] + 1)
            init_list = [column[0].target.attname for column in select[model_fields[0] : model_fields[1]]]
            related_populators = get_related_populators(compiler.klass_info, select, using)
        return _Statement(
            compiler=compiler,
            sql=sql,
            params=tuple(params),
            positions=positions,
            converters=converters,
            flat=flat,
            model_fields=model_fields,
            init_list=init_list,
            related_populators=related_populators,
        )


@dataclass(frozen=True)
class _Statement:
    """One compiled query on one connection: SQL, parameter template, how to build the results.

    ``compiler`` is Django's, after ``as_sql()``: it holds the connection, the query (and its model),
    and what ``apply_converters`` needs.
    """

    compiler: Any
    sql: str
    params: tuple[Any, ...]
    positions: tuple[tuple[int, ...], ...]
    converters: dict[int, Any]
    flat: bool
    model_fields: tuple[int, int]
    init_list: list[str]
    related_populators: list[Any]


class FastLoadMixin:
    """Models whose rows are listed by the dozen: instances loaded without ``Model.__init__``.

    Django's documented ``Model.from_db`` hook builds every loaded row through ``Model.__init__``
    (signals, argument checks, one ``setattr`` per field): about 2.8 µs for a 14-field row against
    0.7 µs for filling the instance directly, a fifth of ``SyncHistory.objects.for_pair()[:50]``
    (benchmarks/hot_paths.py). This ``from_db`` fills ``__dict__`` and ``_state`` as ``__init__``
    would for a complete row, and leaves everything else to Django: rows with deferred fields, models
    with ``pre_init``/``post_init`` receivers, and fields behind descriptors of their own.
    """

    @classmethod
    def from_db(cls, db: str | None, field_names: Collection[str], values: Collection[Any]) -> Any:
        attnames = _plain_attnames(cls)
        if (
            attnames is None
            or len(values) != len(attnames)
            # has_listeners() costs more than the whole fast path: ask only when anything listens.
            or (pre_init.receivers and pre_init.has_listeners(cls))
            or (post_init.receivers and post_init.has_listeners(cls))
        ):
            return super().from_db(db, field_names, values)  # type: ignore[misc]
        new = cls.__new__(cls)
        new.__dict__.update(zip(attnames, values, strict=True))
        state = new._state = ModelState()
        state.adding = False
        state.db = db
        return new


@functools.cache
def _plain_attnames(model: type[models.Model]) -> tuple[str, ...] | None:
    """The concrete fields' attribute names, or ``None`` if one needs its descriptor to be set."""
    attnames = tuple(field.attname for field in model._meta.concrete_fields)
    for attname in attnames:
        descriptor = inspect.getattr_static(model, attname, None)
        # DeferredAttribute only reads; a foreign key's id descriptor only clears a related-object
        # cache that a new instance does not have yet. Anything else may do more on assignment.
        if type(descriptor) not in (DeferredAttribute, ForeignKeyDeferredAttribute):
            return None
    return attnames
