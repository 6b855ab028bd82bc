"""A directory of names: the Linear teams and Confluence pages each organization syncs.

Sync rows keep bare ids (a Linear team UUID, a Confluence page number); the agent, which knows the names,
writes them here with :meth:`LinearTeamManager.upsert_many` / :meth:`ConfluencePageManager.upsert_many`,
and the console shows ``Payments`` instead of ``32cd0164-…``. Unique per (organization, id): every lookup
names the organization, so one tenant's directory never names another tenant's rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import connections, models, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from accounts.validation import clean_identifier, clean_text

#: Longest Linear team key (Linear allows five characters today; room to grow).
TEAM_KEY_MAX_LENGTH = 32

#: Longest Confluence page URL accepted.
PAGE_URL_MAX_LENGTH = 2000

_url_validator = URLValidator(schemes=["http", "https"])


def _clean_entries(values: Any, name: str) -> list[tuple[int, dict[str, Any]]]:
    """``values`` as a list of (position, dict); a wrong container or item type is a ``ValueError``."""
    if isinstance(values, dict | str | bytes):
        raise ValueError(f"{name} must be an iterable of dicts, not a single value.")
    try:
        values = list(values)
    except TypeError as exc:
        raise ValueError(f"{name} must be an iterable of dicts, not {type(values).__name__}.") from exc
    for position, value in enumerate(values):
        if not isinstance(value, dict):
            raise ValueError(f"{name}[{position}] must be a dict, not {type(value).__name__}.")
        if "id" not in value:
            raise ValidationError(f"{name}[{position}] has no 'id' key.", code="missing_key")
    return list(enumerate(values))


def _upsert(
    manager: models.Manager,
    organization_id: Any,
    rows: dict[str, dict[str, Any]],
    *,
    id_field: str,
    update_fields: list[str],
    at: dt.datetime,
) -> int:
    """Write ``rows`` (id → field values) for the organization in one transaction, one statement a batch."""
    linear_id = clean_identifier(organization_id, "organization_id")
    if not rows:
        return 0  # nothing to write: not even the organization
    model = manager.model
    db = manager.db
    connection = connections[db]
    with transaction.atomic(using=db):
        organization = Organization.objects.db_manager(db).ensure(linear_id)
        # Sorted by id: concurrent upserts of overlapping rows lock them in one order (no deadlock).
        objects = [
            model(organization_id=organization.pk, **{id_field: key}, **values, updated_at=at)
            for key, values in sorted(rows.items())
        ]
        fields = [model._meta.get_field(name) for name in ("organization", id_field, *update_fields)]
        batch_size = connection.ops.bulk_batch_size(fields, objects) or len(objects)
        for start in range(0, len(objects), batch_size):
            manager.bulk_create(
                objects[start : start + batch_size],
                update_conflicts=True,
                unique_fields=["organization", id_field],
                update_fields=update_fields,
            )
    return len(objects)


def _clean_at(at: Any) -> dt.datetime:
    if at is None:
        return timezone.now()
    if not isinstance(at, dt.datetime):
        raise ValueError(f"at must be a datetime, not {type(at).__name__}.")
    if timezone.is_naive(at):
        raise ValidationError("at must be an aware datetime.", code="naive_datetime")
    return at


class _DirectoryQuerySet(models.QuerySet):
    id_field = ""

    def for_organization(self, organization_id: Any) -> _DirectoryQuerySet:
        """Entries of one organization (addressed by its Linear id), ordered by id."""
        linear_id = clean_identifier(organization_id, "organization_id")
        return self.filter(organization__linear_id=linear_id).order_by(self.id_field)

    def lookup(self, keys: Iterable[tuple[int, str]]) -> dict[tuple[int, str], Any]:
        """``(organization pk, id) → entry`` for the given pairs, in one query (none for no pairs).

        The console calls this once per changelist page with the rows it shows: a constant number of
        queries whatever the page size, and each name comes from the row's own organization.
        """
        keys = {(org, key) for org, key in keys if org is not None and key}
        if not keys:
            return {}
        organizations = sorted({org for org, _ in keys})
        ids = sorted({key for _, key in keys})
        found = self.filter(organization_id__in=organizations, **{f"{self.id_field}__in": ids})
        return {
            (entry.organization_id, getattr(entry, self.id_field)): entry
            for entry in found
            if (entry.organization_id, getattr(entry, self.id_field)) in keys
        }

    def matching(self, term: str, *, limit: int = 500) -> list[tuple[int, str]]:
        """``(organization pk, id)`` of entries whose name, key or title contains ``term`` (any case).

        The directory is small (teams and pages per organization): a scan is fine; ``limit`` bounds the
        id list that a search then looks up in the big sync tables.
        """
        raise NotImplementedError


class LinearTeamQuerySet(_DirectoryQuerySet):
    id_field = "linear_team_id"

    def matching(self, term: str, *, limit: int = 500) -> list[tuple[int, str]]:
        """Teams whose name or key contains ``term``, or whose id starts with it."""
        condition = Q(name__icontains=term) | Q(key__iexact=term) | Q(linear_team_id__istartswith=term)
        return list(
            self.filter(condition)
            .order_by("organization_id", "linear_team_id")
            .values_list("organization_id", "linear_team_id")[:limit]
        )


class LinearTeamManager(models.Manager["LinearTeam"]):
    def upsert_many(
        self, organization_id: str, teams: Iterable[dict[str, Any]], *, at: dt.datetime | None = None
    ) -> int:
        """Insert or update the organization's Linear teams (``{"id", "key", "name"}`` each).

        Every team is checked before anything is written; a duplicate ``id`` keeps the last dict. One
        transaction, one ``INSERT … ON CONFLICT DO UPDATE`` per batch; returns the number of teams
        written. Teams not named keep their row (a team renamed or archived in Linear is still named).
        """
        at = _clean_at(at)
        rows: dict[str, dict[str, Any]] = {}
        for position, team in _clean_entries(teams, "teams"):
            team_id = clean_identifier(team["id"], f"teams[{position}]['id']")
            rows[team_id] = {
                "key": clean_text(
                    team.get("key"), f"teams[{position}]['key']", max_length=TEAM_KEY_MAX_LENGTH
                ),
                "name": clean_text(team.get("name"), f"teams[{position}]['name']", max_length=255),
            }
        return _upsert(
            self,
            organization_id,
            rows,
            id_field="linear_team_id",
            update_fields=["key", "name", "updated_at"],
            at=at,
        )

    async def aupsert_many(
        self, organization_id: str, teams: Iterable[dict[str, Any]], *, at: dt.datetime | None = None
    ) -> int:
        """Async twin of :meth:`upsert_many`."""
        return await sync_to_async(self.upsert_many)(organization_id, teams, at=at)


class ConfluencePageQuerySet(_DirectoryQuerySet):
    id_field = "confluence_page_id"

    def matching(self, term: str, *, limit: int = 500) -> list[tuple[int, str]]:
        """Pages whose title or space contains ``term``, or whose id starts with it."""
        condition = Q(title__icontains=term) | Q(space__iexact=term) | Q(confluence_page_id__istartswith=term)
        return list(
            self.filter(condition)
            .order_by("organization_id", "confluence_page_id")
            .values_list("organization_id", "confluence_page_id")[:limit]
        )


class ConfluencePageManager(models.Manager["ConfluencePage"]):
    def upsert_many(
        self, organization_id: str, pages: Iterable[dict[str, Any]], *, at: dt.datetime | None = None
    ) -> int:
        """Insert or update the organization's Confluence pages (``{"id", "title", "url"}``, ``space``).

        ``url`` must be an http(s) URL. Checked, deduplicated (last wins) and written like
        :meth:`LinearTeamManager.upsert_many`; returns the number of pages written.
        """
        at = _clean_at(at)
        rows: dict[str, dict[str, Any]] = {}
        for position, page in _clean_entries(pages, "pages"):
            page_id = clean_identifier(page["id"], f"pages[{position}]['id']")
            url = clean_text(page.get("url"), f"pages[{position}]['url']", max_length=PAGE_URL_MAX_LENGTH)
            try:
                _url_validator(url)
            except ValidationError:
                raise ValidationError(
                    f"pages[{position}]['url'] must be an http(s) URL.", code="invalid_url"
                ) from None
            rows[page_id] = {
                "title": clean_text(page.get("title"), f"pages[{position}]['title']", max_length=255),
                "url": url,
                "space": clean_text(
                    page.get("space"), f"pages[{position}]['space']", required=False, max_length=255
                ),
            }
        return _upsert(
            self,
            organization_id,
            rows,
            id_field="confluence_page_id",
            update_fields=["title", "url", "space", "updated_at"],
            at=at,
        )

    async def aupsert_many(
        self, organization_id: str, pages: Iterable[dict[str, Any]], *, at: dt.datetime | None = None
    ) -> int:
        """Async twin of :meth:`upsert_many`."""
        return await sync_to_async(self.upsert_many)(organization_id, pages, at=at)


class LinearTeam(models.Model):
    """A Linear team of one organization: its key (``PAY``) and name (``Payments``)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="linear_teams")
    linear_team_id = models.CharField("Linear team id", max_length=255)
    key = models.CharField(max_length=TEAM_KEY_MAX_LENGTH)
    name = models.CharField(max_length=255)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = LinearTeamManager.from_queryset(LinearTeamQuerySet)()

    class Meta:
        verbose_name = "Linear team"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "linear_team_id"], name="sync_linearteam_org_id_uniq"
            ),
            models.CheckConstraint(
                condition=~Q(linear_team_id="") & ~Q(key="") & ~Q(name=""), name="sync_linearteam_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"


class ConfluencePage(models.Model):
    """A Confluence page of one organization: its title, URL and space."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="confluence_pages")
    confluence_page_id = models.CharField("Confluence page id", max_length=255)
    title = models.CharField(max_length=255)
    url = models.URLField(max_length=PAGE_URL_MAX_LENGTH)
    space = models.CharField(max_length=255, blank=True, default="")
    updated_at = models.DateTimeField(default=timezone.now)

    objects = ConfluencePageManager.from_queryset(ConfluencePageQuerySet)()

    class Meta:
        verbose_name = "Confluence page"
        ordering = ["title"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "confluence_page_id"], name="sync_confluencepage_org_id_uniq"
            ),
            models.CheckConstraint(
                condition=~Q(confluence_page_id="") & ~Q(title="") & ~Q(url=""),
                name="sync_confluencepage_not_empty",
            ),
        ]

    def __str__(self) -> str:
        return self.title
