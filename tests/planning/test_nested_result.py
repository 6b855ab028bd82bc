"""Issue 21: save_planning_result with the old parser's nested shape, item details, and the id map."""

from __future__ import annotations

import asyncio
import copy

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connections, transaction

from planning.models import Enabler, Epic, Feature, PlanningSession, Story
from planning.services import PlanningResultCounts, RowCounts, asave_planning_result, save_planning_result
from tests.factories import make_planning_session


def old_parser_epics() -> list[dict]:
    """Two epics in exactly the old parser's shape (``id`` planning id, ``*_id`` Linear id)."""
    return [
        {
            "id": "epic-1",
            "type": "epic",
            "title": "Self-service onboarding",
            "description": "Teams onboard themselves",
            "attributes": {"owner": "pm-1", "quarter": "Q1"},
            "labels": ["pi-2026.1", "onboarding"],
            "epic_id": "LIN-E1",
            "features": [
                {
                    "id": "feature-1",
                    "type": "feature",
                    "title": "Sign-up flow",
                    "description": "",
                    "attributes": {},
                    "labels": ["frontend"],
                    "parentId": "epic-1",
                    "feature_id": "LIN-F1",
                    "storyPoints": 13,
                    "priority": "high",
                    "acceptanceCriteria": ["Works without an operator"],
                    "stories": [
                        {
                            "id": "story-1",
                            "type": "story",
                            "title": "As a user I can sign up",
                            "description": "With SSO",
                            "attributes": {"persona": "admin"},
                            "labels": ["sso"],
                            "parentId": "feature-1",
                            "acceptanceCriteria": ["SSO works", "Email fallback"],
                            "storyPoints": 5,
                            "priority": 1,
                            "story_id": "LIN-S1",
                        },
                        {
                            "id": "story-2",
                            "type": "story",
                            "title": "As a user I can verify my email",
                            "description": "",
                            "acceptanceCriteria": [],
                            "storyPoints": None,
                            "priority": None,
                            "story_id": "LIN-S2",
                        },
                    ],
                    "enablers": [
                        {
                            "id": "enabler-1",
                            "type": "enabler",
                            "title": "Provision the identity provider",
                            "description": "",
                            "featureId": "feature-1",
                            "enablerType": "Infrastructure",
                            "enabler_id": "LIN-N1",
                        },
                    ],
                },
            ],
        },
        {
            "id": "epic-2",
            "type": "epic",
            "title": "Reporting",
            "description": "",
            "attributes": {},
            "labels": [],
            "epic_id": "LIN-E2",
            "features": [
                {
                    "id": "feature-2",
                    "title": "Weekly report",
                    "parentId": "epic-2",
                    "feature_id": "LIN-F2",
                    "stories": [
                        {"id": "story-3", "title": "Export CSV", "story_id": "LIN-S3", "storyPoints": 3.0}
                    ],
                },
            ],
        },
    ]


EXPECTED_ID_MAP = {
    "epic": {"epic-1": "LIN-E1", "epic-2": "LIN-E2"},
    "feature": {"feature-1": "LIN-F1", "feature-2": "LIN-F2"},
    "story": {"story-1": "LIN-S1", "story-2": "LIN-S2", "story-3": "LIN-S3"},
    "enabler": {"enabler-1": "LIN-N1"},
}


