"""Who sees which admin page: every registered model's changelist, add and change (and history) URL
for anonymous visitors, staff without permissions, the Conflict reviewers group and a superuser.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.test import Client, RequestFactory
from django.urls import reverse

from sync.models import Conflict, ConflictResolution, SyncHistory, SyncState

pytestmark = pytest.mark.django_db

#: What the reviewers' group (sync/migrations/0002) may see; every other admin page is a 403 for it.
REVIEWER_VISIBLE = {Conflict, SyncState, SyncHistory, ConflictResolution}


def admin_urls() -> list[tuple[type, str, str]]:
    """(model, view, URL) for the changelist, add, change and history view of every registered model."""
    urls = []
    for model in admin.site._registry:
        info = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        obj = model._default_manager.order_by("pk").first()
        urls.append((model, "changelist", reverse(f"{info}_changelist")))
        urls.append((model, "add", reverse(f"{info}_add")))
        urls.append((model, "change", reverse(f"{info}_change", args=[quote(obj.pk)])))
        urls.append((model, "history", reverse(f"{info}_history", args=[quote(obj.pk)])))
    return urls


def expected_status(role: str, model: type, view: str, users: dict[str, Any]) -> int:
    if role == "anonymous":
        return 302
    if role == "staff":
        return 403
    if role == "reviewer":
        return 200 if model in REVIEWER_VISIBLE and view != "add" else 403
    # Superusers see everything; an add page exists only where the admin allows adding at all.
    request = RequestFactory().get("/")
    request.user = users["superuser"]
    if view == "add" and not admin.site._registry[model].has_add_permission(request):
        return 403
    return 200


@pytest.mark.parametrize("role", ["anonymous", "staff", "reviewer", "superuser"])
def test_admin_permission_matrix(role, world, clients, users):
    client: Client = clients[role]
    mismatches = []
    for model, view, url in admin_urls():
        response = client.get(url)
        want = expected_status(role, model, view, users)
        if response.status_code != want:
            mismatches.append(f"{model._meta.label} {view} {url}: {response.status_code}, expected {want}")
        elif role == "anonymous":
            assert response["Location"].startswith(reverse("admin:login") + "?next=")
    assert not mismatches, "\n".join(mismatches)


def test_every_registered_model_is_in_the_matrix(world):
    """A model registered later joins the matrix automatically; this pins that the set is complete."""
    covered = {model for model, _, _ in admin_urls()}
    assert covered == set(admin.site._registry)
    assert len(admin_urls()) == 4 * len(admin.site._registry)


def test_reviewer_resolves_and_reopens_and_is_recorded(world, clients, users):
    conflict = world["conflict"]
    url = reverse("admin:sync_conflict_resolve", args=[quote(conflict.pk)])

    response = clients["reviewer"].post(url, {"strategy": "confluence"})

    assert response.status_code == 302
    conflict.refresh_from_db()
    assert (conflict.is_resolved, conflict.resolution_strategy, conflict.resolved_by) == (
        True,
        "confluence",
        users["reviewer"],
    )
    entry = ConflictResolution.objects.for_conflict(conflict.pk).get()
    assert (entry.action, entry.strategy, entry.by) == ("resolved", "confluence", users["reviewer"])

    reopen = reverse("admin:sync_conflict_reopen", args=[quote(conflict.pk)])
    assert clients["reviewer"].post(reopen).status_code == 302
    actions = list(ConflictResolution.objects.for_conflict(conflict.pk).values_list("action", "by"))
    assert actions == [("resolved", users["reviewer"].pk), ("reopened", users["reviewer"].pk)]


@pytest.mark.parametrize("role", ["anonymous", "staff"])
def test_without_the_permission_resolve_and_reopen_change_nothing(role, world, clients):
    conflict, resolved = world["conflict"], world["resolved_conflict"]
    client = clients[role]

    resolve = client.post(
        reverse("admin:sync_conflict_resolve", args=[quote(conflict.pk)]), {"strategy": "linear"}
    )
    reopen = client.post(reverse("admin:sync_conflict_reopen", args=[quote(resolved.pk)]))
    bulk = client.post(
        reverse("admin:sync_conflict_changelist"),
        {"action": "resolve_keeping_linear", "_selected_action": [conflict.pk], "post": "yes"},
    )

    want = 302 if role == "anonymous" else 403
    assert (resolve.status_code, reopen.status_code, bulk.status_code) == (want, want, want)
    assert not Conflict.objects.get(pk=conflict.pk).is_resolved
    assert Conflict.objects.get(pk=resolved.pk).is_resolved
    assert ConflictResolution.objects.filter(by__isnull=False).count() == 1  # the fixture's own


def test_reviewer_cannot_replace_a_token_or_see_the_replace_fields(world, clients):
    token = world["linear"]
    url = reverse("admin:accounts_lineartoken_change", args=[token.pk])
    response = clients["reviewer"].post(url, {"new_access_token": "lin_oauth_attacker_token_0000000000"})
    assert response.status_code == 403
    token.refresh_from_db()
    assert token.access_token == world["linear"].access_token


def test_superuser_bulk_resolve_records_who(world, clients, users):
    conflict = world["conflict"]
    response = clients["superuser"].post(
        reverse("admin:sync_conflict_changelist"),
        {"action": "resolve_keeping_linear", "_selected_action": [conflict.pk], "post": "yes"},
    )
    assert response.status_code == 302
    conflict.refresh_from_db()
    assert (conflict.is_resolved, conflict.resolved_by) == (True, users["superuser"])
