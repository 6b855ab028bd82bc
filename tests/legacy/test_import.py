"""The legacy import end to end: old PostgreSQL database (+ SQLite file) → the new models.

Sources are scratch PostgreSQL databases (see conftest); the target is this run's test database, so
every test here runs on SQLite and on PostgreSQL targets.
"""

from __future__ import annotations

import datetime as dt
import re

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.models import ConfluenceToken, LinearToken, Organization
from legacy import services
from legacy.convert import EPOCH
from legacy.models import ImportAction, ImportedRow, ImportSource
from legacy.old_deployment import apply_old_migrations, insert_rows
from legacy.services import LegacyImportError, import_legacy
from legacy.sources import PostgresSource
from planning.models import (
    Enabler,
    Feature,
    PIFeature,
    PIObjective,
    PIRisk,
    PlanningSession,
    ProgramIncrement,
    Story,
)
from sync.models import Conflict, ConflictResolution, SyncHistory, SyncState
from tests.legacy import old_data as od
from tests.legacy.old_data import (
    CONF_A,
    CONF_B,
    CONF_C,
    CONF_D,
    CONF_E,
    EXPIRED,
    FUTURE,
    LIN_A,
    LIN_B,
    LIN_C,
    LIN_D,
    LIN_E,
    ORG_2,
    ORG_U,
    RES_B,
    RES_C,
    T0,
    T1,
    aware,
)

pytestmark = pytest.mark.django_db

#: The SyncHistory columns an import fills, compared row by row in the history assertions.
HISTORY_FIELDS = (
    "organization_id",
    "confluence_page_id",
    "linear_team_id",
    "success",
    "error",
    "created_issues",
    "updated_issues",
    "confluence_changes",
    "conflicts_detected",
    "conflicts_resolved",
    "direction",
    "deleted_issues",
    "synced_at",
)

#: The SyncState columns an import fills, compared row by row in the state assertions.
STATE_FIELDS = (
    "organization_id",
    "confluence_page_id",
    "linear_team_id",
    "last_synced_at",
    "status",
    "conflict_count",
    "created_at",
    "updated_at",
)

#: Every table an import writes: its target models, plus the organizations, resolution log and map.
TARGET_MODELS = [Organization, *services.TARGET_MODELS, ConflictResolution, ImportedRow, ImportSource]


def counts() -> dict[str, int]:
    return {model.__name__: model._base_manager.count() for model in TARGET_MODELS}


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def stats_of(report, table: str, sqlite: bool = False) -> tuple[int, int, int, int, int]:
    for (source, name), stats in report.tables.items():
        if name == table and source.startswith("sqlite") == sqlite:
            return (stats.read, stats.imported, stats.merged, stats.skipped, stats.already)
    raise AssertionError(f"no stats for {table}")


@pytest.fixture
def second_shape(old_db, sqlite_sync):
    path, sqlite = sqlite_sync
    od.fill_second_shape(old_db.conn, sqlite)
    return old_db, path


# --- round trip -------------------------------------------------------------------------------------


