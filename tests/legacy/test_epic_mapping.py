"""Issue 21: the old sessions' ``epic_id`` becomes an Epic row with the session's features under it."""

from __future__ import annotations

import datetime as dt

import pytest

from legacy.models import ImportedRow
from legacy.services import import_legacy
from planning.models import Epic, Feature, PlanningSession
from planning.services import save_planning_result
from tests.legacy import old_data as od

pytestmark = pytest.mark.django_db

T1 = dt.datetime(2025, 3, 5, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def imported(old_db):
    od.fill_second_shape(old_db.conn)
    report = import_legacy(source_url=old_db.url)
    return old_db, report


def _epics() -> list[tuple]:
    return list(
        Epic.objects.order_by("planning_session_id", "epic_id").values_list(
            "planning_session_id", "epic_id", "planning_id", "title", "created_at"
        )
    )


def _forget_epics_of_an_earlier_import() -> None:
    """The state a deployment imported before epics existed is in: sessions imported, no epic rows."""
    ImportedRow.objects.filter(old_table="planning_sessions.epic_id")._raw_delete(ImportedRow.objects.db)
    Feature.objects.update(epic=None)
    Epic.objects.all().delete()


def test_the_session_epic_becomes_an_epic_row_with_the_features_under_it(imported):
    _, report = imported
    assert _epics() == [(7, "EPIC-7", "", "Q2", T1)]
    epic = Epic.objects.get()
    assert list(Feature.objects.order_by("feature_id").values_list("feature_id", "epic_id")) == [
        ("F-1", None),  # session 5 had no epic_id
        ("F-2", epic.pk),
    ]
    # The session keeps its epic_id too, and the map says where the old value went.
    assert PlanningSession.objects.get(pk=7).epic_id == "EPIC-7"
    assert list(
        ImportedRow.objects.filter(old_table="planning_sessions.epic_id").values_list(
            "old_id", "model", "new_pk"
        )
    ) == [("7", "planning.Epic", str(epic.pk))]
    stats = [s for s in report.tables.values() if s.table == "planning_sessions.epic_id"]
    assert [(s.read, s.imported, s.merged, s.already) for s in stats] == [(1, 1, 0, 0)]


def test_a_second_run_adds_no_epic(imported):
    old_db, _ = imported
    before = _epics()
    report = import_legacy(source_url=old_db.url)
    assert _epics() == before
    stats = [s for s in report.tables.values() if s.table == "planning_sessions.epic_id"]
    assert [(s.read, s.imported, s.already) for s in stats] == [(1, 0, 1)]


def test_a_deployment_imported_before_epics_gets_them_on_the_next_run(imported):
    old_db, _ = imported
    _forget_epics_of_an_earlier_import()
    import_legacy(source_url=old_db.url)
    assert _epics() == [(7, "EPIC-7", "", "Q2", T1)]
    assert Feature.objects.get(feature_id="F-2").epic == Epic.objects.get()


def test_an_epic_the_agent_saved_is_kept_and_not_duplicated(imported):
    old_db, _ = imported
    _forget_epics_of_an_earlier_import()
    session = PlanningSession.objects.get(pk=7)
    # Since the first import the agent saved session 7 again: the same Linear epic with its planning
    # id, and a new feature under another epic.
    save_planning_result(
        session,
        epics=[
            {"id": "epic-a", "title": "Agent's title", "epic_id": "EPIC-7"},
            {
                "id": "epic-b",
                "title": "Other",
                "epic_id": "EPIC-8",
                "features": [{"id": "f-9", "title": "New", "feature_id": "F-9"}],
            },
        ],
    )
    report = import_legacy(source_url=old_db.url)
    assert [(e[1], e[2], e[3]) for e in _epics()] == [
        ("EPIC-7", "epic-a", "Agent's title"),
        ("EPIC-8", "epic-b", "Other"),
    ]
    stats = [s for s in report.tables.values() if s.table == "planning_sessions.epic_id"]
    assert [(s.read, s.imported, s.merged) for s in stats] == [(1, 0, 1)]
    # A feature already under an epic keeps it; no feature was moved.
    assert Feature.objects.get(feature_id="F-9").epic.epic_id == "EPIC-8"
    assert Feature.objects.get(feature_id="F-2").epic_id is None


def test_a_dry_run_writes_no_epic_but_counts_it(old_db):
    od.fill_second_shape(old_db.conn)
    report = import_legacy(source_url=old_db.url, dry_run=True)
    assert Epic.objects.count() == 0
    stats = [s for s in report.tables.values() if s.table == "planning_sessions.epic_id"]
    assert [(s.read, s.imported) for s in stats] == [(1, 1)]
