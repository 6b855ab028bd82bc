"""Names instead of ids on every sync list: organizations, teams, pages and items, with links and filters."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Organization
from sync.models import Conflict, ConfluencePage, LinearTeam, SyncState
from tests.factories import (
    make_change,
    make_conflict,
    make_confluence_token,
    make_linear_issue_cache,
    make_linear_token,
    make_organization,
    make_sync_history,
    unique,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def su_client(db) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser(username="root", password=None))
    return client


def named_pair(org: Organization, n: int) -> tuple[str, str]:
    """A (page, team) of ``org`` with a sync state and directory names ``Page n`` / ``Team n``."""
    page, team = f"page-{n}", f"team-{n}"
    SyncState.objects.mark_synced(
        page, team, dt.datetime(2026, 5, 6, 7, 8, tzinfo=dt.UTC), organization_id=org.linear_id
    )
    LinearTeam.objects.upsert_many(org.linear_id, [{"id": team, "key": f"K{n}", "name": f"Team {n}"}])
    ConfluencePage.objects.upsert_many(
        org.linear_id, [{"id": page, "title": f"Page {n}", "url": f"https://wiki.example/pages/{n}"}]
    )
    return page, team


def item_change(source: str, item_id: str, **data) -> dict:
    return make_change(source, itemId=item_id, itemType="story", itemData=data)


def named_conflict(org: Organization, n: int, **data) -> str:
    page, team = named_pair(org, n)
    item = f"item-{n}"
    data = data or {
        "title": f"Checkout step {n}",
        "identifier": f"PAY-{400 + n}",
        "url": f"https://linear.app/a/{n}",
    }
    make_conflict(
        id=f"conflict-{item}",
        item_id=item,
        confluence_page_id=page,
        linear_team_id=team,
        linear_change=item_change("linear", item, **data, estimate=1),
        confluence_change=item_change("confluence", item, **data, estimate=2),
    )
    return f"conflict-{item}"


def cells(html: str, column: str) -> list[str]:
    return re.findall(rf'<td class="field-{column}[^"]*">(.*?)</td>', html, re.S)


def listed(client: Client, model: str, **params) -> list:
    response = client.get(reverse(f"admin:sync_{model}_changelist"), params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


# --- conflicts ---------------------------------------------------------------------------------------


def test_conflict_list_names_item_organization_page_and_team_with_links(su_client):
    org = make_organization(name="Northwind")
    named_conflict(org, 1)
    html = su_client.get(reverse("admin:sync_conflict_changelist")).content.decode()
    assert cells(html, "item") == [
        '<a class="item-title" href="/admin/sync/conflict/conflict-item-1/change/" title="conflict-item-1">'
        'Checkout step 1</a><div class="name-sub"><a href="https://linear.app/a/1" target="_blank" '
        'rel="noopener noreferrer" title="Open in Linear">PAY-401</a> · story</div>'
    ]
    assert cells(html, "organization_name") == [
        f'<a href="/admin/accounts/organization/{org.pk}/change/" title="{org.linear_id}">Northwind</a>'
    ]
    assert cells(html, "pair") == [
        '<a href="https://wiki.example/pages/1" title="page-1" target="_blank" rel="noopener noreferrer">'
        'Page 1</a><div class="name-sub"><span title="team-1">Team 1 (K1)</span></div>'
    ]


def test_conflict_without_title_takes_it_from_its_organizations_issue_cache(su_client):
    org = make_organization(name="Northwind")
    other = make_organization(name="Globex")
    named_conflict(org, 1, description="no title here")
    make_linear_issue_cache(
        organization=org,
        linear_issue_id="item-1",
        issue_data={"title": "From the cache", "identifier": "PAY-77", "url": "https://linear.app/a/77"},
    )
    named_conflict(other, 2, description="none either")
    # Another tenant's cache row with the same issue id is never used.
    make_linear_issue_cache(organization=org, linear_issue_id="item-2", issue_data={"title": "Not Globex's"})
    html = su_client.get(reverse("admin:sync_conflict_changelist")).content.decode()
    items = cells(html, "item")
    assert 'title="conflict-item-1">From the cache</a>' in items[1]
    assert '<a href="https://linear.app/a/77"' in items[1] and ">PAY-77</a>" in items[1]
    assert 'title="conflict-item-2">item-2</a>' in items[0]
    assert "Not Globex" not in html


def test_conflict_list_falls_back_to_ids_without_a_directory(su_client):
    make_conflict(
        id="conflict-abc",
        item_id="abc",
        confluence_page_id="163841",
        linear_team_id="32cd0164-aaaa-bbbb-cccc-000000000000",
    )
    html = su_client.get(reverse("admin:sync_conflict_changelist")).content.decode()
    assert cells(html, "pair") == [
        '<span title="163841">163841</span><div class="name-sub">'
        '<span title="32cd0164-aaaa-bbbb-cccc-000000000000">32cd0164…</span></div>'
    ]
    assert cells(html, "organization_name") == ["—"]


def test_conflict_list_names_pages_of_each_rows_own_organization(su_client):
    a, b = make_organization(name="A"), make_organization(name="B")
    named_conflict(a, 1)
    # B names the same team id differently: each row shows its own organization's name.
    LinearTeam.objects.upsert_many(b.linear_id, [{"id": "team-1", "key": "BB", "name": "B's team"}])
    html = su_client.get(reverse("admin:sync_conflict_changelist")).content.decode()
    assert "Team 1 (K1)" in html and "B&#x27;s team" not in html


def test_conflict_organization_filter_and_named_page_and_team_filters(su_client):
    a, b = make_organization(name="Alpha"), make_organization(name="Beta")
    named_conflict(a, 1)
    named_conflict(b, 2)
    make_conflict(id="orphan")
    assert [c.pk for c in listed(su_client, "conflict", organization=a.pk)] == ["conflict-item-1"]
    assert [c.pk for c in listed(su_client, "conflict", organization=b.pk)] == ["conflict-item-2"]
    assert listed(su_client, "conflict", organization="nope") == []
    response = su_client.get(reverse("admin:sync_conflict_changelist"))
    specs = {spec.title: spec for spec in response.context["cl"].filter_specs}
    assert specs["organization"].lookup_choices == [(str(a.pk), "Alpha"), (str(b.pk), "Beta")]
    assert specs["Confluence page"].lookup_choices == [("page-1", "Page 1"), ("page-2", "Page 2")]
    assert specs["Linear team"].lookup_choices == [("team-1", "Team 1 (K1)"), ("team-2", "Team 2 (K2)")]


def test_a_conflict_is_named_and_filtered_by_its_own_organization_not_its_pairs(su_client):
    """Conflict.organization scopes a reviewer's rows (visible_to); the column, the filter, the review
    page and the resolution log show that one, even where the pair's sync state says otherwise."""
    alpha, beta = make_organization(name="Alpha"), make_organization(name="Beta")
    conflict_id = named_conflict(alpha, 1)
    assert Conflict.objects.get(pk=conflict_id).organization_id == alpha.pk
    SyncState.objects.filter(confluence_page_id="page-1").update(organization=beta)  # the pair moved on

    html = su_client.get(reverse("admin:sync_conflict_changelist")).content.decode()
    assert [re.sub(r"<[^>]+>", "", cell) for cell in cells(html, "organization_name")] == ["Alpha"]
    assert [c.pk for c in listed(su_client, "conflict", organization=alpha.pk)] == [conflict_id]
    assert listed(su_client, "conflict", organization=beta.pk) == []
    review = su_client.get(reverse("admin:sync_conflict_change", args=[conflict_id])).content.decode()
    assert "Alpha" in review and "Beta" not in review

    Conflict.objects.get(pk=conflict_id).resolve("linear")
    url = reverse("admin:sync_conflictresolution_changelist")
    log = su_client.get(url).content.decode()
    assert [re.sub(r"<[^>]+>", "", cell) for cell in cells(log, "organization_of_entry")] == ["Alpha"]
    entries = {
        org.pk: su_client.get(url, {"organization": org.pk}).context["cl"].result_list
        for org in (alpha, beta)
    }
    assert [e.conflict_id for e in entries[alpha.pk]] == [conflict_id]
    assert list(entries[beta.pk]) == []


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("Checkout step 2", ["conflict-item-2"]),  # title
        ("checkout", ["conflict-item-2", "conflict-item-1"]),
        ("PAY-401", ["conflict-item-1"]),  # Linear identifier
        ("pay-402", ["conflict-item-2"]),
        ("Team 1", ["conflict-item-1"]),  # team name
        ("K2", ["conflict-item-2"]),  # team key
        ("Page 2", ["conflict-item-2"]),  # page title
        ("tem-1", ["conflict-item-1"]),  # id fragment
        ("Lieferstatus", []),
    ],
)
def test_conflict_search_finds_titles_identifiers_names_and_id_fragments(su_client, term, expected):
    org = make_organization()
    named_conflict(org, 1)
    named_conflict(org, 2)
    assert [c.pk for c in listed(su_client, "conflict", q=term)] == expected


