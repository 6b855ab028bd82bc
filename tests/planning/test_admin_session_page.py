"""Issue 21 in the admin: the session page shows progress message, warnings/errors, epics, the id map,
and retries failed sessions (a button on the page, an action in the list)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from planning.models import PlanningSession
from planning.services import save_planning_result
from tests.factories import make_planning_session

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
TOKEN = "lin_oauth_" + "a1B2c3D4" * 5


def _epics() -> list[dict]:
    return [
        {
            "id": "epic-1",
            "title": "Onboarding",
            "epic_id": "LIN-E1",
            "features": [
                {
                    "id": "feature-1",
                    "title": "Sign-up",
                    "feature_id": "LIN-F1",
                    "stories": [{"id": "story-1", "title": "Sign up with SSO", "story_id": "LIN-S1"}],
                    "enablers": [
                        {
                            "id": "enabler-1",
                            "title": "IdP",
                            "enabler_id": "LIN-N1",
                            "enablerType": "infrastructure",
                        }
                    ],
                }
            ],
        }
    ]


def _failed_session() -> PlanningSession:
    session = make_planning_session(status="processing")
    session.set_progress(60, "Creating stories in Linear")
    save_planning_result(session, epics=_epics())
    session.add_warning("Story has no estimate", code="missing_estimate", details={"story": "story-1"}, at=T0)
    session.add_error(f"Linear refused Bearer {TOKEN}", code="linear_auth", at=T0 + dt.timedelta(minutes=1))
    return session


def _rows(html: str, table_class: str) -> list[list[str]]:
    """The body cells of the table with this class, as text."""
    table = re.search(rf'<table class="{table_class}">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert table, f"no table {table_class}"
    return [
        re.findall(r"<td>(.*?)</td>", row, re.S)
        for row in re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)
    ]


def test_the_session_page_shows_messages_epics_and_the_id_map(admin_client):
    session = _failed_session()
    response = admin_client.get(reverse("admin:planning_planningsession_change", args=[session.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Creating stories in Linear" in html
    # Newest first, with level, code, attempt; the token in the error text is redacted.
    messages = _rows(html, "session-messages")
    assert [row[1:5] for row in messages] == [
        ["error (fatal)", "linear_auth", "1", "Linear refused Bearer [REDACTED]"],
        ["warning", "missing_estimate", "1", "Story has no estimate"],
    ]
    assert messages[1][5] == "{&quot;story&quot;: &quot;story-1&quot;}"
    assert TOKEN not in html
    assert _rows(html, "session-epics") == [["LIN-E1", "epic-1", "Onboarding", "1"]]
    assert _rows(html, "session-id-map") == [
        ["epic", "epic-1", "LIN-E1"],
        ["feature", "feature-1", "LIN-F1"],
        ["story", "story-1", "LIN-S1"],
        ["enabler", "enabler-1", "LIN-N1"],
    ]
    retry_url = reverse("admin:planning_planningsession_retry", args=[session.pk])
    assert f'formaction="{retry_url}"' in html and "Retry (attempt 2)" in html
    # Message, progress message and attempt are read-only: no inputs for them.
    assert 'name="progress_message"' not in html and 'name="attempt"' not in html


def test_the_session_page_query_count_does_not_grow_with_messages(admin_client):
    session = _failed_session()
    url = reverse("admin:planning_planningsession_change", args=[session.pk])
    admin_client.get(url)  # warm the login session cache
    with CaptureQueriesContext(connection) as few:
        admin_client.get(url)
    for n in range(30):
        session.add_warning(f"warning {n}", code="w")
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(url)
    assert len(many) == len(few)
    assert len(_rows(response.content.decode(), "session-messages")) == 32


def test_a_session_page_lists_at_most_100_messages(admin_client):
    session = make_planning_session(status="processing")
    for n in range(101):
        session.add_warning(f"w{n}", at=T0 + dt.timedelta(seconds=n))
    html = admin_client.get(
        reverse("admin:planning_planningsession_change", args=[session.pk])
    ).content.decode()
    rows = _rows(html, "session-messages")
    assert len(rows) == 100 and rows[0][4] == "w100" and rows[-1][4] == "w1"
    assert "Only the newest 100 are shown." in html


def test_no_retry_button_unless_failed(admin_client):
    session = make_planning_session(status="processing")
    html = admin_client.get(
        reverse("admin:planning_planningsession_change", args=[session.pk])
    ).content.decode()
    assert "Retry (attempt" not in html


def test_the_retry_button_retries_and_returns_to_the_page(admin_client):
    session = _failed_session()
    url = reverse("admin:planning_planningsession_retry", args=[session.pk])
    response = admin_client.post(url, follow=True)
    assert response.redirect_chain == [
        (reverse("admin:planning_planningsession_change", args=[session.pk]), 302)
    ]
    row = PlanningSession.objects.get(pk=session.pk)
    assert (row.status, row.attempt, row.error, row.progress_message) == ("pending", 2, "", "")
    assert [str(m) for m in response.context["messages"]] == [
        f"Session {session.pk} is pending again (attempt 2)."
    ]
    # The first attempt's messages are still listed, marked with attempt 1.
    assert [r[3] for r in _rows(response.content.decode(), "session-messages")] == ["1", "1"]


def test_retrying_a_session_that_is_not_failed_is_reported_not_done(admin_client):
    session = make_planning_session(status="processing")
    response = admin_client.post(
        reverse("admin:planning_planningsession_retry", args=[session.pk]), follow=True
    )
    assert [str(m) for m in response.context["messages"]] == [
        f"Planning session {session.pk} cannot move from 'processing' to 'pending' (only from 'failed')."
    ]
    assert PlanningSession.objects.get(pk=session.pk).status == "processing"


def test_the_retry_url_refuses_get(admin_client):
    session = make_planning_session(status="failed")
    response = admin_client.get(reverse("admin:planning_planningsession_retry", args=[session.pk]))
    assert response.status_code == 405
    assert PlanningSession.objects.get(pk=session.pk).status == "failed"


def test_the_retry_action_retries_failed_sessions_and_reports_the_others(admin_client):
    failed = make_planning_session(status="failed", error="boom")
    done = make_planning_session(status="completed", progress=100)
    response = admin_client.post(
        reverse("admin:planning_planningsession_changelist"),
        {"action": "retry_sessions", "_selected_action": [failed.pk, done.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert PlanningSession.objects.values_list("status", "attempt").get(pk=failed.pk) == ("pending", 2)
    assert PlanningSession.objects.values_list("status", "attempt").get(pk=done.pk) == ("completed", 1)
    texts = [str(m) for m in response.context["messages"]]
    assert "1 session(s) retried." in texts
    assert any("cannot move from 'completed' to 'pending'" in t for t in texts)


def test_feature_and_enabler_inlines_show_planning_id_and_parent(admin_client):
    session = make_planning_session()
    save_planning_result(session, epics=_epics())
    html = admin_client.get(
        reverse("admin:planning_planningsession_change", args=[session.pk])
    ).content.decode()
    assert re.search(r'field-planning_id">\s*<p>feature-1</p>', html)
    assert re.search(r'field-epic">\s*<p>LIN-E1: Onboarding</p>', html)
    feature_url = reverse("admin:planning_feature_change", args=[session.features.get().pk])
    assert re.search(rf'field-planning_feature">\s*<p><a href="{feature_url}">LIN-F1: Sign-up</a></p>', html)


def test_a_user_who_may_only_view_sessions_cannot_retry(client, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user(username="viewer", password=None, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_planningsession"))
    client.force_login(viewer)
    session = make_planning_session(status="failed", error="boom")
    response = client.post(reverse("admin:planning_planningsession_retry", args=[session.pk]))
    assert response.status_code == 302
    assert PlanningSession.objects.values_list("status", "attempt").get(pk=session.pk) == ("failed", 1)
    # Nor is the button shown to them.
    page = client.get(reverse("admin:planning_planningsession_change", args=[session.pk])).content.decode()
    assert "Retry (attempt" not in page
