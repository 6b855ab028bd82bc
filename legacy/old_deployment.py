"""A deployment of the old TypeScript system, rebuilt from ``legacy-schema.md``.

The old system created its PostgreSQL tables with numbered SQL files, applied in file-name order and
recorded by name in a ``migrations`` table; before its migration 006 it kept sync data in a SQLite file.
This module writes those files' effect (``OLD_MIGRATIONS``) into a PostgreSQL database, fills it with
generated rows, and writes the SQLite sync file. Tests use it to build old deployments and the import
benchmark uses it to build a large one. Nothing here touches the Django databases.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg

# --- The old DDL -------------------------------------------------------------------------------------

_UPDATED_AT_TRIGGER_FUNCTION = """
CREATE OR REPLACE FUNCTION update_updated_at_column() RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""

_SECOND_SHAPE_SYNC_TABLES = """
CREATE TABLE IF NOT EXISTS sync_state (
    id SERIAL PRIMARY KEY,
    confluence_page_id TEXT NOT NULL,
    linear_team_id TEXT NOT NULL,
    timestamp BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    UNIQUE (confluence_page_id, linear_team_id)
);
CREATE TABLE IF NOT EXISTS conflicts (
    id TEXT PRIMARY KEY,
    linear_change TEXT NOT NULL,
    confluence_change TEXT NOT NULL,
    is_resolved BOOLEAN NOT NULL DEFAULT FALSE,
    resolution_strategy TEXT,
    resolved_change TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS sync_history (
    id SERIAL PRIMARY KEY,
    confluence_page_id TEXT NOT NULL,
    linear_team_id TEXT NOT NULL,
    success BOOLEAN NOT NULL,
    error TEXT,
    created_issues INTEGER NOT NULL DEFAULT 0,
    updated_issues INTEGER NOT NULL DEFAULT 0,
    confluence_changes INTEGER NOT NULL DEFAULT 0,
    conflicts_detected INTEGER NOT NULL DEFAULT 0,
    conflicts_resolved INTEGER NOT NULL DEFAULT 0,
    timestamp BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
"""

_SECOND_SHAPE_TRIGGERS = """
DROP TRIGGER IF EXISTS update_sync_state_updated_at ON sync_state;
CREATE TRIGGER update_sync_state_updated_at BEFORE UPDATE ON sync_state
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
DROP TRIGGER IF EXISTS update_conflicts_updated_at ON conflicts;
CREATE TRIGGER update_conflicts_updated_at BEFORE UPDATE ON conflicts
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
"""

