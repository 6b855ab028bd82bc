"""Database helpers shared by the apps."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import os
import threading
from collections.abc import Callable, Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.core.exceptions import EmptyResultSet, SynchronousOnlyOperation
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.base import ModelState
from django.db.models.expressions import DatabaseDefault
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.lookups import In
from django.db.models.query import FlatValuesListIterable, ModelIterable, get_related_populators
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, post_save, pre_init, pre_save
from django.db.models.sql import InsertQuery
from django.utils.datastructures import OrderedSet

ModelT = TypeVar("ModelT", bound=models.Model)
ResultT = TypeVar("ResultT")


def execute(
    connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any], fetch: Callable[[Any], ResultT]
) -> ResultT:
    """Run one statement on ``connection`` and return ``fetch(cursor)``: Django's cursor, made lean.

    When anything watches the connection's queries (``execute_wrappers``, ``connection.queries``
    with DEBUG or ``CaptureQueriesContext``), through ``connection.cursor()``, so that it sees the
    statement. Otherwise on the driver's cursor with every check Django's cursor makes first (no
    running event loop, the connection opened and health-checked, this thread's, no transaction
    waiting for its rollback) and the driver's errors turned into Django's, without the two wrapper
    objects and the per-call function wrapping of ``fetch*`` that Django's cursor adds: a fifth of a
    one-row lookup's time on a local PostgreSQL (docs/benchmarks.md).
    """
    if connection.execute_wrappers or connection.queries_logged:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return fetch(cursor)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        if not os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE"):
            raise SynchronousOnlyOperation(
                "You cannot call this from an async context - use a thread or sync_to_async."
            )
    if connection.connection is None or not connection.health_check_done:
        connection.close_if_health_check_failed()
        connection.ensure_connection()
    connection.validate_thread_sharing()
    if connection.needs_rollback:
        connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        cursor = connection.create_cursor()
        try:
            cursor.execute(sql, params)
            return fetch(cursor)
        finally:
            with contextlib.suppress(connection.Database.Error):  # as CursorWrapper.__exit__ does
                cursor.close()


def _fetchall(cursor: Any) -> list[Any]:
    return cursor.fetchall()


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
    what ``bulk_create`` does to it (its primary key default, its related ids). The statement is
    compiled once per shape and connection (:func:`insert_returning`); ``tests/test_db.py`` pins the
    statement and the returned row on both databases, so a Django upgrade that changes it fails there
    first.
    """
    model = manager.model
    queryset = manager.get_queryset()
    queryset._for_write = True
    using = queryset.db
    options = (tuple(unique_fields), tuple(update_fields))
    shape = _upsert_shape(model, using, *options)
    queryset._prepare_for_bulk_create([obj])
    pk_set = obj._is_pk_set()
    row = insert_returning(
        using,
        obj,
        fields=shape.fields if pk_set else shape.fields_without_pk,
        returning=shape.returning,
        on_conflict=shape.on_conflict,
        update_fields=shape.update_fields,
        unique_fields=shape.unique_fields,
        shape=(model, "upsert", *options, pk_set),
    )
    stored = model.from_db(using, shape.attnames, row)
    for field in shape.relations:
        # Related objects the caller passed stay attached when the stored row still points at them.
        if field.is_cached(obj):
            related = field.get_cached_value(obj)
            if related is not None and related.pk == getattr(stored, field.attname):
                field.set_cached_value(stored, related)
    return stored


@dataclass(frozen=True)
class _UpsertShape:
    """What :func:`upsert_one` inserts and returns for one model and set of options."""

    fields: tuple[models.Field[Any, Any], ...]
    #: ``fields`` without an ``AutoField`` primary key, for rows whose key the database assigns.
    fields_without_pk: tuple[models.Field[Any, Any], ...]
    returning: tuple[models.Field[Any, Any], ...]
    attnames: tuple[str, ...]
    relations: tuple[models.Field[Any, Any], ...]
    on_conflict: Any
    update_fields: tuple[models.Field[Any, Any], ...]
    unique_fields: tuple[models.Field[Any, Any], ...]


@functools.lru_cache(maxsize=256)
def _upsert_shape(
    model: type[models.Model],
    using: str,
    unique_fields: tuple[str, ...],
    update_fields: tuple[str, ...],
) -> _UpsertShape:
    """The fields and conflict options of an upsert, checked as ``bulk_create`` checks them (once)."""
    opts = model._meta
    unique = tuple(opts.get_field(opts.pk.name if name == "pk" else name) for name in unique_fields)
    update = tuple(opts.get_field(name) for name in update_fields)
    queryset = model._default_manager.db_manager(using).get_queryset()
    on_conflict = queryset._check_bulk_create_options(False, True, list(update), list(unique))
    returning = tuple(f for f in opts.concrete_fields if not f.generated)
    return _UpsertShape(
        fields=returning,
        fields_without_pk=tuple(f for f in returning if not isinstance(f, models.AutoField)),
        returning=returning,
        attnames=tuple(f.attname for f in returning),
        relations=tuple(f for f in opts.concrete_fields if f.is_relation),
        on_conflict=on_conflict,
        update_fields=update,
        unique_fields=unique,
    )