@pytest.mark.django_db
class TestNestedShape:
    def test_the_old_parsers_shape_is_stored_with_every_value(self):
        session = make_planning_session()
        counts = save_planning_result(session, epics=old_parser_epics())
        assert counts == PlanningResultCounts(
            epics=RowCounts(created=2),
            features=RowCounts(created=2),
            stories=RowCounts(created=3),
            enablers=RowCounts(created=1),
        )
        e1, e2 = Epic.objects.filter(planning_session=session).order_by("epic_id")
        assert list(
            Epic.objects.order_by("epic_id").values_list(
                "epic_id", "planning_id", "title", "description", "labels", "attributes"
            )
        ) == [
            (
                "LIN-E1",
                "epic-1",
                "Self-service onboarding",
                "Teams onboard themselves",
                ["pi-2026.1", "onboarding"],
                {"owner": "pm-1", "quarter": "Q1"},
            ),
            ("LIN-E2", "epic-2", "Reporting", "", [], {}),
        ]
        assert list(
            Feature.objects.order_by("feature_id").values_list(
                "feature_id",
                "planning_id",
                "epic_id",
                "title",
                "story_points",
                "priority",
                "acceptance_criteria",
                "labels",
            )
        ) == [
            (
                "LIN-F1",
                "feature-1",
                e1.pk,
                "Sign-up flow",
                13,
                2,
                ["Works without an operator"],
                ["frontend"],
            ),
            ("LIN-F2", "feature-2", e2.pk, "Weekly report", None, None, [], []),
        ]
        f1 = Feature.objects.get(feature_id="LIN-F1")
        assert list(
            Story.objects.order_by("story_id").values_list(
                "story_id",
                "planning_id",
                "planning_feature__feature_id",
                "title",
                "description",
                "story_points",
                "priority",
                "acceptance_criteria",
                "labels",
                "attributes",
            )
        ) == [
            (
                "LIN-S1",
                "story-1",
                "LIN-F1",
                "As a user I can sign up",
                "With SSO",
                5,
                1,
                ["SSO works", "Email fallback"],
                ["sso"],
                {"persona": "admin"},
            ),
            ("LIN-S2", "story-2", "LIN-F1", "As a user I can verify my email", "", None, None, [], [], {}),
            ("LIN-S3", "story-3", "LIN-F2", "Export CSV", "", 3, None, [], [], {}),
        ]
        assert list(
            Enabler.objects.values_list(
                "enabler_id", "planning_id", "planning_session_id", "planning_feature_id", "enabler_type"
            )
        ) == [
            ("LIN-N1", "enabler-1", session.pk, f1.pk, "infrastructure"),
        ]

    def test_the_id_map_answers_per_item_type(self):
        session = make_planning_session()
        save_planning_result(session, epics=old_parser_epics())
        assert session.id_map() == EXPECTED_ID_MAP
        assert session.linear_id_for("epic", "epic-2") == "LIN-E2"
        assert session.linear_id_for("feature", "feature-1") == "LIN-F1"
        assert session.linear_id_for("story", "story-3") == "LIN-S3"
        assert session.linear_id_for("enabler", "enabler-1") == "LIN-N1"
        assert session.linear_id_for("story", "story-99") is None
        # Per session: another session's map is its own.
        assert make_planning_session(organization=session.organization).id_map() == {
            "epic": {},
            "feature": {},
            "story": {},
            "enabler": {},
        }

    def test_id_map_is_one_query_and_linear_id_for_one(self, django_assert_num_queries):
        session = make_planning_session()
        save_planning_result(session, epics=old_parser_epics())
        with django_assert_num_queries(1):
            session.id_map()
        with django_assert_num_queries(1):
            session.linear_id_for("story", "story-1")

    def test_linear_id_for_refuses_an_unknown_type(self):
        session = make_planning_session()
        with pytest.raises(ValidationError, match="item_type must be one of epic, feature, story, enabler"):
            session.linear_id_for("task", "x")
        with pytest.raises(ValueError, match="item_type must be a string, not int"):
            session.linear_id_for(1, "x")
        with pytest.raises(ValidationError, match="planning_id must not be empty"):
            session.linear_id_for("epic", "")

    def test_a_rerun_of_the_same_document_maps_to_the_same_linear_ids_and_changes_nothing(self):
        session = make_planning_session()
        save_planning_result(session, epics=old_parser_epics())
        before = list(Story.objects.order_by("pk").values())
        # The agent's re-run: it asks the map for each parsed item before touching Linear...
        rerun = old_parser_epics()
        for epic in rerun:
            assert session.linear_id_for("epic", epic["id"]) == epic["epic_id"]
            for feature in epic["features"]:
                assert session.linear_id_for("feature", feature["id"]) == feature["feature_id"]
                for story in feature["stories"]:
                    assert session.linear_id_for("story", story["id"]) == story["story_id"]
        # ... updates those issues, and saves the same ids again.
        counts = save_planning_result(session, epics=rerun)
        assert counts == PlanningResultCounts(
            epics=RowCounts(unchanged=2),
            features=RowCounts(unchanged=2),
            stories=RowCounts(unchanged=3),
            enablers=RowCounts(unchanged=1),
        )
        assert list(Story.objects.order_by("pk").values()) == before
        assert (
            Epic.objects.count(),
            Feature.objects.count(),
            Story.objects.count(),
            Enabler.objects.count(),
        ) == (
            2,
            2,
            3,
            1,
        )
        assert session.id_map() == EXPECTED_ID_MAP

    def test_a_rerun_with_edited_items_updates_the_same_rows(self):
        session = make_planning_session()
        save_planning_result(session, epics=old_parser_epics())
        pks = dict(Story.objects.values_list("story_id", "pk"))
        edited = old_parser_epics()
        story = edited[0]["features"][0]["stories"][0]
        story.update(title="As a user I can sign up with SSO", storyPoints=8, labels=["sso", "security"])
        edited[1]["features"][0]["parentId"] = "epic-1"
        edited[0]["features"].append(edited[1]["features"].pop())  # feature-2 moves to epic-1
        counts = save_planning_result(session, epics=edited)
        assert (counts.stories, counts.features) == (
            RowCounts(updated=1, unchanged=2),
            RowCounts(updated=1, unchanged=1),
        )
        row = Story.objects.get(story_id="LIN-S1")
        assert (row.pk, row.title, row.story_points, row.labels) == (
            pks["LIN-S1"],
            "As a user I can sign up with SSO",
            8,
            ["sso", "security"],
        )
        assert Feature.objects.get(feature_id="LIN-F2").epic.epic_id == "LIN-E1"

    def test_a_planning_id_recreated_in_linear_moves_to_the_new_issue(self):
        session = make_planning_session()
        save_planning_result(session, epics=old_parser_epics())
        moved = old_parser_epics()
        moved[0]["features"][0]["stories"][0]["story_id"] = "LIN-S1-NEW"
        save_planning_result(session, epics=moved)
        assert session.linear_id_for("story", "story-1") == "LIN-S1-NEW"
        # The old row is kept (rows absent from the input are), without the planning id.
        assert list(
            Story.objects.filter(story_id__startswith="LIN-S1")
            .order_by("story_id")
            .values_list("story_id", "planning_id")
        ) == [("LIN-S1", ""), ("LIN-S1-NEW", "story-1")]

    def test_swapping_two_planning_ids_needs_no_intermediate_state(self):
        session = make_planning_session()
        save_planning_result(session, epics=old_parser_epics())
        swapped = old_parser_epics()
        stories = swapped[0]["features"][0]["stories"]
        stories[0]["id"], stories[1]["id"] = "story-2", "story-1"
        for story in stories:
            story.pop("parentId", None)
        save_planning_result(session, epics=swapped)
        assert session.id_map()["story"] == {"story-1": "LIN-S2", "story-2": "LIN-S1", "story-3": "LIN-S3"}

    def test_flat_and_nested_shapes_in_one_call(self):
        session = make_planning_session()
        counts = save_planning_result(
            session,
            epics=old_parser_epics()[1:],
            features=[
                {
                    "feature_id": "LIN-F9",
                    "title": "Loose feature",
                    "planning_id": "feature-9",
                    "story_points": 2,
                    "acceptance_criteria": ["done"],
                    "stories": [{"story_id": "LIN-S9", "title": "Loose story"}],
                }
            ],
            enablers=[
                {
                    "enabler_id": "LIN-N9",
                    "title": "Session enabler",
                    "enabler_type": "research",
                    "labels": ["spike"],
                }
            ],
        )
        assert (counts.epics, counts.features, counts.stories, counts.enablers) == (
            RowCounts(created=1),
            RowCounts(created=2),
            RowCounts(created=2),
            RowCounts(created=1),
        )
        loose = Feature.objects.get(feature_id="LIN-F9")
        assert (loose.epic_id, loose.planning_id, loose.story_points, loose.acceptance_criteria) == (
            None,
            "feature-9",
            2,
            ["done"],
        )
        assert Enabler.objects.values_list("planning_feature_id", "labels").get() == (None, ["spike"])
        assert session.id_map()["feature"] == {"feature-2": "LIN-F2", "feature-9": "LIN-F9"}

    def test_the_flat_shape_of_before_still_works_and_leaves_no_ids_in_the_map(self):
        session = make_planning_session()
        save_planning_result(
            session,
            features=[
                {
                    "feature_id": "F-1",
                    "title": "T",
                    "description": "",
                    "stories": [{"story_id": "S-1", "title": "S", "description": ""}],
                }
            ],
            enablers=[{"enabler_id": "E-1", "title": "E", "description": "", "enabler_type": "architecture"}],
        )
        assert session.id_map() == {"epic": {}, "feature": {}, "story": {}, "enabler": {}}
        assert Feature.objects.values_list("epic_id", "labels", "story_points").get() == (None, [], None)

    def test_save_with_an_epic_costs_a_fixed_number_of_queries(self, django_assert_max_num_queries):
        session = make_planning_session()
        big = old_parser_epics()
        for n in range(2, 12):
            epic = copy.deepcopy(big[0])
            epic.update(id=f"epic-x{n}", epic_id=f"LIN-EX{n}")
            for feature in epic["features"]:
                feature.update(
                    id=f"{feature['id']}-x{n}",
                    feature_id=f"{feature['feature_id']}-x{n}",
                    parentId=f"epic-x{n}",
                )
                for story in feature["stories"]:
                    story.update(
                        id=f"{story['id']}-x{n}", story_id=f"{story['story_id']}-x{n}", parentId=feature["id"]
                    )
                for enabler in feature["enablers"]:
                    enabler.update(
                        id=f"{enabler['id']}-x{n}",
                        enabler_id=f"{enabler['enabler_id']}-x{n}",
                        featureId=feature["id"],
                    )
            big.append(epic)
        # savepoint pair, lock, 4 reads of stored rows, 4 inserts, 2 id read-backs (PostgreSQL's COPY).
        with django_assert_max_num_queries(13):
            save_planning_result(session, epics=big)
        assert Story.objects.count() == 3 + 10 * 2