def test_round_trip_keeps_every_value_of_every_row(second_shape, clock):
    old_db, sqlite_path = second_shape
    report = import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path))
    org_u = Organization.objects.get(linear_id=ORG_U)
    org_2 = Organization.objects.get(linear_id=ORG_2)
    assert Organization.objects.count() == 2
    assert report.organizations_created == 2

    tokens = {t.organization.linear_id: t for t in LinearToken.objects.select_related("organization")}
    assert sorted(tokens) == [ORG_2, ORG_U]
    got = [
        (t.access_token, t.refresh_token, t.app_user_id, t.expires_at, t.scope, t.created_at, t.updated_at)
        for t in (tokens[ORG_U], tokens[ORG_2])
    ]
    assert got == [
        ("lin-access-ü-1", "lin-refresh-1", "user-ü", aware(EXPIRED), "", aware(T0), aware(T1)),
        ("lin-access-2", None, "user-2", aware(FUTURE), "", aware(T0), aware(T0)),
    ]
    assert tokens[ORG_U].is_expired() is True
    assert tokens[ORG_2].is_expired() is False
    conf = ConfluenceToken.objects.get()
    assert (
        conf.organization_id,
        conf.cloud_id,
        conf.site_url,
        conf.access_token,
        conf.refresh_token,
        conf.expires_at,
        conf.created_at,
        conf.updated_at,
    ) == (
        org_u.pk,
        "",
        "https://acme.atlassian.net",
        "conf-access-1",
        None,
        aware(FUTURE),
        aware(T0),
        aware(T1),
    )

    assert list(ProgramIncrement.objects.order_by("pk").values()) == [
        {
            "id": 1,
            "organization_id": org_u.pk,
            "pi_id": "PI-1",
            "name": "Increment ✓",
            "start_date": dt.date(2025, 1, 6),
            "end_date": dt.date(2025, 3, 14),
            "description": "",
            "status": "execution",
            "created_at": aware(T0),
            "updated_at": aware(T1),
        },
        {
            "id": 3,
            "organization_id": org_2.pk,
            "pi_id": "PI-9",
            "name": "Other",
            "start_date": dt.date(2025, 1, 6),
            "end_date": dt.date(2025, 2, 1),
            "description": "Goals",
            "status": "completed",
            "created_at": aware(T0),
            "updated_at": aware(T0),
        },
    ]
    assert list(
        PIFeature.objects.order_by("feature_id").values(
            "program_increment_id", "feature_id", "team_id", "status", "confidence"
        )
    ) == [
        {
            "program_increment_id": 1,
            "feature_id": "FEAT-1",
            "team_id": "team-a",
            "status": "in_progress",
            "confidence": 4,
        },
        {
            "program_increment_id": 1,
            "feature_id": "FEAT-2",
            "team_id": "team-b",
            "status": "completed",
            "confidence": 5,
        },
    ]
    assert list(
        PIObjective.objects.values(
            "program_increment_id", "objective_id", "team_id", "description", "business_value", "status"
        )
    ) == [
        {
            "program_increment_id": 1,
            "objective_id": "OBJ-1",
            "team_id": "team-a",
            "description": "Ship it ✓",
            "business_value": 8,
            "status": "in_progress",
        },
    ]
    assert list(
        PIRisk.objects.values(
            "program_increment_id",
            "risk_id",
            "description",
            "impact",
            "likelihood",
            "status",
            "mitigation_plan",
        )
    ) == [
        {
            "program_increment_id": 3,
            "risk_id": "RISK-1",
            "description": "Vendor late",
            "impact": 4,
            "likelihood": 2,
            "status": "mitigated",
            "mitigation_plan": "",
        },
    ]
    assert list(PlanningSession.objects.order_by("pk").values()) == [
        {
            "id": 5,
            "organization_id": org_u.pk,
            "program_increment_id": None,
            "confluence_page_url": "https://wiki.example.com/pages/ü",
            "confluence_document_id": "",
            "planning_title": "Planung für Q1 — ü",
            "epic_id": "",
            "status": "processing",
            "progress": 0,
            "error": "",
            "created_at": aware(T0),
            "updated_at": aware(T1),
        },
        {
            "id": 7,
            "organization_id": org_2.pk,
            "program_increment_id": None,
            "confluence_page_url": "https://wiki.example.com/pages/7",
            "confluence_document_id": "",
            "planning_title": "Q2",
            "epic_id": "EPIC-7",
            "status": "completed",
            "progress": 100,
            "error": "",
            "created_at": aware(T1),
            "updated_at": aware(T1),
        },
    ]
    assert list(Feature.objects.order_by("pk").values()) == [
        {
            "id": 10,
            "planning_session_id": 5,
            "feature_id": "F-1",
            "title": "Login",
            "description": "Via SSO",
            "created_at": aware(T0),
            "updated_at": aware(T0),
        },
        {
            "id": 12,
            "planning_session_id": 7,
            "feature_id": "F-2",
            "title": "Search",
            "description": "",
            "created_at": aware(T1),
            "updated_at": aware(T1),
        },
    ]
    # Story 21's feature (11) was a duplicate of feature 10: it is re-parented there.
    assert list(Story.objects.order_by("pk").values()) == [
        {
            "id": 20,
            "planning_feature_id": 10,
            "story_id": "S-1",
            "title": "Story 1",
            "description": "d1",
            "created_at": aware(T0),
            "updated_at": aware(T0),
        },
        {
            "id": 21,
            "planning_feature_id": 10,
            "story_id": "S-2",
            "title": "Story 2",
            "description": "",
            "created_at": aware(T1),
            "updated_at": aware(T1),
        },
    ]
    assert list(Enabler.objects.order_by("pk").values()) == [
        {
            "id": 30,
            "planning_session_id": 5,
            "enabler_id": "E-1",
            "title": "Upgrade DB",
            "description": "",
            "enabler_type": "technical_debt",
            "created_at": aware(T0),
            "updated_at": aware(T0),
        },
        {
            "id": 31,
            "planning_session_id": 7,
            "enabler_id": "E-2",
            "title": "Infra",
            "description": "x",
            "enabler_type": "infrastructure",
            "created_at": aware(T1),
            "updated_at": aware(T1),
        },
    ]
    assert list(SyncState.objects.order_by("confluence_page_id").values(*STATE_FIELDS)) == [
        {
            "organization_id": None,
            "confluence_page_id": "page-1",
            "linear_team_id": "team-a",
            "last_synced_at": utc(2025, 1, 1, 0, 0, 0, 123000),
            "status": "idle",
            "conflict_count": 0,
            "created_at": aware(T0),
            "updated_at": aware(T1),
        },
        {
            "organization_id": None,
            "confluence_page_id": "page-2",
            "linear_team_id": "team-b",
            "last_synced_at": EPOCH + dt.timedelta(milliseconds=1_735_689_700_000),
            "status": "idle",
            "conflict_count": 0,
            "created_at": utc(2025, 1, 1),
            "updated_at": utc(2025, 1, 1, 0, 1, 40),
        },
    ]
    conflict_fields = (
        "id",
        "confluence_page_id",
        "linear_team_id",
        "linear_change",
        "confluence_change",
        "resolved_change",
        "item_type",
        "item_id",
        "differing_field_count",
        "is_resolved",
        "resolution_strategy",
        "resolved_at",
        "resolved_by_id",
        "created_at",
        "updated_at",
    )
    assert list(Conflict.objects.order_by("id").values(*conflict_fields)) == [
        dict(zip(conflict_fields, row, strict=True))
        for row in [
            (
                "conflict-ISSUE-A",
                "",
                "",
                LIN_A,
                CONF_A,
                None,
                "story",
                "ISSUE-A",
                1,
                False,
                "",
                None,
                None,
                aware(T0),
                aware(T0),
            ),
            (
                "conflict-ISSUE-B",
                "",
                "",
                LIN_B,
                CONF_B,
                RES_B,
                "story",
                "ISSUE-B",
                1,
                True,
                "linear",
                aware(T1),
                None,
                aware(T0),
                aware(T1),
            ),
            # In both sources: the SQLite copy is newer (11:00 > 10:00) and wins.
            (
                "conflict-ISSUE-C",
                "",
                "",
                LIN_C,
                CONF_C,
                RES_C,
                "feature",
                "ISSUE-C",
                1,
                True,
                "confluence",
                utc(2025, 3, 6, 11),
                None,
                utc(2025, 3, 4, 5, 6, 7),
                utc(2025, 3, 6, 11),
            ),
            # In both sources: the PostgreSQL copy is newer (12:00 > 09:00) and wins.
            (
                "conflict-ISSUE-D",
                "",
                "",
                LIN_D,
                CONF_D,
                None,
                "story",
                "ISSUE-D",
                1,
                False,
                "",
                None,
                None,
                aware(T0),
                utc(2025, 3, 6, 12),
            ),
            (
                "conflict-ISSUE-E",
                "",
                "",
                LIN_E,
                CONF_E,
                None,
                "epic",
                "ISSUE-E",
                1,
                False,
                "",
                None,
                None,
                utc(2025, 2, 1, 10),
                utc(2025, 2, 1, 10),
            ),
        ]
    ]
    assert list(
        ConflictResolution.objects.order_by("conflict_id").values(
            "conflict_id", "action", "strategy", "resolved_change", "by_id", "at"
        )
    ) == [
        {
            "conflict_id": "conflict-ISSUE-B",
            "action": "resolved",
            "strategy": "linear",
            "resolved_change": RES_B,
            "by_id": None,
            "at": aware(T1),
        },
        {
            "conflict_id": "conflict-ISSUE-C",
            "action": "resolved",
            "strategy": "confluence",
            "resolved_change": RES_C,
            "by_id": None,
            "at": utc(2025, 3, 6, 11),
        },
    ]
    assert list(SyncHistory.objects.order_by("synced_at").values(*HISTORY_FIELDS)) == [
        dict(zip(HISTORY_FIELDS, row, strict=True))
        for row in [
            (None, "page-1", "team-a", True, "", 1, 2, 3, 0, 0, "", None, utc(2025, 1, 1, 0, 0, 0, 999000)),
            (
                None,
                "page-1",
                "team-a",
                False,
                "Linear said nö",
                0,
                0,
                0,
                2,
                1,
                "",
                None,
                utc(2025, 1, 1, 0, 1, 0, 999000),
            ),
            (None, "page-2", "team-b", True, "", 0, 1, 0, 0, 0, "", None, utc(2025, 1, 1, 0, 3, 20)),
        ]
    ]
    # Where the PI start's time of day went: the import map.
    pi3 = ImportedRow.objects.get(old_table="program_increments", old_id="3")
    assert pi3.data == {"start_date": "2025-01-06T09:30:00+00:00"}
    assert report.committed is True


