"""The cache of Linear issues per organization (old ``linear_issue_cache``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import connections, models, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from accounts.validation import (
    clean_identifier,
)
from config.db import FastLoadMixin
from sync.models.staging import upsert_through_copy
from sync.models.values import clean_json

# --- LinearIssueCache ----------------------------------------------------------------------------


class LinearIssueCacheQuerySet(models.QuerySet["LinearIssueCache"]):
    def older_than(self, age: dt.timedelta) -> LinearIssueCacheQuerySet:
        """Entries last updated more than ``age`` ago."""
        if not isinstance(age, dt.timedelta):
            raise ValueError(f"age must be a timedelta, not {type(age).__name__}.")
        if age < dt.timedelta(0):
            raise ValidationError("age must not be negative.", code="min_value")
        try:
            cutoff = timezone.now() - age
        except OverflowError:
            # As purge_issue_cache --older-than: an age reaching before year 1 is refused, not a crash.
            raise ValidationError(f"age {age} reaches before year 1.", code="max_value") from None
        return self.filter(last_updated__lt=cutoff)

    def stale(self, age: dt.timedelta = dt.timedelta(days=7)) -> LinearIssueCacheQuerySet:
        """Entries not refreshed within ``age`` (default seven days)."""
        return self.older_than(age)


class LinearIssueCacheManager(models.Manager["LinearIssueCache"]):
    def upsert_many(
        self, organization_id: Any, issues: Iterable[dict[str, Any]], *, batch_size: int = 1000
    ) -> int:
        """Insert or update cached Linear issues; one statement per batch; the number of issues written.

        Every issue is checked before anything is written; a duplicate ``id`` in one call keeps the
        last dict. All batches run in one transaction and set ``last_updated`` to now. Each batch is
        exactly one ``INSERT ... ON CONFLICT (organization, linear_issue_id) DO UPDATE``: the cache is
        keyed per organization, so one organization never overwrites or takes over another's entry.
        On PostgreSQL of ``batch_size`` issues first copied (binary ``COPY``) to a temporary table; on
        SQLite of at most ``batch_size`` issues and
        at most what one statement takes (999 parameters: 249 issues).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError("batch_size must be a positive integer.")
        if isinstance(issues, dict | str | bytes):
            raise ValueError("issues must be an iterable of dicts, not a single value.")
        try:
            issues = iter(issues)
        except TypeError as exc:
            raise ValueError(f"issues must be an iterable of dicts, not {type(issues).__name__}.") from exc
        by_id: dict[str, dict[str, Any]] = {}
        for position, issue in enumerate(issues):
            if not isinstance(issue, dict):
                raise ValueError(f"issues[{position}] must be a dict, not {type(issue).__name__}.")
            if "id" not in issue:
                raise ValidationError(f"issues[{position}] has no 'id' key.", code="missing_key")
            issue_id = clean_identifier(issue["id"], f"issues[{position}]['id']")
            clean_json(issue, f"issues[{position}]")
            by_id[issue_id] = issue  # a later duplicate replaces the earlier one
        linear_id = clean_identifier(organization_id, "organization_id")
        if not by_id:
            return 0  # nothing to write: not even the organization
        now = timezone.now()
        # Sorted by id: concurrent upserts of overlapping issues then lock rows in the same order, so
        # PostgreSQL cannot deadlock them against each other.
        items = sorted(by_id.items(), key=lambda item: item[0])
        connection = connections[self.db]
        with transaction.atomic(using=self.db):
            # Inside the transaction: a failed upsert leaves no new organization behind.
            organization = Organization.objects.db_manager(self.db).ensure(linear_id)
            if connection.vendor == "postgresql":
                _upsert_issues_through_copy(connection, organization.pk, items, now, batch_size)
                return len(items)
            rows = [
                # organization_id, not organization: the related-object descriptor's __set__ cost a
                # tenth of this method's CPU for 10,000 issues (benchmarks/bulk.py).
                LinearIssueCache(
                    organization_id=organization.pk,
                    linear_issue_id=issue_id,
                    issue_data=data,
                    last_updated=now,
                )
                for issue_id, data in items
            ]
            # SQLite caps the parameters of one statement (999): a larger batch would be split by
            # bulk_create into several statements, so cap it here and keep one statement per batch.
            insert_fields = [
                LinearIssueCache._meta.get_field(name)
                for name in ("organization", "linear_issue_id", "issue_data", "last_updated")
            ]
            batch_size = min(batch_size, connection.ops.bulk_batch_size(insert_fields, rows))
            for start in range(0, len(rows), batch_size):
                self.bulk_create(
                    rows[start : start + batch_size],
                    update_conflicts=True,
                    # The organization's own row: an issue id another organization cached is another row.
                    unique_fields=["organization", "linear_issue_id"],
                    update_fields=["issue_data", "last_updated"],
                )
        return len(items)

    async def aupsert_many(
        self, organization_id: Any, issues: Iterable[dict[str, Any]], *, batch_size: int = 1000
    ) -> int:
        """Async twin of :meth:`upsert_many`."""
        return await sync_to_async(self.upsert_many)(organization_id, issues, batch_size=batch_size)