@pytest.mark.django_db(transaction=True)
def test_async_save_and_map():
    session = make_planning_session()

    async def agent() -> tuple:
        counts = await asave_planning_result(session, epics=old_parser_epics())
        result = counts, await session.aid_map(), await session.alinear_id_for("feature", "feature-2")
        # The twins ran on asgiref's shared worker thread: close its connection, as a request's end does.
        await sync_to_async(connections.close_all)()
        return result

    counts, id_map, feature = asyncio.run(agent())
    assert counts.stories == RowCounts(created=3)
    assert id_map == EXPECTED_ID_MAP
    assert feature == "LIN-F2"
    assert Story.objects.filter(planning_feature__planning_session=session).count() == 3


def _bad(path: str, key: str, value) -> list[dict]:
    """The old parser's epics with one value replaced; ``path`` as 'epic', 'feature', 'story', 'enabler'."""
    epics = old_parser_epics()
    item = {
        "epic": epics[0],
        "feature": epics[0]["features"][0],
        "story": epics[0]["features"][0]["stories"][0],
        "enabler": epics[0]["features"][0]["enablers"][0],
    }[path]
    item[key] = value
    return epics


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("epics", "error", "message"),
    [
        (_bad("epic", "epic_id", None), ValidationError, r"epics\[0\]: epic_id is required"),
        (_bad("epic", "title", ""), ValidationError, r"epics\[0\]: title must not be empty"),
        (_bad("epic", "type", "feature"), ValidationError, r"epics\[0\]: type 'feature' is not 'epic'"),
        (_bad("epic", "labels", "one"), ValueError, r"epics\[0\]: labels must be a list of strings, not str"),
        (_bad("epic", "labels", ["ok", ""]), ValidationError, r"epics\[0\]: labels\[1\] must not be empty"),
        (_bad("epic", "attributes", ["x"]), ValueError, r"epics\[0\]: attributes must be a dict, not list"),
        (_bad("epic", "attributes", {"x": float("inf")}), ValidationError, "attributes is not valid JSON"),
        (_bad("epic", "colour", "red"), ValidationError, r"epics\[0\]: unknown keys colour"),
        (
            _bad("feature", "parentId", "epic-2"),
            ValidationError,
            r"features\[0\]: parentId 'epic-2' is not the id of the item it is nested in \('epic-1'\)",
        ),
        (
            _bad("feature", "storyPoints", -1),
            ValidationError,
            r"epics\[0\]\.features\[0\]: story_points must be a whole number from 0 to 1000 \(got -1\)",
        ),
        (
            _bad("feature", "story_points", 3),
            ValidationError,
            r"epics\[0\]\.features\[0\]: storyPoints and story_points both given",
        ),
        (
            _bad("story", "storyPoints", 2.5),
            ValidationError,
            r"stories\[0\]: story_points must be a whole number",
        ),
        (
            _bad("story", "storyPoints", "5"),
            ValueError,
            r"stories\[0\]: story_points must be a number, not str",
        ),
        (
            _bad("story", "storyPoints", True),
            ValueError,
            r"stories\[0\]: story_points must be a number, not bool",
        ),
        (
            _bad("story", "priority", 5),
            ValidationError,
            r"stories\[0\]: priority must be from 0 \(none\) to 4",
        ),
        (
            _bad("story", "priority", "critical"),
            ValidationError,
            r"stories\[0\]: priority 'critical' is not one of",
        ),
        (
            _bad("story", "acceptanceCriteria", "done"),
            ValueError,
            r"stories\[0\]: acceptance_criteria must be a list of strings, not str",
        ),
        (
            _bad("story", "acceptanceCriteria", ["a\x00"]),
            ValidationError,
            r"acceptance_criteria\[0\] must not contain NUL",
        ),
        (
            _bad("story", "id", "story-2"),
            ValidationError,
            r"stories\[1\]: id 'story-2' appears twice \(first at epics\[0\]\.features\[0\]\.stories\[0\]\)",
        ),
        (
            _bad("story", "story_id", "LIN-S2"),
            ValidationError,
            r"stories\[1\]: story_id 'LIN-S2' appears twice",
        ),
        (
            _bad("enabler", "featureId", "feature-2"),
            ValidationError,
            r"enablers\[0\]: featureId 'feature-2' is not the id of the feature it is nested in",
        ),
        (_bad("enabler", "enablerType", "magic"), ValidationError, r"enabler_type 'magic' is not one of"),
        (_bad("enabler", "enablerType", None), ValidationError, r"enablers\[0\]: enabler_type is required"),
        (
            [{"id": "e", "title": "t", "epic_id": "E", "features": {"a": 1}}],
            ValueError,
            r"epics\[0\]\.features must be a list, not dict",
        ),
        ("epic", ValueError, "epics must be a list, not str"),
    ],
)
def test_bad_nested_input_is_refused_before_anything_is_written(epics, error, message):
    session = make_planning_session()
    with pytest.raises(error, match=message):
        save_planning_result(session, epics=epics)
    assert (
        Epic.objects.count(),
        Feature.objects.count(),
        Story.objects.count(),
        Enabler.objects.count(),
    ) == (
        0,
        0,
        0,
        0,
    )