def test_report_counts_every_table(second_shape):
    old_db, sqlite_path = second_shape
    report = import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path))
    # (read, imported, merged, skipped, already)
    assert {
        (s.table, s.source.split(":")[0]): (s.read, s.imported, s.merged, s.skipped, s.already)
        for s in report.tables.values()
    } == {
        ("linear_tokens", "postgresql"): (2, 2, 0, 0, 0),
        ("confluence_tokens", "postgresql"): (1, 1, 0, 0, 0),
        ("program_increments", "postgresql"): (3, 2, 1, 0, 0),
        ("pi_features", "postgresql"): (3, 2, 1, 0, 0),
        ("pi_objectives", "postgresql"): (1, 1, 0, 0, 0),
        ("pi_risks", "postgresql"): (1, 1, 0, 0, 0),
        ("planning_sessions", "postgresql"): (2, 2, 0, 0, 0),
        ("planning_features", "postgresql"): (3, 2, 1, 0, 0),
        ("planning_stories", "postgresql"): (3, 2, 1, 0, 0),
        ("planning_enablers", "postgresql"): (2, 2, 0, 0, 0),
        ("sync_state", "postgresql"): (1, 1, 0, 0, 0),
        ("sync_state", "sqlite"): (1, 1, 0, 0, 0),
        ("conflicts", "postgresql"): (4, 4, 0, 0, 0),
        ("conflicts", "sqlite"): (3, 1, 2, 0, 0),
        ("sync_history", "postgresql"): (2, 2, 0, 0, 0),
        ("sync_history", "sqlite"): (1, 1, 0, 0, 0),
    }
    assert ImportedRow.objects.count() == report.total("read") == 33
    info = report.sources[0]
    assert info.sync_history_shape == "second"
    assert info.applied_migrations == [
        "001_initial_schema",
        "002_confluence_tokens",
        "003_program_increments",
        "005_sync_tables",
        "006_integrate_sync_schema",
        "007_make_refresh_token_nullable",
    ]
    assert report.sources[1].kind == "sqlite"
    assert report.sources[1].tables == ["conflicts", "sync_history", "sync_state"]


