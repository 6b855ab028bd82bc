"""The migrations build the same schema on SQLite and on PostgreSQL.

Each engine is migrated from empty in a fresh process (``tests.schema_snapshot``) and described
through Django's introspection; every difference fails the test with the table and column named.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import environ
import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("SCHEMA_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def _pg_admin_connection() -> psycopg.Connection:
    cfg = environ.Env.db_url_config(PG_URL)
    return psycopg.connect(
        host=cfg["HOST"],
        port=cfg["PORT"] or 5432,
        user=cfg["USER"],
        password=cfg["PASSWORD"],
        dbname=cfg["NAME"],
        autocommit=True,
        connect_timeout=5,
    )


def _snapshot(database_url: str) -> dict:
    env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "true"}
    env.pop("TEST_DATABASE_NAME", None)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.schema_snapshot"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"migrating {database_url.split(':')[0]} failed:\n{proc.stderr}"
    return json.loads(proc.stdout)


def schema_differences(left: dict, right: dict, names=("sqlite", "postgresql")) -> list[str]:
    """Every difference between two snapshots, one line each, naming table and column."""
    problems: list[str] = []
    for table in sorted(set(left) | set(right)):
        a, b = left.get(table, {"missing": True}), right.get(table, {"missing": True})
        if a.get("missing") or b.get("missing"):
            if a.get("missing") != b.get("missing"):
                where = names[0] if a.get("missing") else names[1]
                problems.append(f"{table}: table missing on {where}")
            continue
        for column in sorted(set(a["columns"]) | set(b["columns"])):
            ca, cb = a["columns"].get(column), b["columns"].get(column)
            if ca is None or cb is None:
                where = names[0] if ca is None else names[1]
                problems.append(f"{table}.{column}: column missing on {where}")
            elif ca != cb:
                problems.append(f"{table}.{column}: nullability {names[0]}={ca} {names[1]}={cb}")
        if a["primary_key"] != b["primary_key"]:
            problems.append(
                f"{table}: primary key {names[0]}={a['primary_key']} {names[1]}={b['primary_key']}"
            )
        for key in ("unique", "indexes", "checks"):
            for item in sorted(set(a[key]) ^ set(b[key])):
                where = names[1] if item in a[key] else names[0]
                problems.append(f"{table}: {key} ({item}) missing on {where}")
        for column in sorted(set(a["foreign_keys"]) | set(b["foreign_keys"])):
            fa, fb = a["foreign_keys"].get(column), b["foreign_keys"].get(column)
            if fa != fb:
                problems.append(f"{table}.{column}: foreign key {names[0]}={fa} {names[1]}={fb}")
    return problems


def test_schema_differences_names_table_and_column():
    left = {
        "t": {
            "columns": {"a": {"null": False}},
            "primary_key": ["a"],
            "unique": ["a"],
            "indexes": [],
            "foreign_keys": {},
            "checks": ["t_ok"],
        }
    }
    right = {
        "t": {
            "columns": {"a": {"null": True}, "b": {"null": False}},
            "primary_key": ["a"],
            "unique": [],
            "indexes": [],
            "foreign_keys": {"a": ["u", "id"]},
            "checks": [],
        }
    }
    assert schema_differences(left, right) == [
        "t.a: nullability sqlite={'null': False} postgresql={'null': True}",
        "t.b: column missing on sqlite",
        "t: unique (a) missing on postgresql",
        "t: checks (t_ok) missing on postgresql",
        "t.a: foreign key sqlite=None postgresql=['u', 'id']",
    ]


def test_sqlite_and_postgresql_schemas_are_aligned(tmp_path):
    try:
        admin = _pg_admin_connection()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true and is unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable, cannot compare schemas: {exc}")
    db_name = f"schema_align_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{db_name}"')
    try:
        cfg = environ.Env.db_url_config(PG_URL)
        pg_url = f"postgres://{cfg['USER']}@{cfg['HOST']}:{cfg['PORT'] or 5432}/{db_name}"
        sqlite = _snapshot(f"sqlite:///{tmp_path / 'schema.sqlite3'}")
        postgres = _snapshot(pg_url)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        admin.close()
    assert sqlite, "no tables of our apps were found"
    assert not [t for t, d in sqlite.items() if d.get("missing")], "tables missing after migrate"
    differences = schema_differences(sqlite, postgres)
    assert differences == [], "schemas differ:\n" + "\n".join(differences)