def insert_one(manager: models.Manager[ModelT], obj: ModelT) -> ModelT:
    """Save the new instance ``obj`` with one ``INSERT … RETURNING``, as ``obj.save()`` would.

    What ``Model.save()`` does for a new row of a model without parents (``force_insert``): the same
    fields, the same ``RETURNING`` columns set back on ``obj``, no transaction of its own; the
    statement compiled once per connection (:func:`insert_returning`) instead of on every call.
    Models with ``pre_save``/``post_save`` receivers, or with parents, go through ``obj.save()`` so
    that nothing listening misses the row.
    """
    model = manager.model
    opts = model._meta
    using = manager.db
    if (
        opts.parents
        or (pre_save.receivers and pre_save.has_listeners(model))
        or (post_save.receivers and post_save.has_listeners(model))
    ):
        obj.save(force_insert=True, using=using)
        return obj
    obj._prepare_related_fields_for_save(operation_name="save")
    if not obj._is_pk_set():
        pk_value = opts.pk.get_pk_value_on_save(obj)
        if pk_value is not None:
            setattr(obj, opts.pk.attname, pk_value)
    pk_set = obj._is_pk_set()
    fields = [
        f
        for f in opts.local_concrete_fields
        if not f.generated and (pk_set or not isinstance(f, models.AutoField))
    ]
    returning = opts.db_returning_fields
    shape = (model, "insert", pk_set)
    row = insert_returning(using, obj, fields=fields, returning=returning, shape=shape)
    for value, field in zip(row, returning, strict=True):
        setattr(obj, field.attname, value)
    obj._state.adding = False
    obj._state.db = using
    return obj


def insert_returning(
    using: str,
    obj: models.Model,
    *,
    fields: Sequence[models.Field[Any, Any]],
    returning: Sequence[models.Field[Any, Any]],
    on_conflict: Any = None,
    update_fields: Sequence[models.Field[Any, Any]] = (),
    unique_fields: Sequence[models.Field[Any, Any]] = (),
    shape: Hashable | None = None,
) -> tuple[Any, ...]:
    """Insert ``obj``'s ``fields`` (one row) and return its ``returning`` columns, converted.

    The statement is Django's, from the insert compiler ``QuerySet._insert`` uses (the method
    ``Model.save()`` and ``bulk_create()`` insert through), compiled once per shape and connection,
    then run with each new row's values: compiling an insert costs more than sending it to a local
    PostgreSQL (docs/benchmarks.md). The shape is the model, the fields, ``RETURNING``, the conflict
    options and which fields take their database default (``db_default``, compiled into the SQL).
    Each value is prepared as the compiler prepares it (``pre_save``, then ``get_db_prep_save``). A
    row with another expression as a value, and a shape whose SQL is not one plain ``%s`` per value
    (a field with a placeholder of its own), are compiled by Django every time. ``shape``: a key the
    caller already holds that names the model, fields, ``RETURNING`` and conflict options (saves
    building one from the fields' names on every call).
    """
    connection = connections[using]
    options = (fields, returning, on_conflict, update_fields, unique_fields)
    # What the compiler inserts for each field: pre_save() sets auto_now values, for one.
    values = [f.pre_save(obj, True) for f in fields]
    defaults = _database_defaults(values)
    if defaults is None:
        return _insert_by_django(connection, obj, *options)
    if shape is None:
        shape = (
            obj.__class__,
            tuple(f.attname for f in fields),
            tuple(f.attname for f in returning),
            on_conflict,
            tuple(f.attname for f in update_fields),
            tuple(f.attname for f in unique_fields),
        )
    key = (using, shape, defaults)
    cache: dict[tuple[Any, ...], _InsertStatement | None] = _INSERTS.__dict__.setdefault("statements", {})
    statement = cache.get(key, _MISSING)
    if statement is None:
        return _insert_by_django(connection, obj, *options)
    if statement is _MISSING or statement.connection is not connection:
        compiler = _insert_compiler(connection, obj, *options)
        # Compiling runs the fields' pre_save: this row is sent with the parameters Django compiled.
        statement, params = _InsertStatement.compile(compiler, returning, defaults)
        cache[key] = statement
        if statement is None:
            (row,) = compiler.execute_sql(returning)
            return tuple(row)
        return statement.run(params)
    return statement.run(statement.params_for(values))


_INSERTS = threading.local()
_MISSING: Any = object()


