"""Faults: a database connection killed mid-transaction, and failures injected inside multi-row writes.

Either way nothing half-written remains, the caller gets a clear error, and the next call works.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connection
from django.db.models.query import QuerySet
from django.test.utils import CaptureQueriesContext

from accounts.models import LinearToken, Organization
from planning import services as planning_services
from planning.models import Enabler, Feature, PlanningSession, Story
from planning.services import save_planning_result
from sync.models import Conflict, ConflictResolution, SyncState
from tests.db_faults import fail_statements
from tests.factories import make_conflict, make_planning_session

EXPIRES = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
KILLED = (OperationalError, InterfaceError)

FEATURES = [
    {"feature_id": "F-1", "title": "One", "stories": [{"story_id": "S-1", "title": "Story one"}]},
    {"feature_id": "F-2", "title": "Two", "stories": [{"story_id": "S-2", "title": "Story two"}]},
]
ENABLERS = [{"enabler_id": "E-1", "title": "Enabler", "enabler_type": "architecture"}]


# --- helpers -----------------------------------------------------------------------------------------


def killer_connection() -> psycopg.Connection:
    """A separate autocommit connection to the test database, like an operator's psql session."""
    params = connection.settings_dict
    return psycopg.connect(
        dbname=params["NAME"],
        user=params["USER"] or None,
        password=params["PASSWORD"] or None,
        host=params["HOST"] or None,
        port=params["PORT"] or None,
        autocommit=True,
    )


def terminate(pid: int) -> None:
    """``pg_terminate_backend(pid)`` from another connection, asserting the backend existed."""
    with killer_connection() as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)


def wait_until_waiting_on_lock(pid: int, timeout: float = 20) -> None:
    """Block until backend ``pid`` waits for a lock (so it is inside its transaction)."""
    deadline = time.monotonic() + timeout
    with killer_connection() as admin:
        while time.monotonic() < deadline:
            row = admin.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]
            ).fetchone()
            if row and row[0] == "Lock":
                return
            time.sleep(0.02)
    pytest.fail(f"backend {pid} never waited on a lock")


def backend_pid() -> int:
    """The PostgreSQL backend pid of this thread's Django connection (connecting first if needed)."""
    connection.ensure_connection()
    return connection.connection.info.backend_pid


class Worker(threading.Thread):
    """Runs ``first`` then ``second`` on its own connection; records results and errors of both."""

    def __init__(self, first: Any, second: Any = None) -> None:
        super().__init__(daemon=True)
        self.first, self.second = first, second
        self.pid: int | None = None
        self.ready = threading.Event()
        self.results: list[Any] = []
        self.errors: list[BaseException | None] = []

    def run(self) -> None:
        try:
            self.pid = backend_pid()
            self.ready.set()
            for call in (self.first, self.second):
                if call is None:
                    continue
                try:
                    self.results.append(call())
                    self.errors.append(None)
                except BaseException as exc:  # handed to the test, which checks its type
                    self.results.append(None)
                    self.errors.append(exc)
        finally:
            self.ready.set()
            connection.close()


