"""Scratch old deployments for the legacy import tests.

Each test that asks for ``old_db`` gets a fresh PostgreSQL database ``legacy_src_<random>`` on the local
server (the source the import reads), dropped afterwards. The import's target is the test database of
whichever engine the run uses, so these tests run on both the SQLite and the PostgreSQL pass. They need a
PostgreSQL server: without one they are skipped, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import environ
import psycopg
import pytest
from psycopg import sql

from legacy.old_deployment import create_sqlite_sync_file

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _server_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else DEFAULT_SERVER_URL


def _url_for(database: str) -> str:
    cfg = environ.Env.db_url_config(_server_url())
    user = cfg.get("USER") or "postgres"
    password = f":{cfg['PASSWORD']}" if cfg.get("PASSWORD") else ""
    host = cfg.get("HOST") or "127.0.0.1"
    port = cfg.get("PORT") or 5432
    return f"postgresql://{user}{password}@{host}:{port}/{database}"


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """URL of the server's maintenance database; skips (fails under CI=true) when unreachable."""
    url = _url_for("postgres")
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        message = f"PostgreSQL is needed for the legacy import's source databases: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


class OldDatabase:
    """A scratch old PostgreSQL database: ``url`` for the import, ``conn`` (autocommit) to fill it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = _url_for(name)
        self.conn = psycopg.connect(self.url, autocommit=True)

    def rows(self, table: str) -> list[tuple]:
        query = sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(table))
        return self.conn.execute(query).fetchall()


@pytest.fixture
def old_db(pg_admin_url: str) -> Iterator[OldDatabase]:
    name = f"legacy_src_{secrets.token_hex(6)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    db = OldDatabase(name)
    try:
        yield db
    finally:
        db.conn.close()
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def sqlite_sync(tmp_path: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    path = tmp_path / "sync.db"
    conn = create_sqlite_sync_file(path)
    try:
        yield path, conn
    finally:
        conn.close()
