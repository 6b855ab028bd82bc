"""planning.services.save_planning_result: validation, idempotency, updates, bulk writes, locking."""

from __future__ import annotations

import math

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from planning.models import Enabler, Feature, PlanningSession, Story
from planning.services import PlanningResultCounts, RowCounts, save_planning_result
from tests.factories import make_enabler, make_feature, make_planning_session, make_story
from tests.reliability.concurrency import assert_no_errors, run_together


def result(n_features: int = 2, n_stories: int = 2, n_enablers: int = 1, suffix: str = "") -> dict:
    """Keyword arguments for a save: ``n_features`` features of ``n_stories`` stories, ``n_enablers``."""
    return {
        "features": [
            {
                "feature_id": f"F-{i}",
                "title": f"Feature {i}{suffix}",
                "description": f"About feature {i}",
                "stories": [
                    {"story_id": f"S-{i}-{j}", "title": f"Story {i}.{j}{suffix}", "description": ""}
                    for j in range(n_stories)
                ],
            }
            for i in range(n_features)
        ],
        "enablers": [
            {"enabler_id": f"E-{k}", "title": f"Enabler {k}{suffix}", "description": "",
             "enabler_type": "architecture"}
            for k in range(n_enablers)
        ],
    }


def snapshot() -> dict:
    """Every stored feature, story and enabler with its values and updated_at."""
    return {
        "features": list(Feature.objects.order_by("id").values("id", "feature_id", "title", "description",
                                                                "updated_at")),
        "stories": list(Story.objects.order_by("id").values("id", "planning_feature_id", "story_id", "title",
                                                             "description", "updated_at")),
        "enablers": list(Enabler.objects.order_by("id").values("id", "enabler_id", "title", "enabler_type",
                                                               "updated_at")),
    }


