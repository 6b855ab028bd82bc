"""Read-only readers of an old deployment: its PostgreSQL database and its SQLite sync file.

Both stream rows in batches so that memory does not grow with the size of a table: PostgreSQL through a
server-side (named) cursor inside a READ ONLY transaction, SQLite through ``fetchmany`` on a file opened
read-only. Rows come out as dicts keyed by column name.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from django.views.decorators.debug import sensitive_variables
from psycopg import sql


class SourceError(Exception):
    """The old database cannot be opened or read; the message never contains a password."""


def redact_url(url: str) -> str:
    """``url`` without user name and password: ``postgresql://host:port/dbname``."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"postgresql://{host}{port}{parts.path}"


@sensitive_variables()
def _without_password(message: str, url: str) -> str:
    """``message`` with the URL's password, as written and percent-decoded, replaced by ``***``."""
    password = urllib.parse.urlsplit(url).password
    for secret in {password, urllib.parse.unquote(password)} if password else ():
        message = message.replace(secret, "***")
    return message


class PostgresSource:
    """The old PostgreSQL database, opened read-only.

    The URL holds the password: it is kept only in ``_url``, for :meth:`open`; what is shown (``label``,
    ``repr``, messages) is the URL without credentials.
    """

    kind = "postgresql"

    @sensitive_variables()
    def __init__(self, url: str, *, itersize: int = 2000) -> None:
        if not isinstance(url, str) or not url.startswith(("postgres://", "postgresql://")):
            raise SourceError("--source-url must be a postgres:// or postgresql:// URL.")
        try:
            parts = urllib.parse.urlsplit(url)
            after_scheme = url.partition("://")[2]
            if after_scheme.count("@") > 1 or ("@" in after_scheme and "@" not in parts.netloc):
                # An unencoded '@', '/', '?' or '#' in the password: urllib and libpq then split the URL
                # in different places, and a piece of the password would end up as host, port or path,
                # in the label and in messages.
                raise SourceError(
                    "--source-url has an '@' that is not the one between credentials and host: "
                    "percent-encode '@', '/', '?' and '#' in the user name and password "
                    "(%40, %2F, %3F, %23)."
                )
            parts.port  # noqa: B018 - parsing the port is what raises for a bad one
            self.label = redact_url(url)
        except ValueError as exc:
            # urllib's messages ("Invalid IPv6 URL", "Port out of range 0-65535") hold no password: the
            # port and host it quotes come after the credentials.
            raise SourceError(f"--source-url is not a valid URL: {exc}.") from None
        self._url = url
        self.itersize = itersize
        self._conn: psycopg.Connection | None = None
        self._cursors = 0
        self._tables: dict[str, list[str]] | None = None

    def __repr__(self) -> str:
        return f"<PostgresSource {self.label}>"

    def open(self) -> PostgresSource:
        """Connect, make the session read-only, and start one READ ONLY transaction (one snapshot)."""
        try:
            conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        except (psycopg.Error, ValueError, UnicodeError, OSError) as exc:
            # psycopg's messages name host and database; scrub the password anyway: libpq quotes a
            # badly percent-encoded one back.
            raise SourceError(
                f"Cannot connect to the old database {self.label}: {_without_password(str(exc), self._url)}"
            ) from None
        conn.execute("SET default_transaction_read_only = on")
        conn.autocommit = False
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self._conn = conn
        return self

    def close(self) -> None:
        """End the read-only transaction and disconnect."""
        if self._conn is not None:
            self._conn.rollback()
            self._conn.close()
            self._conn = None

    def __enter__(self) -> PostgresSource:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None:
            raise SourceError("The old database is not open.")
        return self._conn

    def tables(self) -> dict[str, list[str]]:
        """Every table of the old database's current schema with its column names, in column order."""
        if self._tables is None:
            rows = self.conn.execute(
                "SELECT c.table_name, c.column_name FROM information_schema.columns c "
                "JOIN information_schema.tables t ON t.table_schema = c.table_schema "
                "AND t.table_name = c.table_name "
                "WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' "
                "ORDER BY c.table_name, c.ordinal_position"
            ).fetchall()
            tables: dict[str, list[str]] = {}
            for table, column in rows:
                tables.setdefault(table, []).append(column)
            self._tables = tables
        return self._tables

    def applied_migrations(self) -> list[str] | None:
        """The file names in the old runner's ``migrations`` table, or ``None`` when it has none."""
        columns = self.tables().get("migrations")
        if not columns or "name" not in columns:
            return None
        return [row[0] for row in self.conn.execute("SELECT name FROM migrations ORDER BY name")]

    def stream(
        self, query: str | sql.Composable, params: Sequence[Any] = (), *, batch_size: int
    ) -> Iterator[list[dict[str, Any]]]:
        """Run ``query`` through a server-side cursor and yield its rows, ``batch_size`` dicts at a time."""
        self._cursors += 1
        # Binary results: the server formats no text and the driver parses none.
        with self.conn.cursor(name=f"legacy_import_{self._cursors}", binary=True) as cur:
            cur.itersize = max(self.itersize, batch_size)
            cur.execute(query, params or None)
            names: list[str] | None = None
            while True:
                rows = cur.fetchmany(batch_size)
                if not rows:
                    return
                if names is None:
                    names = [d.name for d in cur.description]
                yield [dict(zip(names, row, strict=True)) for row in rows]

    def stream_table(
        self, table: str, columns: Sequence[str], *, order_by: Sequence[str] = ("id",), batch_size: int
    ) -> Iterator[list[dict[str, Any]]]:
        """Stream ``columns`` of ``table`` ordered by ``order_by``."""
        query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.Identifier(table),
            sql.SQL(", ").join(sql.Identifier(c) for c in order_by),
        )
        return self.stream(query, batch_size=batch_size)


