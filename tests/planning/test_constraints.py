"""Every planning rule is kept by the database itself: a raw ``update()`` that breaks one is refused."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

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
from tests.factories import (
    make_enabler,
    make_feature,
    make_organization,
    make_pi_feature,
    make_pi_objective,
    make_pi_risk,
    make_planning_session,
    make_program_increment,
    make_story,
)

pytestmark = pytest.mark.django_db

# (factory, model, breaking update, constraint name the database names in its error)
def processing_session() -> PlanningSession:
    return make_planning_session(status="processing")


BREAKING_UPDATES = [
    (make_program_increment, ProgramIncrement, {"pi_id": ""}, "planning_pi_pi_id_not_empty"),
    (
        make_program_increment,
        ProgramIncrement,
        {"end_date": dt.date(2025, 12, 31)},
        "planning_pi_end_after_start",
    ),
    (make_program_increment, ProgramIncrement, {"status": "in_progress"}, "planning_pi_status_valid"),
    (make_pi_feature, PIFeature, {"feature_id": ""}, "planning_pifeature_feature_id_not_empty"),
    (make_pi_feature, PIFeature, {"status": "in-progress"}, "planning_pifeature_status_valid"),
    (make_pi_feature, PIFeature, {"confidence": 0}, "planning_pifeature_confidence_1_5"),
    (make_pi_feature, PIFeature, {"confidence": 6}, "planning_pifeature_confidence_1_5"),
    (make_pi_objective, PIObjective, {"objective_id": ""}, "planning_piobjective_id_not_empty"),
    (make_pi_objective, PIObjective, {"status": "done"}, "planning_piobjective_status_valid"),
    (make_pi_objective, PIObjective, {"business_value": 0}, "planning_piobjective_value_1_10"),
    (make_pi_objective, PIObjective, {"business_value": 11}, "planning_piobjective_value_1_10"),
    (make_pi_risk, PIRisk, {"risk_id": ""}, "planning_pirisk_risk_id_not_empty"),
    (make_pi_risk, PIRisk, {"status": "ignored"}, "planning_pirisk_status_valid"),
    (make_pi_risk, PIRisk, {"impact": 0}, "planning_pirisk_impact_1_5"),
    (make_pi_risk, PIRisk, {"impact": 6}, "planning_pirisk_impact_1_5"),
    (make_pi_risk, PIRisk, {"likelihood": 0}, "planning_pirisk_likelihood_1_5"),
    (make_pi_risk, PIRisk, {"likelihood": 6}, "planning_pirisk_likelihood_1_5"),
    (
        make_planning_session,
        PlanningSession,
        {"confluence_page_url": ""},
        "planning_session_page_url_not_empty",
    ),
    (make_planning_session, PlanningSession, {"planning_title": ""}, "planning_session_title_not_empty"),
    (make_planning_session, PlanningSession, {"status": "in_progress"}, "planning_session_status_valid"),
    # A processing session: a pending one at 101 % would break the pending-at-0 rule first.
    (processing_session, PlanningSession, {"progress": 101}, "planning_session_progress_0_100"),
    (make_planning_session, PlanningSession, {"progress": 40}, "planning_session_pending_at_0"),
    (make_planning_session, PlanningSession, {"status": "completed"}, "planning_session_completed_at_100"),
    (make_planning_session, PlanningSession, {"error": "boom"}, "planning_session_error_only_when_failed"),
    (make_feature, Feature, {"feature_id": ""}, "planning_feature_feature_id_not_empty"),
    (make_feature, Feature, {"title": ""}, "planning_feature_title_not_empty"),
    (make_story, Story, {"story_id": ""}, "planning_story_story_id_not_empty"),
    (make_story, Story, {"title": ""}, "planning_story_title_not_empty"),
    (make_enabler, Enabler, {"enabler_id": ""}, "planning_enabler_enabler_id_not_empty"),
    (make_enabler, Enabler, {"title": ""}, "planning_enabler_title_not_empty"),
    (make_enabler, Enabler, {"enabler_type": "Technical Debt"}, "planning_enabler_type_valid"),
]


@pytest.mark.parametrize(
    ("factory", "model", "update", "constraint"),
    BREAKING_UPDATES,
    ids=[f"{case[3]}-{next(iter(case[2].values()))}" for case in BREAKING_UPDATES],
)
def test_database_refuses_update_that_breaks_a_rule(factory, model, update, constraint):
    row = factory()
    with pytest.raises(IntegrityError) as excinfo, transaction.atomic():
        model.objects.filter(pk=row.pk).update(**update)
    # Both engines name the violated check constraint in the error.
    assert constraint in str(excinfo.value)
    row.refresh_from_db()
    assert getattr(row, next(iter(update))) != next(iter(update.values()))


def test_session_progress_below_zero_is_refused():
    session = processing_session()
    with pytest.raises(IntegrityError), transaction.atomic():
        PlanningSession.objects.filter(pk=session.pk).update(progress=F("progress") - 1)
    session.refresh_from_db()
    assert (session.status, session.progress) == ("processing", 0)


def test_pi_may_start_and_end_on_the_same_day():
    pi = make_program_increment(start_date=dt.date(2026, 1, 5), end_date=dt.date(2026, 1, 5))
    assert ProgramIncrement.objects.filter(pk=pi.pk).count() == 1


def _sibling(first, id_field):
    """A copy of ``first`` under the same parent with another Linear id."""
    sibling = type(first).objects.get(pk=first.pk)
    sibling.pk = None
    sibling._state.adding = True
    setattr(sibling, id_field, getattr(first, id_field) + "-other")
    sibling.save()
    return sibling


UNIQUE_CASES = [
    (make_program_increment, "pi_id", "organization"),
    (make_pi_feature, "feature_id", "program_increment"),
    (make_pi_objective, "objective_id", "program_increment"),
    (make_pi_risk, "risk_id", "program_increment"),
    (make_feature, "feature_id", "planning_session"),
    (make_story, "story_id", "planning_feature"),
    (make_enabler, "enabler_id", "planning_session"),
]
UNIQUE_IDS = [f"{case[1]}-per-{case[2]}" for case in UNIQUE_CASES]


@pytest.mark.parametrize(("factory", "id_field", "parent_field"), UNIQUE_CASES, ids=UNIQUE_IDS)
def test_database_refuses_a_linear_id_twice_under_one_parent(factory, id_field, parent_field):
    first = factory()
    model = type(first)
    sibling = _sibling(first, id_field)
    with pytest.raises(IntegrityError), transaction.atomic():
        model.objects.filter(pk=sibling.pk).update(**{id_field: getattr(first, id_field)})
    assert model.objects.filter(**{id_field: getattr(first, id_field)}).count() == 1


@pytest.mark.parametrize(("factory", "id_field", "parent_field"), UNIQUE_CASES, ids=UNIQUE_IDS)
def test_same_linear_id_under_another_parent_is_allowed(factory, id_field, parent_field):
    first = factory()
    other = factory(**{id_field: getattr(first, id_field)})
    assert getattr(first, parent_field + "_id") != getattr(other, parent_field + "_id")
    assert type(first).objects.filter(**{id_field: getattr(first, id_field)}).count() == 2


def test_children_are_deleted_with_their_program_increment():
    pi = make_program_increment()
    make_pi_feature(program_increment=pi)
    make_pi_objective(program_increment=pi)
    make_pi_risk(program_increment=pi)
    pi.delete()
    assert (PIFeature.objects.count(), PIObjective.objects.count(), PIRisk.objects.count()) == (0, 0, 0)


def test_session_outputs_are_deleted_with_the_session():
    session = make_planning_session()
    story = make_story(planning_feature=make_feature(planning_session=session))
    make_enabler(planning_session=session)
    session.delete()
    assert not Feature.objects.exists()
    assert not Story.objects.filter(pk=story.pk).exists()
    assert not Enabler.objects.exists()


def test_organization_with_planning_data_cannot_be_deleted():
    from django.db.models import ProtectedError

    organization = make_organization()
    make_planning_session(organization=organization)
    with pytest.raises(ProtectedError):
        organization.delete()
    organization2 = make_organization()
    make_program_increment(organization=organization2)
    with pytest.raises(ProtectedError):
        organization2.delete()


def test_deleting_a_pi_keeps_its_sessions():
    pi = make_program_increment()
    session = make_planning_session(organization=pi.organization, program_increment=pi)
    pi.delete()
    session.refresh_from_db()
    assert session.program_increment_id is None


def test_save_bumps_updated_at_even_with_update_fields_and_keeps_explicit_times_on_insert():
    then = timezone.now() - dt.timedelta(days=400)
    feature = make_feature(created_at=then, updated_at=then)
    assert Feature.objects.values_list("created_at", "updated_at").get(pk=feature.pk) == (then, then)
    feature.title = "Renamed"
    feature.save(update_fields=["title"])
    created_at, updated_at = Feature.objects.values_list("created_at", "updated_at").get(pk=feature.pk)
    assert created_at == then and updated_at > then
    feature.save(update_fields=[])  # Django's "save nothing" stays a no-op
    assert Feature.objects.values_list("updated_at", flat=True).get(pk=feature.pk) == updated_at
