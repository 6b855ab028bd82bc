"""Tenant-scoped staff: two organizations, two reviewers, every URL of every registered ModelAdmin.

Alpha's reviewer and Bravo's reviewer hold every permission of accounts, planning, sync and auth, so that
only tenant scoping stands between them and the other organization. Every row built for Bravo carries
"bravo" in an id or a name: no page Alpha's reviewer can open may contain that word, every URL naming
a Bravo row is a 404, and nothing Alpha's reviewer posts changes a Bravo row.

The walk reads ``admin.site._registry`` and each ModelAdmin's own ``get_urls()``: a model registered
later without a builder here (or without ``TenantScopedAdminMixin``) fails
``test_every_registered_model_is_covered`` with the model's name.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client, RequestFactory
from django.urls import reverse

from accounts.admin_tenancy import TenantScopedAdminMixin
from accounts.models import ConfluenceToken, LinearToken, Organization, OrganizationMembership
from accounts.tenancy import organization_ids_for, owned_by, visible_to
from planning.models import Enabler, Feature, PlanningSession, ProgramIncrement
from sync.models import Conflict, ConflictResolution, FieldOwnership, LinearIssueCache, SyncHistory, SyncState
from tests.factories import (
    make_conflict,
    make_enabler,
    make_feature,
    make_linear_issue_cache,
    make_planning_session,
    make_program_increment,
    make_story,
    make_sync_history,
    make_sync_state,
)

pytestmark = pytest.mark.django_db

#: Registered models whose rows belong to no organization: a limited user gets no page of theirs.
NOT_TENANT_OWNED = {
    get_user_model(): "operators are not tenant data; a limited user could widen their own access",
    Group: "permission groups are shared by every tenant",
}


def _tokens(org: Organization, tag: str) -> dict[str, Any]:
    from django.utils import timezone

    expires = timezone.now()  # expired: the dashboard lists it
    linear = LinearToken.objects.create(
        organization=org, access_token=f"lin-{tag}-secret", app_user_id=f"app-{tag}", expires_at=expires
    )
    confluence = ConfluenceToken.objects.create(
        organization=org,
        cloud_id=f"cloud-{tag}",
        site_url=f"https://{tag}.atlassian.net",
        access_token=f"conf-{tag}-secret",
        expires_at=expires,
    )
    return {LinearToken: linear, ConfluenceToken: confluence}


def build_tenant(tag: str, resolver: Any) -> dict[type, Any]:
    """One row of every tenant-owned registered model for a new organization named after ``tag``."""
    org = Organization.objects.create(linear_id=f"org-{tag}", name=f"{tag.title()} Corp")
    rows: dict[type, Any] = {Organization: org, **_tokens(org, tag)}
    rows[ProgramIncrement] = make_program_increment(organization=org, pi_id=f"PI-{tag}", name=f"PI {tag}")
    session = make_planning_session(
        organization=org, planning_title=f"Planning {tag}", program_increment=rows[ProgramIncrement]
    )
    session.mark_failed(f"Sync of {tag} broke")
    rows[PlanningSession] = session
    rows[Feature] = make_feature(planning_session=session, feature_id=f"FEAT-{tag}", title=f"Feature {tag}")
    make_story(planning_feature=rows[Feature], story_id=f"STORY-{tag}", title=f"Story {tag}")
    rows[Enabler] = make_enabler(planning_session=session, enabler_id=f"ENAB-{tag}", title=f"Enabler {tag}")
    rows[SyncState] = make_sync_state(
        organization=org, confluence_page_id=f"page-{tag}", linear_team_id=f"team-{tag}"
    )
    pair = {"confluence_page_id": f"page-{tag}", "linear_team_id": f"team-{tag}"}
    rows[Conflict] = make_conflict(item_id=f"item-{tag}-open", organization_id=org.linear_id, **pair)
    done = make_conflict(item_id=f"item-{tag}-done", organization_id=org.linear_id, **pair)
    done.resolve("linear", by=resolver)
    rows[ConflictResolution] = ConflictResolution.objects.get(conflict_id=done.pk)
    rows[SyncHistory] = make_sync_history(organization=org, success=False, error=f"{tag} failed", **pair)
    rows[FieldOwnership] = FieldOwnership.objects.create(
        organization=org, field_path=f"title{tag}", owner="linear", linear_team_id=f"team-{tag}"
    )
    rows[LinearIssueCache] = make_linear_issue_cache(
        organization=org, linear_issue_id=f"issue-{tag}", issue_data={"title": f"Issue {tag}"}
    )
    return rows


def reviewer_of(org: Organization | None, username: str) -> Any:
    """Staff holding every permission of the project's apps and auth, limited to ``org`` (if given)."""
    user = get_user_model().objects.create_user(username=username, password=None, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=["accounts", "planning", "sync", "auth"])
    )
    if org is not None:
        OrganizationMembership.objects.create(user=user, organization=org)
    return get_user_model().objects.get(pk=user.pk)


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def fingerprint(organization: Organization) -> dict[str, list[dict[str, Any]]]:
    """Every row of the organization, every column: what must not change under the other reviewer."""
    from django.apps import apps

    from accounts.tenancy import is_tenant_owned

    result = {}
    for model in apps.get_models():
        if model._meta.app_label in {"accounts", "planning", "sync"} and is_tenant_owned(model):
            rows = owned_by(model._default_manager.all(), [organization.pk]).order_by("pk").values()
            result[model._meta.label] = [dict(row) for row in rows]
    return result