def test_duplicates_are_merged_children_re_parented_and_listed(second_shape):
    old_db, sqlite_path = second_shape
    report = import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path))
    pi_feature_1 = PIFeature.objects.get(feature_id="FEAT-1").pk
    assert [(n.table, n.old_id, n.detail) for n in report.merged] == [
        (
            "program_increments",
            "2",
            f"same organization_id={Organization.objects.get(linear_id=ORG_U).pk!r}, "
            "pi_id='PI-1': merged into planning.ProgramIncrement 1",
        ),
        (
            "pi_features",
            "2",
            f"same program_increment_id=1, feature_id='FEAT-1': merged into "
            f"planning.PIFeature {pi_feature_1}",
        ),
        (
            "planning_features",
            "11",
            "same planning_session_id=5, feature_id='F-1': merged into planning.Feature 10",
        ),
        (
            "planning_stories",
            "22",
            "same planning_feature_id=10, story_id='S-1': merged into planning.Story 20",
        ),
        (
            "conflicts",
            "conflict-ISSUE-D",
            "same id='conflict-ISSUE-D': merged into sync.Conflict conflict-ISSUE-D",
        ),
        (
            "conflicts",
            "conflict-ISSUE-C",
            "newer than sync.Conflict conflict-ISSUE-C (updated_at): replaced its values",
        ),
    ]
    merged = ImportedRow.objects.get(old_table="planning_features", old_id="11")
    assert (merged.action, merged.new_pk, merged.model) == (ImportAction.MERGED, "10", "planning.Feature")
    # The merged duplicate's own values are kept in the map: nothing is lost.
    assert merged.data["title"] == "Login (again)"
    replaced = ImportedRow.objects.get(
        source__label__startswith="sqlite", old_table="conflicts", old_id="conflict-ISSUE-C"
    )
    assert replaced.action == ImportAction.REPLACED


# --- security ---------------------------------------------------------------------------------------


def test_tokens_are_ciphertext_at_rest(second_shape):
    old_db, sqlite_path = second_shape
    import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path))
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM accounts_lineartoken")
        raw = [bytes(value) for row in cursor.fetchall() for value in row if value is not None]
        cursor.execute("SELECT access_token FROM accounts_confluencetoken")
        raw += [bytes(row[0]) for row in cursor.fetchall()]
    assert len(raw) == 4
    for value in raw:
        assert value.startswith(b"gAAAAA")  # Fernet tokens
        for plain in ("lin-access-ü-1", "lin-refresh-1", "lin-access-2", "conf-access-1"):
            assert plain.encode() not in value
    # The import map and the report never hold a token either.
    assert not ImportedRow.objects.filter(data__has_key="access_token").exists()


def test_no_token_in_report_or_map_even_for_a_merged_token(old_db, pg_admin_url, clock):
    apply_old_migrations(old_db.conn, ["001_initial_schema"])
    insert_rows(
        old_db.conn,
        "linear_tokens",
        [
            {
                "id": 1,
                "organization_id": "org-x",
                "access_token": "old-secret-access",
                "refresh_token": "old-secret-r",
                "app_user_id": "u",
                "expires_at": T0,
                "created_at": T0,
                "updated_at": T0,
            },
        ],
    )
    LinearToken.objects.store(
        "org-x", access_token="new-access", refresh_token=None, app_user_id="u", expires_at=utc(2031, 1, 1)
    )
    report = import_legacy(source_url=old_db.url)
    text = report.as_text()
    assert "old-secret" not in text
    entry = ImportedRow.objects.get(old_table="linear_tokens")
    assert entry.action == ImportAction.MERGED
    assert "old-secret" not in str(entry.data)
    assert LinearToken.objects.get().access_token == "new-access"  # the newer token stays


# --- idempotency, dry run, atomicity ----------------------------------------------------------------


def test_second_run_imports_nothing(second_shape):
    old_db, sqlite_path = second_shape
    import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path))
    before = counts()
    report = import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path))
    assert counts() == before
    assert report.total("imported") == 0
    assert report.total("merged") == 0
    assert report.total("already") == report.total("read") == 33
    assert report.organizations_created == 0


def test_second_run_imports_only_rows_added_since(second_shape):
    old_db, sqlite_path = second_shape
    import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path))
    insert_rows(
        old_db.conn,
        "planning_stories",
        [
            {
                "id": 40,
                "planning_feature_id": 11,
                "story_id": "S-40",
                "title": "New since",
                "description": None,
                "created_at": T1,
                "updated_at": T1,
            },
        ],
    )
    report = import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path))
    assert report.total("imported") == 1
    # Its parent 11 was merged into 10 in the first run: the map sends it there.
    assert Story.objects.get(pk=40).planning_feature_id == 10


