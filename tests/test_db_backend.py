"""config.backends.postgresql: Django's backend, loading timestamps with psycopg's own (C) loader."""

from __future__ import annotations

import copy
import datetime as dt
import zoneinfo
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection, connections
from django.db.backends.postgresql.psycopg_any import BaseTzLoader
from django.db.utils import load_backend

from sync.models import SyncState

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

#: Instants around the edges a parser gets wrong: before 1970, microseconds, far future, leap day,
#: and offsets the session writes in its own zone.
INSTANTS = [
    "1900-01-01 00:00:00+00",
    "1969-12-31 23:59:59.999999+00",
    "2024-02-29 12:30:45.123456+05:30",
    "2026-01-01 12:00:00-08",
    "9999-12-31 23:59:59.999999+00",
]


def wrapper_for(engine: str, **changes: Any) -> Any:
    """A new wrapper of the test database with ``engine`` (and other settings changed)."""
    settings_dict = copy.deepcopy(connections["default"].settings_dict)
    settings_dict.update(ENGINE=engine, **changes)
    return load_backend(engine).DatabaseWrapper(settings_dict, "default")


@pytest.fixture
def stock() -> Iterator[Any]:
    """Django's own PostgreSQL backend on the same database."""
    wrapper = wrapper_for("django.db.backends.postgresql")
    yield wrapper
    wrapper.close()


def load(wrapper: Any, literal: str) -> dt.datetime:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT %s::timestamptz", [literal])
        return cursor.fetchone()[0]


def test_the_project_runs_on_this_backend() -> None:
    assert settings.DATABASES["default"]["ENGINE"] == "config.backends.postgresql"
    assert connection.vendor == "postgresql"
    connection.ensure_connection()
    loader = connection.connection.adapters.get_loader(1184, 0)  # timestamptz, text
    assert loader.__name__ == "UtcTimestamptzLoader"
    assert not issubclass(loader, BaseTzLoader)
    if psycopg.pq.__impl__ == "binary":  # psycopg[binary], as requirements.txt installs it
        assert loader.delegate.__module__ == "psycopg_binary._psycopg"


@pytest.mark.parametrize("literal", INSTANTS)
def test_timestamps_load_as_djangos_backend_loads_them(stock: Any, literal: str) -> None:
    ours, theirs = load(connection, literal), load(stock, literal)
    assert ours == theirs
    assert ours.tzinfo is dt.UTC and theirs.tzinfo is dt.UTC
    assert ours.isoformat() == theirs.isoformat()


@pytest.mark.django_db(transaction=True)  # the second connection must see the row
def test_a_row_reads_the_same_through_both_backends(stock: Any) -> None:
    at = dt.datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    SyncState.objects.mark_synced("page-1", "team-1", at=at)
    with connection.cursor() as ours, stock.cursor() as theirs:
        for cursor in (ours, theirs):
            cursor.execute("SELECT last_synced_at, created_at, next_sync_at FROM sync_syncstate")
        assert ours.fetchall() == theirs.fetchall()
    assert SyncState.objects.last_synced_at("page-1", "team-1") == at


def test_infinity_is_refused_as_django_refuses_it(stock: Any) -> None:
    """Neither loader turns 'infinity' into a datetime; both raise the driver's DataError."""
    errors = []
    for wrapper in (connection, stock):
        with pytest.raises(Exception) as raised:
            load(wrapper, "infinity")
        errors.append(type(raised.value).__name__)
    assert errors[0] == errors[1] == "DataError"


def test_another_database_time_zone_keeps_djangos_loader() -> None:
    wrapper = wrapper_for("config.backends.postgresql", TIME_ZONE="Europe/Paris")
    try:
        wrapper.ensure_connection()
        loader = wrapper.connection.adapters.get_loader(1184, 0)
        assert issubclass(loader, BaseTzLoader)
        loaded = load(wrapper, "2026-07-01 12:00:00+00")
        assert loaded.tzinfo == zoneinfo.ZoneInfo("Europe/Paris")
        assert loaded == dt.datetime(2026, 7, 1, 12, tzinfo=dt.UTC)
    finally:
        wrapper.close()


def test_a_zone_changed_after_connecting_gets_djangos_loader_on_each_cursor() -> None:
    """As Django's own backend does when ``DATABASES[...]["TIME_ZONE"]`` changes on an open connection."""
    wrapper = wrapper_for("config.backends.postgresql")
    try:
        assert load(wrapper, "2026-07-01 12:00:00+00").tzinfo is dt.UTC
        wrapper.settings_dict["TIME_ZONE"] = "Europe/Paris"
        for cached in ("timezone", "timezone_name"):
            wrapper.__dict__.pop(cached, None)
        wrapper.ensure_timezone()  # what Django's setting_changed receiver does
        with wrapper.cursor() as cursor:  # Django's create_cursor registered its loader on the cursor
            assert issubclass(cursor.adapters.get_loader(1184, 0), BaseTzLoader)
        loaded = load(wrapper, "2026-07-01 12:00:00+00")
        assert loaded.tzinfo == zoneinfo.ZoneInfo("Europe/Paris")
        assert loaded == dt.datetime(2026, 7, 1, 12, tzinfo=dt.UTC)
    finally:
        wrapper.close()
