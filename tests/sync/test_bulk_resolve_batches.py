"""Issue 18 item 17: "select all" + bulk resolve runs in bounded batches with progress and a report."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connections
from django.test import Client
from django.urls import reverse

from sync.admin import ConflictAdmin
from sync.models import Conflict, ConflictResolution
from sync.services import resolve_conflicts_in_batches, resolve_next_batch
from tests.factories import make_conflict, make_sync_state

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:sync_conflict_changelist")
PROGRESS = reverse("admin:sync_conflict_bulk_resolve")


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(
        get_user_model().objects.create_superuser("root", email="r@example.com", password=None)
    )
    return client


def _conflicts(n: int, *, team: str = "team-1") -> list[str]:
    make_sync_state(confluence_page_id="page-1", linear_team_id=team)
    return [
        make_conflict(item_id=f"item-{team}-{i:03d}", confluence_page_id="page-1", linear_team_id=team).pk
        for i in range(n)
    ]


def test_resolve_next_batch_walks_the_selection_by_id_in_bounded_batches():
    ids = _conflicts(25)
    root = get_user_model().objects.create_superuser("root", email="r@example.com", password=None)
    after, batches = None, []
    while True:
        batch = resolve_next_batch(Conflict.objects.all(), "linear", by=root, after=after, batch_size=10)
        batches.append(len(batch.resolved))
        after = batch.last_id
        if batch.finished:
            break
    assert batches == [10, 10, 5]
    assert set(Conflict.objects.filter(is_resolved=True).values_list("pk", flat=True)) == set(ids)
    assert ConflictResolution.objects.count() == 25


def test_resolve_next_batch_skips_what_someone_else_resolved_and_refuses_bad_arguments():
    ids = _conflicts(3)
    root = get_user_model().objects.create_superuser("root", email="r@example.com", password=None)
    Conflict.objects.get(pk=ids[1]).resolve("confluence", by=root)
    batch = resolve_next_batch(Conflict.objects.all(), "linear", by=root, batch_size=10)
    assert (batch.resolved, batch.finished) == ([ids[0], ids[2]], True)
    assert Conflict.objects.get(pk=ids[1]).resolution_strategy == "confluence"
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        resolve_next_batch(Conflict.objects.all(), "linear", by=root, batch_size=0)
    with pytest.raises(ValidationError, match="after must not contain NUL"):
        resolve_next_batch(Conflict.objects.all(), "linear", by=root, after="a\x00")
    with pytest.raises(ValidationError, match=r"conflict_ids\[1\] must not be empty"):
        resolve_conflicts_in_batches([ids[0], ""], "linear", by=root, batch_size=1)
    assert not Conflict.objects.filter(pk=ids[0], resolution_strategy="linear").exclude(pk=ids[0]).exists()


@pytest.mark.django_db(transaction=True)
def test_each_batch_commits_before_the_next_starts():
    """Another connection sees every finished batch: no transaction spans the whole selection."""
    _conflicts(30)
    root = get_user_model().objects.create_superuser("root", email="r@example.com", password=None)
    seen_by_others = []
    after = None
    while True:
        batch = resolve_next_batch(Conflict.objects.all(), "linear", by=root, after=after, batch_size=10)
        after = batch.last_id
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM sync_conflict WHERE is_resolved")
                seen_by_others.append(cursor.fetchone()[0])
        finally:
            other.close()
        if batch.finished:
            break
    assert seen_by_others == [10, 20, 30, 30]


def test_select_all_resolves_in_steps_with_progress_and_a_final_report(root: Client, monkeypatch):
    monkeypatch.setattr(ConflictAdmin, "bulk_batch_size", 10)
    monkeypatch.setattr(ConflictAdmin, "bulk_step_batches", 1)
    monkeypatch.setattr(ConflictAdmin, "bulk_inline_limit", 20)
    ids = _conflicts(25)
    other = _conflicts(4, team="team-2")
    confirm = root.post(
        CHANGELIST + "?linear_team_id=team-1",
        {"action": "resolve_keeping_linear", "select_across": "1", "index": "0", "_selected_action": ids[:1]},
    )
    assert confirm.status_code == 200
    assert "Resolve all 25 selected conflicts" in confirm.content.decode()
    start = root.post(
        CHANGELIST + "?linear_team_id=team-1",
        {
            "action": "resolve_keeping_linear",
            "select_across": "1",
            "_selected_action": ids[:1],
            "post": "yes",
        },
    )
    assert start.status_code == 302 and start["Location"] == PROGRESS
    assert not Conflict.objects.filter(is_resolved=True).exists()  # nothing yet: the work is in steps
    page = root.get(PROGRESS).content.decode()
    assert "0 of about 25" in page and 'id="bulk-continue"' in page
    resolved_after_step = []
    for _ in range(10):
        assert root.post(PROGRESS).status_code == 302
        resolved_after_step.append(Conflict.objects.filter(is_resolved=True).count())
        page = root.get(PROGRESS).content.decode()
        if 'id="bulk-report"' in page:
            break
    assert resolved_after_step == [10, 20, 25]
    assert "Resolved 25 conflicts (Keep Linear), in 3 batches." in page
    assert set(Conflict.objects.filter(is_resolved=True).values_list("pk", flat=True)) == set(ids)
    assert not Conflict.objects.filter(pk__in=other, is_resolved=True).exists()  # outside the filter
    # The report is shown once; the job is gone.
    assert root.get(PROGRESS).status_code == 302


def test_progress_page_needs_the_resolve_permission(root: Client):
    staff = get_user_model().objects.create_user("viewer", password=None, is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get(PROGRESS).status_code == 403
    assert root.get(PROGRESS).status_code == 302  # no job: back to the list


def test_ticked_ids_are_resolved_in_batches_in_one_request(root: Client, monkeypatch):
    monkeypatch.setattr(ConflictAdmin, "bulk_batch_size", 2)
    ids = _conflicts(5)
    response = root.post(
        CHANGELIST,
        {"action": "resolve_keeping_confluence", "_selected_action": ids, "index": "0", "post": "yes"},
    )
    assert response.status_code == 302
    assert Conflict.objects.filter(is_resolved=True, resolution_strategy="confluence").count() == 5


def test_conflict_history_page_lists_its_resolutions(root: Client):
    [conflict_id] = _conflicts(1)
    user = get_user_model().objects.get(username="root")
    conflict = Conflict.objects.get(pk=conflict_id)
    conflict.resolve("confluence", by=user)
    conflict.reopen(by=user)
    page = root.get(reverse("admin:sync_conflict_history", args=[conflict_id]))
    assert page.status_code == 200
    rows = re.findall(
        r"<td>(root|agent code)</td>\s*<td>(\w+)</td>\s*<td>([^<]+)</td>", page.content.decode()
    )
    assert rows == [("root", "Resolved", "Keep Confluence"), ("root", "Reopened", "—")]
    other = _conflicts(1, team="team-2")[0]
    assert (
        "This conflict has never been resolved."
        in root.get(reverse("admin:sync_conflict_history", args=[other])).content.decode()
    )


@pytest.mark.django_db(transaction=True)
def test_async_twins_resolve_in_batches():
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    from sync.services import aresolve_conflicts_in_batches, aresolve_next_batch

    ids = _conflicts(3)
    batch = asyncio.run(aresolve_next_batch(Conflict.objects.all(), "linear", by=None, batch_size=2))
    assert (batch.resolved, batch.finished) == (ids[:2], False)
    rest = asyncio.run(aresolve_conflicts_in_batches(ids, "confluence", by=None, batch_size=1))
    assert (rest.resolved, rest.skipped) == (ids[2:], ids[:2])
    # The twins ran on asgiref's executor thread: close its connection (the test database is dropped).
    asyncio.run(sync_to_async(connections.close_all)())
