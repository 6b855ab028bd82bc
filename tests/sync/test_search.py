"""sync.search: one search document per table, matched in any case; indexed by pg_trgm on PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection

from sync.models import Conflict, LinearIssueCache, SyncHistory
from sync.search import (
    CONFLICT_DOCUMENT,
    HISTORY_DOCUMENT,
    ISSUE_CACHE_DOCUMENT,
    Contains,
    SearchDocument,
    search_conflicts,
    search_history,
    search_issue_cache,
)
from tests.factories import make_change, make_conflict, make_linear_issue_cache, make_sync_history

pytestmark = pytest.mark.django_db


def _conflict(item: str, title: str, identifier: str = "") -> Conflict:
    data = {"title": title, **({"identifier": identifier} if identifier else {})}
    return make_conflict(
        id=f"conflict-{item}",
        item_id=item,
        linear_change=make_change("linear", itemId=item, itemData=data),
        confluence_change=make_change("confluence", itemId=item, itemData={"title": f"{title} (Confluence)"}),
    )


def test_conflict_document_matches_ids_identifier_and_both_titles_in_any_case():
    _conflict("uuid-1", "Zahlungsart wählen", "PAY-412")
    _conflict("uuid-2", "Tracking page")

    def found(term: str) -> list[str]:
        return sorted(search_conflicts(Conflict.objects.all(), term).values_list("pk", flat=True))

    assert found("pay-412") == ["conflict-uuid-1"]
    assert found("ZAHLUNGSART") == ["conflict-uuid-1"]
    assert found("(confluence)") == ["conflict-uuid-1", "conflict-uuid-2"]
    assert found("uid-2") == ["conflict-uuid-2"]
    assert found("uuid-2") == ["conflict-uuid-2"]  # also exactly, as an item id
    assert found("%") == [] and found("_a") == []  # LIKE wildcards are plain characters
    assert found("x" * 256) == []
    assert found("   ") == ["conflict-uuid-1", "conflict-uuid-2"]


def test_short_terms_match_exact_ids_only():
    _conflict("ab", "ab ab")
    assert list(search_conflicts(Conflict.objects.all(), "ab").values_list("pk", flat=True)) == [
        "conflict-ab"
    ]
    assert list(search_conflicts(Conflict.objects.all(), "b").values_list("pk", flat=True)) == []


def test_history_and_cache_documents():
    make_sync_history(confluence_page_id="163841", linear_team_id="team-pay")
    make_linear_issue_cache(
        linear_issue_id="uuid-9", issue_data={"identifier": "ENG-7", "title": "Dark mode"}
    )
    assert search_history(SyncHistory.objects.all(), "3841").count() == 1
    assert search_history(SyncHistory.objects.all(), "TEAM-P").count() == 1
    assert search_issue_cache(LinearIssueCache.objects.all(), "eng-7").count() == 1
    assert search_issue_cache(LinearIssueCache.objects.all(), "DARK").count() == 1
    assert search_issue_cache(LinearIssueCache.objects.all(), "light").count() == 0


def test_search_document_refuses_json_paths_that_are_not_plain_keys():
    with pytest.raises(ValueError, match="plain keys"):
        SearchDocument(("issue_data", ("title'); DROP TABLE x; --",)))


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("model", "document", "index"),
    [
        (Conflict, CONFLICT_DOCUMENT, "sync_conflict_search_trgm"),
        (SyncHistory, HISTORY_DOCUMENT, "sync_history_search_trgm"),
        (LinearIssueCache, ISSUE_CACHE_DOCUMENT, "sync_issuecache_search_trgm"),
    ],
    ids=["conflict", "history", "issue cache"],
)
def test_postgresql_answers_the_search_expression_from_its_trigram_index(model, document, index):
    """The expression the ORM renders is the one migration 0006 indexed (else the index is never used)."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only; runs in the PostgreSQL pass of make test")
    queryset = model.objects.filter(Contains(SearchDocument(*document), "checkout"))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = queryset.explain()
    assert index in plan, plan