#: The old SQL files, by name, in the order the old runner applied them.
OLD_MIGRATIONS: dict[str, str] = {
    "001_initial_schema": """
CREATE TABLE IF NOT EXISTS linear_tokens (
    id SERIAL PRIMARY KEY,
    organization_id TEXT UNIQUE NOT NULL,
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    app_user_id TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS planning_sessions (
    id SERIAL PRIMARY KEY,
    organization_id TEXT REFERENCES linear_tokens(organization_id),
    confluence_page_url TEXT NOT NULL,
    planning_title TEXT NOT NULL,
    epic_id TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS planning_features (
    id SERIAL PRIMARY KEY,
    planning_session_id INTEGER REFERENCES planning_sessions(id) ON DELETE CASCADE,
    feature_id TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS planning_stories (
    id SERIAL PRIMARY KEY,
    planning_feature_id INTEGER REFERENCES planning_features(id) ON DELETE CASCADE,
    story_id TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS planning_enablers (
    id SERIAL PRIMARY KEY,
    planning_session_id INTEGER REFERENCES planning_sessions(id) ON DELETE CASCADE,
    enabler_id TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT,
    enabler_type TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);
""",
    "002_confluence_tokens": """
CREATE TABLE IF NOT EXISTS confluence_tokens (
    id SERIAL PRIMARY KEY,
    organization_id TEXT UNIQUE NOT NULL REFERENCES linear_tokens(organization_id),
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    site_url TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);
""",
    "002_sync_schema": """
CREATE TABLE IF NOT EXISTS sync_configs (
    id SERIAL PRIMARY KEY,
    organization_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    confluence_page_url TEXT NOT NULL,
    direction TEXT NOT NULL DEFAULT 'bidirectional',
    frequency TEXT NOT NULL DEFAULT 'manual',
    last_sync_time TIMESTAMP,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS sync_history (
    id SERIAL PRIMARY KEY,
    sync_config_id INTEGER REFERENCES sync_configs(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    direction TEXT,
    changes_created INTEGER NOT NULL DEFAULT 0,
    changes_updated INTEGER NOT NULL DEFAULT 0,
    changes_deleted INTEGER NOT NULL DEFAULT 0,
    conflicts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    started_at TIMESTAMP NOT NULL DEFAULT NOW(),
    completed_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS sync_conflicts (
    id SERIAL PRIMARY KEY,
    sync_history_id INTEGER REFERENCES sync_history(id) ON DELETE CASCADE,
    type TEXT NOT NULL,
    confluence_data JSONB,
    linear_data JSONB,
    resolution TEXT,
    resolved_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL DEFAULT NOW()
);
""",
    "003_program_increments": """
CREATE TABLE IF NOT EXISTS program_increments (
    id SERIAL PRIMARY KEY,
    organization_id TEXT NOT NULL,
    pi_id TEXT NOT NULL,
    name TEXT NOT NULL,
    start_date TIMESTAMP NOT NULL,
    end_date TIMESTAMP NOT NULL,
    description TEXT,
    status TEXT NOT NULL DEFAULT 'planning',
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS pi_features (
    id SERIAL PRIMARY KEY,
    program_increment_id INTEGER REFERENCES program_increments(id) ON DELETE CASCADE,
    feature_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'planned',
    confidence INTEGER NOT NULL DEFAULT 3,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS pi_objectives (
    id SERIAL PRIMARY KEY,
    program_increment_id INTEGER REFERENCES program_increments(id) ON DELETE CASCADE,
    objective_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    description TEXT NOT NULL,
    business_value INTEGER NOT NULL DEFAULT 5,
    status TEXT NOT NULL DEFAULT 'planned',
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS pi_risks (
    id SERIAL PRIMARY KEY,
    program_increment_id INTEGER REFERENCES program_increments(id) ON DELETE CASCADE,
    risk_id TEXT NOT NULL,
    description TEXT NOT NULL,
    impact INTEGER NOT NULL DEFAULT 3,
    likelihood INTEGER NOT NULL DEFAULT 3,
    status TEXT NOT NULL DEFAULT 'identified',
    mitigation_plan TEXT,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);
""",
    "005_sync_tables": _UPDATED_AT_TRIGGER_FUNCTION + _SECOND_SHAPE_SYNC_TABLES + _SECOND_SHAPE_TRIGGERS,
    "006_integrate_sync_schema": _UPDATED_AT_TRIGGER_FUNCTION
    + _SECOND_SHAPE_SYNC_TABLES
    + _SECOND_SHAPE_TRIGGERS,
    "007_make_refresh_token_nullable": """
ALTER TABLE linear_tokens ALTER COLUMN refresh_token DROP NOT NULL;
DO $$ BEGIN
    IF to_regclass('confluence_tokens') IS NOT NULL THEN
        ALTER TABLE confluence_tokens ALTER COLUMN refresh_token DROP NOT NULL;
    END IF;
END $$;
""",
}

