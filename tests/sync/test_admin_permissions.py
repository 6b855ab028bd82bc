"""Who may do what in the sync admin: the reviewer group, staff without rights, view-only, superuser.

Also the read-only screens: sync history, sync state, the resolution log and the issue cache accept no
add, change or delete from anyone.
"""

from __future__ import annotations

import datetime as dt
import importlib
from urllib.parse import urlencode

import pytest
from django.apps import apps as global_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from config.middleware import MAX_SEARCH_TERM_LENGTH
from sync.models import Conflict, ConflictResolution, SyncState
from tests.clock import FROZEN_NOW
from tests.factories import (
    make_conflict,
    make_conflict_resolution,
    make_linear_issue_cache,
    make_organization,
    make_sync_history,
)

pytestmark = pytest.mark.django_db

REVIEWERS = "Conflict reviewers"
migration = importlib.import_module("sync.migrations.0002_conflict_reviewers_group")


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _staff(username: str, *, group: str | None = None, perms: tuple[str, ...] = ()):
    user = get_user_model().objects.create_user(username=username, password=None, is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(content_type__app_label="sync", codename=codename))
    return user


@pytest.fixture
def reviewer() -> Client:
    return _client_for(_staff("rita", group=REVIEWERS))


@pytest.fixture
def bare_staff() -> Client:
    return _client_for(_staff("sam"))


@pytest.fixture
def viewer() -> Client:
    return _client_for(_staff("vic", perms=("view_conflict",)))


@pytest.fixture
def superuser_client() -> Client:
    return _client_for(get_user_model().objects.create_superuser(username="root", password=None))


@pytest.fixture
def world():
    """One row in every sync table, and an organization (an accounts page to be refused)."""
    make_conflict(id="conflict-open", confluence_page_id="page-1", linear_team_id="team-1")
    make_conflict(id="conflict-done", confluence_page_id="page-1", linear_team_id="team-1").resolve("linear")
    history = make_sync_history(success=False, error="timeout")
    state = SyncState.objects.get()
    entry = ConflictResolution.objects.get()
    cached = make_linear_issue_cache()
    return {"history": history, "state": state, "entry": entry, "cached": cached, "org": make_organization()}


# --- the group -----------------------------------------------------------------------------------


def test_reviewer_group_has_exactly_view_and_resolve_conflicts_and_view_sync_records():
    group = Group.objects.get(name=REVIEWERS)
    assert sorted(group.permissions.values_list("content_type__app_label", "codename")) == [
        ("sync", "resolve_conflict"),
        ("sync", "view_conflict"),
        ("sync", "view_conflictresolution"),
        ("sync", "view_synchistory"),
        ("sync", "view_syncstate"),
    ]


def test_reviewer_group_migration_reverses_and_reapplies():
    class Editor:
        connection = connection

    migration.delete_reviewers_group(global_apps, Editor())
    assert not Group.objects.filter(name=REVIEWERS).exists()
    migration.create_reviewers_group(global_apps, Editor())
    migration.create_reviewers_group(global_apps, Editor())  # twice: still one group, same rights
    assert Group.objects.filter(name=REVIEWERS).count() == 1
    assert Group.objects.get(name=REVIEWERS).permissions.count() == 5


# --- the matrix ----------------------------------------------------------------------------------


PAGES = {
    "conflicts": lambda w: reverse("admin:sync_conflict_changelist"),
    "conflict": lambda w: reverse("admin:sync_conflict_change", args=["conflict-open"]),
    "history": lambda w: reverse("admin:sync_synchistory_changelist"),
    "history entry": lambda w: reverse("admin:sync_synchistory_change", args=[w["history"].pk]),
    "states": lambda w: reverse("admin:sync_syncstate_changelist"),
    "resolutions": lambda w: reverse("admin:sync_conflictresolution_changelist"),
    "resolution": lambda w: reverse("admin:sync_conflictresolution_change", args=[w["entry"].pk]),
    "issue cache": lambda w: reverse("admin:sync_linearissuecache_changelist"),
    "users": lambda w: reverse("admin:accounts_user_changelist"),
    "organizations": lambda w: reverse("admin:accounts_organization_changelist"),
    "organization": lambda w: reverse("admin:accounts_organization_change", args=[w["org"].pk]),
}