@pytest.fixture
def tenants() -> dict[str, Any]:
    root = get_user_model().objects.create_superuser("root", email="root@example.com", password=None)
    alpha = build_tenant("alpha", root)
    bravo = build_tenant("bravo", root)
    # Legacy rows: no organization at all. Only unlimited staff see them.
    legacy_state = make_sync_state(confluence_page_id="page-legacy", linear_team_id="team-legacy")
    make_conflict(item_id="item-legacy", confluence_page_id="page-legacy", linear_team_id="team-legacy")
    make_sync_history(confluence_page_id="page-legacy", linear_team_id="team-legacy")
    return {
        "alpha": alpha,
        "bravo": bravo,
        "legacy_state": legacy_state,
        "alpha_user": reviewer_of(alpha[Organization], "reviewer-a"),
        "bravo_user": reviewer_of(bravo[Organization], "reviewer-b"),
        "unlimited": reviewer_of(None, "unlimited-staff"),
        "root": root,
    }


def model_urls(model: type, model_admin: admin.ModelAdmin) -> list[tuple[str, bool]]:
    """Every route of the ModelAdmin: (route with ``{id}`` for the object id, whether it names an object)."""
    prefix = reverse("admin:index") + f"{model._meta.app_label}/{model._meta.model_name}/"
    routes = []
    for pattern in model_admin.get_urls():
        route = str(pattern.pattern)
        names_object = "<path:object_id>" in route
        routes.append((prefix + route.replace("<path:object_id>", "{id}"), names_object))
    return routes


def test_every_registered_model_is_covered() -> None:
    """Each registered model has a builder row here (or is declared not tenant-owned) and the mixin."""
    built = {
        ProgramIncrement, PlanningSession, Feature, Enabler, Organization, LinearToken, ConfluenceToken,
        SyncState, Conflict, ConflictResolution, SyncHistory, LinearIssueCache, FieldOwnership,
    }  # fmt: skip
    for model, model_admin in admin.site._registry.items():
        assert isinstance(model_admin, TenantScopedAdminMixin), (
            f"{model._meta.label}'s ModelAdmin does not use accounts.admin_tenancy.TenantScopedAdminMixin: "
            "a reviewer limited to one organization would see every tenant's rows."
        )
        assert model in built or model in NOT_TENANT_OWNED, (
            f"{model._meta.label} is registered in the admin but tests/security/test_tenant_scoping.py "
            "builds no row of it per organization: add it to build_tenant() and to this set (or to "
            "NOT_TENANT_OWNED with a reason), so that its URLs are walked with two tenants."
        )


def _assert_no_bravo(response: Any, url: str) -> None:
    body = response.content.decode(errors="replace").lower()
    assert "bravo" not in body, (
        f"{url} shows Bravo's data to Alpha's reviewer (status {response.status_code})"
    )


def test_every_admin_url_of_every_model_is_scoped(tenants: dict[str, Any]) -> None:
    """GET and POST every route of every ModelAdmin as Alpha's reviewer, with Alpha's and Bravo's ids."""
    alpha, bravo = tenants["alpha"], tenants["bravo"]
    client = client_for(tenants["alpha_user"])
    before = fingerprint(bravo[Organization])
    walked = 0
    for model, model_admin in admin.site._registry.items():
        if model in NOT_TENANT_OWNED:
            other = tenants["bravo_user"] if model is not Group else Group.objects.first()
            for route, names_object in model_urls(model, model_admin):
                url = route.format(id=quote(other.pk)) if names_object else route
                for method in (client.get, client.post):
                    response = method(url, follow=True)
                    assert response.status_code in (403, 404), (url, response.status_code)
                    walked += 1
            continue
        own, others = alpha[model], bravo[model]
        for route, names_object in model_urls(model, model_admin):
            if not names_object:
                url = route
                response = client.get(url, follow=True)
                assert response.status_code in (200, 403), (url, response.status_code)
                _assert_no_bravo(response, url)
                walked += 1
                continue
            theirs = route.format(id=quote(others.pk))
            for method in (client.get, client.post):
                response = method(theirs, {"post": "yes", "strategy": "linear"}, follow=True)
                # 405: a POST-only route answers GET the same for every id (it never reads the row).
                allowed = (404, 405) if method == client.get else (404,)
                assert response.status_code in allowed, (
                    f"{method.__name__.upper()} {theirs}: Bravo's {model._meta.verbose_name} answered "
                    f"{response.status_code} to Alpha's reviewer, not 404"
                )
                walked += 1
            mine = route.format(id=quote(own.pk))
            response = client.get(mine, follow=True)
            assert response.status_code in (200, 403, 405), (mine, response.status_code)
            _assert_no_bravo(response, mine)
            walked += 1
    assert walked > 80  # every registered admin was walked, not skipped
    assert fingerprint(bravo[Organization]) == before


