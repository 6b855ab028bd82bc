"""A paginator that does not count a huge table row by row.

Django's admin asks its paginator for ``count`` on every changelist page. On PostgreSQL a ``COUNT(*)``
reads every visible row (MVCC keeps no row count), so with a million conflicts each page view would
scan the table. :class:`EstimatedCountPaginator` asks the planner instead: ``pg_class.reltuples`` for an
unfiltered table, or the row estimate of ``EXPLAIN`` for a filtered queryset, and counts exactly only up
to a bound (10,000 rows by default), so that small results show their true count and a big table is
never scanned. On other databases (SQLite) and for anything that is not a QuerySet it is Django's
Paginator.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db import DatabaseError, connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

logger = logging.getLogger(__name__)

#: Counts up to this many rows are exact; above it the planner's estimate is shown.
DEFAULT_ESTIMATE_THRESHOLD = 10_000


def _is_unfiltered(queryset: QuerySet) -> bool:
    """Whether ``queryset`` selects every row of its model's table (no WHERE, join, DISTINCT or slice)."""
    query = queryset.query
    return (
        not query.where
        and not query.distinct
        and not query.combinator
        and query.low_mark == 0
        and query.high_mark is None
        and not query.group_by
        and not query.extra
        # Only the base table in FROM: a join (select_related is not a filter) would change nothing for
        # a count, but an annotation-driven join could; stay safe and use EXPLAIN then.
        and len([alias for alias, refcount in query.alias_refcount.items() if refcount]) <= 1
    )


def table_row_estimate(queryset: QuerySet) -> int | None:
    """The planner's row count of the queryset's table from ``pg_class.reltuples``; None if unknown.

    ``reltuples`` is -1 for a table that was never vacuumed or analyzed (PostgreSQL 14+); then the
    caller falls back to ``EXPLAIN``, whose estimate uses the table's size on disk.
    """
    table = queryset.model._meta.db_table
    connection = connections[queryset.db]
    with connection.cursor() as cursor:
        # The table name goes through a bind parameter cast to regclass: no identifier quoting issues.
        cursor.execute(
            "SELECT c.reltuples::bigint FROM pg_class c WHERE c.oid = to_regclass(%s)",
            [connection.ops.quote_name(table)],
        )
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:
        return None
    return int(row[0])


def explain_row_estimate(queryset: QuerySet) -> int | None:
    """The planner's estimated number of rows the queryset returns, from ``EXPLAIN (FORMAT JSON)``."""
    # Ordering does not change the row count and would only make the plan costlier to build.
    try:
        sql, params = queryset.order_by().query.sql_with_params()
    except EmptyResultSet:
        # .none(), or a filter like pk__in=[]: Django knows the answer without asking the database.
        return 0
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        raw = cursor.fetchone()[0]
    plan = json.loads(raw) if isinstance(raw, str) else raw
    try:
        return int(plan[0]["Plan"]["Plan Rows"])
    except (KeyError, IndexError, TypeError, ValueError):
        logger.warning("Unexpected EXPLAIN output shape; falling back to an exact count.")
        return None


def planner_row_estimate(queryset: QuerySet) -> int | None:
    """The planner's estimate of ``queryset.count()`` on PostgreSQL, or None (other engines, unknown)."""
    if connections[queryset.db].vendor != "postgresql":
        return None
    try:
        if _is_unfiltered(queryset):
            estimate = table_row_estimate(queryset)
            if estimate is not None:
                return estimate
        return explain_row_estimate(queryset)
    except DatabaseError:
        # An estimate is an optimisation; a failing one must not break the page, the exact count still works.
        logger.exception("Could not get the planner's row estimate; counting exactly.")
        return None


class EstimatedCountPaginator(Paginator):
    """Paginator whose ``count`` never reads more than ``estimate_threshold + 1`` rows on PostgreSQL.

    On PostgreSQL it always runs the same two cheap queries, whatever the table's size, so a page costs
    the same number of queries with a thousand rows as with a million:

    1. the planner's estimate (``pg_class.reltuples``, or ``EXPLAIN``'s row estimate when filtered);
    2. a count bounded to ``estimate_threshold + 1`` rows (``COUNT(*)`` over a ``LIMIT`` subquery).

    Below the bound the count is exact (even when statistics are stale); at the bound it is the
    estimate (at least the bound), and ``count_is_estimate`` is set so the page can say "about".
    On other databases (SQLite) and for anything that is not a QuerySet it is Django's exact count.
    """

    estimate_threshold: int = DEFAULT_ESTIMATE_THRESHOLD

    def __init__(self, *args: Any, estimate_threshold: int | None = None, **kwargs: Any) -> None:
        """Accept Paginator's arguments, plus an optional per-instance ``estimate_threshold``."""
        super().__init__(*args, **kwargs)
        if estimate_threshold is not None:
            self.estimate_threshold = estimate_threshold
        #: Whether ``count`` is the planner's estimate rather than an exact number (for templates).
        self.count_is_estimate = False

    @cached_property
    def count(self) -> int:
        """The number of objects: exact up to ``estimate_threshold``, else the planner's estimate."""
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        estimate = planner_row_estimate(queryset)
        if estimate is None:
            return super().count
        bound = self.estimate_threshold + 1
        seen = queryset.order_by()[:bound].count()
        if seen < bound:
            return seen
        self.count_is_estimate = True
        return max(estimate, bound)

    def validate_number(self, number: Any) -> int:
        """Any page number from 1 when the count is an estimate (rows may lie past it); else Django's."""
        self.count  # noqa: B018 - computing the count decides whether it is an estimate
        if not self.count_is_estimate:
            return super().validate_number(number)
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(self.error_messages["invalid_page"]) from None
        if number < 1:
            raise EmptyPage(self.error_messages["min_page"])
        return number

    def page(self, number: Any) -> Page:
        """The page; past an estimated count it is sliced from the queryset, not cut at the estimate."""
        number = self.validate_number(number)
        if not self.count_is_estimate:
            return super().page(number)
        bottom = (number - 1) * self.per_page
        return self._get_page(self.object_list[bottom : bottom + self.per_page], number, self)
