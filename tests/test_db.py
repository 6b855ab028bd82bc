"""config.db on both engines.

upsert_one: one INSERT … ON CONFLICT … RETURNING, no transaction of its own. insert_one: what save()
does for a new row. Both compile their statement once per shape and connection. CompiledQuery: a
queryset's SQL compiled once per connection, with the results Django would have built. AnyOf
(``__any``): ``__in`` with the values as one array parameter on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from typing import Any

import pytest
from django.core.exceptions import SynchronousOnlyOperation
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Count
from django.db.models.expressions import DatabaseDefault
from django.db.models.signals import post_init, post_save
from django.db.transaction import TransactionManagementError
from django.test.utils import isolate_apps

import config.db
from accounts.models import ConfluenceToken, LinearToken, Organization
from config.db import AnyOf, CompiledQuery, FastLoadMixin, _plain_attnames, execute, insert_one, upsert_one
from sync.models import Conflict, ItemSnapshot, LinearIssueCache, SyncHistory, SyncState
from tests.factories import (
    make_conflict,
    make_linear_token,
    make_organization,
    make_sync_history,
    make_sync_state,
)

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
PAIR = {"confluence_page_id": "page-1", "linear_team_id": "team-1"}
KEY = ["confluence_page_id", "linear_team_id"]


def upsert_state(**fields: Any) -> SyncState:
    return upsert_one(
        SyncState.objects,
        SyncState(**PAIR, **fields),
        unique_fields=KEY,
        update_fields=["status", "updated_at"],
    )


def test_a_new_row_is_inserted_and_returned_as_stored() -> None:
    state = upsert_state(status="running", created_at=T0, updated_at=T0)

    stored = SyncState.objects.get()
    assert state.pk == stored.pk
    assert (state.status, state.conflict_count, state.created_at) == ("running", 0, T0)
    assert not state._state.adding
    assert state._state.db == "default"


def test_a_colliding_row_gets_only_the_update_fields_and_comes_back_whole() -> None:
    organization = make_organization(linear_id="org-1")
    existing = make_sync_state(
        **PAIR, organization=organization, conflict_count=4, status="failed", created_at=T0, updated_at=T0
    )
    later = T0 + dt.timedelta(hours=1)

    state = upsert_state(status="idle", conflict_count=0, created_at=later, updated_at=later)

    # What the update kept (organization, count, creation time) is what RETURNING read back.
    assert state.pk == existing.pk
    assert (state.status, state.updated_at) == ("idle", later)
    assert (state.organization_id, state.conflict_count, state.created_at) == (organization.pk, 4, T0)
    stored = SyncState.objects.get()
    assert (stored.status, stored.conflict_count, stored.created_at) == ("idle", 4, T0)


def test_it_is_one_insert_on_conflict_statement(django_assert_num_queries: Any) -> None:
    make_sync_state(**PAIR)
    with django_assert_num_queries(1) as captured:
        upsert_state(status="running")
    sql = captured.captured_queries[0]["sql"].upper()
    assert sql.startswith("INSERT")
    assert "ON CONFLICT" in sql and "RETURNING" in sql


def test_it_opens_no_transaction_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """bulk_create wraps even one row in atomic(): BEGIN and COMMIT round trips on PostgreSQL."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("upsert_one opened a transaction")

    monkeypatch.setattr(transaction, "atomic", refuse)
    state = upsert_state(status="running")
    monkeypatch.undo()
    assert SyncState.objects.get().pk == state.pk


def test_inside_atomic_it_rolls_back_with_the_caller() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        upsert_state(status="running")
        raise RuntimeError("the caller's next step failed")
    assert not SyncState.objects.exists()


def test_a_related_object_passed_in_stays_attached(django_assert_num_queries: Any) -> None:
    organization = make_organization(linear_id="org-1")
    state = upsert_one(
        SyncState.objects,
        SyncState(**PAIR, organization=organization),
        unique_fields=KEY,
        update_fields=["organization", "updated_at"],
    )
    with django_assert_num_queries(0):
        assert state.organization is organization


def test_a_related_object_the_row_no_longer_points_at_is_not_attached() -> None:
    kept = make_organization(linear_id="org-kept")
    make_sync_state(**PAIR, organization=kept)
    passed = make_organization(linear_id="org-passed")

    state = upsert_one(
        SyncState.objects,
        SyncState(**PAIR, organization=passed),
        unique_fields=KEY,
        update_fields=["updated_at"],  # the organization is not updated: the row keeps ``kept``
    )
    assert state.organization_id == kept.pk
    assert state.organization == kept