def test_changelists_list_own_rows_and_unlimited_staff_see_every_tenant(tenants: dict[str, Any]) -> None:
    alpha_client = client_for(tenants["alpha_user"])
    unlimited = client_for(tenants["unlimited"])
    for model in admin.site._registry:
        if model in NOT_TENANT_OWNED:
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        if model is Conflict:
            url += "?status=all"
        own = reverse(
            f"admin:{model._meta.app_label}_{model._meta.model_name}_change",
            args=[quote(tenants["alpha"][model].pk)],
        )
        theirs = reverse(
            f"admin:{model._meta.app_label}_{model._meta.model_name}_change",
            args=[quote(tenants["bravo"][model].pk)],
        )
        limited_page = alpha_client.get(url).content.decode()
        assert own in limited_page, f"{url}: Alpha's reviewer does not see Alpha's row"
        assert theirs not in limited_page
        full_page = unlimited.get(url).content.decode()
        assert own in full_page and theirs in full_page, f"{url}: unlimited staff lost a tenant's row"
    # Rows of no organization (legacy imports): unlimited staff only.
    states = reverse("admin:sync_syncstate_changelist")
    assert "page-legacy" not in alpha_client.get(states).content.decode()
    assert "page-legacy" in unlimited.get(states).content.decode()
    conflicts = reverse("admin:sync_conflict_changelist")
    assert "item-legacy" not in alpha_client.get(conflicts).content.decode()
    assert "item-legacy" in unlimited.get(conflicts).content.decode()


def test_bulk_actions_posted_with_other_tenants_ids_leave_those_rows_alone(tenants: dict[str, Any]) -> None:
    """Every action of every admin, posted (and confirmed) with Bravo's ids and one of Alpha's."""
    bravo = tenants["bravo"]
    client = client_for(tenants["alpha_user"])
    before = fingerprint(bravo[Organization])
    posted = 0
    for model, model_admin in admin.site._registry.items():
        if model in NOT_TENANT_OWNED:
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        request = RequestFactory().get(url)
        request.user = tenants["alpha_user"]
        for name in model_admin.get_actions(request):
            data = {
                "action": name,
                "_selected_action": [str(bravo[model].pk)],
                "post": "yes",
                "index": "0",
            }
            response = client.post(url + ("?status=all" if model is Conflict else ""), data, follow=True)
            assert response.status_code in (200, 403), (url, name, response.status_code)
            _assert_no_bravo(response, url)
            posted += 1
    assert posted >= 3
    assert fingerprint(bravo[Organization]) == before


def test_bulk_resolve_with_ids_of_both_tenants_resolves_only_own(tenants: dict[str, Any]) -> None:
    alpha, bravo = tenants["alpha"], tenants["bravo"]
    client = client_for(tenants["alpha_user"])
    ids = [alpha[Conflict].pk, bravo[Conflict].pk]
    page = client.post(
        reverse("admin:sync_conflict_changelist"),
        {"action": "resolve_keeping_linear", "_selected_action": ids, "index": "0"},
    )
    assert page.status_code == 200
    _assert_no_bravo(page, "bulk confirmation")
    client.post(
        reverse("admin:sync_conflict_changelist"),
        {"action": "resolve_keeping_linear", "_selected_action": ids, "index": "0", "post": "yes"},
    )
    assert Conflict.objects.get(pk=alpha[Conflict].pk).is_resolved is True
    assert Conflict.objects.get(pk=bravo[Conflict].pk).is_resolved is False