# --- sync states, history, issue cache ------------------------------------------------------------


def test_sync_state_list_names_page_team_and_organization(su_client):
    org = make_organization(name="Northwind")
    named_pair(org, 1)
    html = su_client.get(reverse("admin:sync_syncstate_changelist")).content.decode()
    assert cells(html, "page") == [
        '<a href="https://wiki.example/pages/1" title="page-1" target="_blank" rel="noopener noreferrer">'
        "Page 1</a>"
    ]
    assert cells(html, "team") == ['<span title="team-1">Team 1 (K1)</span>']
    assert "Northwind</a>" in cells(html, "organization_name")[0]
    assert re.findall(r'<th class="field-last_synced"><a href="[^"]+">([^<]+)</a></th>', html) == [
        "2026-05-06 07:08 UTC"
    ]


def test_history_list_names_and_wraps_long_errors_as_excerpts(su_client):
    org = make_organization(name="Northwind")
    page, team = named_pair(org, 1)
    error = "Linear API rate limit exceeded (HTTP 429) " * 10
    make_sync_history(
        organization=org, confluence_page_id=page, linear_team_id=team, success=False, error=error.strip()
    )
    html = su_client.get(reverse("admin:sync_synchistory_changelist")).content.decode()
    assert ">Page 1</a>" in cells(html, "page")[0]
    assert cells(html, "team") == ['<span title="team-1">Team 1 (K1)</span>']
    assert "Northwind</a>" in cells(html, "organization_name")[0]
    [excerpt] = cells(html, "short_error")
    # On hover the head the list loaded (never the whole error: it may be 20,000 characters).
    assert excerpt.startswith(f'<span class="excerpt" title="{error.strip()[:400]}">Linear API rate limit')
    assert excerpt.endswith("…</span>")
    assert len(re.sub(r"<[^>]+>", "", excerpt.split('">', 1)[1])) == 120


