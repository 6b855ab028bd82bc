"""The dashboard's agent workers panel: pairs failing to sync and resolutions failing to apply."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import Permission
from django.test import override_settings
from django.utils import timezone

from accounts.models import User
from console.dashboard import build_dashboard
from sync.models import Conflict, SyncState, leases
from tests.factories import make_conflict, make_sync_state

pytestmark = pytest.mark.django_db

INDEX = "/admin/"
TOKEN = "lin_api_abcdefghijklmnop0123"


def _panel(html: str) -> str:
    start = '<div class="module console-panel" id="console-workers">'
    match = re.search(rf"{start}(.*?)</div>\s*</section>", html, re.S)
    assert match, "workers panel not on the page"
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
def test_workers_panel_lists_failing_pairs_and_resolutions_with_links(admin_client, monkeypatch):
    monkeypatch.setattr(leases, "jitter_fraction", lambda: 0.05)  # 120 s -> 126 s, 600 s -> 630 s
    _failing_world(timezone.now())

    panel = _panel(admin_client.get(INDEX).content.decode())

    assert re.search(r"Pairs failing to sync</a> <span class=\"console-total\">2</span>", panel)
    assert re.search(r"Resolutions failing to apply</a> <span class=\"console-total\">1</span>", panel)
    assert panel.index("page-0") < panel.index("page-1")  # most failures first
    assert "page-2" not in panel
    assert "3 failures · retry in 2 min" in panel
    assert "1 failure · retry due now" in panel
    assert TOKEN not in panel and "Linear 401 for [REDACTED]" in panel
    assert "conflict-bad" in panel and "conflict-fine" not in panel
    assert "1 attempt · retry in 10 min" in panel and "Confluence 409" in panel
    assert 'href="/admin/sync/syncstate/?schedule=failing"' in panel
    assert 'href="/admin/sync/conflict/?outbox=failing&amp;status=resolved"' in panel


def test_workers_panel_says_when_nothing_fails(admin_client):
    panel = _panel(admin_client.get(INDEX).content.decode())
    assert "Every pair synced at its last attempt." in panel
    assert "No resolution is failing to apply." in panel


def test_workers_panel_costs_four_queries(admin_user, django_assert_num_queries):
    now = timezone.now()
    _failing_world(now)
    from console.dashboard import workers_panel

    with django_assert_num_queries(4):
        panel = workers_panel(admin_user, now=now)
    assert (panel.pairs_total, [p.confluence_page_id for p in panel.pairs]) == (2, ["page-0", "page-1"])
    assert [(p.failures, p.retry) for p in panel.pairs][1] == (1, "due now")
    assert (panel.resolutions_total, [r.conflict_id for r in panel.resolutions]) == (1, ["conflict-bad"])
    assert panel.resolutions[0].attempts == 1


def _staff(*perms: str) -> User:
    user = User.objects.create_user("operator", password="pw-operator-123", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
        user.user_permissions.add(permission)
    return user


def test_workers_panel_halves_follow_view_permissions():
    _failing_world(timezone.now())
    pairs_only = build_dashboard(_staff("sync.view_syncstate")).workers
    assert (pairs_only.pairs_total, pairs_only.resolutions_total, pairs_only.resolutions) == (2, None, [])
    assert build_dashboard(User.objects.create_user("nobody", is_staff=True)).workers is None
