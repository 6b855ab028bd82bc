"""`manage.py seed_demo`: a realistic demo world, written once."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count, Q

from accounts.models import ConfluenceToken, LinearToken, Organization, TokenStatus
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
from sync.models import (
    Conflict,
    ConflictResolution,
    ConfluencePage,
    LinearIssueCache,
    LinearTeam,
    SyncHistory,
    SyncState,
)

MODELS = [
    Organization,
    LinearToken,
    ConfluenceToken,
    ProgramIncrement,
    PIFeature,
    PIObjective,
    PIRisk,
    PlanningSession,
    Feature,
    Story,
    Enabler,
    Conflict,
    ConflictResolution,
    SyncState,
    SyncHistory,
    LinearIssueCache,
    LinearTeam,
    ConfluencePage,
]

EXPECTED_COUNTS = {
    "Organization": 3,
    "LinearToken": 3,
    "ConfluenceToken": 3,
    "ProgramIncrement": 9,
    "PIFeature": 12,
    "PIObjective": 9,
    "PIRisk": 9,
    "PlanningSession": 12,
    "Feature": 12,
    "Story": 24,
    "Enabler": 15,
    "Conflict": 23,
    "ConflictResolution": 11,
    "SyncState": 7,
    "SyncHistory": 42,
    "LinearIssueCache": 10,
    "LinearTeam": 5,
    "ConfluencePage": 4,
}


@pytest.fixture(autouse=True)
def debug_on(settings):
    """As under `make run` (the test runner turns DEBUG off)."""
    settings.DEBUG = True


def counts() -> dict[str, int]:
    return {model.__name__: model._default_manager.count() for model in MODELS}


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_first_run_writes_the_whole_world():
    assert seed() == (
        "Demo data loaded: Northwind Traders (demo), Globex Logistics (demo), Initech Payments (demo).\n"
    )
    assert counts() == EXPECTED_COUNTS


@pytest.mark.django_db
def test_second_run_adds_nothing_and_is_cheap(django_assert_max_num_queries):
    seed()
    before = counts()
    out = StringIO()
    with django_assert_max_num_queries(1):
        call_command("seed_demo", stdout=out)
    assert out.getvalue() == "Demo data already present; nothing to do.\n"
    assert counts() == before == EXPECTED_COUNTS


@pytest.mark.django_db
def test_sessions_cover_every_status_with_their_results():
    seed()
    by_status = dict(PlanningSession.objects.values_list("status").annotate(n=Count("id")).order_by("status"))
    assert by_status == {"completed": 3, "failed": 3, "pending": 3, "processing": 3}
    completed = PlanningSession.objects.completed().first()
    assert completed.progress == 100
    assert completed.features.count() == 3
    assert Story.objects.filter(planning_feature__planning_session=completed).count() == 7
    assert sorted(completed.enablers.values_list("enabler_type", flat=True)) == [
        "architecture",
        "compliance",
        "exploration",
        "infrastructure",
        "technical_debt",
    ]
    assert list(PlanningSession.objects.in_progress().values_list("progress", flat=True)) == [65, 65, 65]
    failed = PlanningSession.objects.failed().first()
    assert failed.error.startswith("Confluence returned 404 for page ")
    # Issue 21: a progress message, and the failed run's warning and error as its messages.
    assert set(PlanningSession.objects.in_progress().values_list("progress_message", flat=True)) == {
        "Creating stories in Linear"
    }
    assert [(m.level, m.code, m.fatal) for m in failed.messages.newest_first()] == [
        ("error", "", True), ("warning", "missing_heading", False),
    ]


@pytest.mark.django_db
def test_tokens_are_fake_encrypted_and_in_every_expiry_state():
    seed()
    statuses = sorted(t.status() for t in [*LinearToken.objects.all(), *ConfluenceToken.objects.all()])
    assert statuses == sorted(
        [TokenStatus.VALID, TokenStatus.EXPIRING, TokenStatus.EXPIRED]
        + [TokenStatus.VALID, TokenStatus.EXPIRING, TokenStatus.VALID]
    )
    northwind = Organization.objects.get(name="Northwind Traders (demo)")
    token = LinearToken.objects.for_organization(northwind.linear_id)
    assert token.access_token == "lin_oauth_DEMO_northwind_not_a_real_token"
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token FROM accounts_lineartoken")
        stored = [row[0] if isinstance(row[0], str) else bytes(row[0]).decode() for row in cursor.fetchall()]
    assert all("DEMO" not in value and "lin_oauth" not in value for value in stored)


@pytest.mark.django_db
def test_conflicts_are_realistic_and_counts_consistent():
    seed()
    assert Conflict.objects.unresolved().count() == 12
    assert dict(
        Conflict.objects.resolved().values_list("resolution_strategy").annotate(n=Count("id")).order_by()
    ) == {"linear": 7, "manual": 4}
    story = Conflict.objects.filter(item_type="story").first()
    assert story.linear_change["source"] == "linear"
    assert story.confluence_change["source"] == "confluence"
    assert story.linear_change["itemId"] == story.confluence_change["itemId"] == story.item_id
    assert story.pk == f"conflict-{story.item_id}"
    assert story.differing_field_count == 5
    assert story.linear_change["itemData"]["assignee"]["name"] == "Zoë Åkesson"
    assert sorted(Conflict.objects.values_list("item_type", flat=True).distinct()) == [
        "enabler",
        "epic",
        "feature",
        "story",
    ]
    # The sync app's per-pair counter agrees with the conflicts.
    for state in SyncState.objects.all():
        unresolved = Conflict.objects.unresolved(state.confluence_page_id, state.linear_team_id).count()
        assert state.conflict_count == unresolved
    assert SyncState.objects.filter(status="failed").count() == 3
    assert SyncHistory.objects.filter(success=False).count() == 8
    assert not SyncHistory.objects.filter(Q(success=False) & Q(error="")).exists()


@pytest.mark.django_db
def test_refuses_with_debug_off(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="with DEBUG off it needs --allow-production"):
        call_command("seed_demo", stdout=StringIO())
    assert Organization.objects.count() == 0
    call_command("seed_demo", "--allow-production", stdout=StringIO())
    assert Organization.objects.count() == 3


@pytest.mark.django_db
def test_the_directory_names_every_synced_team_and_page_and_items_carry_titles_and_links():
    seed()
    for state in SyncState.objects.select_related("organization"):
        team = LinearTeam.objects.get(organization=state.organization, linear_team_id=state.linear_team_id)
        page = ConfluencePage.objects.get(
            organization=state.organization, confluence_page_id=state.confluence_page_id
        )
        assert team.name and team.key and not team.name.startswith(state.linear_team_id)
        assert page.url.startswith("https://") and f"/pages/{state.confluence_page_id}/" in page.url
    payments = LinearTeam.objects.get(key="PAY")
    assert payments.name == "Payments"
    assert payments.organization.name == "Northwind Traders (demo)"
    for conflict in Conflict.objects.all():
        data = conflict.linear_change["itemData"]
        assert data["title"] and data["identifier"].split("-")[0] in {"NW", "PAY", "ROUTE", "WH", "CORE"}
        assert data["url"] == f"https://linear.app/{data['url'].split('/')[3]}/issue/{data['identifier']}"
    assert LinearIssueCache.objects.filter(issue_data__url__startswith="https://linear.app/").count() == 10