def test_second_run_recounts_a_pair_left_without_unresolved_conflicts(second_shape):
    old_db, sqlite_path = second_shape
    import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path))
    # A count left over from an earlier run whose conflicts have since been resolved.
    SyncState.objects.filter(confluence_page_id="page-1").update(conflict_count=3)
    kept = dict(SyncState.objects.values_list("confluence_page_id", "updated_at"))
    import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path))
    assert list(
        SyncState.objects.order_by("confluence_page_id").values_list(
            "confluence_page_id", "conflict_count", "updated_at"
        )
    ) == [("page-1", 0, kept["page-1"]), ("page-2", 0, kept["page-2"])]


def test_dry_run_writes_nothing_but_reports_everything(second_shape):
    old_db, sqlite_path = second_shape
    before = counts()
    report = import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path), dry_run=True)
    assert counts() == before == dict.fromkeys(before, 0)
    assert report.total("imported") == 27
    assert report.committed is False
    assert "Dry run" in report.as_text()


def test_failure_half_way_leaves_the_target_unchanged(second_shape, monkeypatch):
    old_db, sqlite_path = second_shape
    existing = Organization.objects.create(linear_id="already-here", name="Keep me")
    before = counts()
    real = services._Importer.import_table

    def failing(self, source, spec):
        if spec.table == "planning_stories":
            raise RuntimeError("disk full (injected)")
        return real(self, source, spec)

    monkeypatch.setattr(services._Importer, "import_table", failing)
    with pytest.raises(RuntimeError, match="injected"):
        import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path))
    assert counts() == before
    assert Organization.objects.get().name == existing.name


def test_failure_in_a_later_batch_rolls_back_earlier_batches(second_shape, monkeypatch):
    old_db, _ = second_shape
    real = services._Importer.import_batch
    calls = {"n": 0}

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("third batch fails")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(services._Importer, "import_batch", failing)
    with pytest.raises(RuntimeError):
        import_legacy(source_url=old_db.url, batch_size=1)
    assert counts() == dict.fromkeys(counts(), 0)


# --- invalid rows -----------------------------------------------------------------------------------


def test_invalid_rows_stop_the_import_and_are_named(second_shape):
    old_db, sqlite_path = second_shape
    od.add_invalid_rows(old_db.conn)
    with pytest.raises(LegacyImportError) as caught:
        import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path))
    assert [(n.table, n.old_id, n.detail) for n in caught.value.report.rejected] == [
        ("pi_features", "4", "confidence 9 is above 5"),
        ("planning_sessions", "8", "organization_id is missing (the new schema needs an organization)"),
        ("planning_features", "13", "its planning_session_id 8 was rejected"),
        ("planning_stories", "23", "its planning_feature_id 13 was rejected"),
        (
            "planning_enablers",
            "32",
            "enabler_type 'magic' is not one of architecture, compliance, exploration, "
            "infrastructure, research, technical_debt",
        ),
        (
            "conflicts",
            "conflict-BROKEN",
            "linear_change is not valid JSON (Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1))",
        ),
    ]
    assert counts() == dict.fromkeys(counts(), 0)


def test_command_error_names_table_and_id(second_shape):
    old_db, sqlite_path = second_shape
    od.add_invalid_rows(old_db.conn)
    with pytest.raises(
        CommandError, match=r"6 old row\(s\) break the new rules.*pi_features 4: confidence 9"
    ):
        call_command("import_legacy", "--source-url", old_db.url, stdout=_Sink())
    assert counts() == dict.fromkeys(counts(), 0)


def test_skip_invalid_imports_the_rest_and_lists_what_it_skipped(second_shape):
    old_db, sqlite_path = second_shape
    od.add_invalid_rows(old_db.conn)
    out = _Sink()
    call_command(
        "import_legacy",
        "--source-url",
        old_db.url,
        "--sqlite-file",
        str(sqlite_path),
        "--skip-invalid",
        stdout=out,
    )
    text = out.getvalue()
    assert "Rejected rows (skipped): 6" in text
    for line in (
        "pi_features 4: confidence 9 is above 5",
        "planning_stories 23: its planning_feature_id 13",
        "conflicts conflict-BROKEN: linear_change is not valid JSON",
    ):
        assert line in text
    assert not PlanningSession.objects.filter(pk=8).exists()
    assert not Feature.objects.filter(pk=13).exists()
    assert not Conflict.objects.filter(pk="conflict-BROKEN").exists()
    assert Feature.objects.count() == 2 and Story.objects.count() == 2
    assert not ImportedRow.objects.filter(old_id__in=["8", "13", "23", "conflict-BROKEN"]).exists()


def test_a_child_whose_parent_is_missing_is_rejected_not_a_commit_error(old_db):
    od.fill_second_shape(old_db.conn)
    # A hand-made old schema without its foreign keys can hold orphans.
    old_db.conn.execute(
        "ALTER TABLE planning_features DROP CONSTRAINT planning_features_planning_session_id_fkey"
    )
    insert_rows(
        old_db.conn,
        "planning_features",
        [
            {
                "id": 14,
                "planning_session_id": 99,
                "feature_id": "F-99",
                "title": "Orphan",
                "description": None,
                "created_at": T0,
                "updated_at": T0,
            },
        ],
    )
    report = import_legacy(source_url=old_db.url, skip_invalid=True)
    assert [str(note) for note in report.rejected] == [
        "planning_features 14: planning_session_id 99 is not a row of planning_sessions"
    ]
    assert Feature.objects.count() == 2