# --- killed connections (PostgreSQL) -------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_killed_during_save_planning_result_writes_nothing_and_the_retry_works(monkeypatch):
    session = make_planning_session()
    inside = threading.Event()
    original = planning_services._insert_new

    def insert_then_stall(model: Any, rows: Any) -> Any:
        # Features and stories are already inserted when the enablers' turn comes: stall there once.
        if model is Enabler and not inside.is_set():
            inside.set()
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(30)")
        return original(model, rows)

    # New rows go in through _insert_new (binary COPY on PostgreSQL), not bulk_create.
    monkeypatch.setattr(planning_services, "_insert_new", insert_then_stall)
    call = lambda: save_planning_result(  # noqa: E731 - the same call twice
        PlanningSession.objects.get(pk=session.pk), features=FEATURES, enablers=ENABLERS
    )
    worker = Worker(call, call)
    worker.start()
    assert inside.wait(20), "the save never reached the enablers"
    terminate(worker.pid)
    worker.join(30)

    assert not worker.is_alive()
    assert isinstance(worker.errors[0], KILLED), worker.errors[0]
    assert worker.errors[1] is None, worker.errors[1]
    assert worker.results[1].features.created == 2
    assert worker.results[1].stories.created == 2
    assert worker.results[1].enablers.created == 1
    # The rows are those of the second call only: the first left nothing behind.
    assert sorted(Feature.objects.values_list("feature_id", flat=True)) == ["F-1", "F-2"]
    assert sorted(Story.objects.values_list("story_id", flat=True)) == ["S-1", "S-2"]
    assert list(Enabler.objects.values_list("enabler_id", flat=True)) == ["E-1"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_killed_during_token_store_keeps_the_old_token_and_the_retry_works():
    LinearToken.objects.store(
        "org-k", access_token="old-access", refresh_token="old-refresh", app_user_id="app", expires_at=EXPIRES
    )

    def store() -> LinearToken:
        return LinearToken.objects.store(
            "org-k",
            access_token="new-access",
            refresh_token="new-refresh",
            app_user_id="app",
            expires_at=EXPIRES,
        )

    def store_again() -> LinearToken:
        # The killed upsert ran alone, outside a transaction: nothing rolled back and closed the dead
        # connection for the worker. Between jobs a worker calls close_old_connections()
        # (docs/api.md), which replaces it; a request does the same at its start.
        close_old_connections()
        return store()

    worker = Worker(store, store_again)
    from django.db import transaction

    # Hold the row lock so the worker's upsert waits inside its transaction, then kill it there.
    with transaction.atomic():
        LinearToken.objects.select_for_update().get()
        worker.start()
        assert worker.ready.wait(20)
        wait_until_waiting_on_lock(worker.pid)
        terminate(worker.pid)
        # The worker's retry waits for this lock too: release it.
    worker.join(30)

    assert not worker.is_alive()
    assert isinstance(worker.errors[0], KILLED), worker.errors[0]
    assert worker.errors[1] is None, worker.errors[1]
    stored = LinearToken.objects.get()
    assert (stored.access_token, stored.refresh_token) == ("new-access", "new-refresh")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_killed_during_refresh_keeps_the_old_pair():
    """The connection dies while the provider answers: the stored pair is the old one, not half of each."""
    LinearToken.objects.store(
        "org-k", access_token="old-access", refresh_token="old-refresh", app_user_id="app", expires_at=EXPIRES
    )
    answered = threading.Event()
    killed = threading.Event()
    holder: dict[str, int] = {}

    def slow_refresher(refresh_token: str) -> tuple[str, str, dt.datetime]:
        holder["pid"] = connection.connection.info.backend_pid
        answered.set()
        killed.wait(20)
        return "new-access", "new-refresh", EXPIRES + dt.timedelta(days=1)

    def refresh() -> LinearToken:
        return LinearToken.objects.for_organization("org-k").refresh(slow_refresher)

    def refresh_again() -> LinearToken:
        return LinearToken.objects.for_organization("org-k").refresh(
            lambda rt: ("newer-access", None, EXPIRES + dt.timedelta(days=2))
        )

    worker = Worker(refresh, refresh_again)
    worker.start()
    assert answered.wait(20)
    terminate(holder["pid"])
    killed.set()
    worker.join(30)

    assert isinstance(worker.errors[0], KILLED), worker.errors[0]
    assert worker.errors[1] is None, worker.errors[1]
    stored = LinearToken.objects.get()
    # The first refresh's save never happened; the second refreshed from the old pair.
    assert (stored.access_token, stored.refresh_token) == ("newer-access", "old-refresh")
    assert stored.expires_at == EXPIRES + dt.timedelta(days=2)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_killed_during_conflict_resolve_leaves_it_unresolved_and_unlogged():
    make_conflict(id="conflict-k", item_id="k", confluence_page_id="p", linear_team_id="t")
    from django.db import transaction

    worker = Worker(
        lambda: Conflict.objects.get(pk="conflict-k").resolve("linear"),
        lambda: Conflict.objects.get(pk="conflict-k").resolve("confluence"),
    )
    # Lock the pair's SyncState row: resolve() has saved the conflict and its log entry when it waits here.
    with transaction.atomic():
        SyncState.objects.select_for_update().get()
        worker.start()
        assert worker.ready.wait(20)
        wait_until_waiting_on_lock(worker.pid)
        terminate(worker.pid)
    worker.join(30)

    assert isinstance(worker.errors[0], KILLED), worker.errors[0]
    assert worker.errors[1] is None, worker.errors[1]
    conflict = Conflict.objects.get()
    assert conflict.resolution_strategy == "confluence"
    assert list(ConflictResolution.objects.values_list("strategy", flat=True)) == ["confluence"]
    assert SyncState.objects.get().conflict_count == 0


def _reconnect_after_idle_kill(monkeypatch: pytest.MonkeyPatch, *, health_checks: bool) -> Any:
    """Kill this thread's persistent connection while idle, then start a 'request' and store a token."""
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 600)
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", health_checks)
    connection.close()
    old_pid = backend_pid()
    terminate(old_pid)
    close_old_connections()  # what Django runs at the start of every request
    token = LinearToken.objects.store("org-idle", access_token="a", app_user_id="app", expires_at=EXPIRES)
    return old_pid, token


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_connection_killed_while_idle_is_replaced_by_the_health_check(monkeypatch):
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True  # what settings.py configures
    old_pid, token = _reconnect_after_idle_kill(monkeypatch, health_checks=True)

    assert token.access_token == "a"
    assert backend_pid() != old_pid


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_without_health_checks_the_killed_connection_fails_the_first_call(monkeypatch):
    """The control for the test above: the health check is what saves the first call."""
    with pytest.raises(KILLED):
        _reconnect_after_idle_kill(monkeypatch, health_checks=False)
    connection.close()