EXPECTED = {
    # page: (reviewer, staff without permissions, view-only, superuser)
    "conflicts": (200, 403, 200, 200),
    "conflict": (200, 403, 200, 200),
    "history": (200, 403, 403, 200),
    "history entry": (200, 403, 403, 200),
    "states": (200, 403, 403, 200),
    "resolutions": (200, 403, 403, 200),
    "resolution": (200, 403, 403, 200),
    "issue cache": (403, 403, 403, 200),
    "users": (403, 403, 403, 200),
    "organizations": (403, 403, 403, 200),
    "organization": (403, 403, 403, 200),
}


def test_permission_matrix_for_pages(world, reviewer, bare_staff, viewer, superuser_client):
    clients = (reviewer, bare_staff, viewer, superuser_client)
    seen = {
        page: tuple(client.get(url(world)).status_code for client in clients) for page, url in PAGES.items()
    }
    assert seen == EXPECTED


def test_reviewer_sees_the_resolve_buttons_and_actions_and_can_resolve(world, reviewer):
    response = reviewer.get(reverse("admin:sync_conflict_change", args=["conflict-open"]))
    assert b'id="keep-linear"' in response.content
    response = reviewer.get(reverse("admin:sync_conflict_changelist"))
    actions = [name for name, _ in response.context["action_form"].fields["action"].choices]
    assert actions == ["", "resolve_keeping_linear", "resolve_keeping_confluence"]
    response = reviewer.post(
        reverse("admin:sync_conflict_resolve", args=["conflict-open"]), {"strategy": "confluence"}
    )
    assert response.status_code == 302
    conflict = Conflict.objects.get(pk="conflict-open")
    assert (conflict.resolution_strategy, conflict.resolved_by.username) == ("confluence", "rita")
    response = reviewer.post(reverse("admin:sync_conflict_reopen", args=["conflict-open"]))
    assert response.status_code == 302
    assert not Conflict.objects.get(pk="conflict-open").is_resolved


def test_view_only_user_sees_no_buttons_no_actions_and_gets_403_on_resolve(world, viewer):
    response = viewer.get(reverse("admin:sync_conflict_change", args=["conflict-open"]))
    assert b'id="keep-linear"' not in response.content
    assert b'id="manual-resolution"' not in response.content
    response = viewer.get(reverse("admin:sync_conflict_change", args=["conflict-done"]))
    assert b'id="reopen-button"' not in response.content
    response = viewer.get(reverse("admin:sync_conflict_changelist"))
    assert response.context["action_form"] is None or [
        name for name, _ in response.context["action_form"].fields["action"].choices
    ] == [""]
    for url, data in [
        (reverse("admin:sync_conflict_resolve", args=["conflict-open"]), {"strategy": "linear"}),
        (reverse("admin:sync_conflict_reopen", args=["conflict-done"]), {}),
    ]:
        assert viewer.post(url, data).status_code == 403
    # The bulk action is not offered, and posting it anyway changes nothing.
    response = viewer.post(
        reverse("admin:sync_conflict_changelist"),
        {"action": "resolve_keeping_linear", "_selected_action": ["conflict-open"], "post": "yes"},
    )
    assert not Conflict.objects.get(pk="conflict-open").is_resolved
    assert Conflict.objects.get(pk="conflict-done").is_resolved


@pytest.mark.parametrize(
    ("name", "data"),
    [("sync_conflict_resolve", {"strategy": "linear"}), ("sync_conflict_reopen", {})],
)
def test_staff_without_permissions_gets_403_on_resolve_and_reopen(world, bare_staff, name, data):
    target = "conflict-done" if name.endswith("reopen") else "conflict-open"
    assert bare_staff.post(reverse(f"admin:{name}", args=[target]), data).status_code == 403
    assert list(Conflict.objects.order_by("pk").values_list("pk", "is_resolved")) == [
        ("conflict-done", True),
        ("conflict-open", False),
    ]
    assert ConflictResolution.objects.count() == 1


