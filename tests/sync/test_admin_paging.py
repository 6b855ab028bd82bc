"""Issue 18 item 18: with an estimated count every row is reachable by paging (the estimate may be low)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse

from benchmarks.admin_scale import insert_conflicts
from sync.models import Conflict
from sync.paginator import EstimatedCountPaginator

pytestmark = pytest.mark.django_db
on_postgres = pytest.mark.postgres


def _stale_statistics(total: int, analyzed: int) -> None:
    """``total`` conflicts of which the planner's statistics know only ``analyzed``."""
    with connection.cursor() as cursor:
        insert_conflicts(cursor, 1, analyzed)
        cursor.execute("ANALYZE sync_conflict")
        insert_conflicts(cursor, analyzed + 1, total)


@on_postgres
def test_paginator_serves_pages_past_a_low_estimate_until_the_last_row():
    _stale_statistics(total=500, analyzed=100)
    paginator = EstimatedCountPaginator(Conflict.objects.order_by("pk"), 50, estimate_threshold=60)
    assert paginator.count_is_estimate is False  # not computed yet
    assert (paginator.count, paginator.count_is_estimate) == (100, True)  # low: 500 rows exist
    assert paginator.num_pages == 2
    seen = []
    number = 1
    while True:
        rows = list(paginator.page(number).object_list.values_list("pk", flat=True))
        seen += rows
        if len(rows) < 50:
            break
        number += 1
    assert number == 11  # page 11 is the first short (empty) one: ten full pages
    assert seen == list(Conflict.objects.order_by("pk").values_list("pk", flat=True))
    assert len(seen) == 500


def test_paginator_with_an_exact_count_keeps_djangos_page_checks():
    from django.core.paginator import EmptyPage

    paginator = EstimatedCountPaginator(list(range(10)), 5)
    assert list(paginator.page(2).object_list) == [5, 6, 7, 8, 9]
    with pytest.raises(EmptyPage):
        paginator.page(3)


@on_postgres
def test_changelist_reaches_the_oldest_conflicts_past_a_low_estimate(monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "estimate_threshold", 50)
    _stale_statistics(total=400, analyzed=100)
    client = Client()
    client.force_login(get_user_model().objects.create_superuser(username="root", password=None))
    url = reverse("admin:sync_conflict_changelist") + "?status=all"
    shown: list[str] = []
    pages = 0
    while url and pages < 20:
        response = client.get(url)
        assert response.status_code == 200
        shown += [conflict.pk for conflict in response.context["cl"].result_list]
        body = response.content.decode()
        found = re.search(r'<a href="([^"]+)" class="next-page"', body)
        url = (
            reverse("admin:sync_conflict_changelist") + found.group(1).replace("&amp;", "&") if found else ""
        )
        pages += 1
    assert response.context["cl"].paginator.num_pages < pages  # the estimate alone ended too early
    assert len(shown) == 400 and set(shown) == set(Conflict.objects.values_list("pk", flat=True))


def test_changelist_with_an_exact_count_shows_no_next_link():
    client = Client()
    client.force_login(get_user_model().objects.create_superuser(username="root", password=None))
    response = client.get(reverse("admin:sync_synchistory_changelist"))
    assert response.status_code == 200
    assert 'class="next-page"' not in response.content.decode()