# --- ids and sequences ------------------------------------------------------------------------------


def test_new_rows_after_import_get_ids_past_the_old_ones(second_shape):
    old_db, sqlite_path = second_shape
    import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path))
    session = PlanningSession.objects.start(
        ORG_U, confluence_page_url="https://wiki.example.com/n", planning_title="After import"
    )
    assert session.pk > 7
    feature = Feature.objects.create(planning_session=session, feature_id="F-new", title="t")
    assert feature.pk > 12
    story = Story.objects.create(planning_feature=feature, story_id="S-new", title="t")
    assert story.pk > 21
    enabler = Enabler.objects.create(
        planning_session=session, enabler_id="E-new", title="t", enabler_type="research"
    )
    assert enabler.pk > 31
    pi = ProgramIncrement.objects.create(
        organization=session.organization,
        pi_id="PI-new",
        start_date=dt.date(2026, 1, 1),
        end_date=dt.date(2026, 2, 1),
    )
    assert pi.pk > 3


def test_taken_ids_are_renumbered_children_follow_and_the_map_says_so(second_shape):
    old_db, sqlite_path = second_shape
    org = Organization.objects.create(linear_id="someone-else")
    taken = PlanningSession.objects.create(
        organization=org, confluence_page_url="https://x.example.com", planning_title="Already here", pk=5
    )
    report = import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path))
    entry = ImportedRow.objects.get(old_table="planning_sessions", old_id="5")
    assert entry.id_changed is True
    new_pk = int(entry.new_pk)
    assert new_pk == 8  # past the largest old id (7) and the target's (5)
    assert PlanningSession.objects.get(pk=new_pk).planning_title == "Planung für Q1 — ü"
    assert PlanningSession.objects.get(pk=5).planning_title == taken.planning_title
    assert set(Feature.objects.filter(planning_session_id=new_pk).values_list("pk", flat=True)) == {10}
    assert set(Enabler.objects.filter(planning_session_id=new_pk).values_list("pk", flat=True)) == {30}
    assert [str(n) for n in report.renumbered] == [
        "planning_sessions 5: id 5 is taken in the target: now planning.PlanningSession 8"
    ]
    later = PlanningSession.objects.start(
        ORG_U, confluence_page_url="https://x.example.com/2", planning_title="n"
    )
    assert later.pk > 8


# --- shapes and subsets -----------------------------------------------------------------------------


def test_first_shape_sync_history_configs_and_sync_conflicts(old_db):
    od.fill_first_shape(old_db.conn)
    report = import_legacy(source_url=old_db.url)
    assert report.sources[0].sync_history_shape == "first"
    org_u = Organization.objects.get(linear_id=ORG_U)
    page = "https://wiki.example.com/pages/ü"
    assert list(SyncState.objects.values(*STATE_FIELDS)) == [
        {
            "organization_id": org_u.pk,
            "confluence_page_id": page,
            "linear_team_id": "team-a",
            "last_synced_at": aware(T1),
            "status": "idle",
            "conflict_count": 1,
            "created_at": aware(T0),
            "updated_at": aware(T1),
        },
    ]
    config = ImportedRow.objects.get(old_table="sync_configs")
    assert config.data == {"direction": "bidirectional", "frequency": "hourly", "enabled": True}
    assert list(SyncHistory.objects.order_by("success").values(*HISTORY_FIELDS)) == [
        dict(zip(HISTORY_FIELDS, row, strict=True))
        for row in [
            (org_u.pk, page, "team-a", False, "Timeout ü", 0, 0, 0, 0, 0, "bidirectional", 0, aware(T1)),
            (org_u.pk, page, "team-a", True, "", 3, 2, 0, 1, 0, "linear_to_confluence", 1, aware(T1)),
        ]
    ]
    statuses = dict(ImportedRow.objects.filter(old_table="sync_history").values_list("old_id", "data"))
    assert statuses == {
        "1": {"status": "completed", "started_at": aware(T0).isoformat()},
        "2": {"status": "failed"},
    }
    ms = (aware(T0) - EPOCH) // dt.timedelta(milliseconds=1)
    lin_z = {
        "id": "linear-change-ISSUE-Z",
        "type": "updated",
        "source": "linear",
        "itemType": "",
        "itemId": "ISSUE-Z",
        "itemData": {"id": "ISSUE-Z", "title": "Z in Linear"},
        "timestamp": ms,
    }
    conf_z = {
        "id": "confluence-change-ISSUE-Z",
        "type": "updated",
        "source": "confluence",
        "itemType": "",
        "itemId": "ISSUE-Z",
        "itemData": {"id": "ISSUE-Z", "title": "Z in Confluence"},
        "timestamp": ms,
    }
    one = Conflict.objects.get(pk="sync-conflict-1")
    assert (
        one.confluence_page_id,
        one.linear_team_id,
        one.linear_change,
        one.confluence_change,
        one.resolved_change,
        one.item_id,
        one.differing_field_count,
        one.is_resolved,
        one.resolution_strategy,
        one.resolved_at,
        one.created_at,
        one.updated_at,
    ) == (
        page,
        "team-a",
        lin_z,
        conf_z,
        {**lin_z, "id": "resolved-sync-conflict-1"},
        "ISSUE-Z",
        1,
        True,
        "linear",
        aware(T1),
        aware(T0),
        aware(T1),
    )
    two = Conflict.objects.get(pk="sync-conflict-2")
    assert (
        two.is_resolved,
        two.resolution_strategy,
        two.resolved_at,
        two.item_id,
        two.linear_change["itemData"],
        two.confluence_change["itemData"],
    ) == (False, "", None, "ISSUE-Y", {"id": "ISSUE-Y", "state": "Done"}, {"id": "ISSUE-Y"})
    assert ImportedRow.objects.get(old_table="sync_conflicts", old_id="1").data == {"type": "field_mismatch"}
    assert any("sync_conflicts.type" in line for line in report.unplaced)