def test_anonymous_users_are_sent_to_the_login_page(world):
    response = Client().post(
        reverse("admin:sync_conflict_resolve", args=["conflict-open"]), {"strategy": "linear"}
    )
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert not Conflict.objects.get(pk="conflict-open").is_resolved


# --- read-only screens ---------------------------------------------------------------------------


READ_ONLY = [
    ("synchistory", "history"),
    ("syncstate", "state"),
    ("conflictresolution", "entry"),
    ("linearissuecache", "cached"),
]


@pytest.mark.parametrize(("model", "key"), READ_ONLY)
def test_read_only_screens_refuse_add_change_and_delete_even_for_superusers(
    world, superuser_client, model, key
):
    obj = world[key]
    before = type(obj).objects.filter(pk=obj.pk).values().get()
    add = reverse(f"admin:sync_{model}_add")
    change = reverse(f"admin:sync_{model}_change", args=[obj.pk])
    delete = reverse(f"admin:sync_{model}_delete", args=[obj.pk])
    assert superuser_client.get(add).status_code == 403
    assert superuser_client.post(add, {}).status_code == 403
    response = superuser_client.get(change)
    assert response.status_code == 200
    assert b'name="_save"' not in response.content
    assert superuser_client.post(change, {"error": "edited", "success": "on"}).status_code == 403
    assert superuser_client.get(delete).status_code == 403
    assert superuser_client.post(delete, {"post": "yes"}).status_code == 403
    changelist = superuser_client.get(reverse(f"admin:sync_{model}_changelist"))
    assert changelist.status_code == 200
    assert changelist.context["action_form"] is None  # no delete_selected, no other action
    assert type(obj).objects.filter(pk=obj.pk).values().get() == before


def test_sync_history_filters_failed_runs_and_by_date(clock, superuser_client):
    # The clock comes first, so that the login is made at its time.
    ok = make_sync_history(success=True)
    failed = make_sync_history(success=False, error="Linear API: 502")
    old_failed = make_sync_history(
        success=False, error="timeout", synced_at=FROZEN_NOW - dt.timedelta(days=400)
    )
    url = reverse("admin:sync_synchistory_changelist")

    def listed(query: str) -> list[int]:
        return [entry.pk for entry in superuser_client.get(url + query).context["cl"].result_list]

    assert listed("") == [failed.pk, ok.pk, old_failed.pk]
    assert listed("?outcome=failed") == [failed.pk, old_failed.pk]
    assert listed("?outcome=succeeded") == [ok.pk]
    since = (FROZEN_NOW - dt.timedelta(days=30)).isoformat(" ")
    assert listed(f"?{urlencode({'synced_at__gte': since, 'outcome': 'failed'})}") == [failed.pk]
    response = superuser_client.get(url + "?outcome=failed")
    assert b"Linear API: 502" in response.content


def test_sync_history_list_fits_counters_in_one_column_beside_the_error(superuser_client, settings):
    settings.TIME_ZONE = "UTC"
    make_sync_history(
        success=False,
        error="Linear API: 502",
        created_issues=3,
        updated_issues=5,
        confluence_changes=4,
        conflicts_detected=2,
        conflicts_resolved=1,
        synced_at=dt.datetime(2026, 3, 4, 5, 6, tzinfo=dt.UTC),
    )
    response = superuser_client.get(reverse("admin:sync_synchistory_changelist"))
    html = response.content.decode()
    assert response.context["cl"].list_display == [
        "synced",
        "confluence_page_id",
        "linear_team_id",
        "success",
        "changes",
        "short_error",
    ]
    assert "2026-03-04 05:06" in html
    # Every counter, the Confluence changes too (the first version of this column left them out).
    assert "3 created, 5 updated, 4 in Confluence" in html and "2 conflicts, 1 resolved" in html
    assert "Linear API: 502" in html