def test_a_row_that_breaks_a_constraint_raises_integrity_error() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        upsert_state(status="not-a-status")
    assert not SyncState.objects.exists()


@pytest.mark.parametrize(
    ("unique_fields", "update_fields", "message"),
    [
        (KEY, [], "must be provided"),
        ([], ["status"], "Unique fields"),
        (KEY, ["id"], "primary keys"),
    ],
)
def test_bad_options_are_refused_as_bulk_create_refuses_them(
    unique_fields: list[str], update_fields: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        upsert_one(
            SyncState.objects, SyncState(**PAIR), unique_fields=unique_fields, update_fields=update_fields
        )
    assert not SyncState.objects.exists()


# --- execute: Django's cursor, made lean -----------------------------------------------------------


def fetch_one(cursor: Any) -> Any:
    return cursor.fetchone()


def test_execute_runs_a_statement_and_fetches(
    django_assert_num_queries: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_organization(linear_id="org-1")
    sql = "SELECT linear_id FROM accounts_organization WHERE linear_id = %s"
    with django_assert_num_queries(1) as captured:  # a watched connection goes through Django's cursor
        assert execute(connection, sql, ["org-1"], fetch_one) == ("org-1",)
    assert captured.captured_queries[0]["sql"].startswith("SELECT linear_id")
    assert not connection.queries_logged and not connection.execute_wrappers

    def refuse() -> None:
        raise AssertionError("an unwatched connection took Django's cursor")

    monkeypatch.setattr(connection, "cursor", refuse)
    assert execute(connection, sql, ["org-1"], fetch_one) == ("org-1",)
    assert execute(connection, sql, ["org-2"], fetch_one) is None


def test_execute_raises_djangos_errors() -> None:
    make_organization(linear_id="org-1")
    sql = (
        "INSERT INTO accounts_organization (linear_id, name, created_at, updated_at) "
        "VALUES (%s, '', %s, %s)"
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        execute(connection, sql, ["org-1", T0, T0], lambda cursor: None)
    assert Organization.objects.count() == 1


def test_execute_refuses_a_broken_transaction_as_djangos_cursor_does() -> None:
    with transaction.atomic():
        connection.set_rollback(True)
        with pytest.raises(TransactionManagementError):
            execute(connection, "SELECT 1", [], fetch_one)


def test_execute_refuses_to_run_inside_an_event_loop() -> None:
    async def in_a_loop() -> Any:
        return execute(connection, "SELECT 1", [], fetch_one)

    with pytest.raises(SynchronousOnlyOperation):
        asyncio.run(in_a_loop())


@pytest.mark.django_db(transaction=True)
def test_execute_opens_a_closed_connection() -> None:
    connection.close()
    assert execute(connection, "SELECT 1", [], fetch_one) == (1,)
    assert connection.connection is not None


# --- compiled inserts (upsert_one, insert_one) -----------------------------------------------------


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The models Django's insert compiler is built for, in order, from a fresh statement cache."""
    monkeypatch.setattr(config.db, "_INSERTS", threading.local())
    built: list[str] = []
    real = config.db._insert_compiler

    def counting(connection: Any, obj: models.Model, *args: Any) -> Any:
        built.append(type(obj).__name__)
        return real(connection, obj, *args)

    monkeypatch.setattr(config.db, "_insert_compiler", counting)
    return built


def test_an_upsert_is_compiled_once_and_run_with_each_rows_values(
    compiles: list[str], django_assert_num_queries: Any
) -> None:
    for n in range(3):
        with django_assert_num_queries(1):
            state = upsert_state(status="running" if n % 2 else "failed", created_at=T0, updated_at=T0)
        assert (state.status, state.created_at) == ("running" if n % 2 else "failed", T0)
    later = T0 + dt.timedelta(hours=2)
    other = upsert_one(
        SyncState.objects,
        SyncState(confluence_page_id="page-2", linear_team_id="team-2", updated_at=later),
        unique_fields=KEY,
        update_fields=["status", "updated_at"],
    )
    assert compiles == ["SyncState"]
    stored = {(s.confluence_page_id, s.status, s.updated_at) for s in SyncState.objects.all()}
    assert stored == {("page-1", "failed", T0), ("page-2", "idle", later)}
    assert other.pk != state.pk and other.sync_interval == dt.timedelta(seconds=300)


def test_each_call_gets_its_own_auto_now_values(compiles: list[str], clock: Any) -> None:
    given = {"app_user_id": "app", "expires_at": T0 + dt.timedelta(hours=1)}
    first = LinearToken.objects.store("org-1", access_token="access-one", **given)
    clock.advance(minutes=5)
    second = LinearToken.objects.store("org-1", access_token="access-two", **given)
    assert compiles.count("LinearToken") == 1
    assert second.updated_at - first.updated_at == dt.timedelta(minutes=5)
    assert second.created_at == first.created_at  # kept by the update
    assert LinearToken.objects.for_organization("org-1").access_token == "access-two"


def test_a_value_that_is_an_expression_is_compiled_by_django(compiles: list[str]) -> None:
    upsert_state(status="running")
    state = upsert_one(
        SyncState.objects,
        SyncState(**PAIR, conflict_count=models.Value(3) + 4),
        unique_fields=KEY,
        update_fields=["conflict_count"],
    )
    assert state.conflict_count == 7
    upsert_state(status="failed")
    # Compiled for the first row, by Django for the expression, and the cached statement served the third.
    assert compiles == ["SyncState", "SyncState"]
    assert SyncState.objects.values_list("status", "conflict_count").get() == ("failed", 7)


def test_a_field_left_to_its_database_default_gets_it(compiles: list[str]) -> None:
    field = SyncState._meta.get_field("failure_count")
    for n in range(2):
        state = upsert_one(
            SyncState.objects,
            SyncState(
                confluence_page_id=f"page-{n}",
                linear_team_id="team-1",
                failure_count=DatabaseDefault(field._db_default_expression, output_field=field),
            ),
            unique_fields=KEY,
            update_fields=["status"],
        )
        assert state.failure_count == 0
    # PostgreSQL writes DEFAULT (no parameter): compiled once. SQLite binds the default's value in
    # the SQL Django compiles for each row, which a reused statement cannot do: compiled each time.
    assert compiles == ["SyncState"] if connection.vendor == "postgresql" else ["SyncState", "SyncState"]
    assert list(SyncState.objects.values_list("failure_count", flat=True)) == [0, 0]


def test_a_new_connection_object_gets_its_statement_compiled_again(compiles: list[str]) -> None:
    upsert_state(status="running")
    (statement,) = config.db._INSERTS.statements.values()
    object.__setattr__(statement, "connection", object())  # as if the thread's connection was replaced
    upsert_state(status="failed")
    assert compiles == ["SyncState", "SyncState"]
    assert SyncState.objects.get().status == "failed"


def test_a_cached_statement_keeps_no_row_and_no_token(compiles: list[str]) -> None:
    LinearToken.objects.store(
        "org-1",
        access_token="access-secret-123",
        refresh_token="refresh-secret-456",
        app_user_id="app",
        expires_at=T0,
    )
    statements = list(config.db._INSERTS.statements.values())
    assert statements and all(statement.compiler.query.objs == [] for statement in statements)
    shown = repr(statements)
    assert "secret" not in shown and "gAAAA" not in shown  # neither the plaintext nor a Fernet token


def test_insert_one_saves_as_save_does(compiles: list[str], django_assert_num_queries: Any) -> None:
    for n in range(2):
        run = SyncHistory(**PAIR, success=True, created_issues=n, synced_at=T0)
        with django_assert_num_queries(1):
            returned = insert_one(SyncHistory.objects, run)
        assert returned is run
        assert run.pk is not None and not run._state.adding and run._state.db == "default"
    assert compiles == ["SyncHistory"]
    saved = SyncHistory(**PAIR, success=True, created_issues=1, synced_at=T0)
    saved.save()
    fields = [f.attname for f in SyncHistory._meta.concrete_fields if f.attname != "id"]
    stored = list(SyncHistory.objects.order_by("pk").values_list(*fields))
    assert stored[1] == stored[2]  # the second insert_one row is the row save() writes
    assert stored[0][fields.index("created_issues")] == 0


def test_insert_one_leaves_models_with_save_receivers_to_save(compiles: list[str]) -> None:
    seen: list[tuple[str, bool]] = []

    def receiver(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
        seen.append((instance.confluence_page_id, created))

    post_save.connect(receiver, sender=SyncHistory)
    try:
        SyncHistory.objects.record("page-1", "team-1", success=True)
    finally:
        post_save.disconnect(receiver, sender=SyncHistory)
    assert seen == [("page-1", True)]
    assert compiles == []  # save() compiled it, as it always does
    assert SyncHistory.objects.count() == 1


# --- CompiledQuery ---------------------------------------------------------------------------------


def tokens_of(linear_id: str) -> Any:
    return (
        LinearToken.objects.select_related("organization")
        .filter(organization__linear_id=linear_id)
        .order_by()
    )


class Counting:
    """A ``build`` function that counts how often it is asked for the queryset (once per compile)."""

    def __init__(self, build: Any) -> None:
        self.build, self.calls = build, 0

    def __call__(self, *markers: str) -> Any:
        self.calls += 1
        return self.build(*markers)


def test_model_rows_come_back_as_the_queryset_builds_them(django_assert_num_queries: Any) -> None:
    token = make_linear_token(organization=make_organization(linear_id="org-1"))
    make_linear_token(organization=make_organization(linear_id="org-2"))
    query = CompiledQuery(tokens_of, arguments=1)

    with django_assert_num_queries(1):
        (found,) = query("org-1")
        # select_related: the organization came with the row, no second query.
        assert found.organization.linear_id == "org-1"
    expected = tokens_of("org-1").get()
    assert [getattr(found, f.attname) for f in LinearToken._meta.concrete_fields] == [
        getattr(expected, f.attname) for f in LinearToken._meta.concrete_fields
    ]
    assert found.access_token == token.access_token  # decrypted by the field's converter
    assert not found._state.adding and found._state.db == "default"
    assert query("org-unknown") == []


def test_flat_values_are_converted_as_django_converts_them() -> None:
    conflict = make_conflict()
    query = CompiledQuery(
        lambda conflict_id: Conflict.objects.filter(id=conflict_id).values_list("linear_change", flat=True),
        arguments=1,
    )
    assert query(conflict.pk) == [conflict.linear_change]  # JSON loaded, not text
    stamps = CompiledQuery(
        lambda conflict_id: Conflict.objects.filter(id=conflict_id).values_list("created_at", flat=True),
        arguments=1,
    )
    (created_at,) = stamps(conflict.pk)
    assert created_at == Conflict.objects.get().created_at and created_at.tzinfo is not None


def test_the_sql_is_what_django_compiles_for_the_queryset() -> None:
    query = CompiledQuery(tokens_of, arguments=1)
    compiled_sql, params = tokens_of("org-1").query.get_compiler(using="default").as_sql()
    assert query.sql() == compiled_sql
    assert "org-1" in params


def test_values_are_bound_as_parameters_never_spliced_into_the_sql() -> None:
    tricky = "org'); DROP TABLE accounts_organization; --%s%%"
    make_organization(linear_id=tricky)
    query = CompiledQuery(
        lambda linear_id: Organization.objects.filter(linear_id=linear_id).order_by(), arguments=1
    )
    assert [org.linear_id for org in query(tricky)] == [tricky]
    assert Organization.objects.count() == 1


def test_it_compiles_once_per_thread_and_runs_through_djangos_cursor() -> None:
    make_organization(linear_id="org-1")
    build = Counting(lambda linear_id: Organization.objects.filter(linear_id=linear_id).order_by())
    query = CompiledQuery(build, arguments=1)
    seen: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        for _ in range(3):
            assert len(query("org-1")) == 1
    assert build.calls == 1
    assert seen == [query.sql()] * 3


@pytest.mark.django_db(transaction=True)
def test_another_thread_compiles_for_its_own_connection() -> None:
    make_organization(linear_id="org-1")
    build = Counting(lambda linear_id: Organization.objects.filter(linear_id=linear_id).order_by())
    query = CompiledQuery(build, arguments=1)
    assert len(query("org-1")) == 1
    found: list[Any] = []

    def other_thread() -> None:
        try:
            found.extend(org.linear_id for org in query("org-1"))
        finally:
            connection.close()

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    assert found == ["org-1"]
    assert build.calls == 2  # each thread's connection got its own compiled statement


def test_a_new_connection_object_is_compiled_for_again() -> None:
    make_organization(linear_id="org-1")
    build = Counting(lambda linear_id: Organization.objects.filter(linear_id=linear_id).order_by())
    query = CompiledQuery(build, arguments=1)
    query("org-1")
    # As if the thread's connection object had been replaced (a test's override, a reconfiguration).
    query._statement("default").compiler.connection = object()
    assert len(query("org-1")) == 1
    assert build.calls == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [(("org-1", "extra"), "expected 1 arguments"), ((42,), "must be strings"), ((None,), "must be strings")],
)
def test_wrong_arguments_are_refused(args: tuple[Any, ...], message: str) -> None:
    query = CompiledQuery(lambda linear_id: Organization.objects.filter(linear_id=linear_id), arguments=1)
    with pytest.raises(TypeError, match=message):
        query(*args)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda linear_id: Organization.objects.filter(linear_id=linear_id).values("name"),
            "model instances",
        ),
        (
            lambda linear_id: Organization.objects.filter(linear_id=linear_id).annotate(
                n=Count("linear_token")
            ),
            "annotated",
        ),
        (lambda linear_id: Organization.objects.select_for_update().filter(linear_id=linear_id), "locking"),
        (lambda linear_id: Organization.objects.all(), "every argument"),
    ],
)
def test_querysets_it_cannot_run_faithfully_are_refused(build: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        CompiledQuery(build, arguments=1)("org-1")


# --- FastLoadMixin ---------------------------------------------------------------------------------


def field_values(obj: Any) -> list[Any]:
    return [getattr(obj, field.attname) for field in type(obj)._meta.concrete_fields]


@pytest.mark.parametrize(
    "model", [Conflict, SyncHistory, LinearIssueCache, SyncState, Organization, LinearToken, ConfluenceToken]
)
def test_the_listed_models_load_through_the_fast_path(model: type[Any]) -> None:
    assert issubclass(model, FastLoadMixin)
    assert _plain_attnames(model) is not None  # no field of theirs needs its descriptor on load


def test_a_fast_loaded_row_equals_one_built_by_django(django_assert_num_queries: Any) -> None:
    organization = make_organization(linear_id="org-1")
    make_sync_history(organization=organization, error="Linear API returned 502", created_issues=3)
    fields = [field.attname for field in SyncHistory._meta.concrete_fields]
    row = list(SyncHistory.objects.values_list(*fields).get())

    fast = SyncHistory.from_db("default", fields, row)
    django_built = models.Model.from_db.__func__(SyncHistory, "default", fields, row)

    assert type(fast) is SyncHistory
    assert fast.__dict__.keys() == django_built.__dict__.keys()
    assert field_values(fast) == field_values(django_built)
    assert (fast._state.adding, fast._state.db) == (False, "default")
    assert fast == django_built and hash(fast) == hash(django_built)
    with django_assert_num_queries(1):
        assert fast.organization.linear_id == "org-1"


def test_a_fast_loaded_token_decrypts_on_first_read_as_a_django_built_one_does() -> None:
    make_linear_token(organization=make_organization(linear_id="org-1"), access_token="access-fast-123")
    fields = [field.attname for field in LinearToken._meta.concrete_fields]
    row = list(LinearToken.objects.values_list(*fields).get())

    fast = LinearToken.from_db("default", fields, row)
    django_built = models.Model.from_db.__func__(LinearToken, "default", fields, row)

    assert fast.__dict__.keys() == django_built.__dict__.keys()
    assert type(fast.__dict__["access_token"]) is type(django_built.__dict__["access_token"])
    assert "access-fast-123" not in repr(fast.__dict__)  # still ciphertext until read
    assert fast.access_token == django_built.access_token == "access-fast-123"


def test_a_fast_loaded_row_saves_as_an_update() -> None:
    history = make_sync_history(created_issues=1)
    loaded = SyncHistory.objects.get(pk=history.pk)
    loaded.created_issues = 7
    loaded.save()
    assert SyncHistory.objects.count() == 1
    assert SyncHistory.objects.get().created_issues == 7


def test_rows_with_deferred_fields_are_left_to_django() -> None:
    make_sync_history(error="boom")
    loaded = SyncHistory.objects.only("id", "success").get()
    assert loaded.get_deferred_fields() >= {"error", "synced_at"}
    assert loaded.error == "boom"  # loaded on access, as Django does


def test_models_with_init_signal_receivers_are_left_to_django() -> None:
    make_sync_history()
    seen: list[Any] = []

    def receiver(sender: Any, instance: Any, **kwargs: Any) -> None:
        seen.append(instance)

    post_init.connect(receiver, sender=SyncHistory)
    try:
        loaded = SyncHistory.objects.get()
    finally:
        post_init.disconnect(receiver, sender=SyncHistory)
    assert seen == [loaded]


@isolate_apps("sync")
def test_a_field_with_a_descriptor_of_its_own_turns_the_fast_path_off() -> None:
    class WithFile(FastLoadMixin, models.Model):  # noqa: DJ008 - a throwaway model
        document = models.FileField()  # FileDescriptor wraps what is assigned to it

        class Meta:
            app_label = "sync"

    class Plain(FastLoadMixin, models.Model):  # noqa: DJ008
        name = models.CharField(max_length=10)

        class Meta:
            app_label = "sync"

    assert _plain_attnames(WithFile) is None
    assert _plain_attnames(Plain) == ("id", "name")
    loaded = WithFile.from_db("default", ["id", "document"], [1, "a.txt"])
    assert loaded.document.name == "a.txt"  # built by Django: the descriptor made it a FieldFile


# --- AnyOf (field__any) -------------------------------------------------------------------------


def _ids(queryset: models.QuerySet[Any]) -> list[str]:
    return sorted(queryset.values_list("pk", flat=True))


def test_any_finds_the_rows_in_finds() -> None:
    a, b, c = (make_conflict(id=f"conflict-any-{n}") for n in "abc")
    wanted = [c.pk, a.pk, "conflict-absent", a.pk]

    assert _ids(Conflict.objects.filter(pk__any=wanted)) == [a.pk, c.pk]
    assert _ids(Conflict.objects.filter(pk__any=wanted)) == _ids(Conflict.objects.filter(pk__in=wanted))
    assert _ids(Conflict.objects.filter(item_id__any={b.item_id})) == [b.pk]
    assert _ids(Conflict.objects.exclude(pk__any=[a.pk, b.pk])) == [c.pk]


def test_any_drops_none_and_an_empty_list_asks_nothing(django_assert_num_queries: Any) -> None:
    conflict = make_conflict(id="conflict-any-none")
    assert _ids(Conflict.objects.filter(pk__any=[None, conflict.pk])) == [conflict.pk]
    with django_assert_num_queries(0):
        assert list(Conflict.objects.filter(pk__any=[])) == []
        assert list(Conflict.objects.filter(pk__any=[None])) == []


def test_any_takes_a_subquery_as_in_does() -> None:
    kept = make_conflict(id="conflict-any-sub-1", confluence_page_id="page-any", linear_team_id="team-any")
    make_conflict(id="conflict-any-sub-2")
    inner = Conflict.objects.filter(confluence_page_id="page-any").values("pk")

    assert _ids(Conflict.objects.filter(pk__any=inner)) == [kept.pk]


def test_any_with_an_expression_among_the_values_is_in() -> None:
    own = make_conflict(id="conflict-any-expr", item_id="conflict-any-expr")  # its id equals its item id
    named = make_conflict(id="conflict-any-named")
    make_conflict(id="conflict-any-other")
    values = [named.pk, models.F("item_id")]

    assert _ids(Conflict.objects.filter(pk__any=values)) == sorted([own.pk, named.pk])
    assert _ids(Conflict.objects.filter(pk__any=values)) == _ids(Conflict.objects.filter(pk__in=values))


def test_any_never_matches_a_longer_value_on_its_prefix() -> None:
    """A varchar(255)[] cast would cut the value to 255 characters, and it would match this row."""
    longest = "c" * 255
    make_conflict(id=longest)

    assert not Conflict.objects.filter(pk__any=[longest + "-and-more"]).exists()
    assert Conflict.objects.filter(pk__any=[longest]).exists()


def test_any_is_registered_on_text_fields_too() -> None:
    assert models.CharField().get_lookup("any") is AnyOf
    assert models.TextField().get_lookup("any") is AnyOf
    assert ItemSnapshot._meta.get_field("item_id").get_lookup("any") is AnyOf
    assert models.IntegerField().get_lookup("any") is None  # its array type would need its own cast


def test_any_is_one_array_parameter_on_postgresql_and_in_on_sqlite() -> None:
    """On PostgreSQL the statement is the same for any number of ids: prepared once, planned generically
    on the unique index (IN ($1, …, $500) got a generic plan that scanned the organization's rows)."""

    def compiled(ids: list[str]) -> tuple[str, tuple[Any, ...]]:
        sql, params = Conflict.objects.filter(pk__any=ids).values_list("pk").query.sql_with_params()
        return sql, params

    two_sql, two_params = compiled(["a", "b"])
    three_sql, three_params = compiled(["a", "b", "c"])
    if connection.vendor == "postgresql":
        assert two_sql == three_sql
        assert two_sql.endswith('"sync_conflict"."id" = ANY(%s::text[])')
        assert two_params == (["a", "b"],) and three_params == (["a", "b", "c"],)
    else:
        assert two_sql.endswith('"sync_conflict"."id" IN (%s, %s)')
        assert two_params == ("a", "b") and three_params == ("a", "b", "c")
