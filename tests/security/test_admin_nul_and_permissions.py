"""Issue 18, items 8 and 15: a NUL in an admin URL or filter value is a 404/400 (never a 500 — PostgreSQL
refuses NUL in text), and resolving a conflict needs the view permission as well as the resolve one.
Also the styled error pages (400 for an overlong search, 403, 404, 500) in the admin's look."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.urls import reverse

from config.middleware import MAX_SEARCH_TERM_LENGTH
from sync.models import Conflict, ConflictResolution
from tests.factories import make_conflict, make_sync_state

pytestmark = pytest.mark.django_db

#: What every styled error page carries: the admin's header and a way back.
ADMIN_LOOK = ('id="header"', "Back to the console")


@pytest.fixture
def root() -> Client:
    user = get_user_model().objects.create_superuser("root", email="root@example.com", password=None)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def conflict() -> Conflict:
    make_sync_state(confluence_page_id="page-1", linear_team_id="team-1")
    return make_conflict(item_id="item-1", confluence_page_id="page-1", linear_team_id="team-1")


@pytest.mark.parametrize("suffix", ["change/", "history/", "delete/", "resolve/", "reopen/", ""])
@pytest.mark.parametrize("method", ["get", "post"])
def test_nul_in_conflict_url_id_is_a_404(root: Client, conflict: Conflict, suffix: str, method: str) -> None:
    url = reverse("admin:sync_conflict_changelist") + f"conflict-item-1%00/{suffix}"
    response = getattr(root, method)(url, {"strategy": "linear"})
    assert response.status_code == 404
    body = response.content.decode()
    assert all(mark in body for mark in ADMIN_LOOK)
    assert Conflict.objects.get(pk=conflict.pk).is_resolved is False


def test_nul_in_any_admin_object_url_is_a_404(root: Client, conflict: Conflict) -> None:
    """Every registered model's change, history and delete URL."""
    for model in admin.site._registry:
        base = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for suffix in ("change/", "history/", "delete/"):
            assert root.get(f"{base}1%00/{suffix}").status_code == 404, (model, suffix)


@pytest.mark.parametrize(
    "query",
    [
        "confluence_page_id=page%00",
        "linear_team_id=%00",
        "item_type=story%00",
        "status=all%00",
        "q=conflict%00",
        "created_at__gte=2026-01-01%00",
        "o=1%00",
        "x%00=1",
    ],
)
def test_nul_in_a_changelist_filter_value_is_a_clean_400(
    root: Client, conflict: Conflict, query: str
) -> None:
    response = root.get(reverse("admin:sync_conflict_changelist") + "?" + query)
    assert response.status_code == 400
    body = response.content.decode()
    assert "NUL character" in body
    assert all(mark in body for mark in ADMIN_LOOK)


@pytest.mark.parametrize("name", ["syncstate", "synchistory", "conflictresolution", "linearissuecache"])
def test_nul_in_other_sync_filters_is_a_400(root: Client, conflict: Conflict, name: str) -> None:
    response = root.get(reverse(f"admin:sync_{name}_changelist") + "?confluence_page_id=%00&q=%00")
    assert response.status_code == 400


def test_nul_in_posted_action_ids_changes_nothing(root: Client, conflict: Conflict) -> None:
    response = root.post(
        reverse("admin:sync_conflict_changelist"),
        {"action": "resolve_keeping_linear", "_selected_action": [conflict.pk + "\x00"], "post": "yes"},
    )
    assert response.status_code == 400
    assert Conflict.objects.get(pk=conflict.pk).is_resolved is False


def test_overlong_search_is_a_styled_400(root: Client) -> None:
    response = root.get(reverse("admin:sync_conflict_changelist"), {"q": "x" * (MAX_SEARCH_TERM_LENGTH + 1)})
    assert response.status_code == 400
    body = response.content.decode()
    assert f"Search term too long: at most {MAX_SEARCH_TERM_LENGTH} characters." in body
    assert all(mark in body for mark in ADMIN_LOOK)


@override_settings(DEBUG=False)
def test_403_and_404_pages_are_in_the_admin_look(root: Client) -> None:
    staff = get_user_model().objects.create_user("plain", password=None, is_staff=True)
    client = Client()
    client.force_login(staff)
    forbidden = client.get(reverse("admin:sync_conflict_add"))
    assert forbidden.status_code == 403
    assert "Permission denied" in forbidden.content.decode()
    missing = root.get("/admin/no/such/page/")
    assert missing.status_code == 404
    assert all(mark in missing.content.decode() for mark in ADMIN_LOOK)


def test_500_page_renders_without_a_request() -> None:
    from django.template import loader

    body = loader.get_template("500.html").render()
    assert "Server error" in body and all(mark in body for mark in ADMIN_LOOK)


# --- item 15: resolving needs view *and* resolve -------------------------------------------------


def _user_with(*codenames: str) -> Any:
    user = get_user_model().objects.create_user("half", password=None, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="sync", codename__in=codenames)
    )
    return get_user_model().objects.get(pk=user.pk)


def test_resolve_permission_without_view_permission_resolves_nothing(conflict: Conflict) -> None:
    client = Client()
    client.force_login(_user_with("resolve_conflict"))
    resolve = reverse("admin:sync_conflict_resolve", args=[conflict.pk])
    assert client.post(resolve, {"strategy": "linear"}).status_code == 403
    changelist = reverse("admin:sync_conflict_changelist")
    bulk = client.post(
        changelist, {"action": "resolve_keeping_linear", "_selected_action": [conflict.pk], "post": "yes"}
    )
    assert bulk.status_code == 403
    assert Conflict.objects.get(pk=conflict.pk).is_resolved is False
    assert not ConflictResolution.objects.exists()


def test_view_and_resolve_permissions_together_resolve(conflict: Conflict) -> None:
    client = Client()
    client.force_login(_user_with("resolve_conflict", "view_conflict"))
    resolve = reverse("admin:sync_conflict_resolve", args=[conflict.pk])
    assert client.post(resolve, {"strategy": "linear"}).status_code == 302
    assert Conflict.objects.get(pk=conflict.pk).resolution_strategy == "linear"