def test_resolve_and_go_to_the_next_stays_in_the_reviewers_organizations(tenants: dict[str, Any]) -> None:
    """The queue of "resolve and go to the next" is the reviewer's: Bravo's and the legacy conflicts
    (unresolved too) are never the next one, not even as an id in the redirect."""
    alpha = tenants["alpha"]
    client = client_for(tenants["alpha_user"])
    response = client.post(
        reverse("admin:sync_conflict_resolve", args=[alpha[Conflict].pk]),
        {"strategy": "linear", "version": "1", "next": "1"},
    )
    assert response.status_code == 302
    location = response["Location"]
    assert "bravo" not in location and "legacy" not in location
    assert location.split("?")[0] == reverse("admin:sync_conflict_changelist")  # none left in the queue
    assert Conflict.objects.get(pk=alpha[Conflict].pk).is_resolved is True
    others = Conflict.objects.filter(is_resolved=False, item_id__in=["item-bravo-open", "item-legacy"])
    assert others.count() == 2  # the queue had other tenants' work: the test would catch a leak


def test_autocomplete_offers_only_own_rows(tenants: dict[str, Any]) -> None:
    client = client_for(tenants["alpha_user"])
    checked = 0
    for model, model_admin in admin.site._registry.items():
        if model in NOT_TENANT_OWNED:
            continue
        for field_name in model_admin.autocomplete_fields:
            response = client.get(
                reverse("admin:autocomplete"),
                {
                    "app_label": model._meta.app_label,
                    "model_name": model._meta.model_name,
                    "field_name": field_name,
                },
            )
            assert response.status_code == 200
            ids = {int(item["id"]) for item in response.json()["results"]}
            related = model._meta.get_field(field_name).related_model
            assert ids == {tenants["alpha"][related].pk}, (model, field_name, ids)
            checked += 1
    assert checked >= 4


def test_dashboard_counts_only_own_organizations(tenants: dict[str, Any]) -> None:
    from console.dashboard import build_dashboard

    dashboard = build_dashboard(tenants["alpha_user"])
    assert dashboard.conflicts.total == 1
    assert [(row.confluence_page_id, row.count) for row in dashboard.conflicts.pairs] == [("page-alpha", 1)]
    assert sum(count.count for count in dashboard.tokens.counts) == 2
    assert {row.organization for row in dashboard.tokens.rows} == {"Alpha Corp"}
    everything = build_dashboard(tenants["unlimited"])
    assert everything.conflicts.total == 3  # alpha, bravo and the legacy conflict
    assert sum(count.count for count in everything.tokens.counts) == 4
    page = client_for(tenants["alpha_user"]).get(reverse("admin:index"))
    assert page.status_code == 200
    _assert_no_bravo(page, "dashboard")


def test_filter_choices_offer_only_own_organizations(tenants: dict[str, Any]) -> None:
    client = client_for(tenants["alpha_user"])
    for name in ("planningsession", "programincrement"):
        page = client.get(reverse(f"admin:planning_{name}_changelist")).content.decode()
        assert "Alpha Corp" in page and "Bravo Corp" not in page
    page = client.get(reverse("admin:sync_conflict_changelist")).content.decode()
    assert "page-alpha" in page and "page-bravo" not in page and "team-bravo" not in page


def test_membership_rules(tenants: dict[str, Any]) -> None:
    """Superusers and staff without memberships are unlimited; memberships limit; they are per user."""
    alpha_org = tenants["alpha"][Organization]
    assert organization_ids_for(tenants["root"]) is None
    assert organization_ids_for(tenants["unlimited"]) is None
    assert organization_ids_for(tenants["alpha_user"]) == frozenset({alpha_org.pk})
    both = reviewer_of(alpha_org, "two-orgs")
    OrganizationMembership.objects.create(user=both, organization=tenants["bravo"][Organization])
    both = get_user_model().objects.get(pk=both.pk)
    assert set(visible_to(Conflict.objects.all(), both).values_list("pk", flat=True)) == {
        tenants["alpha"][Conflict].pk,
        tenants["bravo"][Conflict].pk,
        "conflict-item-alpha-done",
        "conflict-item-bravo-done",
    }


def test_membership_is_edited_inline_on_the_user_page(tenants: dict[str, Any]) -> None:
    root = client_for(tenants["root"])
    user = tenants["unlimited"]
    page = root.get(reverse("admin:accounts_user_change", args=[user.pk]))
    assert page.status_code == 200
    assert "organization_memberships-TOTAL_FORMS" in page.content.decode()


def test_explicit_related_field_filters_are_scoped_too(tenants: dict[str, Any], monkeypatch) -> None:
    """("organization", RelatedFieldListFilter) in list_filter is replaced like a plain field name."""
    model_admin = admin.site._registry[PlanningSession]
    monkeypatch.setattr(
        type(model_admin), "list_filter", [("organization", admin.RelatedFieldListFilter), "status"]
    )
    page = client_for(tenants["alpha_user"]).get(reverse("admin:planning_planningsession_changelist"))
    body = page.content.decode()
    assert "Alpha Corp" in body and "Bravo Corp" not in body