def test_history_and_issue_cache_search_and_organization_filter(su_client):
    a, b = make_organization(name="Alpha"), make_organization(name="Beta")
    page, team = named_pair(a, 1)
    make_sync_history(organization=a, confluence_page_id=page, linear_team_id=team)
    make_sync_history(organization=b, confluence_page_id="p-x", linear_team_id="t-x")
    assert [h.organization_id for h in listed(su_client, "synchistory", q="Team 1")] == [a.pk]
    assert [h.organization_id for h in listed(su_client, "synchistory", q="page 1")] == [a.pk]
    assert [h.organization_id for h in listed(su_client, "synchistory", organization=b.pk)] == [b.pk]

    make_linear_issue_cache(
        organization=a,
        linear_issue_id="uuid-aaa",
        issue_data={"identifier": "PAY-412", "title": "Checkout redesign", "team": {"id": "team-1"}},
    )
    make_linear_issue_cache(organization=b, linear_issue_id="uuid-bbb", issue_data={"title": "Routing"})
    for term in ("PAY-412", "checkout", "Team 1", "uid-aa"):
        assert [i.linear_issue_id for i in listed(su_client, "linearissuecache", q=term)] == ["uuid-aaa"], (
            term
        )
    assert [i.linear_issue_id for i in listed(su_client, "linearissuecache", organization=b.pk)] == [
        "uuid-bbb"
    ]


def test_issue_cache_list_names_identifier_title_team_and_links_to_linear(su_client):
    org = make_organization(name="Northwind")
    named_pair(org, 1)
    entry = make_linear_issue_cache(
        organization=org,
        linear_issue_id="uuid-1",
        issue_data={
            "identifier": "PAY-412",
            "title": "Checkout redesign",
            "url": "https://linear.app/a/PAY-412",
            "team": {"id": "team-1"},
        },
    )
    html = su_client.get(reverse("admin:sync_linearissuecache_changelist")).content.decode()
    assert cells(html, "issue") == [
        f'<a class="item-title" href="/admin/sync/linearissuecache/{entry.pk}/change/" title="uuid-1">'
        'Checkout redesign</a><div class="name-sub"><a href="https://linear.app/a/PAY-412" target="_blank" '
        'rel="noopener noreferrer" title="Open in Linear">PAY-412</a></div>'
    ]
    assert cells(html, "team") == ['<span title="team-1">Team 1 (K1)</span>']


# --- query counts with names ----------------------------------------------------------------------------


def _n() -> int:
    """A number no other call returns (pair, team and page ids of distinct rows)."""
    return int(unique("n").rsplit("-", 1)[1])