@pytest.mark.django_db
def test_a_feature_id_used_under_an_epic_and_at_session_level_is_refused():
    session = make_planning_session()
    with pytest.raises(ValidationError, match=r"features\[0\]: feature_id 'LIN-F1' appears twice"):
        save_planning_result(
            session, epics=old_parser_epics(), features=[{"feature_id": "LIN-F1", "title": "x"}]
        )
    assert Epic.objects.count() == 0


@pytest.mark.django_db
def test_parent_id_at_session_level_is_refused():
    session = make_planning_session()
    with pytest.raises(ValidationError, match=r"features\[0\]: parentId 'epic-1' given at session level"):
        save_planning_result(session, features=[{"feature_id": "F", "title": "x", "parentId": "epic-1"}])


@pytest.mark.django_db
def test_priority_names_map_to_linears_numbers():
    session = make_planning_session()
    names = ["No priority", "urgent", "HIGH", "medium", "low", 0, 4]
    save_planning_result(
        session,
        features=[{"feature_id": f"F-{i}", "title": "x", "priority": name} for i, name in enumerate(names)],
    )
    assert list(Feature.objects.order_by("feature_id").values_list("priority", flat=True)) == [
        0,
        1,
        2,
        3,
        4,
        0,
        4,
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "fields", "constraint"),
    [
        (Story, {"story_points": 1001}, "story_points_range"),
        (Story, {"priority": 5}, "priority_0_4"),
        (Feature, {"story_points": 1001}, "story_points_range"),
        (Feature, {"priority": 9}, "priority_0_4"),
    ],
)
def test_the_database_keeps_the_ranges(model, fields, constraint):
    session = make_planning_session()
    feature = Feature.objects.create(planning_session=session, feature_id="F", title="t")
    parent = (
        {"planning_feature": feature, "story_id": "S"}
        if model is Story
        else {"planning_session": session, "feature_id": "F2"}
    )
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        model.objects.create(title="t", **parent, **fields)