#: Every old file: a deployment that ran them all has ``sync_history`` in the first shape.
ALL_FILES: tuple[str, ...] = tuple(OLD_MIGRATIONS)
#: A deployment that started from 005/006: ``sync_history`` in the second shape.
SECOND_SHAPE_FILES: tuple[str, ...] = (
    "001_initial_schema",
    "002_confluence_tokens",
    "003_program_increments",
    "005_sync_tables",
    "006_integrate_sync_schema",
    "007_make_refresh_token_nullable",
)

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS migrations (
    id SERIAL PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    applied_at TIMESTAMP NOT NULL DEFAULT NOW()
);
"""

#: The pre-006 SQLite sync file: same column names, SQLite types.
SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS sync_state (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    confluence_page_id TEXT NOT NULL,
    linear_team_id TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (confluence_page_id, linear_team_id)
);
CREATE TABLE IF NOT EXISTS conflicts (
    id TEXT PRIMARY KEY,
    linear_change TEXT NOT NULL,
    confluence_change TEXT NOT NULL,
    is_resolved INTEGER NOT NULL DEFAULT 0,
    resolution_strategy TEXT,
    resolved_change TEXT,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS sync_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    confluence_page_id TEXT NOT NULL,
    linear_team_id TEXT NOT NULL,
    success INTEGER NOT NULL,
    error TEXT,
    created_issues INTEGER DEFAULT 0,
    updated_issues INTEGER DEFAULT 0,
    confluence_changes INTEGER DEFAULT 0,
    conflicts_detected INTEGER DEFAULT 0,
    conflicts_resolved INTEGER DEFAULT 0,
    timestamp INTEGER NOT NULL,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP
);
"""


def apply_old_migrations(conn: psycopg.Connection, files: Sequence[str] = ALL_FILES) -> None:
    """Run the named old SQL files in order, recording each in ``migrations`` as the old runner did."""
    unknown = [name for name in files if name not in OLD_MIGRATIONS]
    if unknown:
        raise ValueError(f"Unknown old migration file(s): {', '.join(unknown)}.")
    with conn.cursor() as cur:
        cur.execute(_MIGRATIONS_TABLE)
        for name in sorted(files):
            cur.execute(OLD_MIGRATIONS[name])
            cur.execute("INSERT INTO migrations (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", [name])


def create_sqlite_sync_file(path: str | Path) -> sqlite3.Connection:
    """Create the old SQLite sync file at ``path`` and return an open connection to it."""
    conn = sqlite3.connect(str(path))
    conn.executescript(SQLITE_DDL)
    return conn


def insert_rows(conn: psycopg.Connection, table: str, rows: Iterable[dict[str, Any]]) -> int:
    """Insert dicts into an old table (all dicts with the same keys); return how many."""
    rows = list(rows)
    if not rows:
        return 0
    columns = list(rows[0])
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - table and columns are ours
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    with conn.cursor() as cur:
        cur.executemany(sql, [[_adapt(row[c]) for c in columns] for row in rows])
    return len(rows)


def insert_sqlite_rows(conn: sqlite3.Connection, table: str, rows: Iterable[dict[str, Any]]) -> int:
    """Insert dicts into a table of the old SQLite sync file; return how many."""
    rows = list(rows)
    if not rows:
        return 0
    columns = list(rows[0])
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['?'] * len(columns))})"  # noqa: S608
    conn.executemany(sql, [[row[c] for c in columns] for row in rows])
    conn.commit()
    return len(rows)


def _adapt(value: Any) -> Any:
    if isinstance(value, dict | list):
        return psycopg.types.json.Jsonb(value)
    return value


# --- Generated deployments ------------------------------------------------------------------------

_EPOCH = dt.datetime(1970, 1, 1)
_BASE = dt.datetime(2025, 1, 6, 9, 0, 0)


def change(
    item_id: str,
    *,
    source: str,
    kind: str = "updated",
    item_type: str = "story",
    title: str = "",
    ms: int = 1_735_000_000_000,
) -> dict[str, Any]:
    """One old "change" object (``legacy-schema.md``, Conflict JSON)."""
    return {
        "id": f"{source}-change-{item_id}",
        "type": kind,
        "source": source,
        "itemType": item_type,
        "itemId": item_id,
        "itemData": {"id": item_id, "title": title or f"Item {item_id}", "estimate": 3},
        "timestamp": ms,
    }


