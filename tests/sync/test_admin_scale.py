"""The conflict changelist at scale: estimated counts, a fixed number of queries, no full COUNT(*)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from benchmarks.admin_scale import insert_conflicts
from sync.admin import ConflictAdmin
from sync.models import Conflict
from sync.paginator import EstimatedCountPaginator, planner_row_estimate
from tests.factories import (
    make_conflict,
    make_conflict_resolution,
    make_linear_issue_cache,
    make_organization,
    make_sync_history,
    make_sync_state,
    unique,
)

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:sync_conflict_changelist")
on_postgres = pytest.mark.postgres


@pytest.fixture
def su_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser(username="root", password=None))
    return client


def _fill(start: int, stop: int) -> None:
    with connection.cursor() as cursor:
        insert_conflicts(cursor, start, stop)
        cursor.execute("ANALYZE sync_conflict")


def _render(client: Client, query: str = "") -> tuple[object, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(CHANGELIST + query)
    assert response.status_code == 200
    return response, [q["sql"] for q in captured.captured_queries]


def _counts(sqls: list[str]) -> list[str]:
    return [sql for sql in sqls if "COUNT(" in sql.upper() and "sync_conflict" in sql]


def _full_counts(sqls: list[str]) -> list[str]:
    """COUNTs over the conflict table that no LIMIT bounds: what a million rows must never see."""
    return [sql for sql in _counts(sqls) if " LIMIT " not in sql]


def test_conflict_admin_is_configured_for_big_tables():
    assert ConflictAdmin.show_full_result_count is False
    assert ConflictAdmin.paginator is EstimatedCountPaginator
    assert ConflictAdmin.list_select_related == ["resolved_by"]


# --- the paginator -------------------------------------------------------------------------------


def test_paginator_counts_lists_and_small_querysets_exactly():
    for n in range(7):
        make_conflict(id=f"c{n}")
    paginator = EstimatedCountPaginator(Conflict.objects.order_by("pk"), 5)
    assert (paginator.count, paginator.num_pages, paginator.count_is_estimate) == (7, 2, False)
    assert [c.pk for c in paginator.page(2).object_list] == ["c5", "c6"]
    assert EstimatedCountPaginator(list(range(12)), 5).count == 12


def test_planner_estimate_is_none_off_postgresql_so_sqlite_counts_exactly():
    if connection.vendor == "postgresql":
        pytest.skip("checks the SQLite path")
    make_conflict(id="a")
    assert planner_row_estimate(Conflict.objects.all()) is None
    with CaptureQueriesContext(connection) as captured:
        assert EstimatedCountPaginator(Conflict.objects.order_by("pk"), 5, estimate_threshold=0).count == 1
    assert [q["sql"] for q in captured.captured_queries] == [
        'SELECT COUNT(*) AS "__count" FROM "sync_conflict"'
    ]


@on_postgres
def test_planner_estimate_reads_reltuples_unfiltered_and_explain_filtered():
    _fill(1, 2000)
    with CaptureQueriesContext(connection) as captured:
        assert planner_row_estimate(Conflict.objects.all()) == 2000
    assert "pg_class" in captured.captured_queries[0]["sql"]
    with CaptureQueriesContext(connection) as captured:
        estimate = planner_row_estimate(Conflict.objects.filter(is_resolved=True))
    assert captured.captured_queries[0]["sql"].startswith("EXPLAIN (FORMAT JSON) SELECT")
    assert 150 <= estimate <= 250  # every 10th of 2,000 is resolved


@pytest.mark.parametrize("empty", ["none", "in-nothing"])
def test_paginator_counts_an_empty_queryset_without_asking_the_database(empty):
    make_conflict(id="a")
    queryset = Conflict.objects.none() if empty == "none" else Conflict.objects.filter(pk__in=[])
    with CaptureQueriesContext(connection) as captured:
        paginator = EstimatedCountPaginator(queryset.order_by("pk"), 50)
        assert (paginator.count, paginator.count_is_estimate) == (0, False)
    assert captured.captured_queries == []


@on_postgres
def test_paginator_on_postgresql_uses_the_estimate_above_the_threshold():
    _fill(1, 2000)
    with CaptureQueriesContext(connection) as captured:
        paginator = EstimatedCountPaginator(Conflict.objects.order_by("pk"), 50, estimate_threshold=1000)
        assert (paginator.count, paginator.count_is_estimate) == (2000, True)
    sqls = [q["sql"] for q in captured.captured_queries]
    assert len(sqls) == 2
    assert "pg_class" in sqls[0]
    assert _full_counts(sqls) == []
    assert "LIMIT 1001" in _counts(sqls)[0]


@on_postgres
def test_paginator_on_postgresql_counts_small_results_exactly_with_a_bounded_count():
    _fill(1, 2000)
    paginator = EstimatedCountPaginator(Conflict.objects.filter(linear_team_id="team-3").order_by("pk"), 50)
    with CaptureQueriesContext(connection) as captured:
        assert (paginator.count, paginator.count_is_estimate) == (100, False)
    sqls = [q["sql"] for q in captured.captured_queries]
    assert len(sqls) == 2
    assert sqls[0].startswith("EXPLAIN")
    assert len(_counts(sqls)) == 1
    assert "LIMIT 10001" in _counts(sqls)[0]


@on_postgres
def test_paginator_never_counts_past_the_bound_when_statistics_are_stale():
    _fill(1, 5)  # ANALYZE sees 5 rows...
    with connection.cursor() as cursor:
        insert_conflicts(cursor, 6, 500)  # ...then 495 more arrive before the next ANALYZE
    paginator = EstimatedCountPaginator(Conflict.objects.order_by("pk"), 50, estimate_threshold=100)
    assert (paginator.count, paginator.count_is_estimate) == (101, True)


# --- the changelist ------------------------------------------------------------------------------


@on_postgres
@pytest.mark.parametrize("query", ["", "?status=all", "?status=resolved", "?linear_team_id=team-3"])
def test_changelist_on_postgresql_runs_the_same_queries_at_1000_and_3000_rows_and_no_full_count(
    su_client, monkeypatch, query
):
    # The bound scaled down with the table: 1,000 rows here stand for the million of production.
    monkeypatch.setattr(EstimatedCountPaginator, "estimate_threshold", 50)
    _fill(1, 1000)
    small_response, small = _render(su_client, query)
    _fill(1001, 3000)
    big_response, big = _render(su_client, query)

    assert len(small) == len(big)
    assert _full_counts(small + big) == []
    assert all("LIMIT 51" in sql for sql in _counts(small + big))
    cl = big_response.context["cl"]
    assert cl.paginator.count_is_estimate is True
    assert len(cl.result_list) == 50
    expected = {"": 2700, "?status=all": 3000, "?status=resolved": 300, "?linear_team_id=team-3": 135}[query]
    assert 0.8 * expected <= cl.result_count <= 1.2 * expected
    assert '<span class="cc-estimate"' in big_response.content.decode()
    # Only the shown page's rows are read, and without their JSON.
    [page_query] = [sql for sql in big if sql.startswith('SELECT "sync_conflict"."id"')]
    assert "LIMIT 50" in page_query
    # The item's title, identifier and URL are extracted in SQL (#>>); the JSON columns stay there.
    page_query = re.sub(r'\("sync_conflict"\."(linear|confluence)_change" #>', "", page_query)
    assert "linear_change" not in page_query
    assert "confluence_change" not in page_query


@on_postgres
def test_changelist_with_the_default_bound_counts_small_tables_exactly_with_the_same_queries(su_client):
    _fill(1, 1000)
    small_response, small = _render(su_client, "?status=all")
    _fill(1001, 3000)
    big_response, big = _render(su_client, "?status=all")
    assert len(small) == len(big)
    assert _full_counts(small + big) == []
    assert (small_response.context["cl"].result_count, big_response.context["cl"].result_count) == (
        1000,
        3000,
    )
    assert big_response.context["cl"].paginator.count_is_estimate is False


@on_postgres
def test_changelist_last_page_of_an_estimated_count_renders(su_client, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "estimate_threshold", 50)
    _fill(1, 1000)
    response, _ = _render(su_client, "?status=all")
    last = response.context["cl"].paginator.num_pages
    response, _ = _render(su_client, f"?status=all&p={last}")
    assert response.context["cl"].result_list


@on_postgres
@pytest.mark.parametrize("term", ["conflict-ISS-1234", "ISS-1234", "ISS-123*", "conflict-ISS-12*"])
def test_search_uses_the_indexes_on_a_big_table(rf, term):
    from django.contrib import admin

    _fill(1, 20_000)
    request = rf.get(CHANGELIST)
    conflict_admin = ConflictAdmin(Conflict, admin.site)
    queryset, _ = conflict_admin.get_search_results(request, Conflict.objects.all(), term)
    plan = queryset.explain()
    assert "Seq Scan" not in plan, plan
    assert "Index" in plan
    # Fragments match anywhere: ISS-1234 and ISS-12340 … ISS-12349.
    expected = {"conflict-ISS-1234": 11, "ISS-1234": 11, "ISS-123*": 111, "conflict-ISS-12*": 1111}[term]
    assert queryset.count() == expected


@pytest.mark.parametrize("term", ["conflict-ISS-12", "ISS-12", "ISS-1*", "iss-2"])
def test_search_finds_ids_and_fragments_and_prefix_search_uses_indexes_on_sqlite(rf, term):
    if connection.vendor != "sqlite":
        pytest.skip("the PostgreSQL plan is checked at scale above")
    from django.contrib import admin

    for n in range(1, 30):
        make_conflict(id=f"conflict-ISS-{n}", item_id=f"ISS-{n}")
    queryset, _ = ConflictAdmin(Conflict, admin.site).get_search_results(
        rf.get(CHANGELIST), Conflict.objects.all(), term
    )
    if term.endswith("*"):
        # A prefix search is a range on the indexes; fragments scan on SQLite (no trigram index).
        plan = queryset.explain()
        assert "SCAN sync_conflict" not in plan, plan
        assert "INDEX" in plan
    assert queryset.count() == {"conflict-ISS-12": 1, "ISS-12": 1, "ISS-1*": 11, "iss-2": 11}[term]


# --- every sync changelist: no query per row -----------------------------------------------------


def _conflicts_resolved_by_different_users(n: int) -> None:
    for _ in range(n):
        user = get_user_model().objects.create_user(username=unique("op"))
        make_conflict(id=unique("conflict")).resolve("linear", by=user)


def _log_entries_by_different_users(n: int) -> None:
    for _ in range(n):
        make_conflict_resolution(by=get_user_model().objects.create_user(username=unique("op")))


def _states_of_different_organizations(n: int) -> None:
    for _ in range(n):
        make_sync_state(organization=make_organization())


def _history_of_different_organizations(n: int) -> None:
    for _ in range(n):
        make_sync_history(organization=make_organization(), success=False, error="timeout")


def _issues_of_different_organizations(n: int) -> None:
    for _ in range(n):
        make_linear_issue_cache(organization=make_organization())


@pytest.mark.parametrize(
    ("model", "query", "add_rows"),
    [
        ("conflict", "?status=all", _conflicts_resolved_by_different_users),
        ("conflictresolution", "", _log_entries_by_different_users),
        ("syncstate", "", _states_of_different_organizations),
        ("synchistory", "", _history_of_different_organizations),
        ("linearissuecache", "", _issues_of_different_organizations),
    ],
)
def test_sync_changelists_run_the_same_queries_for_one_row_and_for_six(su_client, model, query, add_rows):
    """Each row's user or organization comes with the page's query (list_select_related), not its own."""
    url = reverse(f"admin:sync_{model}_changelist") + query
    add_rows(1)
    with CaptureQueriesContext(connection) as one:
        first = su_client.get(url)
    add_rows(5)
    with CaptureQueriesContext(connection) as six:
        second = su_client.get(url)

    assert (first.status_code, second.status_code) == (200, 200)
    assert (len(first.context["cl"].result_list), len(second.context["cl"].result_list)) == (1, 6)
    assert len(six.captured_queries) == len(one.captured_queries), [q["sql"] for q in six.captured_queries]