def _named_conflicts(n: int) -> None:
    for _ in range(n):
        named_conflict(make_organization(), _n())


def _named_states(n: int) -> None:
    for _ in range(n):
        named_pair(make_organization(), _n())


def _named_history(n: int) -> None:
    for _ in range(n):
        org = make_organization()
        page, team = named_pair(org, _n())
        make_sync_history(organization=org, confluence_page_id=page, linear_team_id=team)


def _named_issues(n: int) -> None:
    for _ in range(n):
        org = make_organization()
        _, team = named_pair(org, _n())
        make_linear_issue_cache(organization=org, issue_data={"title": "T", "team": {"id": team}})


@pytest.mark.parametrize(
    ("model", "add_rows", "name_queries"),
    [
        # pair organizations, teams, pages
        ("conflict", _named_conflicts, 3),
        # teams, pages (organizations joined)
        ("syncstate", _named_states, 2),
        # organizations by key, teams, pages
        ("synchistory", _named_history, 3),
        # teams (no pages)
        ("linearissuecache", _named_issues, 1),
    ],
)
def test_named_lists_run_the_same_queries_for_one_row_and_for_six(su_client, model, add_rows, name_queries):
    url = reverse(f"admin:sync_{model}_changelist")
    add_rows(1)
    with CaptureQueriesContext(connection) as one:
        first = su_client.get(url)
    add_rows(5)
    with CaptureQueriesContext(connection) as six:
        second = su_client.get(url)
    assert (len(first.context["cl"].result_list), len(second.context["cl"].result_list)) == (1, 6)
    # Every row is named, and the names came with a fixed number of queries whatever the page size.
    named = re.findall(r'<span title="team-\d+">Team \d+ \(K\d+\)</span>', second.content.decode())
    assert len(named) == 6
    assert len(six.captured_queries) == len(one.captured_queries), [q["sql"] for q in six.captured_queries]

    def names_lookup(sql: str) -> bool:
        return (
            '"sync_linearteam"."organization_id" IN' in sql
            or '"sync_confluencepage"."organization_id" IN' in sql
            or 'FROM "accounts_organization" WHERE "accounts_organization"."id" IN' in sql
            or ('FROM "sync_syncstate"' in sql and '"sync_syncstate"."organization_id" IS NOT NULL' in sql)
        )

    lookups = [q["sql"] for q in one.captured_queries if names_lookup(q["sql"])]
    assert len(lookups) == name_queries, lookups


# --- organizations, tokens, small things ----------------------------------------------------------------


def test_organization_page_links_to_its_lists(su_client):
    org = make_organization(name="Northwind")
    html = su_client.get(reverse("admin:accounts_organization_change", args=[org.pk])).content.decode()
    for url in (
        f"/admin/accounts/lineartoken/?organization__id__exact={org.pk}",
        f"/admin/accounts/confluencetoken/?organization__id__exact={org.pk}",
        f"/admin/planning/programincrement/?organization__id__exact={org.pk}",
        f"/admin/planning/planningsession/?organization__id__exact={org.pk}",
        f"/admin/sync/syncstate/?organization={org.pk}",
        f"/admin/sync/conflict/?organization={org.pk}",
        f"/admin/sync/synchistory/?organization={org.pk}",
        f"/admin/sync/linearissuecache/?organization={org.pk}",
    ):
        assert f'<a href="{url}">' in html, url
        assert su_client.get(url).status_code == 200, url


def test_tokens_are_titled_and_listed_by_organization_name(su_client):
    org = make_organization(name="Northwind Traders")
    token = make_linear_token(organization=org)
    make_confluence_token(organization=org)
    response = su_client.get(reverse("admin:accounts_lineartoken_change", args=[token.pk]))
    assert response.context["subtitle"] == "Linear token of Northwind Traders"
    assert "<h2>Linear token of Northwind Traders</h2>" in response.content.decode()
    html = su_client.get(reverse("admin:accounts_confluencetoken_changelist")).content.decode()
    assert f'<span title="{org.linear_id}">Northwind Traders</span>' in html
    assert re.search(r'<td class="field-expires">\d{4}-\d\d-\d\d \d\d:\d\d UTC</td>', html)


def test_planning_lists_have_an_organization_column_and_filter(su_client):
    from tests.factories import make_enabler, make_feature, make_planning_session

    a, b = make_organization(name="Alpha"), make_organization(name="Beta")
    make_feature(planning_session=make_planning_session(organization=a))
    make_enabler(planning_session=make_planning_session(organization=b))
    for model, org, other in (("feature", a, b), ("enabler", b, a)):
        url = reverse(f"admin:planning_{model}_changelist")
        html = su_client.get(url).content.decode()
        assert f'<td class="field-organization"><span title="{org.linear_id}">{org.name}</span></td>' in html
        for chosen, count in ((org, 1), (other, 0)):
            response = su_client.get(url, {"planning_session__organization__id__exact": chosen.pk})
            assert len(response.context["cl"].result_list) == count


