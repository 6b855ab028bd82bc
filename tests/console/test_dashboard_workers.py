"""Failing pairs (the "Failing syncs" panel: failure count, retry, error, names) and the agent workers'
resolutions failing to apply (the "Resolutions failing to apply" panel)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import OrganizationMembership, User
from accounts.validation import ERROR_EXCERPT_LENGTH
from console.dashboard import build_dashboard
from sync.models import Conflict, SyncState, leases
from tests.factories import make_conflict, make_organization, make_sync_state

pytestmark = pytest.mark.django_db

INDEX = "/admin/"
TOKEN = "lin_api_abcdefghijklmnop0123"


def _panel(html: str, panel_id: str) -> str:
    """The HTML of one dashboard panel (up to the next panel or the end of the dashboard)."""
    start = f'<div class="module console-panel" id="{panel_id}">'
    match = re.search(rf'{start}(.*?)(?=<div class="module console-panel"|</section>)', html, re.S)
    assert match, f"panel {panel_id} not on the page"
    return match.group(1)


def _failing_world(now: dt.datetime) -> None:
    """Two failing pairs (3 and 1 failures), a healthy one; one resolution failing, one applied."""
    for i in range(3):
        make_sync_state(confluence_page_id=f"page-{i}", linear_team_id="team-1")
    SyncState.objects.filter(confluence_page_id="page-0").update(failure_count=2)
    worst, other, healthy = SyncState.objects.claim_due(worker="w1", at=now)
    worst.release(worker="w1", success=False, error=f"Linear 401 for {TOKEN}", at=now)
    earlier = now - dt.timedelta(seconds=1)
    other.release(worker="w1", success=False, error="timeout", next_sync_at=earlier, at=now)
    healthy.release(worker="w1", success=True, at=now)
    for item in ("bad", "fine"):
        conflict = make_conflict(
            item_id=item, organization_id="org-1", confluence_page_id="p", linear_team_id="t"
        )
        conflict.resolve("linear")
    for claimed in Conflict.objects.claim_resolutions(worker="w1", at=now):
        if claimed.pk == "conflict-bad":
            claimed.mark_apply_failed(worker="w1", error="Confluence 409", at=now)
        else:
            claimed.mark_applied(worker="w1", at=now)


@override_settings(SYNC_RETRY_BASE_SECONDS=30, APPLY_RETRY_BASE_SECONDS=600)
def test_failing_pairs_and_resolutions_are_listed_with_links(admin_client, monkeypatch):
    monkeypatch.setattr(leases, "jitter_fraction", lambda: 0.05)  # 120 s -> 126 s, 600 s -> 630 s
    _failing_world(timezone.now())

    html = admin_client.get(INDEX).content.decode()
    pairs = _panel(html, "console-failures")
    resolutions = _panel(html, "console-resolutions")

    assert 'Failing syncs</a> <span class="console-total console-bad">2</span>' in pairs
    assert 'Resolutions failing to apply</a> <span class="console-total console-bad">1</span>' in resolutions
    assert pairs.index("page-0") < pairs.index("page-1")  # most failures first
    assert "page-2" not in pairs
    assert re.search(r'<a href="/admin/sync/syncstate/\d+/change/">3 failures</a> · retry in 2 min', pairs)
    assert re.search(r'<a href="/admin/sync/syncstate/\d+/change/">1 failure</a> · retry due now', pairs)
    assert TOKEN not in html and "Linear 401 for [REDACTED]" in pairs
    assert (
        'href="/admin/sync/synchistory/?outcome=failed&amp;confluence_page_id=page-0&amp;linear_team_id=team-1"'
        in pairs
    )
    assert 'href="/admin/sync/syncstate/?schedule=failing"' in pairs
    assert "conflict-bad" in resolutions and "conflict-fine" not in resolutions
    assert "1 attempt · retry in 10 min" in resolutions and "Confluence 409" in resolutions
    assert 'href="/admin/sync/conflict/?outbox=failing&amp;status=resolved"' in resolutions
    # The old "Agent workers" panel and its duplicate list of pairs are gone.
    assert 'id="console-workers"' not in html and "Pairs failing to sync" not in html


def test_panels_say_when_nothing_fails(admin_client):
    html = admin_client.get(INDEX).content.decode()
    assert "Every pair synced at its last attempt." in _panel(html, "console-failures")
    assert "No resolution is failing to apply." in _panel(html, "console-resolutions")


def test_failure_panel_costs_two_queries_and_workers_panel_two(admin_user, django_assert_num_queries):
    now = timezone.now()
    _failing_world(now)
    from console.dashboard import failure_panel, workers_panel

    with django_assert_num_queries(2):  # the count and the rows
        failures = failure_panel(user=admin_user, now=now)
    assert (failures.count, [r.confluence_page_id for r in failures.rows]) == (2, ["page-0", "page-1"])
    assert [(r.failures, r.retry) for r in failures.rows][1] == (1, "due now")
    with django_assert_num_queries(2):
        panel = workers_panel(admin_user, now=now)
    assert (panel.resolutions_total, [r.conflict_id for r in panel.resolutions]) == (1, ["conflict-bad"])
    assert panel.resolutions[0].attempts == 1


def test_failure_panel_reads_only_the_head_of_a_long_error(admin_user):
    """A 4,000-character error is never loaded whole: the query reads its head, the row an excerpt."""
    now = timezone.now()
    state = make_sync_state(confluence_page_id="page-long", linear_team_id="team-1")
    (claimed,) = SyncState.objects.claim_due(worker="w1", at=now)
    long_error = f"Linear 500 for {TOKEN} " + "x" * 5000
    claimed.release(worker="w1", success=False, error=long_error, at=now)
    assert len(SyncState.objects.get(pk=state.pk).last_error) == 4000
    from console.dashboard import failure_panel

    with CaptureQueriesContext(connection) as queries:
        (row,) = failure_panel(user=admin_user, now=now).rows
    assert "SUBSTR" in queries[0]["sql"].upper() or "SUBSTRING" in queries[0]["sql"].upper()
    assert len(row.error) == ERROR_EXCERPT_LENGTH and row.error.endswith("…")
    assert row.error.startswith("Linear 500 for [REDACTED] xxx") and TOKEN not in row.error


def test_a_pair_marked_failed_without_a_failure_is_not_listed_but_a_retried_one_is(admin_user):
    """The selection is ``failure_count`` > 0: a pair being retried (claimed: status running) still
    fails and stays listed; a status set by hand without a recorded failure has nothing to show."""
    now = timezone.now()
    make_sync_state(confluence_page_id="page-retry", linear_team_id="team-1")
    (claimed,) = SyncState.objects.claim_due(worker="w1", at=now)
    claimed.release(worker="w1", success=False, error="timeout", next_sync_at=now, at=now)
    SyncState.objects.claim_due(worker="w2", at=now)  # the retry: status running, still failing
    SyncState.objects.set_status("page-hand", "team-1", "failed")
    from console.dashboard import failure_panel

    panel = failure_panel(user=admin_user, now=now)
    assert [(r.confluence_page_id, r.failures) for r in panel.rows] == [("page-retry", 1)]
    assert SyncState.objects.get(confluence_page_id="page-retry").status == "running"
    assert panel.count == 1


def _staff(username: str, *perms: str) -> User:
    user = User.objects.create_user(username, password="pw-operator-123", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
        user.user_permissions.add(permission)
    return user


def test_panels_follow_view_permissions():
    _failing_world(timezone.now())
    pairs_only = build_dashboard(_staff("pairs", "sync.view_syncstate"))
    assert (pairs_only.failures.count, pairs_only.workers) == (2, None)
    resolutions_only = build_dashboard(_staff("resolutions", "sync.view_conflict"))
    assert (resolutions_only.failures, resolutions_only.workers.resolutions_total) == (None, 1)
    nobody = build_dashboard(_staff("nobody"))
    assert (nobody.failures, nobody.workers) == (None, None)


def test_failing_pairs_are_scoped_to_the_users_organizations(client):
    """A staff member of one organization sees, counts and is linked to its failing pairs only."""
    now = timezone.now()
    alpha, bravo = make_organization(name="Alpha"), make_organization(name="Bravo")
    for org in (alpha, bravo):
        make_sync_state(organization=org, confluence_page_id=f"page-{org.name}", linear_team_id="team-1")
    for claimed in SyncState.objects.claim_due(worker="w1", at=now):
        claimed.release(worker="w1", success=False, error=f"{claimed.confluence_page_id} broke", at=now)
    user = _staff("alpha-operator", "sync.view_syncstate")
    OrganizationMembership.objects.create(user=user, organization=alpha)
    user = User.objects.get(pk=user.pk)

    dashboard = build_dashboard(user, now=now)
    assert (dashboard.failures.count, [r.organization for r in dashboard.failures.rows]) == (1, ["Alpha"])
    # Narrowed to another organization: nothing, not bravo's pair.
    assert build_dashboard(user, now=now, organization=bravo.pk).failures.count == 0
    client.force_login(user)
    html = client.get(INDEX).content.decode()
    assert "page-Alpha broke" in html and "page-Bravo" not in html
    # Every organization narrows the same way for a user who sees all of them.
    everyone = build_dashboard(_staff("all", "sync.view_syncstate"), now=now, organization=bravo.pk)
    rows = [(r.confluence_page_id, r.error) for r in everyone.failures.rows]
    assert rows == [("page-Bravo", "page-Bravo broke")]