#: The session's staging table of ``upsert_many`` on PostgreSQL (temporary, dropped at commit).
_ISSUE_UPLOAD_TABLE = "sync_issue_upload"


def _upsert_issues_through_copy(
    connection: Any,
    organization_pk: int,
    items: list[tuple[str, dict[str, Any]]],
    now: dt.datetime,
    batch_size: int,
) -> None:
    """PostgreSQL: per batch, binary ``COPY`` to a temporary table, then ``INSERT … SELECT … ON CONFLICT``.

    ``bulk_create`` spent about 60 µs of Python per issue (four values compiled, a model instance,
    the JSON text quoted by psycopg); binary ``COPY`` takes a few, as in the legacy import, and does
    three times the rows per second for 10,000 issues (benchmarks/bulk.py). Raw SQL because the ORM
    has no ``COPY``; the upsert writes the columns and conflict target ``bulk_create`` writes on
    SQLite (tests/sync/test_issue_cache.py runs the same behaviour on both). The staging steps are
    :func:`sync.models.staging.upsert_through_copy`.
    """
    from psycopg.types.json import Jsonb  # PostgreSQL only

    opts = LinearIssueCache._meta
    quote = connection.ops.quote_name
    table = quote(opts.db_table)
    issue_id, data, organization, updated = (
        quote(opts.get_field(name).column)
        for name in ("linear_issue_id", "issue_data", "organization", "last_updated")
    )
    upsert_through_copy(
        connection,
        _ISSUE_UPLOAD_TABLE,
        [(issue_id, "text"), (data, "jsonb")],
        items,
        lambda item: (item[0], Jsonb(item[1])),
        # Names quoted from the model's _meta; the values are parameters.
        lambda staging: (
            f"INSERT INTO {table} ({organization}, {issue_id}, {data}, {updated}) "  # noqa: S608
            f"SELECT %s, {issue_id}, {data}, %s FROM {staging} ORDER BY {issue_id} "
            f"ON CONFLICT ({organization}, {issue_id}) DO UPDATE SET "
            f"{data} = EXCLUDED.{data}, {updated} = EXCLUDED.{updated}"
        ),
        [organization_pk, now],
        batch_size,
    )


class LinearIssueCache(FastLoadMixin, models.Model):
    """A Linear issue as last fetched, keyed by (organization, Linear issue id)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="cached_issues")
    linear_issue_id = models.CharField(max_length=255)
    issue_data = models.JSONField(default=dict)
    last_updated = models.DateTimeField(default=timezone.now)

    objects = LinearIssueCacheManager.from_queryset(LinearIssueCacheQuerySet)()

    class Meta:
        verbose_name = "cached Linear issue"
        constraints = [
            # Per organization: an issue id is one organization's cache entry, never shared or taken over.
            models.UniqueConstraint(
                fields=["organization", "linear_issue_id"], name="sync_linearissuecache_org_issue_uniq"
            ),
            models.CheckConstraint(
                condition=~Q(linear_issue_id=""), name="sync_linearissuecache_issue_not_empty"
            ),
        ]
        indexes = [
            models.Index(fields=["last_updated"], name="sync_issuecache_updated_idx"),
        ]

    def __str__(self) -> str:
        return self.linear_issue_id