@pytest.mark.django_db
def test_the_database_keeps_planning_ids_unique_per_session():
    session = make_planning_session()
    Epic.objects.create(planning_session=session, epic_id="E1", planning_id="epic-1", title="t")
    # Empty planning ids (flat shape, imported rows) may repeat.
    Epic.objects.create(planning_session=session, epic_id="E2", title="t")
    Epic.objects.create(planning_session=session, epic_id="E3", title="t")
    with pytest.raises(IntegrityError), transaction.atomic():
        Epic.objects.create(planning_session=session, epic_id="E4", planning_id="epic-1", title="t")
    other = make_planning_session()
    Epic.objects.create(planning_session=other, epic_id="E1", planning_id="epic-1", title="t")
    assert Epic.objects.count() == 4


@pytest.mark.django_db
def test_deleting_an_epic_keeps_its_features_at_session_level():
    session = make_planning_session()
    save_planning_result(session, epics=old_parser_epics())
    Epic.objects.filter(epic_id="LIN-E1").delete()
    assert Feature.objects.get(feature_id="LIN-F1").epic_id is None
    assert PlanningSession.objects.get(pk=session.pk).features.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("failing_model", [Epic, Feature, Story, Enabler])
def test_a_failure_in_any_insert_of_new_rows_leaves_nothing_behind(monkeypatch, failing_model):
    """New rows go in through _insert_new (binary COPY on PostgreSQL); a failure there rolls all back."""
    from planning import services

    session = make_planning_session()
    save_planning_result(session, features=[{"feature_id": "KEEP", "title": "Kept", "planning_id": "keep"}])
    before = (list(Feature.objects.values_list("feature_id", "title", "updated_at")), session.id_map())
    original = services._insert_new

    def failing(model, rows):
        if model is failing_model:
            raise RuntimeError(f"injected failure inserting {model.__name__}")
        return original(model, rows)

    monkeypatch.setattr(services, "_insert_new", failing)
    with pytest.raises(RuntimeError, match=f"inserting {failing_model.__name__}"):
        save_planning_result(session, epics=old_parser_epics())
    assert (
        list(Feature.objects.values_list("feature_id", "title", "updated_at")),
        session.id_map(),
    ) == before
    assert (Epic.objects.count(), Story.objects.count(), Enabler.objects.count()) == (0, 0, 0)


@pytest.mark.django_db
def test_a_constraint_broken_inside_the_copy_comes_out_as_djangos_integrity_error():
    from planning import services

    session = make_planning_session()
    Epic.objects.create(planning_session=session, epic_id="LIN-E1", title="Already here")
    row = {
        "planning_session_id": session.pk,
        "epic_id": "LIN-E1",
        "planning_id": "",
        "title": "Duplicate",
        "description": "",
        "labels": [],
        "attributes": {},
        "created_at": Epic.objects.get().created_at,
        "updated_at": Epic.objects.get().created_at,
    }
    with pytest.raises(IntegrityError), transaction.atomic():
        services._insert_new(Epic, [row])
    assert Epic.objects.count() == 1
