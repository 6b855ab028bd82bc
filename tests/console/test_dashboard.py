"""The dashboard on the admin index: panels, links, permissions and a constant query count."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Organization, User
from console.dashboard import build_dashboard, short_duration
from planning.models import PlanningSession
from sync.models import ConfluencePage, LinearTeam, SyncState
from tests.factories import (
    make_conflict,
    make_confluence_token,
    make_linear_token,
    make_organization,
    make_planning_session,
)

INDEX = "/admin/"


def _panel(html: str, panel_id: str) -> str:
    """The HTML of one dashboard panel (up to the next panel or the end of the dashboard)."""
    start = f'<div class="module console-panel" id="{panel_id}">'
    match = re.search(rf'{start}(.*?)(?=<div class="module console-panel"|</section>)', html, re.S)
    assert match, f"panel {panel_id} not on the page"
    return match.group(1)


def _conflicts(page: str, team: str, n: int, *, resolved: int = 0) -> None:
    for i in range(n + resolved):
        conflict = make_conflict(confluence_page_id=page, linear_team_id=team)
        if i >= n:
            conflict.resolve("linear")


def _sessions(status: str, n: int, **fields) -> list[PlanningSession]:
    sessions = [make_planning_session(**fields) for _ in range(n)]
    for session in sessions:
        if status in ("processing", "completed", "failed"):
            session.mark_in_progress()
        if status == "processing":
            session.set_progress(40)
        if status == "completed":
            session.mark_completed()
        if status == "failed":
            session.mark_failed("Confluence returned 503 Service Unavailable")
    return sessions


def _world(scale: int) -> None:
    """Data for every panel, ``scale`` times over."""
    now = timezone.now()
    for i in range(scale):
        _conflicts(f"page-{i}", f"team-{i}", 2, resolved=1)
        org = make_organization(name=f"Org {i}")
        # The pair belongs to the organization, is named in its directory and its last sync failed (as a
        # worker's release(success=False) leaves it: status, failure count, error, retry).
        SyncState.objects.filter(confluence_page_id=f"page-{i}").update(
            organization=org,
            status="failed",
            failure_count=i + 1,
            last_error=f"Linear returned 503 for team-{i}",
            next_sync_at=now + dt.timedelta(minutes=30, seconds=30),  # "retry in 30 min" for 30 s
        )
        LinearTeam.objects.upsert_many(
            org.linear_id, [{"id": f"team-{i}", "key": f"T{i}", "name": f"Team {i}"}]
        )
        ConfluencePage.objects.upsert_many(
            org.linear_id, [{"id": f"page-{i}", "title": f"Page {i}", "url": f"https://x.example/{i}"}]
        )
        _sessions("processing", 1, organization=org)
        _sessions("failed", 1, organization=org)
        _sessions("completed", 1, organization=org)
        make_linear_token(organization=org, expires_at=now - dt.timedelta(hours=1))
        make_confluence_token(organization=org, expires_at=now + dt.timedelta(hours=3))


@pytest.mark.django_db
def test_conflict_panel_counts_unresolved_per_pair_most_first(admin_client):
    _conflicts("163841", "team-eng", 3, resolved=2)
    _conflicts("163841", "team-data", 1)
    _conflicts("220114", "team-eng", 2)
    html = admin_client.get(INDEX).content.decode()
    panel = _panel(html, "console-conflicts")
    assert '<span class="console-total">6</span>' in panel
    rows = re.findall(
        r'<td class="console-main"><a href="([^"]+)" title="[^"]*">([^<]+)</a></td>\s*'
        r'<td class="console-id" title="([^"]+)">[^<]*</td>\s*'
        r'<td class="console-num"><a href="[^"]+">(\d+)</a></td>',
        panel,
    )
    assert [(page, team, int(n)) for _, page, team, n in rows] == [
        ("163841", "team-eng", 3),
        ("220114", "team-eng", 2),
        ("163841", "team-data", 1),
    ]
    assert rows[0][0] == "/admin/sync/conflict/?confluence_page_id=163841&amp;linear_team_id=team-eng"


@pytest.mark.django_db
def test_conflicts_without_a_pair_are_listed_and_linked(admin_client):
    make_conflict()  # stored without page and team, like the old system's conflicts
    _conflicts("163841", "team-eng", 1)
    pairs = build_dashboard(User.objects.get(username="admin")).conflicts.pairs
    assert [(p.confluence_page_id, p.linear_team_id, p.count) for p in pairs] == [
        ("", "", 1),
        ("163841", "team-eng", 1),
    ]
    panel = _panel(admin_client.get(INDEX).content.decode(), "console-conflicts")
    assert "(no page)</a>" in panel and "(no team)</td>" in panel
    shown = admin_client.get(pairs[0].url).context["cl"].result_list
    assert [(c.confluence_page_id, c.linear_team_id) for c in shown] == [("", "")]


@pytest.mark.django_db
def test_conflict_link_opens_the_filtered_unresolved_list(admin_client):
    _conflicts("163841", "team-eng", 3, resolved=2)
    _conflicts("163841", "team-data", 1)
    url = build_dashboard(User.objects.get(username="admin")).conflicts.pairs[0].url
    response = admin_client.get(url)
    assert response.status_code == 200
    shown = list(response.context["cl"].result_list)
    assert len(shown) == 3
    assert {(c.confluence_page_id, c.linear_team_id, c.is_resolved) for c in shown} == {
        ("163841", "team-eng", False)
    }


@pytest.mark.django_db
def test_session_panel_lists_processing_and_failed_with_links(admin_client):
    org = make_organization(name="Northwind")
    _sessions("processing", 2, organization=org, planning_title="Checkout PI")
    _sessions("failed", 1, organization=org, planning_title="Broken page")
    _sessions("completed", 4, organization=org)
    _sessions("pending", 3, organization=org)
    panel = _panel(admin_client.get(INDEX).content.decode(), "console-sessions")
    assert re.findall(r'<a href="([^"]+)">([^<]+)</a> <span class="console-total">(\d+)</span>', panel) == [
        ("/admin/planning/planningsession/?status__exact=processing", "In progress", "2"),
        ("/admin/planning/planningsession/?status__exact=failed", "Failed", "1"),
    ]
    assert panel.count("Checkout PI</a>") == 2
    assert panel.count("40%</progress>") == 2
    assert "Confluence returned 503 Service Unavailable" in panel
    assert panel.count('<div class="console-sub">Northwind</div>') == 3  # each row names its organization
    response = admin_client.get("/admin/planning/planningsession/?status__exact=failed")
    assert [s.planning_title for s in response.context["cl"].result_list] == ["Broken page"]


@pytest.mark.django_db
def test_token_panel_shows_expired_and_expiring_without_tokens(admin_client):
    now = timezone.now()
    hours = dt.timedelta(hours=1)
    expired = make_linear_token(organization=make_organization(name="Initech"), expires_at=now - 2 * hours)
    make_linear_token(organization=make_organization(name="Globex"), expires_at=now + 5 * hours)
    make_linear_token(organization=make_organization(name="Fine"), expires_at=now + 480 * hours)
    soon = make_confluence_token(organization=make_organization(name="Umbrella"), expires_at=now + 23 * hours)
    html = admin_client.get(INDEX).content.decode()
    panel = _panel(html, "console-tokens")
    assert 'Tokens due <span class="console-total">3</span>' in panel
    counts = re.findall(r'<a href="([^"]+)"><strong>(\d+)</strong> ([^<]+)</a>', panel)
    assert counts == [
        ("/admin/accounts/lineartoken/?state=expired", "1", "Linear token expired"),
        ("/admin/accounts/lineartoken/?state=expiring", "1", "Linear token expiring within 24h"),
        ("/admin/accounts/confluencetoken/?state=expired", "0", "Confluence tokens expired"),
        ("/admin/accounts/confluencetoken/?state=expiring", "1", "Confluence token expiring within 24h"),
    ]
    assert re.findall(r'<td class="console-main"><a href="[^"]+">([^<]+)</a>', panel) == [
        "Initech",
        "Globex",
        "Umbrella",
    ]
    assert "Fine" not in panel
    for token in (expired, soon):
        assert token.access_token not in html and token.refresh_token not in html
    filtered = admin_client.get("/admin/accounts/lineartoken/?state=expired")
    assert [t.pk for t in filtered.context["cl"].result_list] == [expired.pk]


@pytest.mark.django_db
def test_empty_database_shows_calm_panels(admin_client):
    html = admin_client.get(INDEX).content.decode()
    assert "No unresolved conflicts." in _panel(html, "console-conflicts")
    assert "No token expires within 24 hours." in _panel(html, "console-tokens")
    assert _panel(html, "console-sessions").count("None.") == 2


@pytest.mark.django_db
def test_index_query_count_is_constant_as_data_grows(admin_client):
    def index_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(INDEX).status_code == 200
        return len(queries)

    _world(1)
    small = index_queries()
    _world(12)
    large = index_queries()
    assert large == small
    # Session and user, the admin log of the sidebar, and the dashboard's twenty.
    assert small == 23


@pytest.mark.django_db
def test_dashboard_costs_twenty_queries(admin_user, django_assert_num_queries):
    _world(3)
    make_conflict()  # one without a pair: counted apart from the per-pair counters
    # Organizations; conflicts 4, failing syncs 2 (the count and the rows), names 2 (teams, pages);
    # sessions 3; tokens 4; re-authorization 2 (one per token model); resolutions failing to apply 2.
    # Twenty-one before the two failing-pair lists merged: "Failing syncs" (1, a LIMIT + 1 list) and
    # the workers' "Pairs failing to sync" (2) became one panel of 2 queries.
    with django_assert_num_queries(20):
        dashboard = build_dashboard(admin_user)
    assert dashboard.conflicts.total == 7
    assert [(p.page_title, p.team_name, p.organization, p.count) for p in dashboard.conflicts.pairs] == [
        ("Page 0", "Team 0 (T0)", "Org 0", 2),
        ("Page 1", "Team 1 (T1)", "Org 1", 2),
        ("Page 2", "Team 2 (T2)", "Org 2", 2),
        ("", "", "", 1),
    ]
    # Most failures first, named from the directory.
    assert [(r.page_title, r.team_name, r.organization, r.failures) for r in dashboard.failures.rows] == [
        ("Page 2", "Team 2 (T2)", "Org 2", 3),
        ("Page 1", "Team 1 (T1)", "Org 1", 2),
        ("Page 0", "Team 0 (T0)", "Org 0", 1),
    ]
    assert dashboard.failures.count == 3
    assert dashboard.failures.rows[0].error == "Linear returned 503 for team-2"
    assert [(g.status, g.count) for g in dashboard.sessions] == [("processing", 3), ("failed", 3)]
    assert [(c.kind, c.state, c.count) for c in dashboard.tokens.counts] == [
        ("Linear token", "expired", 3),
        ("Linear token", "expiring", 0),
        ("Confluence token", "expired", 0),
        ("Confluence token", "expiring", 3),
    ]
    assert dashboard.tokens.total == 6


def _staff(*perms: str) -> User:
    user = User.objects.create_user("operator", password="pw-operator-123", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
        user.user_permissions.add(permission)
    return user


@pytest.mark.django_db
def test_panels_follow_view_permissions(client):
    _world(1)
    client.force_login(_staff("sync.view_conflict", "accounts.view_confluencetoken"))
    html = client.get(INDEX).content.decode()
    assert 'id="console-conflicts"' in html
    assert 'id="console-sessions"' not in html
    tokens = _panel(html, "console-tokens")
    assert "Confluence token" in tokens and "Linear token" not in tokens


@pytest.mark.django_db
def test_staff_without_permissions_sees_no_dashboard(client):
    _world(1)
    client.force_login(_staff())
    html = client.get(INDEX).content.decode()
    assert 'id="console-dashboard"' not in html


@pytest.mark.django_db
def test_site_header_and_title(admin_client):
    html = admin_client.get(INDEX).content.decode()
    assert '<div id="site-name"><a href="/admin/">Linear Planning Store</a></div>' in html
    assert "<title>Dashboard | Linear Planning Store</title>" in html


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (dt.timedelta(minutes=7, seconds=30), "7 min"),
        (dt.timedelta(hours=4, minutes=57), "4 h 57 min"),
        (dt.timedelta(hours=3), "3 h"),
        (-dt.timedelta(hours=3, minutes=2), "3 h 2 min"),
        (dt.timedelta(days=2, hours=5, minutes=59), "2 d 5 h"),
        (dt.timedelta(days=3), "3 d"),
    ],
)
def test_short_duration(delta, text):
    assert short_duration(delta) == text


@pytest.mark.django_db
def test_dashboard_shows_names_with_ids_on_hover_and_links_to_failed_runs(admin_client):
    _world(1)
    html = admin_client.get(INDEX).content.decode()
    conflicts = _panel(html, "console-conflicts")
    assert (
        '<td class="console-main">'
        '<a href="/admin/sync/conflict/?confluence_page_id=page-0&amp;linear_team_id=team-0" '
        'title="page-0">Page 0</a><div class="console-sub">Org 0</div></td>'
    ) in conflicts
    assert '<td class="console-name" title="team-0">Team 0 (T0)</td>' in conflicts
    failures = _panel(html, "console-failures")
    assert (
        'href="/admin/sync/synchistory/?outcome=failed&amp;confluence_page_id=page-0&amp;linear_team_id=team-0"'
    ) in failures
    assert (
        'title="page-0">Page 0</a><div class="console-sub" title="team-0">Team 0 (T0) · Org 0</div>'
    ) in failures
    state = SyncState.objects.get(confluence_page_id="page-0")
    assert f'<a href="/admin/sync/syncstate/{state.pk}/change/">1 failure</a> · retry in 30 min' in failures
    assert (
        '<td class="console-error console-half" title="Linear returned 503 for team-0">'
        "Linear returned 503 for team-0</td>"
    ) in failures
    assert '<a href="/admin/sync/syncstate/?schedule=failing">Failing syncs</a>' in failures


@pytest.mark.django_db
def test_dashboard_narrows_every_panel_to_one_organization(admin_client, admin_user):
    _world(2)
    make_conflict()  # no pair, no organization: left out when one organization is chosen
    org = Organization.objects.get(name="Org 1")
    dashboard = build_dashboard(admin_user, organization=org.pk)
    assert [(p.page_title, p.count) for p in dashboard.conflicts.pairs] == [("Page 1", 2)]
    assert dashboard.conflicts.total == 2
    assert [r.organization for r in dashboard.failures.rows] == ["Org 1"]
    assert dashboard.failures.count == 1
    assert dashboard.failures.url == f"/admin/sync/syncstate/?schedule=failing&organization={org.pk}"
    assert [(g.status, g.count) for g in dashboard.sessions] == [("processing", 1), ("failed", 1)]
    assert {row.organization for row in dashboard.tokens.rows} == {"Org 1"}
    assert dashboard.organization == "Org 1"

    html = admin_client.get(INDEX, {"organization": org.pk}).content.decode()
    nav = re.search(r'<nav id="console-organizations".*?</nav>', html, re.S).group(0)
    assert f'<a href="/admin/?organization={org.pk}" class="console-selected" aria-current="true"' in nav
    assert '<a href="/admin/">All organizations</a>' in nav
    assert "Page 0" not in _panel(html, "console-conflicts")
    # A tampered value is ignored: every organization.
    assert build_dashboard(admin_user).conflicts.total == 5
    assert admin_client.get(INDEX, {"organization": "x' OR 1"}).status_code == 200


# --- tokens needing re-authorization ---------------------------------------------------------------


@pytest.mark.django_db
def test_reauthorization_panel_lists_marked_tokens_newest_first(admin_client):
    at = timezone.now()
    older = make_linear_token(reauthorization_required_at=at - dt.timedelta(days=2))
    newer = make_confluence_token(reauthorization_required_at=at - dt.timedelta(hours=1))
    make_linear_token()  # fine: not listed
    dashboard = build_dashboard(User.objects.get(username="admin"))
    rows = dashboard.reauthorization.rows
    assert [(row.kind, row.organization, row.since) for row in rows] == [
        ("Confluence token", newer.organization.name, newer.reauthorization_required_at),
        ("Linear token", older.organization.name, older.reauthorization_required_at),
    ]
    html = _panel(admin_client.get(INDEX).content.decode(), "console-reauthorization")
    assert f"/admin/accounts/lineartoken/{older.pk}/change/" in html
    assert "/admin/accounts/lineartoken/?reauthorization=required" in html
    assert older.access_token not in html and newer.refresh_token not in html


@pytest.mark.django_db
def test_reauthorization_panel_says_none_when_no_token_is_marked(admin_client):
    make_linear_token()
    html = _panel(admin_client.get(INDEX).content.decode(), "console-reauthorization")
    assert "None: every provider accepted its refresh token." in html


@pytest.mark.django_db
def test_reauthorization_panel_needs_the_token_view_permission(client):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_conflict"))
    make_linear_token(reauthorization_required_at=timezone.now())
    assert build_dashboard(user).reauthorization is None