# --- injected failures (both engines) -----------------------------------------------------------------


class Boom(RuntimeError):
    """The injected failure."""


def _fail_for(model: type, method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``QuerySet.<method>`` raise :class:`Boom` for ``model`` only."""
    original = getattr(QuerySet, method)

    def failing(self: QuerySet, *args: Any, **kwargs: Any) -> Any:
        if self.model is model:
            raise Boom(f"injected failure in {model.__name__}.{method}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(QuerySet, method, failing)


def _planning_rows(session: PlanningSession) -> dict[str, list[tuple]]:
    features = Feature.objects.filter(planning_session=session)
    stories = Story.objects.filter(planning_feature__planning_session=session)
    enablers = Enabler.objects.filter(planning_session=session)
    return {
        "features": sorted(features.values_list("feature_id", "title", "updated_at")),
        "stories": sorted(stories.values_list("story_id", "title", "updated_at")),
        "enablers": sorted(enablers.values_list("enabler_id", "title", "updated_at")),
    }


WRITES = ("INSERT", "UPDATE", "DELETE")


def _fail_write(monkeypatch: pytest.MonkeyPatch, nth: int) -> None:
    """Make the ``nth`` (1-based) write statement from now on raise :class:`Boom` instead of running."""
    seen = {"writes": 0}

    def failure_for(sql: str) -> Boom | None:
        if sql.lstrip().upper().startswith(WRITES):
            seen["writes"] += 1
            if seen["writes"] == nth:
                return Boom(f"injected failure at write {nth}: {sql[:60]}")
        return None

    fail_statements(monkeypatch, failure_for)


SECOND_FEATURES = [
    {
        **FEATURES[0],
        "title": "One, renamed",
        "stories": [{"story_id": "S-1", "title": "Renamed"}, {"story_id": "S-9", "title": "New"}],
    },
    {"feature_id": "F-3", "title": "Three", "stories": [{"story_id": "S-3", "title": "Story three"}]},
]
SECOND_ENABLERS = [
    {**ENABLERS[0], "title": "Renamed"},
    {"enabler_id": "E-2", "title": "New", "enabler_type": "research"},
]


@pytest.mark.django_db
def test_failure_at_any_write_inside_save_planning_result_keeps_the_previous_result(monkeypatch):
    """A second result adds to and changes every model; whichever of its writes fails, none remains."""
    twin = make_planning_session()
    save_planning_result(twin, features=FEATURES, enablers=ENABLERS)
    with CaptureQueriesContext(connection) as queries:
        save_planning_result(twin, features=SECOND_FEATURES, enablers=SECOND_ENABLERS)
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith(WRITES)]
    tables = {
        table
        for table in ("planning_feature", "planning_stor", "planning_enabler")
        if any(table in sql for sql in writes)
    }
    assert len(tables) == 3, writes  # every model is written, so every model's write gets a failure

    for nth in range(1, len(writes) + 1):
        session = make_planning_session()
        save_planning_result(session, features=FEATURES, enablers=ENABLERS)
        before = _planning_rows(session)
        _fail_write(monkeypatch, nth)
        with pytest.raises(Boom):
            save_planning_result(session, features=SECOND_FEATURES, enablers=SECOND_ENABLERS)
        monkeypatch.undo()
        assert _planning_rows(session) == before, f"write {nth} of {len(writes)} left rows behind"

    counts = save_planning_result(session, features=SECOND_FEATURES, enablers=SECOND_ENABLERS)
    assert (counts.features.created, counts.stories.created, counts.enablers.created) == (1, 2, 1)
    assert (counts.features.updated, counts.stories.updated, counts.enablers.updated) == (1, 1, 1)


@pytest.mark.django_db
def test_failure_writing_the_resolution_log_leaves_the_conflict_unresolved(monkeypatch):
    conflict = make_conflict(id="conflict-f", item_id="f", confluence_page_id="p", linear_team_id="t")

    def failing_create(*args: Any, **kwargs: Any) -> Any:
        raise Boom("log write failed")

    monkeypatch.setattr(ConflictResolution.objects, "create", failing_create)
    with pytest.raises(Boom):
        conflict.resolve("linear")

    stored = Conflict.objects.get()
    assert (stored.is_resolved, stored.resolution_strategy, stored.resolved_at) == (False, "", None)
    assert SyncState.objects.get().conflict_count == 1
    assert not ConflictResolution.objects.exists()


def _fail_on(table: str):
    """An execute wrapper that fails every INSERT into ``table`` as the server would."""

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.upper().startswith("INSERT") and table in sql:
            raise DatabaseError(f"injected failure of the insert into {table}")
        return execute(sql, params, many, context)

    return wrapper


@pytest.mark.django_db
def test_a_failed_token_upsert_keeps_the_old_token():
    """A store for a known organization is one statement: when it fails, the old token is what stays."""
    LinearToken.objects.store("org-f", access_token="old-access", app_user_id="app", expires_at=EXPIRES)
    with pytest.raises(DatabaseError), connection.execute_wrapper(_fail_on("accounts_lineartoken")):
        LinearToken.objects.store("org-f", access_token="new-access", app_user_id="app", expires_at=EXPIRES)

    assert LinearToken.objects.get().access_token == "old-access"


@pytest.mark.django_db(transaction=True)
def test_a_failed_first_store_leaves_no_organization_behind():
    """The organization a first store creates shares the token's transaction (committed, not a test's)."""
    with pytest.raises(DatabaseError), connection.execute_wrapper(_fail_on("accounts_lineartoken")):
        LinearToken.objects.store("org-new", access_token="access", app_user_id="app", expires_at=EXPIRES)

    assert not Organization.objects.filter(linear_id="org-new").exists()
    assert not LinearToken.objects.exists()
