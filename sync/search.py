"""Search the big sync tables by what operators type: titles, Linear identifiers, names, id fragments.

Each table gets one lower-cased *search document* (its ids and the titles and identifiers in its JSON)
and a term matches a row when the document contains it. On PostgreSQL migration
``sync/migrations/0009_search_indexes`` builds a pg_trgm GIN index on exactly the expression that
:class:`SearchDocument` renders, so ``LIKE '%term%'`` over a million rows is an index lookup (terms of
at least :data:`MIN_FRAGMENT_LENGTH` characters: a trigram index needs three); SQLite scans. Team and
page *names* are looked up in the small directory first and become an indexed ``IN`` on the id columns.

The expression is rendered with literal JSON paths and separators (no query parameters): an
expression index only serves a query whose expression is the same tree, and a bound parameter (server
side binding, a generic prepared plan) is not.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import BooleanField, Expression, F, Q, QuerySet, TextField

from sync.models import ConfluencePage, LinearTeam

#: Fragments shorter than this match ids exactly only (a trigram index cannot answer them).
MIN_FRAGMENT_LENGTH = 3

#: No id is longer than its column: a longer term matches nothing and is never sent to the database.
MAX_TERM_LENGTH = 255

_PATH_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SearchDocument(Expression):
    """``lower(col || ' ' || COALESCE(json #>> '{a,b}', '') || …)`` over text columns and JSON paths.

    ``parts`` are column names (text) or ``(json column, ("key", "key"))`` pairs. The SQL is the
    expression of the search indexes (see the module docstring); keep both in step.
    """

    output_field = TextField()

    def __init__(self, *parts: str | tuple[str, tuple[str, ...]]) -> None:
        super().__init__()
        self.columns: list[F] = []
        self.paths: list[tuple[str, ...] | None] = []
        for part in parts:
            column, path = (part, None) if isinstance(part, str) else part
            if path is not None and not all(_PATH_PART.match(key) for key in path):
                raise ValueError(f"JSON path {path!r} must be plain keys.")
            self.columns.append(F(column))
            self.paths.append(path)

    def get_source_expressions(self) -> list[Any]:
        return list(self.columns)

    def set_source_expressions(self, exprs: list[Any]) -> None:
        self.columns = list(exprs)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        pieces, params = [], []
        for column, path in zip(self.columns, self.paths, strict=True):
            sql, column_params = compiler.compile(column)
            params.extend(column_params)
            if path is None:
                pieces.append(sql)
            elif connection.vendor == "postgresql":
                pieces.append(f"COALESCE(({sql} #>> '{{{','.join(path)}}}'), '')")
            else:
                pieces.append(f"COALESCE(json_extract({sql}, '$.{'.'.join(path)}'), '')")
        return "lower(" + " || ' ' || ".join(pieces) + ")", params


class Contains(Expression):
    """``document LIKE '%fragment%'`` (the fragment lower-cased and escaped): a boolean filter."""

    output_field = BooleanField()
    conditional = True

    def __init__(self, document: SearchDocument, fragment: str) -> None:
        super().__init__()
        self.document = document
        self.fragment = fragment

    def get_source_expressions(self) -> list[Any]:
        return [self.document]

    def set_source_expressions(self, exprs: list[Any]) -> None:
        (self.document,) = exprs

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.document)
        pattern = "%" + connection.ops.prep_for_like_query(self.fragment.lower()) + "%"
        # Django escapes with a backslash: PostgreSQL's default LIKE escape, SQLite needs it named.
        escape = " ESCAPE '\\'" if connection.vendor == "sqlite" else ""
        return f"{sql} LIKE %s{escape}", [*params, pattern]


#: The search document of each table; migration 0006 indexes these expressions on PostgreSQL.
CONFLICT_DOCUMENT = (
    "id",
    "item_id",
    ("linear_change", ("itemData", "identifier")),
    ("linear_change", ("itemData", "title")),
    ("confluence_change", ("itemData", "title")),
)
HISTORY_DOCUMENT = ("confluence_page_id", "linear_team_id")
ISSUE_CACHE_DOCUMENT = (
    "linear_issue_id",
    ("issue_data", ("identifier",)),
    ("issue_data", ("title",)),
)


def clean_term(term: str) -> str | None:
    """The term stripped; ``None`` when it can match nothing (longer than any id or title)."""
    term = term.strip()
    return None if len(term) > MAX_TERM_LENGTH else term


def _named_ids(term: str) -> tuple[list[str], list[str]]:
    """Team and page ids whose directory name, key or title contains ``term`` (two small queries)."""
    teams = sorted({team_id for _, team_id in LinearTeam.objects.matching(term)})
    pages = sorted({page_id for _, page_id in ConfluencePage.objects.matching(term)})
    return teams, pages


#: At most this many named teams (and pages) are probed for rows in the list before the search.
PROBE_LIMIT = 20


def _present(queryset: QuerySet, field: str, ids: list[str]) -> list[str]:
    """The ``ids`` that have at least one row in ``queryset`` (one ``LIMIT 1`` query each, up to
    :data:`PROBE_LIMIT`; any beyond are kept unprobed).

    A name whose rows are all outside the list (a team whose conflicts are all resolved, in the default
    unresolved view) would make PostgreSQL expect many matches and walk the whole date index looking for
    them; dropped here, the search is answered from its indexes.
    """
    # Ordered by the id's own column: PostgreSQL then reads that id's index entries (and stops at the
    # first row in the list) instead of guessing a row will turn up soon in any order (exists() drops
    # the ordering, and a wrong guess reads the table).
    probed = [
        value
        for value in ids[:PROBE_LIMIT]
        if list(queryset.filter(**{field: value}).order_by(field).values_list(field, flat=True)[:1])
    ]
    return probed + ids[PROBE_LIMIT:]


def _pair_condition(term: str, queryset: QuerySet | None = None) -> Q:
    """Rows whose team or page the directory names with ``term``; an empty ``Q`` matches nothing here.

    With ``queryset`` (the list as filtered so far), names without rows in it are left out.
    """
    teams, pages = _named_ids(term)
    if queryset is not None:
        teams = _present(queryset, "linear_team_id", teams)
        pages = _present(queryset, "confluence_page_id", pages)
    condition = Q(pk__in=[])
    if teams:
        condition |= Q(linear_team_id__in=teams)
    if pages:
        condition |= Q(confluence_page_id__in=pages)
    return condition


def search_conflicts(queryset: QuerySet, term: str) -> QuerySet:
    """Conflicts whose id, item id, Linear identifier, title (either side), team or page matches ``term``.

    Exact ids always match (``PAY-1`` also finds ``conflict-PAY-1``); fragments of at least three
    characters match anywhere in ids, identifiers and titles, in any case.
    """
    cleaned = clean_term(term)
    if cleaned is None:
        return queryset.none()
    if not cleaned:
        return queryset
    ids = {cleaned} if cleaned.startswith("conflict-") else {cleaned, f"conflict-{cleaned}"}
    condition = Q(pk__in=sorted(ids)) | Q(item_id=cleaned) | _pair_condition(cleaned, queryset)
    if len(cleaned) >= MIN_FRAGMENT_LENGTH:
        condition |= Q(Contains(SearchDocument(*CONFLICT_DOCUMENT), cleaned))
    return queryset.filter(condition)


def search_history(queryset: QuerySet, term: str) -> QuerySet:
    """Sync runs whose page or team id contains ``term``, or whose team or page the directory names so."""
    cleaned = clean_term(term)
    if cleaned is None:
        return queryset.none()
    if not cleaned:
        return queryset
    condition = Q(confluence_page_id=cleaned) | Q(linear_team_id=cleaned) | _pair_condition(cleaned, queryset)
    if len(cleaned) >= MIN_FRAGMENT_LENGTH:
        condition |= Q(Contains(SearchDocument(*HISTORY_DOCUMENT), cleaned))
    return queryset.filter(condition)


def search_issue_cache(queryset: QuerySet, term: str) -> QuerySet:
    """Cached issues whose id, identifier or title contains ``term``, or whose team the directory names so."""
    cleaned = clean_term(term)
    if cleaned is None:
        return queryset.none()
    if not cleaned:
        return queryset
    condition = Q(linear_issue_id=cleaned)
    teams, _ = _named_ids(cleaned)
    if teams:
        # issue_data.team.id: not indexed, asked only when a team name matched (the cache is small).
        condition |= Q(issue_data__team__id__in=teams)
    if len(cleaned) >= MIN_FRAGMENT_LENGTH:
        condition |= Q(Contains(SearchDocument(*ISSUE_CACHE_DOCUMENT), cleaned))
    return queryset.filter(condition)