@pytest.mark.django_db
class TestSave:
    def test_first_save_creates_everything_under_the_session(self):
        session = make_planning_session()
        counts = save_planning_result(session, **result(2, 3, 2))
        assert counts == PlanningResultCounts(
            features=RowCounts(created=2), stories=RowCounts(created=6), enablers=RowCounts(created=2)
        )
        stored = session.features.order_by("feature_id").values_list("feature_id", "title", "description")
        assert list(stored) == [
            ("F-0", "Feature 0", "About feature 0"), ("F-1", "Feature 1", "About feature 1"),
        ]
        f1 = session.features.get(feature_id="F-1")
        assert list(f1.stories.order_by("story_id").values_list("story_id", "title")) == [
            ("S-1-0", "Story 1.0"), ("S-1-1", "Story 1.1"), ("S-1-2", "Story 1.2"),
        ]
        assert list(session.enablers.order_by("enabler_id").values_list("enabler_id", "enabler_type")) == [
            ("E-0", "architecture"), ("E-1", "architecture"),
        ]
        row = session.features.get(feature_id="F-0")
        assert row.created_at == row.updated_at and row.created_at.tzinfo is not None

    def test_second_identical_save_changes_nothing(self):
        session = make_planning_session()
        save_planning_result(session, **result(3, 2, 2))
        before = snapshot()
        counts = save_planning_result(session, **result(3, 2, 2))
        assert counts == PlanningResultCounts(
            features=RowCounts(unchanged=3), stories=RowCounts(unchanged=6), enablers=RowCounts(unchanged=2)
        )
        assert snapshot() == before

    def test_changed_titles_are_updated_and_only_those_rows_touched(self):
        session = make_planning_session()
        save_planning_result(session, **result(2, 2, 2))
        before = snapshot()
        data = result(2, 2, 2)
        data["features"][1]["title"] = "Renamed feature"
        data["features"][0]["stories"][1]["description"] = "Now with a description"
        data["enablers"][0]["enabler_type"] = "research"
        counts = save_planning_result(session, **data)
        assert counts == PlanningResultCounts(
            features=RowCounts(updated=1, unchanged=1),
            stories=RowCounts(updated=1, unchanged=3),
            enablers=RowCounts(updated=1, unchanged=1),
        )
        after = snapshot()
        assert session.features.get(feature_id="F-1").title == "Renamed feature"
        assert Story.objects.get(story_id="S-0-1").description == "Now with a description"
        assert session.enablers.get(enabler_id="E-0").enabler_type == "research"
        changed = {("features", 1), ("stories", 1), ("enablers", 0)}
        for kind in ("features", "stories", "enablers"):
            for index, (old, new) in enumerate(zip(before[kind], after[kind], strict=True)):
                assert old["id"] == new["id"]
                if (kind, index) in changed:
                    assert new["updated_at"] > old["updated_at"]
                else:
                    assert new == old

    def test_rows_absent_from_a_later_save_are_kept(self):
        session = make_planning_session()
        save_planning_result(session, **result(3, 2, 2))
        counts = save_planning_result(session, **result(1, 1, 0))
        assert counts.features == RowCounts(unchanged=1)
        assert counts.enablers == RowCounts()
        assert (Feature.objects.count(), Story.objects.count(), Enabler.objects.count()) == (3, 6, 2)

    def test_new_items_are_added_next_to_existing_ones(self):
        session = make_planning_session()
        save_planning_result(session, **result(1, 1, 0))
        counts = save_planning_result(session, **result(2, 2, 1))
        assert counts == PlanningResultCounts(
            features=RowCounts(created=1, unchanged=1),
            stories=RowCounts(created=3, unchanged=1),
            enablers=RowCounts(created=1),
        )
        assert Story.objects.filter(planning_feature__feature_id="F-0").count() == 2

    def test_same_linear_ids_in_another_session_are_separate_rows(self):
        first, second = make_planning_session(), make_planning_session()
        save_planning_result(first, **result(1, 1, 1))
        counts = save_planning_result(second, **result(1, 1, 1))
        assert counts.features == RowCounts(created=1)
        assert Feature.objects.filter(feature_id="F-0").count() == 2

    def test_same_story_id_under_two_features_is_allowed(self):
        session = make_planning_session()
        save_planning_result(session, features=[
            {"feature_id": "F-1", "title": "A", "stories": [{"story_id": "S-1", "title": "x"}]},
            {"feature_id": "F-2", "title": "B", "stories": [{"story_id": "S-1", "title": "y"}]},
        ])
        assert sorted(Story.objects.values_list("planning_feature__feature_id", "title")) == [
            ("F-1", "x"), ("F-2", "y")
        ]

    @pytest.mark.parametrize(
        ("given", "stored"),
        [("Technical Debt", "technical_debt"), ("technical-debt", "technical_debt"),
         (" ARCHITECTURE ", "architecture"), ("Research", "research"), ("compliance", "compliance")],
    )
    def test_enabler_type_variants_are_normalised(self, given, stored):
        session = make_planning_session()
        save_planning_result(session, enablers=[{"enabler_id": "E", "title": "t", "enabler_type": given}])
        assert Enabler.objects.get().enabler_type == stored

    def test_optional_description_and_stories(self):
        session = make_planning_session()
        save_planning_result(session, features=[{"feature_id": "F", "title": "t", "description": None}])
        assert Feature.objects.values_list("description", flat=True).get() == ""
        assert not Story.objects.exists()

    def test_empty_call_only_locks_the_session(self, django_assert_num_queries):
        session = make_planning_session()
        with django_assert_num_queries(3):  # SAVEPOINT, SELECT ... FOR UPDATE, RELEASE
            counts = save_planning_result(session)
        assert counts == PlanningResultCounts(RowCounts(), RowCounts(), RowCounts())


BAD_INPUTS = [
    # (how to break the default input, exception, message)
    (lambda d: d["features"][1].pop("title"), ValidationError, "features[1]: title is required."),
    (lambda d: d["features"][1].update(title="  "), ValidationError, "features[1]: title must not be empty."),
    (lambda d: d["features"][1].update(title="x" * 501), ValidationError,
     "features[1]: title is 501 characters long; at most 500 are allowed."),
    (lambda d: d["features"][1].update(feature_id="F" * 256), ValidationError,
     "features[1]: feature_id is 256 characters long"),
    (lambda d: d["features"][1].update(description="a\x00b"), ValidationError,
     "features[1]: description must not contain NUL characters."),
    (lambda d: d["features"][1].update(feature_id="F-0"), ValidationError,
     "features[1]: feature_id 'F-0' appears twice (first at features[0])."),
    (lambda d: d["features"][3]["stories"][1].update(story_id="S-3-0"), ValidationError,
     "features[3].stories[1]: story_id 'S-3-0' appears twice (first at features[3].stories[0])."),
    (lambda d: d["features"][3]["stories"][1].pop("story_id"), ValidationError,
     "features[3].stories[1]: story_id is required."),
    (lambda d: d["features"][3]["stories"][1].update(title=7), ValueError,
     "features[3].stories[1]: title must be a string, not int."),
    (lambda d: d["features"][2].update(stories="S-1"), ValueError,
     "features[2].stories must be a list, not str."),
    (lambda d: d["features"].__setitem__(2, "F-2"), ValueError, "features[2] must be a dict, not str."),
    (lambda d: d["features"][2].update(titel="typo"), ValidationError, "features[2]: unknown keys titel"),
    (lambda d: d["enablers"][1].update(enabler_type="security"), ValidationError,
     "enablers[1]: enabler_type 'security' is not one of architecture, infrastructure, compliance, "
     "exploration, technical_debt, research."),
    (lambda d: d["enablers"][1].pop("enabler_type"), ValidationError,
     "enablers[1]: enabler_type is required."),
    (lambda d: d["enablers"][1].update(enabler_id="E-0"), ValidationError,
     "enablers[1]: enabler_id 'E-0' appears twice (first at enablers[0])."),
    (lambda d: d.update(enablers={"enabler_id": "E"}), ValueError, "enablers must be a list, not dict."),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("breaks", "error", "message"), BAD_INPUTS, ids=[c[2][:60] for c in BAD_INPUTS])
