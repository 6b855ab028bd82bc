"""Django's PostgreSQL backend, loading ``timestamptz`` values with psycopg's C loader.

Django (5.2) registers its own ``timestamptz`` loader on every psycopg 3 connection: a subclass of
psycopg's *pure-Python* ``TimestamptzLoader`` whose ``load()`` parses the text (a regular expression,
``datetime`` arithmetic) and then replaces the time zone with the connection's. With psycopg's C
extension installed (``psycopg[binary]``), raw psycopg parses the same value in C. Every row the agent
reads or writes back (``RETURNING``) carries two to five timestamps, so Django's loader is a visible part
of the gap between the one-row hot paths and raw psycopg (docs/benchmarks.md, "Settings").

This backend keeps everything of Django's and changes one thing: when the connection's time zone is
UTC (the project's setting: ``USE_TZ = True``, no per-database ``TIME_ZONE``), ``timestamptz`` values
are loaded by psycopg's own loader, the C one where the extension is installed. That loader returns
the instant in the session's time zone, which Django sets to UTC on every new connection, so the values
are the same ``datetime`` objects, ``tzinfo=datetime.timezone.utc`` (tests/test_db_backend.py pins it).
Any other time zone keeps Django's loader unchanged.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from django.db.backends.postgresql import base
from psycopg import adapt, adapters
from psycopg.adapt import Loader
from psycopg.pq import Format

#: PostgreSQL's type oid of ``timestamptz``.
TIMESTAMPTZ_OID = adapters.types["timestamptz"].oid


class UtcTimestamptzLoader(Loader):
    """psycopg's ``timestamptz`` loader (its C class when available), as Django's backend expects one.

    Django's ``create_cursor`` compares the connection's loader's ``timezone`` with the wrapper's and
    registers its own loader on the cursor when they differ; this class carries ``timezone = UTC`` so
    that check passes. psycopg's C loader cannot be subclassed, so each instance delegates: its
    ``load`` *is* the C loader's bound method (an instance attribute, looked up once per result by
    psycopg), which costs no Python frame per value.
    """

    timezone = dt.UTC
    #: The loader psycopg registers by default: ``psycopg_binary``'s C class, or the Python one.
    delegate: type[Loader] = adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)  # type: ignore[assignment]

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        self.load = self.delegate(oid, context).load  # type: ignore[method-assign]

    def load(self, data: Any) -> dt.datetime:  # replaced per instance in __init__
        raise NotImplementedError


@functools.cache
def utc_adapters(django_template: adapt.AdaptersMap) -> adapt.AdaptersMap:
    """Django's adapters template with :class:`UtcTimestamptzLoader` for ``timestamptz``."""
    context = adapt.AdaptersMap(django_template)
    context.register_loader(TIMESTAMPTZ_OID, UtcTimestamptzLoader)
    return context


class DatabaseWrapper(base.DatabaseWrapper):
    """Django's PostgreSQL wrapper; new connections load ``timestamptz`` with psycopg's loader in UTC."""

    #: The driver connection opened with :class:`UtcTimestamptzLoader` (``None``: Django's loader).
    _utc_connection: Any = None

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        context = params.get("context")
        if context is not None and self.timezone is dt.UTC and self.timezone_name == "UTC":
            params["context"] = utc_adapters(context)
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        loader = connection.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
        self._utc_connection = connection if loader is UtcTimestamptzLoader else None
        return connection

    def create_cursor(self, name: str | None = None) -> Any:
        # Django's create_cursor looks the connection's timestamptz loader up on every cursor, to
        # register its own on the cursor when the zones differ. A connection opened with ours, while
        # the zone is still UTC, needs nothing: a plain cursor (named ones: Django's code).
        if name is None and self.connection is self._utc_connection and self.timezone is dt.UTC:
            return self.connection.cursor()
        return super().create_cursor(name)
