"""The three-way review page: last synced / Linear / Confluence, picks per field, stale versions, queue."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from pytest_django.asserts import assertContains, assertRedirects

from sync.models import Conflict, ConflictResolution, FieldOwnership, ItemSnapshot
from sync.services import reconcile
from tests.factories import make_change, make_organization

pytestmark = pytest.mark.django_db

PAIR = {"confluence_page_id": "page-1", "linear_team_id": "team-1"}
CHANGELIST = reverse("admin:sync_conflict_changelist")
BASE = {"title": "A", "estimate": 3, "labels": ["x"], "state": {"name": "Todo", "id": 1}}


@pytest.fixture
def su_client(db) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser(username="root", password=None))
    return client


def _review_url(conflict_id: str) -> str:
    return reverse("admin:sync_conflict_change", args=[conflict_id])


def _resolve_url(conflict_id: str) -> str:
    return reverse("admin:sync_conflict_resolve", args=[conflict_id])


def _messages(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def _conflict(item_id: str = "i-1", linear_title: str = "L", confluence_title: str = "C") -> Conflict:
    ItemSnapshot.objects.record_synced(
        "org-a", [{"itemId": item_id, "itemType": "story", "itemData": BASE}], **PAIR
    )
    linear = make_change(
        "linear",
        itemId=item_id,
        itemData={**BASE, "title": linear_title, "labels": ["x", "y"], "state": {"name": "Doing", "id": 1}},
    )
    confluence = make_change(
        "confluence",
        itemId=item_id,
        itemData={**BASE, "title": confluence_title, "estimate": 5, "state": {"name": "Done", "id": 1}},
    )
    return reconcile("org-a", linear, confluence, **PAIR).conflict


def test_review_page_shows_three_columns_and_marks_only_the_conflicting_fields(su_client):
    FieldOwnership.objects.set_owner("org-a", "state", "confluence")
    conflict = _conflict()
    response = su_client.get(_review_url(conflict.pk))
    assert response.status_code == 200
    html = response.content.decode()
    rows = re.findall(r'<tr class="cc-row (cc-row--\w+)" data-field="([\w.]+)" data-differs="(\w+)">', html)
    assert rows == [
        ("cc-row--differs", "title", "true"),
        ("cc-row--merged", "estimate", "false"),
        ("cc-row--merged", "labels", "false"),
        ("cc-row--merged", "state.name", "false"),
    ]
    assert re.findall(
        r'<div class="cc-side-name"><span class="cc-dot cc-dot--\w+"></span>([\w ]+)</div>', html
    ) == [
        "Last synced",
        "Linear",
        "Confluence",
    ]
    # the base value of the conflicting title, and both sides
    title_row = html[html.index('data-field="title"') :].split("</tr>")[0]
    assert re.findall(r"<pre>([^<]*)</pre>", title_row) == ["&quot;A&quot;", "&quot;L&quot;", "&quot;C&quot;"]
    # one pick per conflicting path, nothing for the merged fields
    assert re.findall(r'name="pick:([\w.]+)" value="(\w+)"', html) == [
        ("title", "linear"),
        ("title", "confluence"),
    ]
    assertContains(response, "<code>estimate</code> — only Confluence changed it: Confluence&#x27;s value")
    assertContains(response, "<code>labels</code> — only Linear changed it: Linear&#x27;s value")
    assertContains(
        response, "<code>state.name</code> decided by the rule on <code>state</code> (owner:confluence)"
    )
    assert response.context["version"] == 1
    assert re.findall(r'name="version" value="(\d+)"', html) == ["1"] * 5


def test_resolving_with_picks_keeps_the_automatic_merge(su_client):
    conflict = _conflict()
    assert conflict.conflicting_fields == ["state.name", "title"]
    response = su_client.post(
        _resolve_url(conflict.pk),
        {"strategy": "fields", "version": "1", "pick:title": "confluence", "pick:state.name": "linear"},
    )
    assertRedirects(response, CHANGELIST, fetch_redirect_response=False)
    conflict.refresh_from_db()
    assert conflict.resolution_strategy == "fields"
    assert conflict.resolved_change["itemData"] == {
        "title": "C",
        "estimate": 5,
        "labels": ["x", "y"],
        "state": {"name": "Doing", "id": 1},
    }


def test_a_missing_pick_is_a_form_error_and_nothing_is_resolved(su_client):
    conflict = _conflict()
    response = su_client.post(
        _resolve_url(conflict.pk), {"strategy": "fields", "version": "1", "pick:title": "linear"}
    )
    assert response.status_code == 200
    assertContains(response, "Pick a side for state.name.")
    # the pick made is kept
    assertContains(
        response,
        'name="pick:title" value="linear" class="cc-pick" data-path="title" '
        'id="id_pick:title_0" required checked',
    )
    assert not Conflict.objects.get().is_resolved


def test_stale_version_shows_the_new_values_and_keeps_the_picks(su_client):
    conflict = _conflict()
    # a re-sync changes Linear's title while the reviewer looks at version 1
    _conflict(linear_title="L2")
    assert Conflict.objects.get().version == 2
    response = su_client.post(
        _resolve_url(conflict.pk),
        {"strategy": "fields", "version": "1", "pick:title": "confluence", "pick:state.name": "linear"},
    )
    assert response.status_code == 409
    assertContains(response, "This conflict changed while you were reviewing it", status_code=409)
    assertContains(response, "(you saw version 1,\n    it is now version 2)", status_code=409)
    html = response.content.decode()
    assert "&quot;L2&quot;" in html  # the new value
    assert re.findall(r'name="version" value="(\d+)"', html) == ["2"] * 5
    checked = re.findall(r'name="pick:([\w.]+)" value="(\w+)"[^>]* checked', html)
    assert checked == [("state.name", "linear"), ("title", "confluence")]
    conflict.refresh_from_db()
    assert not conflict.is_resolved
    assert ConflictResolution.objects.count() == 0


def test_stale_version_keeps_the_typed_manual_change(su_client):
    conflict = _conflict()
    _conflict(linear_title="L2")
    typed = (
        '{"itemId": "i-1", "source": "manual", "itemType": "story", "type": "updated", '
        '"timestamp": 1, "itemData": {"title": "mine"}}'
    )
    response = su_client.post(
        _resolve_url(conflict.pk), {"strategy": "manual", "version": "1", "resolved_change": typed}
    )
    assert response.status_code == 409
    assert response.context["manual_form"].data["resolved_change"] == typed
    assertContains(response, "&quot;title&quot;: &quot;mine&quot;", status_code=409)
    assert not Conflict.objects.get().is_resolved


def test_keep_a_side_with_a_stale_version_changes_nothing(su_client):
    conflict = _conflict()
    _conflict(linear_title="L2")
    response = su_client.post(_resolve_url(conflict.pk), {"strategy": "linear", "version": "1"})
    assert response.status_code == 409
    assert not Conflict.objects.get().is_resolved
    response = su_client.post(_resolve_url(conflict.pk), {"strategy": "linear", "version": "2"})
    assert response.status_code == 302
    assert Conflict.objects.get().resolved_change["itemData"]["title"] == "L2"


def test_resolve_and_go_to_the_next_moves_through_the_queue(su_client, monkeypatch):
    from django.utils import timezone

    start = dt.datetime(2026, 2, 1, 12, 0, tzinfo=dt.UTC)
    for minute, item in enumerate(["i-1", "i-2", "i-3"]):
        monkeypatch.setattr(timezone, "now", lambda minute=minute: start + dt.timedelta(minutes=minute))
        _conflict(item)
    monkeypatch.undo()
    # newest first: i-3, i-2, i-1; from i-3 the next is i-2
    response = su_client.post(
        _resolve_url("conflict-i-3"), {"strategy": "linear", "version": "1", "next": "1"}
    )
    assertRedirects(response, _review_url("conflict-i-2"), fetch_redirect_response=False)
    response = su_client.post(
        _resolve_url("conflict-i-2"), {"strategy": "linear", "version": "1", "next": "1"}
    )
    assertRedirects(response, _review_url("conflict-i-1"), fetch_redirect_response=False)
    response = su_client.post(
        _resolve_url("conflict-i-1"), {"strategy": "linear", "version": "1", "next": "1"}
    )
    assertRedirects(response, CHANGELIST, fetch_redirect_response=False)
    assert ("info", "No unresolved conflict left in the queue.") in _messages(response)


def test_bulk_resolve_reports_rows_changed_since_the_confirmation(su_client):
    first = _conflict("i-1")
    _conflict("i-2")
    data = {
        "action": "resolve_keeping_linear",
        "_selected_action": ["conflict-i-1", "conflict-i-2"],
        "index": 0,
    }
    confirmation = su_client.post(CHANGELIST, data)
    html = confirmation.content.decode()
    assert sorted(re.findall(r'name="version:([\w-]+)" value="(\d+)"', html)) == [
        ("conflict-i-1", "1"),
        ("conflict-i-2", "1"),
    ]
    _conflict("i-2", linear_title="changed")  # version 2 now
    response = su_client.post(
        CHANGELIST, {**data, "post": "yes", "version:conflict-i-1": "1", "version:conflict-i-2": "1"}
    )
    assert response.status_code == 302
    assert _messages(response) == [
        ("success", "Resolved 1 conflict (Keep Linear)."),
        ("warning", "1 changed since you confirmed, left alone (review them again): conflict-i-2."),
    ]
    first.refresh_from_db()
    assert first.is_resolved
    assert not Conflict.objects.get(pk="conflict-i-2").is_resolved


def test_field_ownership_admin_validates_the_path_and_owner(su_client):
    organization = make_organization(linear_id="org-x")
    url = reverse("admin:sync_fieldownership_add")
    response = su_client.post(url, {"organization": organization.pk, "field_path": "a..b", "owner": "nobody"})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "is not a dotted field path" in errors["field_path"][0]
    assert "owner" in errors
    response = su_client.post(
        url, {"organization": organization.pk, "field_path": "state.name", "owner": "linear"}
    )
    assert response.status_code == 302
    assert FieldOwnership.objects.owners_for("org-x") == {"state.name": "linear"}
    listing = su_client.get(reverse("admin:sync_fieldownership_changelist"))
    assertContains(listing, "state.name")


def test_review_page_of_json_too_deep_to_merge_still_shows_both_sides(su_client):
    deep: dict = {}
    node = deep
    for _ in range(260):
        node["a"] = {}
        node = node["a"]
    Conflict.objects.store(
        "conflict-deep",
        linear_change=make_change("linear", itemId="deep", itemData={"nested": deep}),
        confluence_change=make_change("confluence", itemId="deep", itemData={"nested": {}}),
    )
    response = su_client.get(_review_url("conflict-deep"))
    assert response.status_code == 200
    assertContains(response, "cannot be merged field by field")
    assertContains(response, 'data-field="nested" data-differs="true"')
    assert 'name="pick:' not in response.content.decode()
    response = su_client.post(_resolve_url("conflict-deep"), {"strategy": "linear", "version": "1"})
    assert response.status_code == 302
    assert Conflict.objects.get().is_resolved