def plan_counts(rows: int) -> dict[str, int]:
    """How many rows of each old table a generated deployment of about ``rows`` rows has."""
    if rows < 100:
        raise ValueError("A generated deployment needs at least 100 rows.")
    orgs = max(1, rows // 1000)
    counts = {
        "linear_tokens": orgs,
        "confluence_tokens": orgs,
        "program_increments": rows // 100,
        "pi_features": rows // 10,
        "pi_objectives": rows // 20,
        "pi_risks": rows // 20,
        "planning_sessions": rows // 20,
        "planning_features": rows // 10,
        "planning_enablers": rows // 20,
        "sync_state": rows // 20,
        "conflicts": rows // 20,
        "sync_history": rows // 10,
    }
    counts["planning_stories"] = rows - sum(counts.values())
    return counts


def generate_deployment(conn: psycopg.Connection, *, rows: int = 200_000, seed: int = 1) -> dict[str, int]:
    """Create the second-shape old schema in ``conn``'s database and fill it with about ``rows`` rows.

    Rows are valid for the new rules (no duplicates, known vocabularies), spread over every old table,
    and written with COPY. Returns the row count per old table.
    """
    rnd = random.Random(seed)
    counts = plan_counts(rows)
    apply_old_migrations(conn, SECOND_SHAPE_FILES)
    orgs = [f"org-{i:05d}" for i in range(counts["linear_tokens"])]
    ts = _BASE

    def copy(table: str, columns: Sequence[str], data: Iterable[Sequence[Any]]) -> None:
        with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
            for record in data:
                cp.write_row(record)

    token_cols = (
        "organization_id",
        "access_token",
        "refresh_token",
        "app_user_id",
        "expires_at",
        "created_at",
        "updated_at",
    )
    copy(
        "linear_tokens",
        token_cols,
        (
            (
                org,
                f"lin_access_{i}_{rnd.getrandbits(64):x}",
                f"lin_refresh_{i}",
                f"user-{i}",
                ts + dt.timedelta(days=30),
                ts,
                ts,
            )
            for i, org in enumerate(orgs)
        ),
    )
    copy(
        "confluence_tokens",
        (
            "organization_id",
            "access_token",
            "refresh_token",
            "site_url",
            "expires_at",
            "created_at",
            "updated_at",
        ),
        (
            (
                org,
                f"conf_access_{i}",
                None if i % 3 == 0 else f"conf_refresh_{i}",
                f"https://site{i}.atlassian.net",
                ts + dt.timedelta(hours=1),
                ts,
                ts,
            )
            for i, org in enumerate(orgs)
        ),
    )
    n_pi = counts["program_increments"]
    copy(
        "program_increments",
        (
            "organization_id",
            "pi_id",
            "name",
            "start_date",
            "end_date",
            "description",
            "status",
            "created_at",
            "updated_at",
        ),
        (
            (
                orgs[i % len(orgs)],
                f"PI-{i}",
                f"Increment {i}",
                ts,
                ts + dt.timedelta(days=70),
                None if i % 2 else f"Goals of increment {i}",
                ("planning", "execution", "completed")[i % 3],
                ts,
                ts,
            )
            for i in range(n_pi)
        ),
    )
    copy(
        "pi_features",
        ("program_increment_id", "feature_id", "team_id", "status", "confidence", "created_at", "updated_at"),
        (
            (
                1 + i % n_pi,
                f"FEAT-{i}",
                f"team-{i % 7}",
                ("planned", "in-progress", "completed")[i % 3],
                1 + i % 5,
                ts,
                ts,
            )
            for i in range(counts["pi_features"])
        ),
    )
    copy(
        "pi_objectives",
        (
            "program_increment_id",
            "objective_id",
            "team_id",
            "description",
            "business_value",
            "status",
            "created_at",
            "updated_at",
        ),
        (
            (
                1 + i % n_pi,
                f"OBJ-{i}",
                f"team-{i % 7}",
                f"Objective {i}",
                1 + i % 10,
                ("planned", "in_progress", "completed")[i % 3],
                ts,
                ts,
            )
            for i in range(counts["pi_objectives"])
        ),
    )
    copy(
        "pi_risks",
        (
            "program_increment_id",
            "risk_id",
            "description",
            "impact",
            "likelihood",
            "status",
            "mitigation_plan",
            "created_at",
            "updated_at",
        ),
        (
            (
                1 + i % n_pi,
                f"RISK-{i}",
                f"Risk {i}",
                1 + i % 5,
                1 + (i // 5) % 5,
                ("identified", "mitigated", "accepted", "avoided")[i % 4],
                None if i % 2 else "Watch it",
                ts,
                ts,
            )
            for i in range(counts["pi_risks"])
        ),
    )
    n_sessions = counts["planning_sessions"]
    copy(
        "planning_sessions",
        (
            "organization_id",
            "confluence_page_url",
            "planning_title",
            "epic_id",
            "status",
            "created_at",
            "updated_at",
        ),
        (
            (
                orgs[i % len(orgs)],
                f"https://wiki.example.com/pages/{i}",
                f"Planning {i}",
                None if i % 2 else f"EPIC-{i}",
                ("pending", "processing", "completed", "failed")[i % 4],
                ts + dt.timedelta(seconds=i),
                ts + dt.timedelta(seconds=i),
            )
            for i in range(n_sessions)
        ),
    )
    n_features = counts["planning_features"]
    copy(
        "planning_features",
        ("planning_session_id", "feature_id", "title", "description", "created_at", "updated_at"),
        (
            (1 + i % n_sessions, f"F-{i}", f"Feature {i}", None if i % 2 else f"Does thing {i}", ts, ts)
            for i in range(n_features)
        ),
    )
    copy(
        "planning_stories",
        ("planning_feature_id", "story_id", "title", "description", "created_at", "updated_at"),
        (
            (1 + i % n_features, f"S-{i}", f"Story {i}", f"As a user I want {i}", ts, ts)
            for i in range(counts["planning_stories"])
        ),
    )
    copy(
        "planning_enablers",
        (
            "planning_session_id",
            "enabler_id",
            "title",
            "description",
            "enabler_type",
            "created_at",
            "updated_at",
        ),
        (
            (
                1 + i % n_sessions,
                f"E-{i}",
                f"Enabler {i}",
                None,
                ("architecture", "Infrastructure", "Technical Debt", "research", "compliance")[i % 5],
                ts,
                ts,
            )
            for i in range(counts["planning_enablers"])
        ),
    )
    ms0 = int((ts - _EPOCH).total_seconds() * 1000)
    copy(
        "sync_state",
        ("confluence_page_id", "linear_team_id", "timestamp", "created_at", "updated_at"),
        (
            (f"page-{i}", f"team-{i % 7}", ms0 + i, ts.replace(tzinfo=dt.UTC), ts.replace(tzinfo=dt.UTC))
            for i in range(counts["sync_state"])
        ),
    )
    copy(
        "conflicts",
        (
            "id",
            "linear_change",
            "confluence_change",
            "is_resolved",
            "resolution_strategy",
            "resolved_change",
            "created_at",
            "updated_at",
        ),
        (_generated_conflict(i, ts) for i in range(counts["conflicts"])),
    )
    copy(
        "sync_history",
        (
            "confluence_page_id",
            "linear_team_id",
            "success",
            "error",
            "created_issues",
            "updated_issues",
            "confluence_changes",
            "conflicts_detected",
            "conflicts_resolved",
            "timestamp",
            "created_at",
        ),
        (
            (
                f"page-{i % 1000}",
                f"team-{i % 7}",
                i % 10 != 0,
                "Linear API timeout" if i % 10 == 0 else None,
                i % 4,
                i % 5,
                i % 3,
                i % 2,
                i % 2,
                ms0 + i * 1000,
                ts.replace(tzinfo=dt.UTC),
            )
            for i in range(counts["sync_history"])
        ),
    )
    return counts


def _generated_conflict(i: int, ts: dt.datetime) -> tuple[Any, ...]:
    item = f"ISSUE-{i}"
    lin = change(item, source="linear")
    conf = change(item, source="confluence", title=f"Edited {i}")
    resolved = i % 4 == 0
    resolved_change = {**lin, "id": f"resolved-conflict-{item}"} if resolved else None
    aware = ts.replace(tzinfo=dt.UTC)
    return (
        f"conflict-{item}",
        json.dumps(lin),
        json.dumps(conf),
        resolved,
        "linear" if resolved else None,
        json.dumps(resolved_change) if resolved else None,
        aware,
        aware,
    )