def test_an_invalid_item_rejects_the_whole_call_and_writes_nothing(breaks, error, message):
    session = make_planning_session()
    save_planning_result(session, **result(5, 2, 2, suffix=" v1"))
    before = snapshot()
    data = result(5, 2, 2, suffix=" v2")  # every title changed: a partial write would show
    data["features"].append({"feature_id": "F-new", "title": "New"})
    breaks(data)
    with pytest.raises(error) as excinfo:
        save_planning_result(session, **data)
    text = excinfo.value.messages[0] if isinstance(excinfo.value, ValidationError) else str(excinfo.value)
    assert text.startswith(message)
    assert snapshot() == before


@pytest.mark.django_db
def test_a_session_that_is_not_saved_or_not_a_session_is_refused():
    with pytest.raises(ValueError, match="session must be a PlanningSession, not int"):
        save_planning_result(5, features=[])
    with pytest.raises(ValueError, match="session must be saved first"):
        save_planning_result(PlanningSession(planning_title="x"), features=[])


@pytest.mark.django_db
def test_a_deleted_session_is_reported():
    session = make_planning_session()
    PlanningSession.objects.filter(pk=session.pk).delete()
    with pytest.raises(ValidationError, match="does not exist"):
        save_planning_result(session, **result(1, 1, 1))
    assert not Feature.objects.exists()


def _expected_queries(n_features: int, n_stories_each: int, n_enablers: int, *, fresh: bool) -> int:
    """Queries a save should take: fixed reads and writes plus the engine's insert batches."""
    postgres = connection.vendor == "postgresql"

    def batches(model, n):
        if postgres:
            return 1 if n else 0  # one COPY, whatever the number of rows
        fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        return math.ceil(n / connection.ops.bulk_batch_size(fields, [None] * n)) if n else 0

    # SAVEPOINT + RELEASE (the test already runs in a transaction), lock, read features, read stories,
    # read enablers; then the inserts (fresh) or nothing (a repeat).
    fixed = 2 + 1 + 3
    if not fresh:
        return fixed
    # COPY returns no ids: PostgreSQL reads the new features' ids back for their stories. A session
    # that had no features has no stories: they are not read.
    read_back = 1 if postgres and n_stories_each else 0
    no_story_read = 1 if n_stories_each else 0
    return (fixed - no_story_read + batches(Feature, n_features) + read_back
            + batches(Story, n_features * n_stories_each) + batches(Enabler, n_enablers))


@pytest.mark.django_db
def test_query_count_of_a_100_feature_save_is_small_and_does_not_grow_with_rows(django_assert_num_queries):
    small, large = make_planning_session(), make_planning_session()
    with django_assert_num_queries(_expected_queries(10, 1, 2, fresh=True)):
        save_planning_result(small, **result(10, 1, 2))
    with django_assert_num_queries(_expected_queries(100, 10, 50, fresh=True)) as captured:
        counts = save_planning_result(large, **result(100, 10, 50))
    assert counts.stories == RowCounts(created=1000)
    if connection.vendor == "postgresql":
        # One statement per step, whatever the size: 9 queries (3 of them COPY) for 100 features,
        # 1000 stories, 50 enablers.
        assert len(captured) == 9
    else:
        # SQLite binds at most 999 parameters per statement, so Django splits the 1000 stories (12
        # columns since epics, estimates and labels came) into ceil(1000 / 83) = 13 inserts: still a
        # handful, never one per row.
        assert len(captured) == 21
    # A repeat reads and writes nothing per row: only the fixed reads.
    with django_assert_num_queries(_expected_queries(100, 10, 50, fresh=False)):
        save_planning_result(large, **result(100, 10, 50))


