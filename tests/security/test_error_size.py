"""Issue 18 item 19: errors are capped when stored; lists and the dashboard show a bounded excerpt."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.validation import ERROR_EXCERPT_LENGTH, MAX_ERROR_LENGTH
from planning.models import PlanningSession
from sync.models import SyncHistory
from tests.factories import make_planning_session

pytestmark = pytest.mark.django_db

#: A long error whose parts are recognisable: its head, and a tail that no excerpt may contain.
LONG_ERROR = "HEAD-of-error " + "x" * (MAX_ERROR_LENGTH - 30) + " TAIL-of-error"


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(
        get_user_model().objects.create_superuser("root", email="r@example.com", password=None)
    )
    return client


def test_sync_history_error_above_the_cap_is_refused_before_writing():
    with pytest.raises(ValidationError, match=f"error is {MAX_ERROR_LENGTH + 1} characters long; at most"):
        SyncHistory.objects.record("page-1", "team-1", success=False, error="e" * (MAX_ERROR_LENGTH + 1))
    assert not SyncHistory.objects.exists()
    entry = SyncHistory.objects.record("page-1", "team-1", success=False, error="e" * MAX_ERROR_LENGTH)
    assert len(SyncHistory.objects.get(pk=entry.pk).error) == MAX_ERROR_LENGTH


def test_session_error_above_the_cap_is_refused_and_the_session_stays():
    session = make_planning_session()
    with pytest.raises(ValidationError, match="error is 20001 characters long"):
        session.mark_failed("e" * (MAX_ERROR_LENGTH + 1))
    session.refresh_from_db()
    assert (session.status, session.error) == (PlanningSession.Status.PENDING, "")
    session.mark_failed("e" * MAX_ERROR_LENGTH)
    session.refresh_from_db()
    assert (session.status, len(session.error)) == (PlanningSession.Status.FAILED, MAX_ERROR_LENGTH)


def test_history_list_reads_and_shows_only_an_excerpt_and_the_entry_page_all(root: Client):
    entry = SyncHistory.objects.record("page-1", "team-1", success=False, error=LONG_ERROR)
    with CaptureQueriesContext(connection) as captured:
        page = root.get(reverse("admin:sync_synchistory_changelist"))
    body = page.content.decode()
    assert "HEAD-of-error" in body and "TAIL-of-error" not in body
    assert len(body) < 60_000  # the page itself, not the 20,000-character error
    listing = [q["sql"] for q in captured.captured_queries if 'FROM "sync_synchistory"' in q["sql"]][-1]
    # The error column is read once, inside the SUBSTR of its head, never whole.
    assert listing.split(" FROM ")[0].count('"sync_synchistory"."error"') == 1
    assert "SUBSTR" in listing.upper()
    detail = root.get(reverse("admin:sync_synchistory_change", args=[entry.pk])).content.decode()
    assert "HEAD-of-error" in detail and "TAIL-of-error" in detail


def test_dashboard_shows_an_excerpt_of_a_long_session_error(root: Client):
    make_planning_session(planning_title="Broken").mark_failed(LONG_ERROR)
    body = root.get(reverse("admin:index")).content.decode()
    assert "HEAD-of-error" in body and "TAIL-of-error" not in body
    assert body.count("x" * (ERROR_EXCERPT_LENGTH + 1)) == 0
