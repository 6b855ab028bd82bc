"""Offboarding: ``offboard_organization`` (service, command, admin delete) removes one tenant entirely."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from accounts.models import Organization, OrganizationMembership
from accounts.services import offboard_organization
from sync.models import ConflictResolution
from tests.security.test_tenant_scoping import build_tenant, fingerprint

pytestmark = pytest.mark.django_db

#: Every row build_tenant() makes, per model, plus the membership the fixture adds.
EXPECTED_DELETED = {
    "accounts.Organization": 1,
    "accounts.OrganizationMembership": 1,
    "accounts.LinearToken": 1,
    "accounts.ConfluenceToken": 1,
    "planning.ProgramIncrement": 1,
    "planning.PlanningSession": 1,
    "planning.Feature": 1,
    "planning.Story": 1,
    "planning.Enabler": 1,
    "planning.SessionMessage": 1,  # the session's failure, logged by mark_failed
    "sync.SyncState": 1,
    "sync.Conflict": 2,
    "sync.SyncHistory": 1,
    "sync.LinearIssueCache": 1,
    "sync.FieldOwnership": 1,
}


@pytest.fixture
def tenants() -> dict[str, Any]:
    root = get_user_model().objects.create_superuser("root", email="root@example.com", password=None)
    alpha = build_tenant("alpha", root)
    bravo = build_tenant("bravo", root)
    reviewer = get_user_model().objects.create_user("reviewer-a", password=None, is_staff=True)
    OrganizationMembership.objects.create(user=reviewer, organization=alpha[Organization])
    return {"alpha": alpha[Organization], "bravo": bravo[Organization], "root": root, "reviewer": reviewer}


def test_offboarding_deletes_every_row_of_the_organization_and_nothing_else(tenants: dict[str, Any]) -> None:
    alpha, bravo = tenants["alpha"], tenants["bravo"]
    bravo_before = fingerprint(bravo)
    result = offboard_organization("org-alpha")
    assert result.deleted == EXPECTED_DELETED
    assert result.kept == {"sync.ConflictResolution": 1}
    assert result.total_deleted == 16
    assert not Organization.objects.filter(pk=alpha.pk).exists()
    assert all(rows == [] for label, rows in fingerprint(alpha).items() if label != "sync.ConflictResolution")
    assert fingerprint(bravo) == bravo_before
    # The user stays; only the membership went.
    assert get_user_model().objects.filter(username="reviewer-a").exists()


def test_resolution_log_keeps_its_entries_with_the_organization_name(tenants: dict[str, Any]) -> None:
    offboard_organization("org-alpha")
    entry = ConflictResolution.objects.get(conflict_id="conflict-item-alpha-done")
    assert entry.organization_name == "Alpha Corp"
    assert entry.strategy == "linear"
    bravo_entry = ConflictResolution.objects.get(conflict_id="conflict-item-bravo-done")
    assert bravo_entry.organization_name == ""


def test_dry_run_reports_the_same_and_deletes_nothing(tenants: dict[str, Any]) -> None:
    before = fingerprint(tenants["alpha"])
    result = offboard_organization("org-alpha", dry_run=True)
    assert result.dry_run is True
    assert result.deleted == EXPECTED_DELETED
    assert result.kept == {"sync.ConflictResolution": 1}
    assert fingerprint(tenants["alpha"]) == before
    assert ConflictResolution.objects.get(conflict_id="conflict-item-alpha-done").organization_name == ""


def test_bad_arguments_are_refused_before_anything_is_deleted(tenants: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="No organization with linear_id 'org-nobody'"):
        offboard_organization("org-nobody")
    with pytest.raises(ValidationError, match="linear_id must not be empty"):
        offboard_organization(" ")
    with pytest.raises(ValueError, match="dry_run must be a bool"):
        offboard_organization("org-alpha", dry_run="yes")
    assert Organization.objects.count() == 2


def test_command_prints_per_model_counts(tenants: dict[str, Any]) -> None:
    out = io.StringIO()
    call_command("offboard_organization", "org-alpha", "--dry-run", stdout=out)
    text = out.getvalue()
    assert "Organization Alpha Corp (org-alpha):" in text
    assert "  Would delete 2 sync.Conflict" in text
    assert "  Would keep 1 sync.ConflictResolution (organization name recorded)" in text
    assert "Dry run: nothing was deleted." in text
    assert Organization.objects.filter(linear_id="org-alpha").exists()

    out = io.StringIO()
    call_command("offboard_organization", "org-alpha", stdout=out)
    text = out.getvalue()
    assert "  Deleted 1 planning.Story" in text
    assert "Offboarded Alpha Corp (org-alpha): 16 rows deleted in one transaction." in text
    assert not Organization.objects.filter(linear_id="org-alpha").exists()


def test_command_names_an_unknown_organization(tenants: dict[str, Any]) -> None:
    with pytest.raises(CommandError, match="No organization with linear_id 'org-nobody'"):
        call_command("offboard_organization", "org-nobody", stdout=io.StringIO())


def test_superuser_deletes_an_organization_in_the_admin_with_the_summary(tenants: dict[str, Any]) -> None:
    client = Client()
    client.force_login(tenants["root"])
    url = reverse("admin:accounts_organization_delete", args=[tenants["alpha"].pk])
    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert "Would delete 2 sync.Conflict" in body and "Would delete 1 planning.PlanningSession" in body
    assert Organization.objects.filter(pk=tenants["alpha"].pk).exists()
    response = client.post(url, {"post": "yes"}, follow=True)
    assert response.status_code == 200
    assert "Offboarded Alpha Corp: Deleted 1 accounts.ConfluenceToken" in response.content.decode()
    assert not Organization.objects.filter(pk=tenants["alpha"].pk).exists()
    assert Organization.objects.filter(pk=tenants["bravo"].pk).exists()


def test_staff_with_the_delete_permission_cannot_offboard(tenants: dict[str, Any]) -> None:
    staff = get_user_model().objects.create_user("ops", password=None, is_staff=True)
    staff.user_permissions.set(
        Permission.objects.filter(content_type__app_label="accounts", codename__endswith="_organization")
    )
    client = Client()
    client.force_login(staff)
    url = reverse("admin:accounts_organization_delete", args=[tenants["alpha"].pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"post": "yes"}).status_code == 403
    changelist = client.post(
        reverse("admin:accounts_organization_changelist"),
        {"action": "delete_selected", "_selected_action": [tenants["alpha"].pk], "post": "yes"},
    )
    assert changelist.status_code == 200
    assert Organization.objects.filter(pk=tenants["alpha"].pk).exists()


@pytest.mark.django_db(transaction=True)
def test_async_twin_offboards_the_same(tenants: dict[str, Any]) -> None:
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    from accounts.services import aoffboard_organization

    preview = asyncio.run(aoffboard_organization("org-alpha", dry_run=True))
    assert preview.deleted == EXPECTED_DELETED
    result = asyncio.run(aoffboard_organization("org-alpha"))
    assert result.deleted == EXPECTED_DELETED
    assert not Organization.objects.filter(linear_id="org-alpha").exists()
    # The twins ran on asgiref's executor thread: close its connection (the test database is dropped).
    asyncio.run(sync_to_async(connections.close_all)())
