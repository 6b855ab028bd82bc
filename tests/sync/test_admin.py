"""The conflict review console: changelist, diff page, resolve/reopen buttons, bulk actions."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.contrib.admin.templatetags.admin_list import result_headers
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from sync.admin import diff_rows, ms_to_datetime
from sync.models import Conflict, ConflictResolution
from tests.clock import FROZEN_NOW
from tests.factories import make_change, make_conflict, make_sync_state

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:sync_conflict_changelist")

LINEAR_ITEM = {
    "title": "Saved cards",
    "estimate": 5,
    "labels": ["payments", "checkout"],
    "assignee": {"id": "u1", "name": "Dana"},
    "url": "https://linear.app/acme/issue/PAY-1",
}
CONFLUENCE_ITEM = {
    "title": "Saved cards and SEPA",
    "estimate": 5,
    "labels": ["payments", "checkout", "sepa"],
    "assignee": {"id": "u1", "name": "Dana"},
}


def change_url(conflict_id: str) -> str:
    return reverse("admin:sync_conflict_change", args=[conflict_id])


def resolve_url(conflict_id: str) -> str:
    return reverse("admin:sync_conflict_resolve", args=[conflict_id])


def reopen_url(conflict_id: str) -> str:
    return reverse("admin:sync_conflict_reopen", args=[conflict_id])


def messages_of(response) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in get_messages(response.wsgi_request)]


def make_pay_conflict(**overrides) -> Conflict:
    fields = {
        "id": "conflict-PAY-1",
        "item_id": "PAY-1",
        "confluence_page_id": "page-1",
        "linear_team_id": "team-1",
        "linear_change": make_change(
            "linear", itemId="PAY-1", itemData=LINEAR_ITEM, timestamp=1_767_258_000_000
        ),
        "confluence_change": make_change(
            "confluence",
            itemId="PAY-1",
            itemData=CONFLUENCE_ITEM,
            timestamp=1_767_261_600_000,
            type="created",
        ),
    }
    fields.update(overrides)
    return make_conflict(**fields)


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser(username="root", password=None)


@pytest.fixture
def su_client(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


# --- the diff ------------------------------------------------------------------------------------


def test_diff_rows_pretty_print_each_side_and_mark_differing_fields_first():
    conflict = make_pay_conflict()
    assert diff_rows(conflict) == [
        {"field": "labels", "differs": True, "linear": '[\n  "payments",\n  "checkout"\n]',
         "confluence": '[\n  "payments",\n  "checkout",\n  "sepa"\n]'},
        {"field": "title", "differs": True, "linear": '"Saved cards"',
         "confluence": '"Saved cards and SEPA"'},
        {"field": "url", "differs": True, "linear": '"https://linear.app/acme/issue/PAY-1"',
         "confluence": None},
        {"field": "assignee", "differs": False, "linear": '{\n  "id": "u1",\n  "name": "Dana"\n}',
         "confluence": '{\n  "id": "u1",\n  "name": "Dana"\n}'},
        {"field": "estimate", "differs": False, "linear": "5", "confluence": "5"},
    ]  # fmt: skip


def test_ms_to_datetime_converts_milliseconds_and_refuses_non_numbers():
    assert ms_to_datetime(1_767_258_000_000).isoformat() == "2026-01-01T09:00:00+00:00"
    assert ms_to_datetime(True) is None
    assert ms_to_datetime("1767258000000") is None
    assert ms_to_datetime(10**20) is None


def test_review_page_shows_the_sides_side_by_side_with_differing_rows_marked(su_client):
    make_pay_conflict()
    response = su_client.get(change_url("conflict-PAY-1"))
    assert response.status_code == 200
    html = response.content.decode()
    rows = re.findall(r'<tr class="cc-row (cc-row--\w+)" data-field="(\w+)" data-differs="(\w+)">', html)
    assert rows == [
        ("cc-row--differs", "labels", "true"),
        ("cc-row--differs", "title", "true"),
        ("cc-row--differs", "url", "true"),
        ("cc-row--same", "assignee", "false"),
        ("cc-row--same", "estimate", "false"),
    ]
    # The symbol, not only the colour, says which rows differ.
    assert html.count('<span class="cc-mark" title="differs">≠</span>') == 3
    assert html.count('<span class="cc-mark" title="same on both sides">=</span>') == 2
    # Nested values pretty-printed (escaped), a missing key shown as absent.
    assertContains(
        response, "<pre>{\n  &quot;id&quot;: &quot;u1&quot;,\n  &quot;name&quot;: &quot;Dana&quot;\n}</pre>"
    )
    assertContains(response, '<td><span class="cc-missing">absent</span></td>', count=1)
    # Each side's change type and timestamp (ms since the epoch) as a date.
    assert re.findall(r'data-change-type="(\w+)"', html) == ["updated", "created"]
    assert re.findall(r'class="cc-timestamp">([^<]+)<', html) == [
        "2026-01-01 09:00:00 UTC",
        "2026-01-01 10:00:00 UTC",
    ]
    assertContains(response, "3 of 5 fields differ")
    assertContains(response, 'id="keep-linear"')
    assertContains(response, 'id="keep-confluence"')
    # The manual editor starts from the Linear change; ?prefill=confluence starts from the other side.
    assert response.context["manual_form"].initial["resolved_change"] == json.dumps(
        Conflict.objects.get().linear_change, indent=2, ensure_ascii=False
    )
    response = su_client.get(change_url("conflict-PAY-1") + "?prefill=confluence")
    assert json.loads(response.context["manual_form"].initial["resolved_change"])["source"] == "confluence"


def test_review_page_escapes_item_data(su_client):
    make_pay_conflict(
        linear_change=make_change("linear", itemId="PAY-1", itemData={"title": "<script>alert(1)</script>"}),
        confluence_change=make_change("confluence", itemId="PAY-1", itemData={"title": "ok"}),
    )
    response = su_client.get(change_url("conflict-PAY-1"))
    assertNotContains(response, "<script>alert(1)</script>")
    assertContains(response, "&lt;script&gt;alert(1)&lt;/script&gt;")


def test_review_page_of_a_missing_conflict_redirects_with_a_message(su_client):
    response = su_client.get(change_url("conflict-gone"))
    assert response.status_code == 302
    assert "doesn’t exist" in messages_of(response)[0][1]


# --- resolve paths -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "label"), [("linear", "Keep Linear"), ("confluence", "Keep Confluence")]
)
def test_keep_a_side_resolves_through_the_model_and_logs_who(su_client, superuser, strategy, label):
    conflict = make_pay_conflict()
    response = su_client.post(resolve_url(conflict.pk), {"strategy": strategy})
    assertRedirects(response, CHANGELIST, fetch_redirect_response=False)
    assert messages_of(response) == [
        ("success", f'Conflict <a href="{change_url(conflict.pk)}">conflict-PAY-1</a> resolved: {label}.')
    ]
    conflict.refresh_from_db()
    kept = conflict.linear_change if strategy == "linear" else conflict.confluence_change
    assert (conflict.is_resolved, conflict.resolution_strategy, conflict.resolved_by) == (
        True,
        strategy,
        superuser,
    )
    assert conflict.resolved_change == {**kept, "id": "resolved-conflict-PAY-1"}
    assert list(ConflictResolution.objects.values_list("conflict_id", "action", "strategy", "by")) == [
        ("conflict-PAY-1", "resolved", strategy, superuser.pk)
    ]


def test_resolve_keeps_the_changelist_filters_the_user_came_from(su_client):
    conflict = make_pay_conflict()
    preserved = "_changelist_filters=item_type%3Dstory"
    response = su_client.post(resolve_url(conflict.pk) + "?" + preserved, {"strategy": "linear"})
    assertRedirects(response, CHANGELIST + "?item_type=story", fetch_redirect_response=False)


def test_manual_resolution_with_valid_json_stores_the_operators_change(su_client, superuser):
    conflict = make_pay_conflict()
    merged = {
        **conflict.linear_change,
        "itemData": {**LINEAR_ITEM, "labels": ["payments", "checkout", "sepa"]},
    }
    response = su_client.post(
        resolve_url(conflict.pk), {"strategy": "manual", "resolved_change": json.dumps(merged)}
    )
    assertRedirects(response, CHANGELIST, fetch_redirect_response=False)
    conflict.refresh_from_db()
    assert (conflict.resolution_strategy, conflict.resolved_by) == ("manual", superuser)
    assert conflict.resolved_change == {**merged, "id": "resolved-conflict-PAY-1"}
    assert ConflictResolution.objects.get().resolved_change == conflict.resolved_change


def _broken(conflict: Conflict, **changes) -> str:
    change = dict(conflict.linear_change)
    for key, value in changes.items():
        if value is None:
            change.pop(key)
        else:
            change[key] = value
    return json.dumps(change)


@pytest.mark.parametrize(
    ("make_text", "error"),
    [
        (lambda c: '{"itemId": ', "This is not valid JSON: Expecting value (line 1, column 12)."),
        (lambda c: "[1, 2]", "The resolved change must be a JSON object ({…}), not an array."),
        (lambda c: '"text"', "The resolved change must be a JSON object ({…}), not a string."),
        (lambda c: '{"a": NaN}', "This is not valid JSON: NaN is not valid JSON."),
        (lambda c: _broken(c, itemData=None),
         "The resolved change must keep the change&#x27;s shape; it lacks: itemData."),
        (lambda c: _broken(c, timestamp=None, type=None), "it lacks: timestamp, type."),
        (lambda c: _broken(c, itemId="PAY-2"), "itemId must stay &quot;PAY-1&quot;"),
        (lambda c: _broken(c, itemType="epic"), "itemType must stay &quot;story&quot;"),
        (lambda c: _broken(c, itemData=[1]),
         "resolved_change[&#x27;itemData&#x27;] must be a JSON object, not list."),
        (lambda c: _broken(c, type="merged"), "type must be one of created, updated, deleted."),
        (lambda c: _broken(c, timestamp="yesterday"), "timestamp must be a whole number of milliseconds"),
        (lambda c: _broken(c, source=""), "resolved_change[&#x27;source&#x27;] must be a non-empty string."),
    ],
    ids=[
        "bad-json", "array", "string", "nan", "no-itemData", "no-timestamp-type", "other-item", "other-type",
        "itemData-not-object", "bad-type", "bad-timestamp", "empty-source",
    ],
)  # fmt: skip
def test_manual_resolution_with_bad_input_shows_the_error_and_writes_nothing(su_client, make_text, error):
    conflict = make_pay_conflict()
    before = Conflict.objects.filter(pk=conflict.pk).values().get()
    text = make_text(conflict)
    response = su_client.post(resolve_url(conflict.pk), {"strategy": "manual", "resolved_change": text})
    assert response.status_code == 200
    assertContains(response, error)
    assertContains(response, '<details class="cc-manual" id="manual-resolution" open>')
    # The operator's text comes back in the editor, to be fixed rather than retyped.
    assert response.context["manual_form"]["resolved_change"].value() == text
    # The page was rendered by the POST to resolve/: its links still lead to the review page.
    assertContains(response, f'href="{change_url(conflict.pk)}?prefill=confluence#manual-resolution"')
    assert Conflict.objects.filter(pk=conflict.pk).values().get() == before
    assert ConflictResolution.objects.count() == 0
    assert messages_of(response) == []


def test_unknown_strategy_is_an_error_message_and_writes_nothing(su_client):
    conflict = make_pay_conflict()
    response = su_client.post(resolve_url(conflict.pk), {"strategy": "both"})
    assertRedirects(response, change_url(conflict.pk), fetch_redirect_response=False)
    assert messages_of(response) == [("error", "Unknown resolution strategy 'both'.")]
    assert not Conflict.objects.get().is_resolved


def test_resolving_a_conflict_someone_resolved_meanwhile_says_so_and_changes_nothing(
    su_client, other_operator
):
    conflict = make_pay_conflict()
    assert su_client.get(change_url(conflict.pk)).status_code == 200  # the reviewer opens the page...
    Conflict.objects.get(pk=conflict.pk).resolve("confluence", by=other_operator)  # ...bob is faster
    response = su_client.post(resolve_url(conflict.pk), {"strategy": "linear"})
    assertRedirects(response, change_url(conflict.pk), fetch_redirect_response=False)
    [(level, text)] = messages_of(response)
    assert level == "warning"
    assert text.startswith("Conflict 'conflict-PAY-1' was already resolved (confluence) by bob at ")
    assert text.endswith("Nothing was changed.")
    conflict.refresh_from_db()
    assert (conflict.resolution_strategy, conflict.resolved_by) == ("confluence", other_operator)
    assert ConflictResolution.objects.count() == 1


def test_resolve_and_reopen_accept_only_post(su_client):
    conflict = make_pay_conflict()
    assert su_client.get(resolve_url(conflict.pk)).status_code == 405
    assert su_client.get(reopen_url(conflict.pk)).status_code == 405


def test_resolve_without_a_csrf_token_is_refused(superuser):
    conflict = make_pay_conflict()
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    response = client.post(resolve_url(conflict.pk), {"strategy": "linear"})
    assert response.status_code == 403
    assert not Conflict.objects.get().is_resolved


def test_resolve_of_a_missing_conflict_redirects_with_a_message(su_client):
    response = su_client.post(resolve_url("conflict-gone"), {"strategy": "linear"})
    assert response.status_code == 302
    assert "doesn’t exist" in messages_of(response)[0][1]


def test_a_resolved_conflict_is_read_only_and_says_who_when_and_how(su_client, other_operator):
    conflict = make_pay_conflict()
    conflict.resolve("confluence", by=other_operator)
    response = su_client.get(change_url(conflict.pk))
    assertNotContains(response, 'id="keep-linear"')
    assertNotContains(response, 'id="keep-confluence"')
    assertNotContains(response, 'id="manual-resolution"')
    assertContains(response, "<strong>Resolved — Keep Confluence</strong>")
    assertContains(response, '<strong id="resolved-by">bob</strong>')
    assertContains(response, f'<time datetime="{conflict.resolved_at.isoformat()}" id="resolved-at">')
    assertContains(response, 'id="reopen-button"')
    assertContains(response, "&quot;id&quot;: &quot;resolved-conflict-PAY-1&quot;")


def test_reopen_makes_the_conflict_unresolved_and_logs_it(su_client, superuser, other_operator):
    conflict = make_pay_conflict()
    conflict.resolve("linear", by=other_operator)
    response = su_client.post(reopen_url(conflict.pk))
    assertRedirects(response, change_url(conflict.pk), fetch_redirect_response=False)
    assert messages_of(response) == [("success", "Conflict conflict-PAY-1 reopened: it is unresolved again.")]
    conflict.refresh_from_db()
    assert (conflict.is_resolved, conflict.resolution_strategy, conflict.resolved_by) == (False, "", None)
    assert list(ConflictResolution.objects.order_by("id").values_list("action", "by")) == [
        ("resolved", other_operator.pk),
        ("reopened", superuser.pk),
    ]
    # The log is shown, read-only, on the conflict.
    response = su_client.get(change_url(conflict.pk))
    assert re.findall(r'<tr data-action="(\w+)">', response.content.decode()) == ["resolved", "reopened"]
    assertContains(response, "<td>bob</td>")
    assertContains(response, "<td>root</td>")


def test_reopen_of_an_unresolved_conflict_is_a_warning(su_client):
    conflict = make_pay_conflict()
    response = su_client.post(reopen_url(conflict.pk))
    assert messages_of(response) == [
        ("warning", "Conflict 'conflict-PAY-1' is not resolved. Nothing was changed.")
    ]
    assert ConflictResolution.objects.count() == 0


def test_posting_the_change_form_is_refused(su_client):
    conflict = make_pay_conflict()
    response = su_client.post(change_url(conflict.pk), {"is_resolved": "on", "resolution_strategy": "linear"})
    assert response.status_code == 403
    assert not Conflict.objects.get().is_resolved


def test_conflicts_cannot_be_added_or_deleted_in_the_admin(su_client):
    conflict = make_pay_conflict()
    assert su_client.get(reverse("admin:sync_conflict_add")).status_code == 403
    assert (
        su_client.post(reverse("admin:sync_conflict_delete", args=[conflict.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert Conflict.objects.count() == 1


# --- changelist ----------------------------------------------------------------------------------


def _listed(response) -> list[str]:
    return [conflict.pk for conflict in response.context["cl"].result_list]


def test_changelist_shows_unresolved_by_default_with_resolved_and_all_one_click_away(su_client, operator):
    make_conflict(id="open-1")
    make_conflict(id="open-2")
    make_conflict(id="done-1").resolve("linear", by=operator)

    response = su_client.get(CHANGELIST)
    assert _listed(response) == ["open-2", "open-1"]
    assert response.context["title"] == "Unresolved conflicts"
    status_filter = response.context["cl"].filter_specs[0]
    choices = list(status_filter.choices(response.context["cl"]))
    assert [(c["display"], c["selected"], c["query_string"]) for c in choices] == [
        ("Unresolved", True, "?"),
        ("Resolved", False, "?status=resolved"),
        ("All", False, "?status=all"),
    ]
    assert _listed(su_client.get(CHANGELIST + "?status=resolved")) == ["done-1"]
    assert _listed(su_client.get(CHANGELIST + "?status=all")) == ["done-1", "open-2", "open-1"]


def test_changelist_says_when_nothing_is_left_to_review(su_client, operator):
    make_conflict(id="done").resolve("linear", by=operator)
    assertContains(su_client.get(CHANGELIST), "No unresolved conflicts: Linear and Confluence agree.")
    assertContains(su_client.get(CHANGELIST + "?item_type=epic"), "No conflict matches these filters.")
    assertNotContains(su_client.get(CHANGELIST + "?status=all"), 'id="no-conflicts"')


def test_changelist_columns(su_client):
    make_pay_conflict()
    response = su_client.get(CHANGELIST)
    html = response.content.decode()
    headers = [str(header["text"]) for header in result_headers(response.context["cl"])][1:]
    assert headers == ["id", "type", "item", "page", "team", "age", "≠ fields", "resolution"]
    cells = re.findall(r'<td class="field-(\w+)[^"]*">([^<]*)</td>', html)
    assert cells == [
        ("type", "story"),
        ("item", "PAY-1"),
        ("page", "page-1"),
        ("team", "team-1"),
        ("age", "0\xa0minutes"),
        ("differing_fields", "3"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("resolution_strategy=confluence&status=all", ["b"]),
        ("item_type=epic", ["c"]),
        ("confluence_page_id=p2", ["c"]),
        ("linear_team_id=t1", ["a"]),
        ("confluence_page_id=p1&linear_team_id=t1", ["a"]),
        ("status=all&confluence_page_id=p1", ["b", "a"]),
    ],
)
def test_changelist_filters(su_client, operator, query, expected):
    make_conflict(id="a", confluence_page_id="p1", linear_team_id="t1")
    make_conflict(id="b", confluence_page_id="p1", linear_team_id="t2").resolve("confluence", by=operator)
    make_conflict(
        id="c",
        confluence_page_id="p2",
        linear_team_id="t2",
        linear_change=make_change("linear", itemId="e1", itemType="epic"),
        confluence_change=make_change("confluence", itemId="e1", itemType="epic"),
    )
    assert _listed(su_client.get(f"{CHANGELIST}?{query}")) == expected


def test_changelist_date_filter(clock, su_client):
    # The clock comes first, so that the login is made at its time.
    make_conflict(id="old")
    make_conflict(id="new")
    Conflict.objects.filter(pk="old").update(created_at=FROZEN_NOW - dt.timedelta(days=30))
    response = su_client.get(CHANGELIST)
    date_filter = response.context["cl"].filter_specs[-1]
    links = {c["display"]: c["query_string"] for c in date_filter.choices(response.context["cl"])}
    assert _listed(su_client.get(CHANGELIST + links["Past 7 days"])) == ["new"]
    assert _listed(su_client.get(CHANGELIST)) == ["new", "old"]


def test_page_and_team_filter_choices_come_from_sync_state(su_client):
    make_sync_state(confluence_page_id="p-b", linear_team_id="t-1")
    make_sync_state(confluence_page_id="p-a", linear_team_id="t-1")
    response = su_client.get(CHANGELIST + "?confluence_page_id=p-x")
    specs = {spec.title: spec for spec in response.context["cl"].filter_specs}
    assert specs["Confluence page"].lookup_choices == [("p-a", "p-a"), ("p-b", "p-b"), ("p-x", "p-x")]
    assert specs["Linear team"].lookup_choices == [("t-1", "t-1")]


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("conflict-PAY-1", ["conflict-PAY-1"]),
        ("PAY-1", ["conflict-PAY-1"]),  # the item id, and conflict-<term>
        ("pay-1", []),  # exact: the indexes are case-sensitive
        ("PAY", []),
        ("PAY-1*", ["conflict-PAY-12", "conflict-PAY-1"]),
        ("conflict-PAY-12*", ["conflict-PAY-12"]),
        ("  PAY-12  ", ["conflict-PAY-12"]),
    ],
)
def test_changelist_search_by_conflict_id_and_item_id(su_client, term, expected):
    make_pay_conflict()
    make_conflict(id="conflict-PAY-12", item_id="PAY-12")
    make_conflict(id="other", item_id="X-1")
    assert _listed(su_client.get(CHANGELIST, {"q": term})) == expected


def test_prefix_search_looks_up_the_collation_once(rf, django_assert_num_queries):
    from django.contrib import admin

    from sync.admin import ConflictAdmin

    make_conflict(id="conflict-PAY-12", item_id="PAY-12")
    # Building the condition reads the database collation (PostgreSQL only), once for both columns.
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 0):
        queryset, _ = ConflictAdmin(Conflict, admin.site).get_search_results(
            rf.get(CHANGELIST), Conflict.objects.all(), "PAY-1*"
        )
    assert list(queryset.values_list("pk", flat=True)) == ["conflict-PAY-12"]


def test_changelist_loads_no_json_column(su_client):
    make_pay_conflict()
    with CaptureQueriesContext(connection) as captured:
        response = su_client.get(CHANGELIST + "?status=all")
    assert response.status_code == 200
    conflict_selects = [q["sql"] for q in captured.captured_queries if 'FROM "sync_conflict"' in q["sql"]]
    assert conflict_selects, "the changelist did not read conflicts"
    for sql in conflict_selects:
        assert "linear_change" not in sql
        assert "confluence_change" not in sql
        assert "resolved_change" not in sql
    [conflict] = response.context["cl"].result_list
    assert conflict.get_deferred_fields() == {"linear_change", "confluence_change", "resolved_change"}


def test_changelist_query_count_does_not_grow_with_rows(su_client, operator, django_assert_num_queries):
    for n in range(3):
        make_conflict(id=f"a{n}").resolve("linear", by=operator)
    with CaptureQueriesContext(connection) as few:
        su_client.get(CHANGELIST + "?status=all")
    for n in range(30):
        make_conflict(id=f"b{n}").resolve("confluence", by=operator)
    with django_assert_num_queries(len(few.captured_queries)):
        response = su_client.get(CHANGELIST + "?status=all")
    assert len(_listed(response)) == 33


# --- bulk actions --------------------------------------------------------------------------------


def _action(client, action: str, ids: list[str], *, confirm: bool = False, query: str = ""):
    data = {"action": action, "_selected_action": ids, "index": 0}
    if confirm:
        data["post"] = "yes"
    return client.post(CHANGELIST + query, data)


def test_bulk_resolve_shows_a_confirmation_page_listing_what_changes_and_writes_nothing(su_client, operator):
    make_pay_conflict()
    make_conflict(id="conflict-b")
    make_conflict(id="conflict-done").resolve("confluence", by=operator)
    response = _action(su_client, "resolve_keeping_linear", ["conflict-PAY-1", "conflict-b", "conflict-done"])
    assert response.status_code == 200
    assert response.template_name == "admin/sync/conflict/resolve_selected_confirmation.html"
    html = response.content.decode()
    assert re.findall(r'<li data-conflict-id="([^"]+)">\s*<strong>', html) == ["conflict-b", "conflict-PAY-1"]
    assert [(c["conflict"].pk, [f["field"] for f in c["fields"]]) for c in response.context["changes"]] == [
        ("conflict-b", ["title"]),
        ("conflict-PAY-1", ["labels", "title", "url"]),
    ]
    assertContains(response, "Kept (Linear)")
    assertContains(response, "<pre>&quot;Saved cards and SEPA&quot;</pre>")  # dropped Confluence value
    assert [c.pk for c in response.context["already_resolved"]] == ["conflict-done"]
    assertContains(response, 'value="Yes, resolve keeping Linear"')
    assert sorted(re.findall(r'name="_selected_action" value="([^"]+)"', html)) == [
        "conflict-PAY-1",
        "conflict-b",
        "conflict-done",
    ]
    assert Conflict.objects.filter(is_resolved=True).count() == 1
    assert ConflictResolution.objects.count() == 1


def test_bulk_resolve_confirmed_resolves_in_one_go_and_reports_stale_ones(
    su_client, superuser, other_operator
):
    make_pay_conflict()
    make_conflict(id="conflict-b")
    make_conflict(id="conflict-c")
    # Shown on the confirmation page as unresolved; bob resolves c before the reviewer confirms.
    _action(su_client, "resolve_keeping_confluence", ["conflict-PAY-1", "conflict-b", "conflict-c"])
    Conflict.objects.get(pk="conflict-c").resolve("linear", by=other_operator)

    response = _action(
        su_client, "resolve_keeping_confluence", ["conflict-PAY-1", "conflict-b", "conflict-c"], confirm=True
    )
    assertRedirects(response, CHANGELIST, fetch_redirect_response=False)
    assert messages_of(response) == [
        ("success", "Resolved 2 conflicts (Keep Confluence)."),
        ("warning", "1 already resolved by someone else, left alone: conflict-c."),
    ]
    rows = {c.pk: (c.resolution_strategy, c.resolved_by_id) for c in Conflict.objects.all()}
    assert rows == {
        "conflict-PAY-1": ("confluence", superuser.pk),
        "conflict-b": ("confluence", superuser.pk),
        "conflict-c": ("linear", other_operator.pk),
    }
    assert ConflictResolution.objects.filter(by=superuser).count() == 2


def test_bulk_resolve_reports_conflicts_deleted_meanwhile(su_client):
    make_conflict(id="conflict-a")
    make_conflict(id="conflict-b")
    Conflict.objects.discard("conflict-b")
    response = _action(su_client, "resolve_keeping_linear", ["conflict-a", "conflict-b"], confirm=True)
    assert messages_of(response) == [
        ("success", "Resolved 1 conflict (Keep Linear)."),
        ("warning", "1 no longer exist: conflict-b."),
    ]
    # The message alone would pass if nothing were written: the surviving conflict is really resolved.
    assert list(Conflict.objects.values_list("pk", "is_resolved", "resolution_strategy")) == [
        ("conflict-a", True, "linear")
    ]


def test_bulk_resolve_select_across_resolves_every_filtered_conflict(su_client):
    for n in range(3):
        make_conflict(id=f"p{n}", confluence_page_id="page-x", linear_team_id="t")
    make_conflict(id="elsewhere", confluence_page_id="page-y", linear_team_id="t")
    data = {"action": "resolve_keeping_linear", "select_across": "1", "index": 0, "_selected_action": ["p0"]}
    response = su_client.post(CHANGELIST + "?confluence_page_id=page-x", data)
    assert response.status_code == 200
    assert response.context["select_across"] is True
    assert [c["conflict"].pk for c in response.context["changes"]] == ["p2", "p1", "p0"]
    response = su_client.post(CHANGELIST + "?confluence_page_id=page-x", {**data, "post": "yes"})
    assert messages_of(response) == [("success", "Resolved 3 conflicts (Keep Linear).")]
    assert sorted(Conflict.objects.filter(is_resolved=True).values_list("pk", flat=True)) == [
        "p0",
        "p1",
        "p2",
    ]
    assert not Conflict.objects.get(pk="elsewhere").is_resolved