def _database_defaults(values: Sequence[Any]) -> tuple[bool, ...] | None:
    """Per value, whether it leaves the field to its ``db_default``; ``None`` if one is another expression."""
    defaults = []
    for value in values:
        if hasattr(value, "resolve_expression"):
            if not isinstance(value, DatabaseDefault):
                return None
            defaults.append(True)
        else:
            defaults.append(False)
    return tuple(defaults)


def _insert_compiler(
    connection: BaseDatabaseWrapper,
    obj: models.Model,
    fields: Sequence[models.Field[Any, Any]],
    returning: Sequence[models.Field[Any, Any]],
    on_conflict: Any,
    update_fields: Sequence[models.Field[Any, Any]],
    unique_fields: Sequence[models.Field[Any, Any]],
) -> Any:
    """Django's insert compiler for one row, set up as ``QuerySet._insert`` sets it up."""
    query = InsertQuery(
        obj.__class__, on_conflict=on_conflict, update_fields=update_fields, unique_fields=unique_fields
    )
    query.insert_values(fields, [obj], raw=False)
    compiler = query.get_compiler(connection=connection)
    compiler.returning_fields = list(returning)
    return compiler


def _insert_by_django(
    connection: BaseDatabaseWrapper,
    obj: models.Model,
    fields: Sequence[models.Field[Any, Any]],
    returning: Sequence[models.Field[Any, Any]],
    on_conflict: Any,
    update_fields: Sequence[models.Field[Any, Any]],
    unique_fields: Sequence[models.Field[Any, Any]],
) -> tuple[Any, ...]:
    """The insert compiled and run by Django, as ``QuerySet._insert`` runs it."""
    compiler = _insert_compiler(connection, obj, fields, returning, on_conflict, update_fields, unique_fields)
    (row,) = compiler.execute_sql(returning)
    return tuple(row)


@dataclass(frozen=True)
class _InsertStatement:
    """One compiled single-row insert on one connection: its SQL and how to read what it returns."""

    connection: BaseDatabaseWrapper
    compiler: Any = dataclasses.field(repr=False)
    sql: str
    fields: tuple[models.Field[Any, Any], ...]
    #: Per field, whether the SQL leaves it to its database default (no parameter bound).
    defaults: tuple[bool, ...]
    returning_params: tuple[Any, ...]
    converters: dict[int, Any] = dataclasses.field(repr=False)

    @classmethod
    def compile(
        cls, compiler: Any, returning: Sequence[models.Field[Any, Any]], defaults: tuple[bool, ...]
    ) -> tuple[_InsertStatement | None, list[Any]]:
        """The statement of ``compiler`` and Django's parameters for the row it was compiled for.

        No statement (``None``) unless the SQL binds exactly one parameter per field that is not left
        to its database default: what Django compiles for fields without a placeholder of their own,
        and for database defaults written as ``DEFAULT`` or as an expression without parameters.
        """
        fields = compiler.query.fields
        statements = compiler.as_sql()
        sql, params = statements[0]
        if (
            len(statements) != 1
            or len(params) != defaults.count(False)
            or not compiler.connection.features.can_return_columns_from_insert
            or any(hasattr(f, "get_placeholder") for f in fields)
        ):
            return None, list(params)
        # The compiler stays for its converters; the row it was compiled for (and its values) does not.
        compiler.query.objs = []
        table = compiler.query.model._meta.db_table
        statement = cls(
            connection=compiler.connection,
            compiler=compiler,
            sql=sql,
            fields=tuple(fields),
            defaults=defaults,
            returning_params=tuple(compiler.returning_params),
            converters=compiler.get_converters([f.get_col(table) for f in returning]),
        )
        return statement, list(params)

    def params_for(self, values: Sequence[Any]) -> list[Any]:
        """The parameters for the fields' ``pre_save`` values (one per field, in the statement's shape),
        prepared as the compiler prepares them."""
        connection = self.connection
        return [
            bound.get_db_prep_save(value, connection=connection)
            for bound, value, is_default in zip(self.fields, values, self.defaults, strict=True)
            if not is_default
        ]

    def _fetch_returned(self, cursor: Any) -> Any:
        return self.connection.ops.fetch_returned_insert_columns(cursor, self.returning_params)

    def run(self, params: list[Any]) -> tuple[Any, ...]:
        """Execute (:func:`execute`); the returned row with Django's converters applied."""
        connection = self.connection
        row = execute(connection, self.sql, params, self._fetch_returned)
        if self.converters:
            (row,) = self.compiler.apply_converters([row], self.converters)
        return tuple(row)


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
        rows = execute(statement.compiler.connection, statement.sql, params, _fetchall)
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
        # cache that a new instance does not have yet; a descriptor that says its __set__ only stores
        # the value in the instance's __dict__ (FAST_LOAD_SAFE) needs nothing either. Anything else
        # may do more on assignment.
        if type(descriptor) not in (DeferredAttribute, ForeignKeyDeferredAttribute) and not getattr(
            type(descriptor), "FAST_LOAD_SAFE", False
        ):
            return None
    return attnames
