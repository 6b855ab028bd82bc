"""config.retry: a unit of work survives a killed connection, a deadlock and a serialization failure."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction

from config.retry import MAX_BACKOFF, aretry_transient, is_transient, retry_transient, retrying
from sync.models import SyncState

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def driver_error(error: Exception, django_class: type[Exception] = OperationalError) -> Exception:
    """A Django database error caused by ``error``, as Django's error wrapper raises it."""
    wrapped = django_class(str(error))
    wrapped.__cause__ = error
    return wrapped


class Flaky:
    """A unit of work that raises the given errors first, then marks the pair synced."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> SyncState:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return SyncState.objects.mark_synced("page-1", "team-1", T0)


def deadlock() -> Exception:
    return driver_error(psycopg.errors.DeadlockDetected("deadlock detected"))


def serialization_failure() -> Exception:
    return driver_error(psycopg.errors.SerializationFailure("could not serialize access"))


@pytest.mark.django_db(transaction=True)
def test_deadlock_and_serialization_failure_are_retried_with_doubling_pauses():
    work = Flaky(deadlock(), serialization_failure())
    pauses: list[float] = []

    state = retry_transient(work, attempts=3, backoff=0.5, sleep=pauses.append)

    assert work.calls == 3
    assert SyncState.objects.get().last_synced_at == T0 == state.last_synced_at
    assert len(pauses) == 2
    assert 0.5 <= pauses[0] <= 0.55 and 1.0 <= pauses[1] <= 1.1  # doubling, at most 10 % jitter


@pytest.mark.django_db(transaction=True)
def test_the_pause_is_capped():
    pauses: list[float] = []
    work = Flaky(*(deadlock() for _ in range(9)))

    retry_transient(work, attempts=10, backoff=MAX_BACKOFF, sleep=pauses.append)

    assert work.calls == 10
    assert max(pauses) <= MAX_BACKOFF * 1.1


@pytest.mark.django_db(transaction=True)
def test_exhausted_attempts_raise_the_last_error_and_stop():
    last = serialization_failure()
    work = Flaky(deadlock(), deadlock(), last, deadlock())

    with pytest.raises(OperationalError) as caught:
        retry_transient(work, attempts=3, backoff=0, sleep=lambda _: None)

    assert caught.value is last
    assert work.calls == 3
    assert SyncState.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "error",
    [
        driver_error(psycopg.errors.UniqueViolation("duplicate key"), IntegrityError),
        driver_error(psycopg.errors.QueryCanceled("canceling statement due to statement timeout")),
        ValueError("a bug"),
    ],
    ids=["integrity", "statement-timeout", "value-error"],
)
def test_other_errors_are_raised_at_once(error):
    work = Flaky(error)

    with pytest.raises(type(error)):
        retry_transient(work, attempts=3, backoff=0, sleep=lambda _: None)

    assert work.calls == 1


@pytest.mark.django_db(transaction=True)
def test_nothing_is_retried_inside_an_open_transaction():
    work = Flaky(deadlock())

    with pytest.raises(OperationalError), transaction.atomic():
        retry_transient(work, attempts=3, backoff=0, sleep=lambda _: None)

    assert work.calls == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"attempts": 0}, "attempts must be between 1 and 10"),
        ({"attempts": 11}, "attempts must be between 1 and 10"),
        ({"attempts": True}, "attempts must be an integer"),
        ({"backoff": -1}, "backoff must be a number of seconds"),
        ({"backoff": 60}, "backoff must be a number of seconds"),
    ],
)
def test_bad_arguments_are_a_value_error(arguments, message):
    with pytest.raises(ValueError, match=message):
        retry_transient(lambda: None, **arguments)


@pytest.mark.django_db(transaction=True)
def test_decorator_retries_each_call():
    failures = [deadlock()]

    @retrying(attempts=2, backoff=0)
    def mark(page: str) -> SyncState:
        if failures:
            raise failures.pop()
        return SyncState.objects.mark_synced(page, "team-1", T0)

    assert mark("page-9").confluence_page_id == "page-9"
    assert failures == []


@pytest.mark.django_db(transaction=True)
def test_async_twin_retries():
    work = Flaky(deadlock())

    async def unit() -> SyncState:
        return await sync_to_async(work)()

    # async_to_sync: the ORM calls run on this thread, whose connection the test database's teardown closes.
    state = async_to_sync(aretry_transient)(unit, attempts=2, backoff=0)

    assert work.calls == 2
    assert state.last_synced_at == T0


# --- A real killed connection (PostgreSQL) ---------------------------------------------------------


def kill_this_threads_connection() -> None:
    """Terminate the backend of the calling thread's connection from another session, and wait for it."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    params = connection.settings_dict
    with psycopg.connect(
        dbname=params["NAME"],
        user=params["USER"] or None,
        password=params["PASSWORD"] or None,
        host=params["HOST"] or None,
        port=params["PORT"] or None,
        autocommit=True,
    ) as admin:
        # The timeout makes pg_terminate_backend wait until the backend is gone.
        assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", [pid]).fetchone() == (True,)


@pytest.fixture
def closes_the_connection():
    """A test that leaves its connection broken must not break the test database's teardown."""
    yield
    connection.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_without_the_helper_a_killed_connection_stays_broken(closes_the_connection):
    """The control: after pg_terminate_backend every later call fails until the connection is closed."""
    SyncState.objects.mark_synced("page-1", "team-1", T0)
    kill_this_threads_connection()

    with pytest.raises(OperationalError):
        SyncState.objects.mark_synced("page-1", "team-1", T0)
    for _ in range(3):
        with pytest.raises((OperationalError, InterfaceError), match="connection is closed"):
            SyncState.objects.mark_synced("page-1", "team-1", T0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first_error", ["killed-now", "already-broken"])
def test_retry_after_pg_terminate_backend_reconnects_and_writes(first_error, closes_the_connection):
    SyncState.objects.mark_synced("page-1", "team-1", T0)
    kill_this_threads_connection()
    if first_error == "already-broken":
        with pytest.raises(OperationalError):  # the caller's own failed call, without the helper
            SyncState.objects.last_synced_at("page-1", "team-1")
    later = T0 + dt.timedelta(hours=1)
    calls: list[int] = []
    pauses: list[float] = []

    def unit() -> SyncState:
        calls.append(1)
        return SyncState.objects.mark_synced("page-1", "team-1", later)

    state = retry_transient(unit, attempts=3, backoff=0.01, sleep=pauses.append)

    assert len(calls) == 2 and len(pauses) == 1
    assert state.last_synced_at == later
    # The thread's connection works again for every later call, without close_old_connections().
    assert SyncState.objects.last_synced_at("page-1", "team-1") == later


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_killed_connection_is_recognised_as_transient(closes_the_connection):
    SyncState.objects.mark_synced("page-1", "team-1", T0)
    kill_this_threads_connection()
    with pytest.raises(OperationalError) as caught:
        SyncState.objects.mark_synced("page-1", "team-1", T0)

    assert is_transient(caught.value)