class SqliteSource:
    """The old SQLite sync file (``data/sync.db``), opened read-only."""

    kind = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(os.path.abspath(path))
        self.label = f"sqlite://{self.path}"
        self._conn: sqlite3.Connection | None = None
        self._tables: dict[str, list[str]] | None = None

    def open(self) -> SqliteSource:
        """Open the file read-only (it must exist: SQLite would otherwise create an empty one)."""
        shown = repr(str(self.path))[:200]
        try:
            is_file = self.path.is_file()
        except (ValueError, OSError) as exc:
            # A NUL character or an over-long name: the operating system cannot even look.
            raise SourceError(f"--sqlite-file {shown} cannot be opened: {exc}.") from None
        if not is_file:
            raise SourceError(f"--sqlite-file {shown} does not exist or is not a file.")
        try:
            conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise SourceError(f"--sqlite-file {shown} is not a readable SQLite database: {exc}") from None
        self._conn = conn
        return self

    def close(self) -> None:
        """Close the file."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SqliteSource:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise SourceError("The SQLite sync file is not open.")
        return self._conn

    def tables(self) -> dict[str, list[str]]:
        """Every table of the file with its column names."""
        if self._tables is None:
            names = [
                row[0]
                for row in self.conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                )
            ]
            self._tables = {
                name: [row[1] for row in self.conn.execute(f'PRAGMA table_info("{name}")')] for name in names
            }
        return self._tables

    def stream_table(
        self, table: str, columns: Sequence[str], *, order_by: Sequence[str] = ("id",), batch_size: int
    ) -> Iterator[list[dict[str, Any]]]:
        """Stream ``columns`` of ``table`` ordered by ``order_by``, ``batch_size`` dicts at a time."""
        quoted = ", ".join(f'"{c}"' for c in columns)
        order = ", ".join(f'"{c}"' for c in order_by)
        cur = self.conn.execute(f'SELECT {quoted} FROM "{table}" ORDER BY {order}')  # noqa: S608
        try:
            while True:
                rows = cur.fetchmany(batch_size)
                if not rows:
                    return
                yield [dict(zip(columns, row, strict=True)) for row in rows]
        finally:
            cur.close()