@pytest.mark.django_db
def test_updating_every_row_is_still_bulk_and_keeps_created_at():
    session = make_planning_session()
    save_planning_result(session, **result(100, 10, 50))
    created = dict(Story.objects.values_list("story_id", "created_at"))
    with CaptureQueriesContext(connection) as captured:
        counts = save_planning_result(session, **result(100, 10, 50, suffix=" v2"))
    assert counts == PlanningResultCounts(
        features=RowCounts(updated=100), stories=RowCounts(updated=1000), enablers=RowCounts(updated=50)
    )
    assert Story.objects.filter(title__endswith=" v2").count() == 1000
    assert dict(Story.objects.values_list("story_id", "created_at")) == created
    assert all(s > c for s, c in Story.objects.values_list("updated_at", "created_at"))
    writes = [q["sql"] for q in captured if q["sql"].startswith(("INSERT", "UPDATE", "DELETE"))]
    # Every write is an upsert on the (parent, Linear id) constraint: no per-row UPDATE, no CASE WHEN.
    assert writes and all("ON CONFLICT" in sql and "DO UPDATE" in sql for sql in writes)
    # As many statements as a first save's inserts, less its id read-back (updated rows' ids are known)
    # and plus the story read it skipped.
    read_back = 1 if connection.vendor == "postgresql" else 0
    assert len(writes) == (
        _expected_queries(100, 10, 50, fresh=True) - _expected_queries(0, 0, 0, fresh=False) - read_back + 1
    )


@pytest.mark.django_db
def test_rows_created_elsewhere_are_matched_by_linear_id():
    session = make_planning_session()
    feature = make_feature(planning_session=session, feature_id="F-0", title="Feature 0",
                           description="About feature 0")
    make_story(planning_feature=feature, story_id="S-0-0", title="Old title")
    make_enabler(planning_session=session, enabler_id="E-0", title="Enabler 0", enabler_type="architecture")
    counts = save_planning_result(session, **result(1, 1, 1))
    assert counts == PlanningResultCounts(
        features=RowCounts(unchanged=1), stories=RowCounts(updated=1), enablers=RowCounts(unchanged=1)
    )
    assert Story.objects.get().title == "Story 0.0"


@pytest.mark.django_db
def test_stories_find_new_features_on_a_backend_that_returns_no_ids_from_bulk_inserts(monkeypatch):
    monkeypatch.setattr(type(connection.features), "can_return_rows_from_bulk_insert", False)
    session = make_planning_session()
    save_planning_result(session, **result(1, 1, 0))
    counts = save_planning_result(session, **result(3, 2, 0))
    assert counts.stories == RowCounts(created=5, unchanged=1)
    assert sorted(Story.objects.values_list("planning_feature__feature_id", "story_id")) == [
        (f"F-{i}", f"S-{i}-{j}") for i in range(3) for j in range(2)
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_for_one_session_serialize_and_end_with_the_right_rows():
    session = make_planning_session()

    def save(n: int) -> PlanningResultCounts:
        # Each worker sends the shared features F-0..F-4 (same titles) plus one of its own.
        data = result(5, 3, 2)
        data["features"].append(
            {"feature_id": f"W-{n}", "title": f"Worker {n}", "stories": [{"story_id": "S", "title": "s"}]}
        )
        return save_planning_result(session, **data)

    outcomes = run_together(save)
    assert_no_errors(outcomes)
    results = [o.result for o in outcomes]
    workers = len(outcomes)
    assert Feature.objects.filter(planning_session=session).count() == 5 + workers
    assert Story.objects.filter(planning_feature__planning_session=session).count() == 5 * 3 + workers
    assert Enabler.objects.filter(planning_session=session).count() == 2
    # Exactly one worker created the shared rows; the others found them unchanged.
    assert sorted(r.features.created for r in results) == [1] * (workers - 1) + [6]
    assert sum(r.stories.created for r in results) == 5 * 3 + workers
    assert sum(r.enablers.created for r in results) == 2