@pytest.mark.parametrize("batch_size", [1, 100])
def test_duplicate_sync_configs_keep_the_newest_across_batches(old_db, batch_size):
    od.fill_first_shape(old_db.conn)
    page = "https://wiki.example.com/pages/ü"
    insert_rows(
        old_db.conn,
        "sync_configs",
        [
            {
                "id": 2,
                "organization_id": ORG_U,
                "team_id": "team-a",
                "confluence_page_url": page,
                "direction": "to_linear",
                "frequency": "daily",
                "last_sync_time": dt.datetime(2025, 4, 1),
                "enabled": True,
                "created_at": T0,
                "updated_at": dt.datetime(2025, 4, 1),
            },
            {
                "id": 3,
                "organization_id": ORG_U,
                "team_id": "team-a",
                "confluence_page_url": page,
                "direction": "to_linear",
                "frequency": "daily",
                "last_sync_time": dt.datetime(2025, 3, 1),
                "enabled": True,
                "created_at": T0,
                "updated_at": dt.datetime(2025, 3, 2),
            },
        ],
    )
    report = import_legacy(source_url=old_db.url, batch_size=batch_size)
    state = SyncState.objects.get()
    assert (state.last_synced_at, state.updated_at) == (utc(2025, 4, 1), utc(2025, 4, 1))
    assert stats_of(report, "sync_configs") == (3, 1, 2, 0, 0)
    # Within one batch the newer row is the one inserted; across batches it replaces the earlier one.
    expected = (
        {"1": "imported", "2": "replaced", "3": "merged"}
        if batch_size == 1
        else {"1": "merged", "2": "imported", "3": "merged"}
    )
    actions = dict(ImportedRow.objects.filter(old_table="sync_configs").values_list("old_id", "action"))
    assert actions == expected


def test_only_the_tables_that_exist_are_imported(old_db):
    apply_old_migrations(old_db.conn, ["001_initial_schema"])
    insert_rows(
        old_db.conn,
        "linear_tokens",
        [
            {
                "id": 1,
                "organization_id": "org-1",
                "access_token": "a",
                "refresh_token": "r",
                "app_user_id": "u",
                "expires_at": T0,
                "created_at": T0,
                "updated_at": T0,
            },
        ],
    )
    report = import_legacy(source_url=old_db.url)
    assert report.sources[0].applied_migrations == ["001_initial_schema"]
    assert report.sources[0].sync_history_shape is None
    assert sorted(s.table for s in report.tables.values()) == [
        "linear_tokens",
        "planning_enablers",
        "planning_features",
        "planning_sessions",
        "planning_stories",
    ]
    assert LinearToken.objects.count() == 1


def test_without_a_migrations_table_the_report_says_so(old_db):
    od.fill_second_shape(old_db.conn)
    old_db.conn.execute("DROP TABLE migrations")
    report = import_legacy(source_url=old_db.url)
    assert report.sources[0].applied_migrations is None
    assert "no migrations table" in report.as_text()


def test_sqlite_file_alone_alongside_an_empty_postgres(old_db, sqlite_sync):
    path, sqlite = sqlite_sync
    od.fill_sqlite(sqlite)
    report = import_legacy(source_url=old_db.url, sqlite_file=str(path))
    assert sorted(Conflict.objects.values_list("pk", flat=True)) == [
        "conflict-ISSUE-C",
        "conflict-ISSUE-D",
        "conflict-ISSUE-E",
    ]
    assert SyncHistory.objects.count() == 1
    assert report.total("imported") == 5


def test_source_name_labels_the_map_and_a_second_run_under_it_imports_nothing(second_shape):
    old_db, sqlite_path = second_shape
    first = import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path), source_name="prod-old-db")
    assert sorted(ImportSource.objects.values_list("label", "kind")) == [
        ("prod-old-db", "postgresql"),
        (f"sqlite://{sqlite_path.resolve()}", "sqlite"),
    ]
    assert "planning_stories " in first.as_text() and "conflicts (sqlite)" in first.as_text()
    again = import_legacy(source_url=old_db.url, sqlite_file=str(sqlite_path), source_name="prod-old-db")
    assert again.total("imported") == 0