def test_view_site_link_is_hidden(su_client):
    html = su_client.get(reverse("admin:index")).content.decode()
    assert "View site" not in html


def test_sync_history_speaks_the_operators_words(su_client):
    entry = make_sync_history(success=False, error="timeout", direction="", deleted_issues=None)
    html = su_client.get(reverse("admin:sync_synchistory_changelist")).content.decode()
    assert "<title>Sync history |" in html
    assert '<p class="list-intro"' in html and "one run of the agent between a Confluence page" in html
    assert "Confluence page title, Linear team name or key" in html  # the search help
    detail = su_client.get(reverse("admin:sync_synchistory_change", args=[entry.pk])).content.decode()
    assert "Sync direction (runs imported from the old system only)" in detail
    assert "sync_configs" not in detail and "first-shape" not in detail


def test_review_page_header_names_item_organization_page_and_team(su_client):
    org = make_organization(name="Northwind")
    conflict_id = named_conflict(org, 1)
    html = su_client.get(reverse("admin:sync_conflict_change", args=[conflict_id])).content.decode()
    assert (
        '<dd id="conflict-item"><strong>Checkout step 1</strong> story <a href="https://linear.app/a/1" '
        'target="_blank" rel="noopener noreferrer" title="Open in Linear (item-1)">PAY-401</a></dd>'
    ) in html
    assert f'title="{org.linear_id}">Northwind</a></dd>' in html
    assert 'title="page-1">Page 1</a></dd>' in html
    assert '<dd id="conflict-team"><span title="team-1">Team 1 (K1)</span></dd>' in html


def test_review_page_header_falls_back_to_ids(su_client):
    make_conflict(id="conflict-x", item_id="x", confluence_page_id="163841", linear_team_id="team-z")
    html = su_client.get(reverse("admin:sync_conflict_change", args=["conflict-x"])).content.decode()
    assert '<dd id="conflict-page">163841</dd>' in html
    assert '<dd id="conflict-team">team-z</dd>' in html
    assert '<dd id="conflict-organization">—</dd>' in html


def test_resolution_log_names_the_organization_and_filters_by_it(su_client):
    a, b = make_organization(name="Alpha"), make_organization(name="Beta")
    Conflict.objects.get(pk=named_conflict(a, 1)).resolve("linear")
    Conflict.objects.get(pk=named_conflict(b, 2)).resolve("confluence")
    make_conflict(id="orphan").resolve("linear")
    url = reverse("admin:sync_conflictresolution_changelist")
    html = su_client.get(url).content.decode()
    names = [re.sub(r"<[^>]+>", "", cell) for cell in cells(html, "organization_of_entry")]
    assert names == ["—", "Beta", "Alpha"]
    entries = su_client.get(url, {"organization": a.pk}).context["cl"].result_list
    assert [entry.conflict_id for entry in entries] == ["conflict-item-1"]
    assert re.search(r'<th class="field-when"><a href="[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d UTC</a></th>', html)


def test_a_team_without_rows_in_the_view_is_left_out_of_the_search(su_client):
    """A team whose conflicts are all resolved, searched among the unresolved ones: the name is probed
    (LIMIT 1) and left out, so the list query is answered by the search indexes, not a walk of the table."""
    org = make_organization()
    Conflict.objects.get(pk=named_conflict(org, 1)).resolve("linear")
    named_conflict(org, 2)
    url = reverse("admin:sync_conflict_changelist")
    with CaptureQueriesContext(connection) as queries:
        response = su_client.get(url, {"q": "Team 1"})
    assert list(response.context["cl"].result_list) == []
    sqls = [q["sql"] for q in queries.captured_queries]
    listing = [sql for sql in sqls if sql.startswith('SELECT "sync_conflict"."id"')]
    assert listing and all("'team-1'" not in sql for sql in listing), listing
    probes = [sql for sql in sqls if 'FROM "sync_conflict"' in sql and "'team-1'" in sql and "LIMIT 1" in sql]
    assert len(probes) == 1
    # In "All" the team has rows: it is searched.
    assert [c.pk for c in listed(su_client, "conflict", q="Team 1", status="all")] == ["conflict-item-1"]
