"""Old deployments written as test data: the awkward rows real deployments hold (legacy-schema.md).

``fill_second_shape`` builds a deployment that started from 005/006 (second-shape ``sync_history``)
with a SQLite sync file beside it; ``fill_first_shape`` one that ran every old file. Timestamps in
``timestamp`` columns are naive (UTC), ``timestamp``/ms columns are integers.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

from legacy.old_deployment import (
    ALL_FILES,
    SECOND_SHAPE_FILES,
    apply_old_migrations,
    change,
    insert_rows,
    insert_sqlite_rows,
)

UTC = dt.UTC
T0 = dt.datetime(2025, 3, 4, 5, 6, 7, 123456)  # naive: the old timestamp columns had no zone
T1 = dt.datetime(2025, 3, 5, 8, 0, 0)
# Expired and valid as seen from the tests' frozen clock (tests.clock.FROZEN_NOW, mid-2026): tests that
# ask a token whether it has expired take the ``clock`` fixture.
EXPIRED = dt.datetime(2020, 1, 1, 0, 0, 0)
FUTURE = dt.datetime(2030, 6, 1, 12, 0, 0)
MS_STATE = 1_735_689_600_123  # 2025-01-01 00:00:00.123 UTC
MS_HISTORY = 1_735_689_600_999

ORG_U = "org-ünïcødé-1"
ORG_2 = "org-2"

LIN_A = change("ISSUE-A", source="linear", title="Ünïcode title")
CONF_A = change("ISSUE-A", source="confluence", title="Edited in Confluence")
LIN_B = change("ISSUE-B", source="linear")
CONF_B = change("ISSUE-B", source="confluence", title="Other")
RES_B = {**LIN_B, "id": "resolved-conflict-ISSUE-B"}
LIN_C = change("ISSUE-C", source="linear", item_type="feature")
CONF_C = change("ISSUE-C", source="confluence", item_type="feature", title="C in Confluence")
RES_C = {**CONF_C, "id": "resolved-conflict-ISSUE-C"}
LIN_D = change("ISSUE-D", source="linear")
CONF_D = change("ISSUE-D", source="confluence", title="D")
LIN_E = change("ISSUE-E", source="linear", item_type="epic")
CONF_E = change("ISSUE-E", source="confluence", item_type="epic", title="E")


def aware(naive: dt.datetime) -> dt.datetime:
    return naive.replace(tzinfo=UTC)


def fill_common(conn) -> None:
    """Tokens, increments and planning rows (001-003), with duplicates and old vocabularies."""
    insert_rows(
        conn,
        "linear_tokens",
        [
            {
                "id": 1,
                "organization_id": ORG_U,
                "access_token": "lin-access-ü-1",
                "refresh_token": "lin-refresh-1",
                "app_user_id": "user-ü",
                "expires_at": EXPIRED,
                "created_at": T0,
                "updated_at": T1,
            },
            {
                "id": 2,
                "organization_id": ORG_2,
                "access_token": "lin-access-2",
                "refresh_token": None,
                "app_user_id": "user-2",
                "expires_at": FUTURE,
                "created_at": T0,
                "updated_at": T0,
            },
        ],
    )
    insert_rows(
        conn,
        "confluence_tokens",
        [
            {
                "id": 1,
                "organization_id": ORG_U,
                "access_token": "conf-access-1",
                "refresh_token": None,
                "site_url": "https://acme.atlassian.net",
                "expires_at": FUTURE,
                "created_at": T0,
                "updated_at": T1,
            },
        ],
    )
    insert_rows(
        conn,
        "program_increments",
        [
            {
                "id": 1,
                "organization_id": ORG_U,
                "pi_id": "PI-1",
                "name": "Increment ✓",
                "start_date": dt.datetime(2025, 1, 6),
                "end_date": dt.datetime(2025, 3, 14),
                "description": None,
                "status": "execution",
                "created_at": T0,
                "updated_at": T1,
            },
            {
                "id": 2,
                "organization_id": ORG_U,
                "pi_id": "PI-1",
                "name": "Increment duplicate",
                "start_date": dt.datetime(2025, 1, 6),
                "end_date": dt.datetime(2025, 3, 14),
                "description": "dup",
                "status": "planning",
                "created_at": T0,
                "updated_at": T0,
            },
            {
                "id": 3,
                "organization_id": ORG_2,
                "pi_id": "PI-9",
                "name": "Other",
                "start_date": dt.datetime(2025, 1, 6, 9, 30),
                "end_date": dt.datetime(2025, 2, 1),
                "description": "Goals",
                "status": "completed",
                "created_at": T0,
                "updated_at": T0,
            },
        ],
    )
    insert_rows(
        conn,
        "pi_features",
        [
            {
                "id": 1,
                "program_increment_id": 1,
                "feature_id": "FEAT-1",
                "team_id": "team-a",
                "status": "in-progress",
                "confidence": 4,
                "created_at": T0,
                "updated_at": T1,
            },
            {
                "id": 2,
                "program_increment_id": 2,
                "feature_id": "FEAT-1",
                "team_id": "team-b",
                "status": "planned",
                "confidence": 2,
                "created_at": T0,
                "updated_at": T0,
            },
            {
                "id": 3,
                "program_increment_id": 2,
                "feature_id": "FEAT-2",
                "team_id": "team-b",
                "status": "completed",
                "confidence": 5,
                "created_at": T0,
                "updated_at": T0,
            },
        ],
    )
    insert_rows(
        conn,
        "pi_objectives",
        [
            {
                "id": 1,
                "program_increment_id": 1,
                "objective_id": "OBJ-1",
                "team_id": "team-a",
                "description": "Ship it ✓",
                "business_value": 8,
                "status": "in-progress",
                "created_at": T0,
                "updated_at": T0,
            },
        ],
    )
    insert_rows(
        conn,
        "pi_risks",
        [
            {
                "id": 1,
                "program_increment_id": 3,
                "risk_id": "RISK-1",
                "description": "Vendor late",
                "impact": 4,
                "likelihood": 2,
                "status": "mitigated",
                "mitigation_plan": None,
                "created_at": T0,
                "updated_at": T0,
            },
        ],
    )
    insert_rows(
        conn,
        "planning_sessions",
        [
            {
                "id": 5,
                "organization_id": ORG_U,
                "confluence_page_url": "https://wiki.example.com/pages/ü",
                "planning_title": "Planung für Q1 — ü",
                "epic_id": None,
                "status": "in_progress",
                "created_at": T0,
                "updated_at": T1,
            },
            {
                "id": 7,
                "organization_id": ORG_2,
                "confluence_page_url": "https://wiki.example.com/pages/7",
                "planning_title": "Q2",
                "epic_id": "EPIC-7",
                "status": "completed",
                "created_at": T1,
                "updated_at": T1,
            },
        ],
    )
    insert_rows(
        conn,
        "planning_features",
        [
            {
                "id": 10,
                "planning_session_id": 5,
                "feature_id": "F-1",
                "title": "Login",
                "description": "Via SSO",
                "created_at": T0,
                "updated_at": T0,
            },
            {
                "id": 11,
                "planning_session_id": 5,
                "feature_id": "F-1",
                "title": "Login (again)",
                "description": None,
                "created_at": T1,
                "updated_at": T1,
            },
            {
                "id": 12,
                "planning_session_id": 7,
                "feature_id": "F-2",
                "title": "Search",
                "description": None,
                "created_at": T1,
                "updated_at": T1,
            },
        ],
    )
    insert_rows(
        conn,
        "planning_stories",
        [
            {
                "id": 20,
                "planning_feature_id": 10,
                "story_id": "S-1",
                "title": "Story 1",
                "description": "d1",
                "created_at": T0,
                "updated_at": T0,
            },
            {
                "id": 21,
                "planning_feature_id": 11,
                "story_id": "S-2",
                "title": "Story 2",
                "description": None,
                "created_at": T1,
                "updated_at": T1,
            },
            {
                "id": 22,
                "planning_feature_id": 11,
                "story_id": "S-1",
                "title": "Story 1 again",
                "description": None,
                "created_at": T1,
                "updated_at": T1,
            },
        ],
    )
    insert_rows(
        conn,
        "planning_enablers",
        [
            {
                "id": 30,
                "planning_session_id": 5,
                "enabler_id": "E-1",
                "title": "Upgrade DB",
                "description": None,
                "enabler_type": "Technical Debt",
                "created_at": T0,
                "updated_at": T0,
            },
            {
                "id": 31,
                "planning_session_id": 7,
                "enabler_id": "E-2",
                "title": "Infra",
                "description": "x",
                "enabler_type": "Infrastructure",
                "created_at": T1,
                "updated_at": T1,
            },
        ],
    )


def fill_second_shape(conn, sqlite: sqlite3.Connection | None = None) -> None:
    """A deployment that started from 005/006, plus its SQLite sync file when given."""
    apply_old_migrations(conn, SECOND_SHAPE_FILES)
    fill_common(conn)
    insert_rows(
        conn,
        "sync_state",
        [
            {
                "id": 1,
                "confluence_page_id": "page-1",
                "linear_team_id": "team-a",
                "timestamp": MS_STATE,
                "created_at": aware(T0),
                "updated_at": aware(T1),
            },
        ],
    )
    insert_rows(
        conn,
        "conflicts",
        [
            _conflict("conflict-ISSUE-A", LIN_A, CONF_A, False, None, None, aware(T0), aware(T0)),
            _conflict("conflict-ISSUE-B", LIN_B, CONF_B, True, "linear", RES_B, aware(T0), aware(T1)),
            _conflict(
                "conflict-ISSUE-C",
                LIN_C,
                CONF_C,
                False,
                None,
                None,
                aware(T0),
                dt.datetime(2025, 3, 6, 10, 0, tzinfo=UTC),
            ),
            _conflict(
                "conflict-ISSUE-D",
                LIN_D,
                CONF_D,
                False,
                None,
                None,
                aware(T0),
                dt.datetime(2025, 3, 6, 12, 0, tzinfo=UTC),
            ),
        ],
    )
    insert_rows(
        conn,
        "sync_history",
        [
            {
                "id": 1,
                "confluence_page_id": "page-1",
                "linear_team_id": "team-a",
                "success": True,
                "error": None,
                "created_issues": 1,
                "updated_issues": 2,
                "confluence_changes": 3,
                "conflicts_detected": 0,
                "conflicts_resolved": 0,
                "timestamp": MS_HISTORY,
                "created_at": aware(T0),
            },
            {
                "id": 2,
                "confluence_page_id": "page-1",
                "linear_team_id": "team-a",
                "success": False,
                "error": "Linear said nö",
                "created_issues": 0,
                "updated_issues": 0,
                "confluence_changes": 0,
                "conflicts_detected": 2,
                "conflicts_resolved": 1,
                "timestamp": MS_HISTORY + 60_000,
                "created_at": aware(T1),
            },
        ],
    )
    if sqlite is not None:
        fill_sqlite(sqlite)


def fill_sqlite(sqlite: sqlite3.Connection) -> None:
    """The pre-006 SQLite sync file: text timestamps, 0/1 booleans, ms integers."""
    insert_sqlite_rows(
        sqlite,
        "sync_state",
        [
            {
                "id": 1,
                "confluence_page_id": "page-2",
                "linear_team_id": "team-b",
                "timestamp": 1_735_689_700_000,
                "created_at": "2025-01-01 00:00:00",
                "updated_at": "2025-01-01 00:01:40",
            },
        ],
    )
    insert_sqlite_rows(
        sqlite,
        "conflicts",
        [
            # Newer than the PostgreSQL copy (10:00): this one wins, resolved.
            {
                "id": "conflict-ISSUE-C",
                "linear_change": json.dumps(LIN_C),
                "confluence_change": json.dumps(CONF_C),
                "is_resolved": 1,
                "resolution_strategy": "confluence",
                "resolved_change": json.dumps(RES_C),
                "created_at": "2025-03-04 05:06:07",
                "updated_at": "2025-03-06 11:00:00",
            },
            # Older than the PostgreSQL copy (12:00): PostgreSQL's wins.
            {
                "id": "conflict-ISSUE-D",
                "linear_change": json.dumps(LIN_D),
                "confluence_change": json.dumps(CONF_D),
                "is_resolved": 1,
                "resolution_strategy": "linear",
                "resolved_change": None,
                "created_at": "2025-03-04 05:06:07",
                "updated_at": "2025-03-06 09:00:00",
            },
            {
                "id": "conflict-ISSUE-E",
                "linear_change": json.dumps(LIN_E),
                "confluence_change": json.dumps(CONF_E),
                "is_resolved": 0,
                "resolution_strategy": None,
                "resolved_change": None,
                "created_at": "2025-02-01T10:00:00Z",
                "updated_at": "1738404000000",
            },
        ],
    )
    insert_sqlite_rows(
        sqlite,
        "sync_history",
        [
            {
                "id": 1,
                "confluence_page_id": "page-2",
                "linear_team_id": "team-b",
                "success": 1,
                "error": None,
                "created_issues": 0,
                "updated_issues": 1,
                "confluence_changes": 0,
                "conflicts_detected": 0,
                "conflicts_resolved": 0,
                "timestamp": 1_735_689_800_000,
                "created_at": "2025-01-01 00:03:20",
            },
        ],
    )


def fill_first_shape(conn) -> None:
    """A deployment that ran every old file: sync_configs, first-shape sync_history, sync_conflicts."""
    apply_old_migrations(conn, ALL_FILES)
    fill_common(conn)
    insert_rows(
        conn,
        "sync_configs",
        [
            {
                "id": 1,
                "organization_id": ORG_U,
                "team_id": "team-a",
                "confluence_page_url": "https://wiki.example.com/pages/ü",
                "direction": "bidirectional",
                "frequency": "hourly",
                "last_sync_time": T1,
                "enabled": True,
                "created_at": T0,
                "updated_at": T1,
            },
        ],
    )
    insert_rows(
        conn,
        "sync_history",
        [
            {
                "id": 1,
                "sync_config_id": 1,
                "status": "completed",
                "direction": "linear_to_confluence",
                "changes_created": 3,
                "changes_updated": 2,
                "changes_deleted": 1,
                "conflicts": 1,
                "error": None,
                "started_at": T0,
                "completed_at": T1,
            },
            {
                "id": 2,
                "sync_config_id": 1,
                "status": "failed",
                "direction": None,
                "changes_created": 0,
                "changes_updated": 0,
                "changes_deleted": 0,
                "conflicts": 0,
                "error": "Timeout ü",
                "started_at": T1,
                "completed_at": None,
            },
        ],
    )
    insert_rows(
        conn,
        "sync_conflicts",
        [
            {
                "id": 1,
                "sync_history_id": 1,
                "type": "field_mismatch",
                "confluence_data": {"id": "ISSUE-Z", "title": "Z in Confluence"},
                "linear_data": {"id": "ISSUE-Z", "title": "Z in Linear"},
                "resolution": "use_linear",
                "resolved_at": T1,
                "created_at": T0,
            },
            {
                "id": 2,
                "sync_history_id": 1,
                "type": "deleted",
                "confluence_data": {"id": "ISSUE-Y"},
                "linear_data": {"id": "ISSUE-Y", "state": "Done"},
                "resolution": None,
                "resolved_at": None,
                "created_at": T0,
            },
        ],
    )


def _conflict(cid, lin, conf, resolved, strategy, res, created, updated) -> dict:
    return {
        "id": cid,
        "linear_change": json.dumps(lin),
        "confluence_change": json.dumps(conf),
        "is_resolved": resolved,
        "resolution_strategy": strategy,
        "resolved_change": json.dumps(res) if res is not None else None,
        "created_at": created,
        "updated_at": updated,
    }


def add_invalid_rows(conn) -> None:
    """Rows the new rules reject (on top of fill_second_shape)."""
    insert_rows(
        conn,
        "planning_enablers",
        [
            {
                "id": 32,
                "planning_session_id": 5,
                "enabler_id": "E-3",
                "title": "Magic",
                "description": None,
                "enabler_type": "magic",
                "created_at": T0,
                "updated_at": T0,
            },
        ],
    )
    insert_rows(
        conn,
        "pi_features",
        [
            {
                "id": 4,
                "program_increment_id": 3,
                "feature_id": "FEAT-9",
                "team_id": "team-c",
                "status": "planned",
                "confidence": 9,
                "created_at": T0,
                "updated_at": T0,
            },
        ],
    )
    insert_rows(
        conn,
        "conflicts",
        [
            {
                "id": "conflict-BROKEN",
                "linear_change": "{not json",
                "confluence_change": json.dumps(CONF_A),
                "is_resolved": False,
                "resolution_strategy": None,
                "resolved_change": None,
                "created_at": aware(T0),
                "updated_at": aware(T0),
            },
        ],
    )
    # A session without organization, and a feature and story under it: all three are rejected.
    insert_rows(
        conn,
        "planning_sessions",
        [
            {
                "id": 8,
                "organization_id": None,
                "confluence_page_url": "https://wiki.example.com/pages/8",
                "planning_title": "Orphan",
                "epic_id": None,
                "status": "pending",
                "created_at": T0,
                "updated_at": T0,
            },
        ],
    )
    insert_rows(
        conn,
        "planning_features",
        [
            {
                "id": 13,
                "planning_session_id": 8,
                "feature_id": "F-8",
                "title": "Orphan feature",
                "description": None,
                "created_at": T0,
                "updated_at": T0,
            },
        ],
    )
    insert_rows(
        conn,
        "planning_stories",
        [
            {
                "id": 23,
                "planning_feature_id": 13,
                "story_id": "S-8",
                "title": "Orphan story",
                "description": None,
                "created_at": T0,
                "updated_at": T0,
            },
        ],
    )