# --- the source is read-only; the command ----------------------------------------------------------


def test_the_source_is_opened_read_only(old_db):
    od.fill_second_shape(old_db.conn)
    with PostgresSource(old_db.url) as source, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        source.conn.execute("DELETE FROM linear_tokens")
    assert len(old_db.rows("linear_tokens")) == 2


def test_streaming_uses_server_side_cursors_in_batches(old_db):
    od.fill_second_shape(old_db.conn)
    with PostgresSource(old_db.url) as source:
        batches = list(source.stream_table("planning_stories", ["id", "story_id"], batch_size=2))
        cursors = source.conn.execute("SELECT count(*) FROM pg_cursors").fetchone()[0]
    assert [[row["id"] for row in batch] for batch in batches] == [[20, 21], [22]]
    assert cursors == 0  # closed after use


def test_command_prints_progress_and_the_report(second_shape):
    old_db, sqlite_path = second_shape
    out = _Sink()
    call_command(
        "import_legacy",
        "--source-url",
        old_db.url,
        "--sqlite-file",
        str(sqlite_path),
        "--batch-size",
        "2",
        stdout=out,
    )
    text = out.getvalue()
    assert "  planning_stories: 2 rows read, 1 imported, 1 merged, 0 skipped, 0 already imported" in text
    assert "  planning_stories: 3 rows read, 2 imported, 1 merged, 0 skipped, 0 already imported" in text
    assert "  pi_features: 3 rows read, 2 imported, 1 merged, 0 skipped, 0 already imported" in text
    assert "sync_history shape: second" in text
    assert "Import committed." in text
    assert old_db.url.split("@")[0] not in text  # no credentials


def test_command_dry_run(second_shape):
    old_db, sqlite_path = second_shape
    out = _Sink()
    call_command("import_legacy", "--source-url", old_db.url, "--dry-run", stdout=out)
    assert "Dry run: nothing was written." in out.getvalue()
    assert counts() == dict.fromkeys(counts(), 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--source-url", "postgresql://u:s3cret@127.0.0.1:abc/db"],
            "not a valid URL: Port could not be cast",
        ),
        (["--source-url", "postgresql://u:s3cret@[::1/db"], "not a valid URL: Invalid IPv6 URL"),
        # Unencoded reserved characters in the password: urllib and libpq would split the URL in
        # different places, putting a piece of the password in the port, host or label.
        *(
            (["--source-url", f"postgresql://u:{password}@127.0.0.1:5432/db"], "percent-encode '@', '/'")
            for password in ("s3cret/x", "s3cret?x", "s3cret#x", "x@s3cret")
        ),
        (
            ["--source-url", "postgresql://u:s3cret%zz@127.0.0.1/db"],
            "Cannot connect to the old database postgresql://127.0.0.1/db: invalid percent-encoded token",
        ),
        (
            ["--source-url", "postgresql://u:s3cret@" + "h" * 300 + "/db"],
            "Cannot connect to the old database",
        ),
        (
            ["--source-url", "postgresql://u:s3cret@127.0.0.1/db", "--batch-size", "100001"],
            "argument --batch-size: must be between 1 and 100000",
        ),
        (
            ["--source-url", "postgresql://u:s3cret@127.0.0.1/db", "--batch-size", "1e3"],
            "argument --batch-size: '1e3' is not a whole number",
        ),
    ],
)
def test_bad_arguments_are_command_errors_without_the_password(args, message):
    with pytest.raises(CommandError, match=re.escape(message)) as caught:
        call_command("import_legacy", *args, stdout=_Sink())
    assert "s3cret" not in str(caught.value)
    assert counts() == dict.fromkeys(counts(), 0)


def test_the_source_shows_no_password_and_keeps_it_in_one_private_attribute():
    source = PostgresSource("postgresql://u:s3cret@127.0.0.1:5432/db")
    assert source.label == "postgresql://127.0.0.1:5432/db"
    assert repr(source) == "<PostgresSource postgresql://127.0.0.1:5432/db>"
    assert [name for name, value in vars(source).items() if "s3cret" in str(value)] == ["_url"]


def test_command_refuses_a_bad_source(pg_admin_url):
    with pytest.raises(CommandError, match="must be a postgres"):
        call_command("import_legacy", "--source-url", "mysql://x/y", stdout=_Sink())
    with pytest.raises(CommandError, match="Cannot connect to the old database"):
        call_command(
            "import_legacy", "--source-url", pg_admin_url.rsplit("/", 1)[0] + "/no_such_db_x", stdout=_Sink()
        )
    with pytest.raises(CommandError, match="does not exist or is not a file"):
        call_command(
            "import_legacy", "--source-url", pg_admin_url, "--sqlite-file", "bad\x00.db", stdout=_Sink()
        )
    with pytest.raises(CommandError, match="does not exist"):
        call_command(
            "import_legacy",
            "--source-url",
            pg_admin_url,
            "--sqlite-file",
            "/nonexistent/sync.db",
            stdout=_Sink(),
        )


class _Sink:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def flush(self) -> None:
        pass

    def getvalue(self) -> str:
        return "".join(self.parts)