def test_sync_history_list_reads_only_its_own_table(superuser_client):
    make_sync_history(success=False, error="timeout")
    with CaptureQueriesContext(connection) as captured:
        response = superuser_client.get(reverse("admin:sync_synchistory_changelist"))
    assert response.status_code == 200
    selects = [q["sql"] for q in captured.captured_queries if 'FROM "sync_synchistory"' in q["sql"]]
    assert any('"sync_synchistory"."error"' in sql for sql in selects), selects
    # The list shows no organization: a JOIN would be wasted work on a table of millions of runs.
    assert not [sql for sql in selects if "JOIN" in sql]


def test_sync_state_lists_conflict_counts_linked_to_the_conflicts_and_last_sync(superuser_client):
    make_conflict(id="c1", confluence_page_id="page-a", linear_team_id="team-a")
    make_conflict(id="c2", confluence_page_id="page-a", linear_team_id="team-a")
    SyncState.objects.mark_synced("page-a", "team-a", at=dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC))
    response = superuser_client.get(reverse("admin:sync_syncstate_changelist"))
    html = response.content.decode()
    assert '<a href="/admin/sync/conflict/?confluence_page_id=page-a&amp;linear_team_id=team-a">2</a>' in html
    state = response.context["cl"].result_list[0]
    assert (state.confluence_page_id, state.conflict_count, state.last_synced_at) == (
        "page-a",
        2,
        dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC),
    )
    assert "Jan. 2, 2026, 3:04 a.m." in html


def test_resolution_log_list_links_each_entry_to_its_conflict(superuser_client):
    make_conflict_resolution(conflict_id="conflict-x", action="reopened", strategy="")
    response = superuser_client.get(reverse("admin:sync_conflictresolution_changelist") + "?q=conflict-x")
    assert [entry.conflict_id for entry in response.context["cl"].result_list] == ["conflict-x"]
    assert b'<a href="/admin/sync/conflict/conflict-x/change/">conflict-x</a>' in response.content


def test_issue_cache_list_shows_the_title_without_loading_the_json(superuser_client):
    make_linear_issue_cache(linear_issue_id="ISS-1", issue_data={"title": "Fix login", "body": "x" * 1000})
    response = superuser_client.get(reverse("admin:sync_linearissuecache_changelist"))
    assert b"Fix login" in response.content
    [entry] = response.context["cl"].result_list
    assert entry.get_deferred_fields() == {"issue_data"}


@pytest.mark.parametrize(
    ("model", "term", "expected"),
    [
        ("synchistory", "page-h", 1),
        ("synchistory", "team-h", 1),
        ("synchistory", "PAGE-H", 0),  # exact: ids are case-sensitive, and equality uses the index
        ("syncstate", "page-1", 1),
        ("conflictresolution", "conflict-done", 1),
        ("linearissuecache", "ISS-9", 1),
        ("linearissuecache", "ISS", 0),
    ],
)
def test_sync_screens_search_by_exact_id(world, superuser_client, model, term, expected):
    make_sync_history(confluence_page_id="page-h", linear_team_id="team-h")
    make_linear_issue_cache(linear_issue_id="ISS-9")
    response = superuser_client.get(reverse(f"admin:sync_{model}_changelist"), {"q": term})
    assert len(response.context["cl"].result_list) == expected


@pytest.mark.parametrize(
    "model", ["conflict", "synchistory", "syncstate", "conflictresolution", "linearissuecache"]
)
@pytest.mark.parametrize("suffix", ["", "*"])
def test_a_huge_search_term_finds_nothing_and_is_not_an_error(world, superuser_client, model, suffix):
    url = reverse(f"admin:sync_{model}_changelist")
    extra = {"status": "all"} if model == "conflict" else {}
    longest = "x" * (MAX_SEARCH_TERM_LENGTH - len(suffix)) + suffix
    response = superuser_client.get(url, {"q": longest, **extra})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []
    # Beyond the project-wide limit the search is refused before any query (config.middleware).
    response = superuser_client.get(url, {"q": "x" * 60_000 + suffix, **extra})
    assert response.status_code == 400
