"""The planning admin: pages answer 200, show what they should, and use a constant number of queries."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from planning.models import PlanningSession
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


def _sessions(n: int) -> list[PlanningSession]:
    """``n`` sessions spread over 3 organizations, each with a PI, features, stories and an enabler."""
    organizations = [make_organization(name=f"Org {i}") for i in range(3)]
    now = timezone.now()
    sessions = []
    for i in range(n):
        # One PI per session, so that the PI changelist and the PI filter grow with n too.
        pi = make_program_increment(organization=organizations[i % 3])
        session = make_planning_session(
            organization=organizations[i % 3],
            program_increment=pi,
            planning_title=f"Planning {i}",
            created_at=now - dt.timedelta(minutes=i),
            status="processing",
            progress=i % 101,
        )
        feature = make_feature(planning_session=session, feature_id=f"F-{i}")
        make_story(planning_feature=feature, story_id=f"S-{i}")
        make_enabler(planning_session=session, enabler_id=f"E-{i}")
        sessions.append(session)
    return sessions


def _count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


CHANGELISTS = [
    "admin:planning_planningsession_changelist",
    "admin:planning_feature_changelist",
    "admin:planning_enabler_changelist",
    "admin:planning_programincrement_changelist",
]


@pytest.mark.parametrize("name", CHANGELISTS)
def test_changelist_query_count_does_not_grow_with_rows(admin_client, name):
    url = reverse(name)
    _sessions(5)
    with_5 = _count_queries(admin_client, url)
    _sessions(45)
    with_50 = _count_queries(admin_client, url)
    assert with_5 == with_50


def test_session_changelist_query_count(admin_client, django_assert_num_queries):
    _sessions(50)
    admin_client.get(reverse("admin:planning_planningsession_changelist"))  # warm the session cache
    # session + user, COUNT of the filtered page, the page itself (organization and PI joined),
    # organization and PI filter choices.
    with django_assert_num_queries(6):
        response = admin_client.get(reverse("admin:planning_planningsession_changelist"))
    assert response.status_code == 200


def test_session_changelist_shows_columns_newest_first_with_a_progress_bar(admin_client):
    sessions = _sessions(3)
    sessions[1].progress = 40
    PlanningSession.objects.filter(pk=sessions[1].pk).update(progress=40)
    response = admin_client.get(reverse("admin:planning_planningsession_changelist"))
    html = response.content.decode()
    titles = re.findall(r">(Planning \d+)</a>", html)
    assert titles == ["Planning 0", "Planning 1", "Planning 2"]
    assert '<progress value="40" max="100"' in html
    assert "Org 1" in html and sessions[1].program_increment.pi_id in html
    # The console's one date format, with the time zone.
    assert re.search(r">\d{4}-\d\d-\d\d \d\d:\d\d UTC<", html)
    assert "Processing" in html
    # No full COUNT(*): the "show all" total is not computed on this big table.
    assert response.context["cl"].show_full_result_count is False


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("Planning 3", ["Planning 3"]),
        ("F-4", ["Planning 4"]),
        ("S-2", ["Planning 2"]),
        ("E-1", ["Planning 1"]),
        ("pages/1", ["Planning 0", "Planning 1", "Planning 2", "Planning 3", "Planning 4"]),
        ("EPIC-9", ["Planning 0"]),
        ("nothing-like-this", []),
    ],
)
def test_session_search_by_title_url_epic_and_linear_ids(admin_client, term, expected):
    sessions = _sessions(5)
    PlanningSession.objects.filter(pk=sessions[0].pk).update(epic_id="EPIC-9")
    # A session with many matching rows is still listed once.
    make_feature(planning_session=sessions[4], feature_id="F-44")
    make_story(planning_feature=sessions[4].features.get(feature_id="F-4"), story_id="S-44")
    response = admin_client.get(reverse("admin:planning_planningsession_changelist"), {"q": term})
    assert response.status_code == 200
    shown = [s.planning_title for s in response.context["cl"].result_list]
    assert sorted(shown) == sorted(expected)


def test_session_filters(admin_client):
    sessions = _sessions(6)
    PlanningSession.objects.filter(pk=sessions[0].pk).update(status="failed", error="boom")
    url = reverse("admin:planning_planningsession_changelist")
    response = admin_client.get(url, {"status__exact": "failed"})
    assert [s.pk for s in response.context["cl"].result_list] == [sessions[0].pk]
    response = admin_client.get(url, {"organization__id__exact": sessions[1].organization_id})
    assert [s.pk for s in response.context["cl"].result_list] == [sessions[1].pk, sessions[4].pk]
    response = admin_client.get(url, {"program_increment__id__exact": sessions[2].program_increment_id})
    assert [s.pk for s in response.context["cl"].result_list] == [sessions[2].pk]


def test_session_change_page_shows_features_and_enablers_inline(admin_client, django_assert_max_num_queries):
    session = _sessions(1)[0]
    for n in range(20):
        feature = make_feature(planning_session=session, feature_id=f"X-{n}", title=f"Extra {n}")
        make_story(planning_feature=feature)
        make_story(planning_feature=feature)
    url = reverse("admin:planning_planningsession_change", args=[session.pk])
    admin_client.get(url)  # warm the login session cache
    with CaptureQueriesContext(connection) as few:
        admin_client.get(url)
    for n in range(20, 40):
        make_feature(planning_session=session, feature_id=f"X-{n}")
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(url)
    assert response.status_code == 200
    assert len(many) == len(few)
    html = response.content.decode()
    assert 'name="features-0-feature_id"' in html and 'name="enablers-0-enabler_id"' in html
    assert "Extra 19" in html
    # The feature inline links to the feature's page, where its stories are inline.
    feature = session.features.get(feature_id="X-3")
    assert reverse("admin:planning_feature_change", args=[feature.pk]) in html
    # Status and progress are read-only: they move only through the transitions.
    assert 'name="status"' not in html and 'name="progress"' not in html


def test_feature_change_page_shows_its_stories_inline(admin_client):
    feature = make_feature(title="Checkout")
    make_story(planning_feature=feature, story_id="S-A", title="Pay by card")
    make_story(planning_feature=feature, story_id="S-B", title="Pay by invoice")
    url = reverse("admin:planning_feature_change", args=[feature.pk])
    admin_client.get(url)  # warm the login session cache
    few = _count_queries(admin_client, url)
    for n in range(20):
        make_story(planning_feature=feature, story_id=f"S-{n}", title=f"Extra {n}")
    assert _count_queries(admin_client, url) == few  # no query per inline story
    html = admin_client.get(url).content.decode()
    assert 'value="Pay by card"' in html and 'value="Pay by invoice"' in html and 'value="Extra 19"' in html


def test_feature_changelist_counts_stories(admin_client):
    feature = make_feature(feature_id="F-COUNT")
    for _ in range(3):
        make_story(planning_feature=feature)
    make_feature(feature_id="F-NONE")
    response = admin_client.get(reverse("admin:planning_feature_changelist"))
    counts = {f.feature_id: f.num_stories for f in response.context["cl"].result_list}
    assert counts == {"F-COUNT": 3, "F-NONE": 0}


def test_editing_a_feature_inline_saves_it(admin_client):
    session = make_planning_session()
    feature = make_feature(planning_session=session, feature_id="F-1", title="Old")
    url = reverse("admin:planning_planningsession_change", args=[session.pk])
    data = {
        "organization": session.organization_id,
        "program_increment": "",
        "planning_title": session.planning_title,
        "confluence_page_url": session.confluence_page_url,
        "confluence_document_id": "",
        "epic_id": "",
        "features-TOTAL_FORMS": "1",
        "features-INITIAL_FORMS": "1",
        "features-MIN_NUM_FORMS": "0",
        "features-MAX_NUM_FORMS": "1000",
        "features-0-id": feature.pk,
        "features-0-planning_session": session.pk,
        "features-0-feature_id": "F-1",
        "features-0-title": "New",
        "features-0-description": "",
        "enablers-TOTAL_FORMS": "0",
        "enablers-INITIAL_FORMS": "0",
        "enablers-MIN_NUM_FORMS": "0",
        "enablers-MAX_NUM_FORMS": "1000",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    feature.refresh_from_db()
    assert feature.title == "New"
    assert feature.updated_at > feature.created_at


def test_mark_failed_action_confirms_then_uses_the_transition(admin_client):
    pending = make_planning_session(planning_title="Q1 planning")
    done = make_planning_session(planning_title="Q4 planning", status="completed", progress=100)
    url = reverse("admin:planning_planningsession_changelist")
    data = {"action": "mark_failed", "_selected_action": [pending.pk, done.pk]}
    confirmation = admin_client.post(url, data)
    assert confirmation.status_code == 200
    page = confirmation.content.decode()
    assert "Will be marked as failed (1)" in page and "Left alone (1)" in page
    assert "Q4 planning — already completed" in page
    pending.refresh_from_db()
    assert pending.status == "pending"  # nothing before the confirmation
    response = admin_client.post(url, {**data, "post": "yes", "reason": "  stuck   on page 3 "}, follow=True)
    assert response.status_code == 200
    pending.refresh_from_db()
    done.refresh_from_db()
    assert (pending.status, done.status) == ("failed", "completed")
    assert pending.error == "Marked as failed in the admin by planner: stuck on page 3"
    texts = [str(m) for m in response.context["messages"]]
    assert texts == [
        "Marked 1 session as failed: “Q1 planning”.",
        "Left alone: “Q4 planning” (already completed: only pending or processing sessions can be marked "
        "as failed).",
    ]


def test_mark_failed_needs_the_change_permission(client):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    viewer = get_user_model().objects.create_user("viewer", password=None, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_planningsession"))
    client.force_login(viewer)
    pending = make_planning_session()
    client.post(
        reverse("admin:planning_planningsession_changelist"),
        {"action": "mark_failed", "_selected_action": [pending.pk], "post": "yes"},
    )
    pending.refresh_from_db()
    assert pending.status == "pending"


def test_program_increment_change_page_shows_children_inline(admin_client):
    pi = make_program_increment()
    make_pi_feature(program_increment=pi, feature_id="PF-1")
    make_pi_objective(program_increment=pi, objective_id="OBJ-1")
    make_pi_risk(program_increment=pi, risk_id="RISK-1")
    url = reverse("admin:planning_programincrement_change", args=[pi.pk])
    admin_client.get(url)  # warm the login session cache
    few = _count_queries(admin_client, url)
    for n in range(2, 22):
        make_pi_feature(program_increment=pi, feature_id=f"PF-{n}")
        make_pi_objective(program_increment=pi, objective_id=f"OBJ-{n}")
        make_pi_risk(program_increment=pi, risk_id=f"RISK-{n}")
    assert _count_queries(admin_client, url) == few  # no query per inline row
    html = admin_client.get(url).content.decode()
    for value in ("PF-1", "OBJ-1", "RISK-1", "PF-21", "OBJ-21", "RISK-21"):
        assert f'value="{value}"' in html


@pytest.mark.parametrize(
    "name",
    [
        "admin:planning_planningsession_add",
        "admin:planning_programincrement_add",
        "admin:planning_feature_add",
        "admin:planning_enabler_add",
    ],
)
def test_add_pages_answer(admin_client, name):
    assert admin_client.get(reverse(name)).status_code == 200


def test_a_session_added_in_the_admin_starts_pending_whatever_is_posted(admin_client):
    organization = make_organization()
    new = PlanningSession(
        organization=organization,
        planning_title="Added",
        confluence_page_url="https://acme.atlassian.net/wiki/x",
    )
    data = _session_form(new, [])
    data.update({"status": "completed", "progress": "100", "error": "posted"})  # read-only: ignored
    response = admin_client.post(reverse("admin:planning_planningsession_add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    session = PlanningSession.objects.get(planning_title="Added")
    assert session.organization == organization
    assert (session.status, session.progress, session.error) == ("pending", 0, "")


def test_autocomplete_for_program_increments_answers(admin_client):
    pi = make_program_increment(pi_id="PI-2026.1")
    response = admin_client.get(
        reverse("admin:autocomplete"),
        {
            "term": "2026",
            "app_label": "planning",
            "model_name": "planningsession",
            "field_name": "program_increment",
        },
    )
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [str(pi.pk)]


def _session_form(session, features):
    data = {
        "organization": session.organization_id,
        "program_increment": session.program_increment_id or "",
        "planning_title": session.planning_title,
        "confluence_page_url": session.confluence_page_url,
        "confluence_document_id": "",
        "epic_id": "",
        "features-TOTAL_FORMS": str(len(features)),
        "features-INITIAL_FORMS": "0",
        "features-MIN_NUM_FORMS": "0",
        "features-MAX_NUM_FORMS": "1000",
        "enablers-TOTAL_FORMS": "0",
        "enablers-INITIAL_FORMS": "0",
        "enablers-MIN_NUM_FORMS": "0",
        "enablers-MAX_NUM_FORMS": "1000",
    }
    for i, (feature_id, title) in enumerate(features):
        data.update(
            {
                f"features-{i}-feature_id": feature_id,
                f"features-{i}-title": title,
                f"features-{i}-description": "",
                f"features-{i}-planning_session": session.pk,
            }
        )
    return data


def test_a_duplicate_feature_id_inline_is_a_form_error_not_a_crash(admin_client):
    session = make_planning_session()
    url = reverse("admin:planning_planningsession_change", args=[session.pk])
    response = admin_client.post(url, _session_form(session, [("F-1", "One"), ("F-1", "Two")]))
    assert response.status_code == 200
    assert "Please correct the duplicate data for feature_id" in response.content.decode()
    assert not session.features.exists()


def test_an_inline_feature_id_taken_by_a_stored_feature_is_a_form_error(admin_client):
    session = make_planning_session()
    make_feature(planning_session=session, feature_id="F-1", title="Stored")
    url = reverse("admin:planning_planningsession_change", args=[session.pk])
    # A form that did not load the stored row (a second admin tab, say) adds F-1 again.
    response = admin_client.post(url, _session_form(session, [("F-1", "Again")]))
    assert response.status_code == 200
    assert "Linear feature id &#x27;F-1&#x27; is already used here." in (response.content.decode())
    assert list(session.features.values_list("title", flat=True)) == ["Stored"]


def test_a_program_increment_of_another_organization_is_refused_in_the_form(admin_client):
    session = make_planning_session()
    foreign_pi = make_program_increment()
    data = _session_form(session, [])
    data["program_increment"] = foreign_pi.pk
    url = reverse("admin:planning_planningsession_change", args=[session.pk])
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "This program increment belongs to another organization." in response.content.decode()
    session.refresh_from_db()
    assert session.program_increment_id is None


def test_a_story_id_taken_by_a_stored_story_is_a_form_error_on_the_feature_page(admin_client):
    feature = make_feature(feature_id="F-1", title="Checkout")
    make_story(planning_feature=feature, story_id="S-1", title="Stored")
    data = {
        "planning_session": feature.planning_session_id,
        "feature_id": "F-1",
        "title": "Checkout",
        "description": "",
        "stories-TOTAL_FORMS": "1",
        "stories-INITIAL_FORMS": "0",
        "stories-MIN_NUM_FORMS": "0",
        "stories-MAX_NUM_FORMS": "1000",
        "stories-0-story_id": "S-1",
        "stories-0-title": "Again",
        "stories-0-description": "",
        "stories-0-planning_feature": feature.pk,
    }
    response = admin_client.post(reverse("admin:planning_feature_change", args=[feature.pk]), data)
    assert response.status_code == 200
    assert "Linear story id &#x27;S-1&#x27; is already used here." in response.content.decode()
    assert list(feature.stories.values_list("title", flat=True)) == ["Stored"]
