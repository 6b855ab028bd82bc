"""The conflict review console and the read-only sync screens.

Every resolution goes through ``Conflict.resolve()`` / ``Conflict.reopen()`` /
``sync.services.resolve_conflicts`` — the code agent code uses — so the admin adds no business rule of
its own: it renders, asks for confirmation, checks permissions and reports.

Scale: the conflict and history changelists never run a full ``COUNT(*)``
(``show_full_result_count = False``, :class:`sync.paginator.EstimatedCountPaginator`, no facets), load no
JSON column for the rows they list, and build their filter choices from constants or the small
SyncState table rather than ``SELECT DISTINCT`` over millions of rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connections
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce, Substr
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince
from django.views.decorators.http import require_POST

from accounts.admin_tenancy import TenantScopedAdminMixin
from accounts.models import Organization
from accounts.tenancy import is_limited, visible_to
from accounts.validation import ERROR_EXCERPT_LENGTH, error_excerpt
from config.display import when
from config.logging import redact
from sync.diff import MISSING
from sync.forms import FieldOwnershipForm, FieldPicksForm, ManualResolutionForm, pretty_json
from sync.merge import Merge
from sync.models import (
    Conflict,
    ConflictAlreadyResolved,
    ConflictChanged,
    ConflictResolution,
    ConfluencePage,
    FieldOwnership,
    LinearIssueCache,
    LinearTeam,
    ResolutionStrategy,
    SyncHistory,
    SyncState,
)
from sync.models.outbox import NOT_FOR_THE_OUTBOX
from sync.paginator import EstimatedCountPaginator
from sync.search import search_conflicts, search_history, search_issue_cache
from sync.services import (
    DEFAULT_BULK_BATCH_SIZE,
    resolve_conflicts_in_batches,
    resolve_next_batch,
)

logger = logging.getLogger(__name__)

#: JSON columns the conflict changelist never loads (each row can hold kilobytes of issue data).
CONFLICT_JSON_FIELDS = ("linear_change", "confluence_change", "resolved_change")

#: Item types the agent writes; the filter lists these instead of a SELECT DISTINCT over the table.
KNOWN_ITEM_TYPES = ("epic", "feature", "story", "enabler")

#: At most this many pages/teams in a filter (read from SyncState, one row per pair).
FILTER_CHOICES_LIMIT = 50

#: Characters of an error read for a list's excerpt: more than shown, so that redaction sees a token
#: that straddles the cut whole.
ERROR_HEAD_LENGTH = 2 * ERROR_EXCERPT_LENGTH

#: At most this many conflicts are listed in detail on the bulk confirmation page.
CONFIRMATION_DETAIL_LIMIT = 100

#: No id is longer than its column: a longer search term matches nothing and is never sent to the database
#: (SQLite refuses LIKE patterns over 50,000 bytes).
MAX_SEARCH_TERM_LENGTH = 255


# --- helpers -------------------------------------------------------------------------------------


def ms_to_datetime(value: Any) -> dt.datetime | None:
    """A change's ``timestamp`` (milliseconds since the epoch) as an aware datetime; None if not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def side_summary(change: Any) -> dict[str, Any]:
    """What the change page shows about one side: change type, source, id, and its timestamp as a date."""
    change = change if isinstance(change, dict) else {}
    timestamp = change.get("timestamp")
    return {
        "type": change.get("type") or "",
        "source": change.get("source") or "",
        "id": change.get("id") or "",
        "timestamp": timestamp,
        "at": ms_to_datetime(timestamp),
    }


def diff_rows(conflict: Conflict) -> list[dict[str, Any]]:
    """The field table of the change page: pretty JSON per side, ``None`` where a side lacks the key."""
    rows = []
    for row in conflict.item_data_diff():
        rows.append(
            {
                "field": row.field,
                "differs": row.differs,
                "linear": None if row.linear is MISSING else pretty_json(row.linear),
                "confluence": None if row.confluence is MISSING else pretty_json(row.confluence),
            }
        )
    return rows


#: How the review page names a merge decision (``sync.merge`` vocabulary).
DECISION_LABELS = {
    "linear": "only Linear changed it: Linear's value",
    "confluence": "only Confluence changed it: Confluence's value",
    "same": "both changed it the same way",
    "merged": "both changed the list: additions and removals of both kept",
    "owner:linear": "owner rule: Linear decides",
    "owner:confluence": "owner rule: Confluence decides",
    "newest:linear": "owner rule 'newest': Linear's change is newer",
    "newest:confluence": "owner rule 'newest': Confluence's change is newer",
}


def _value_at(item: Any, path: str) -> Any:
    node = item
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return MISSING
        node = node[key]
    return node


def three_way_rows(conflict: Conflict, merge: Merge) -> list[dict[str, Any]]:
    """The review page's rows: last synced, Linear, Confluence per path; conflicts first.

    A row per conflicting path and per automatically decided path (dotted where nested), then one per
    remaining top-level field (the same on both sides).
    """
    base = (conflict.base_change or {}).get("itemData") if conflict.base_change else None
    linear = (conflict.linear_change or {}).get("itemData") or {}
    confluence = (conflict.confluence_change or {}).get("itemData") or {}
    conflicting = conflict.conflict_paths(merge)
    decided = [path for path in merge.decisions if path not in conflicting]
    covered = {path.split(".")[0] for path in [*conflicting, *decided]}
    rest = sorted(key for key in {*(base or {}), *linear, *confluence} if key not in covered)

    def shown(value: Any) -> str | None:
        return None if value is MISSING else pretty_json(value)

    rows = []
    for kind, field_paths in (("conflict", conflicting), ("merged", decided), ("same", rest)):
        for field_path in field_paths:
            decision = merge.decisions.get(field_path, "")
            rows.append(
                {
                    "field": field_path,
                    "kind": kind,
                    "base": None if base is None else shown(_value_at(base, field_path)),
                    "linear": shown(_value_at(linear, field_path)),
                    "confluence": shown(_value_at(confluence, field_path)),
                    "decision": decision,
                    "decision_label": DECISION_LABELS.get(decision, decision),
                    "rule": merge.owner_rules_applied.get(field_path, ""),
                }
            )
    return rows


def sorts_by_code_point(alias: str) -> bool:
    """Whether the database orders text by code point (SQLite's BINARY, PostgreSQL's C collations)."""
    connection = connections[alias]
    if connection.vendor == "sqlite":
        return True
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT datcollate FROM pg_database WHERE datname = current_database()")
        collation = cursor.fetchone()[0]
    return collation in {"C", "POSIX"} or collation.upper().startswith("C.")


def prefix_condition(field: str, prefix: str, by_code_point: bool) -> Q:
    """``field`` starts with ``prefix``, written so that a B-tree index on ``field`` can answer it.

    ``LIKE 'p%'`` uses a plain B-tree index only under the C collation (PostgreSQL) or with
    case-sensitive LIKE (SQLite); the equivalent range ``p <= field < p'`` (``p'``: last character + 1)
    uses it wherever text sorts by code point (``by_code_point``, from :func:`sorts_by_code_point`), and
    ``startswith`` keeps the result exact elsewhere.
    """
    condition = Q(**{f"{field}__startswith": prefix})
    last = ord(prefix[-1])
    if last < 0x10FFFF and by_code_point:
        upper = prefix[:-1] + chr(last + 1)
        condition &= Q(**{f"{field}__gte": prefix, f"{field}__lt": upper})
    return condition


# --- names: organizations, teams, pages and items instead of bare ids (issue 19) ------------------

#: The console's stylesheet for the sync lists: names over ids, errors wrapped as excerpts.
LIST_CSS = {"all": ["console/lists.css"]}

#: Organizations offered by the organization filter.
ORGANIZATION_CHOICES_LIMIT = 100


def short_id(value: str) -> str:
    """A long id (a UUID) cut to eight characters; short ids (page numbers) whole."""
    return value if len(value) <= 12 else f"{value[:8]}…"


def name_html(name: str, identifier: str, *, url: str = "", sub: str = "") -> str:
    """``name`` with ``identifier`` on hover, linked to ``url`` when known; the id when no name is known.

    ``sub`` is a second, smaller line (a team key, an item type). External links open in a new tab.
    """
    if not name and not identifier:
        return "—"
    label = name or short_id(identifier)
    if url:
        html = format_html(
            '<a href="{}" title="{}" target="_blank" rel="noopener noreferrer">{}</a>', url, identifier, label
        )
    else:
        html = format_html('<span title="{}">{}</span>', identifier, label)
    if sub:
        html = format_html('{}<div class="name-sub">{}</div>', html, sub)
    return html


def organization_html(organization: Organization | None) -> str:
    """The organization's name (its Linear id on hover), linked to its admin page; "—" for none."""
    if organization is None:
        return "—"
    url = reverse("admin:accounts_organization_change", args=[organization.pk])
    return format_html(
        '<a href="{}" title="{}">{}</a>',
        url,
        organization.linear_id,
        organization.name or organization.linear_id,
    )


@dataclass(frozen=True)
class RowNames:
    """What the directory knows about one listed row."""

    organization: Organization | None
    team: LinearTeam | None
    page: ConfluencePage | None


def attach_names(
    rows: list[Any],
    *,
    organization: Callable[[Any], Organization | None],
    team_id: Callable[[Any], str],
    page_id: Callable[[Any], str | None] = lambda row: row.confluence_page_id,
) -> None:
    """Set ``row.names`` (:class:`RowNames`) on every row: two queries (teams, pages) for any page size.

    Names come from the row's own organization's directory, never another tenant's.
    """
    orgs = [organization(row) for row in rows]
    teams = LinearTeam.objects.lookup(
        (org.pk, team_id(row)) for row, org in zip(rows, orgs, strict=True) if org
    )
    page_keys = [(org.pk, page_id(row)) for row, org in zip(rows, orgs, strict=True) if org and page_id(row)]
    pages = ConfluencePage.objects.lookup(page_keys) if page_keys else {}
    for row, org in zip(rows, orgs, strict=True):
        key = org.pk if org else None
        row.names = RowNames(
            organization=org,
            team=teams.get((key, team_id(row))),
            page=pages.get((key, page_id(row) or "")),
        )


def team_html(team: LinearTeam | None, team_id: str) -> str:
    """A team's name and key (its id on hover), or its id."""
    if team is None:
        return name_html("", team_id)
    return name_html(f"{team.name} ({team.key})", team_id)


def page_html(page: ConfluencePage | None, page_id: str) -> str:
    """A page's title linked to Confluence (its id on hover), or its id."""
    if page is None:
        return name_html("", page_id)
    return name_html(page.title, page_id, url=page.url)


class NamedChangeList(ChangeList):
    """A changelist whose rows, once fetched, get their names (``ModelAdmin.attach_row_names``)."""

    def get_results(self, request: HttpRequest) -> None:
        """Fetch the page as Django does, then name its rows in a fixed number of queries."""
        super().get_results(request)
        rows = list(self.result_list)  # evaluates and caches the page: the template reuses it
        if rows:
            self.model_admin.attach_row_names(rows)


class OrganizationFilter(admin.SimpleListFilter):
    """Rows of one organization; choices from the (small) organization table."""

    title = "organization"
    parameter_name = "organization"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        """Every organization the user may see, by name (its Linear id when it has none)."""
        organizations = visible_to(Organization.objects.all(), request.user)
        rows = organizations.order_by("name", "linear_id").values_list("pk", "name", "linear_id")
        return [(str(pk), name or linear_id) for pk, name, linear_id in rows[:ORGANIZATION_CHOICES_LIMIT]]

    def organization_pk(self) -> int | None:
        """The selected organization's key; ``None`` when none or not a number."""
        value = self.value()
        return int(value) if value is not None and value.isdigit() else None

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """Rows of the selected organization (a tampered value matches nothing)."""
        if self.value() is None:
            return queryset
        pk = self.organization_pk()
        return queryset.filter(organization_id=pk) if pk is not None else queryset.none()


# --- list filters --------------------------------------------------------------------------------


class ConflictStatusFilter(admin.SimpleListFilter):
    """Unresolved by default (no parameter); Resolved and All one click away."""

    title = "status"
    parameter_name = "status"
    default_value = "unresolved"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        """The three states; there is no separate "All" entry without a parameter (that one is Unresolved)."""
        return [("unresolved", "Unresolved"), ("resolved", "Resolved"), ("all", "All")]

    def current(self) -> str:
        """The selected state; a missing or unknown value is the default, Unresolved."""
        value = self.value()
        return value if value in {"unresolved", "resolved", "all"} else self.default_value

    def choices(self, changelist: ChangeList) -> Any:
        """Links for each state; Unresolved is the bare URL (the default), so it is selected at first."""
        current = self.current()
        for lookup, title in self.lookup_choices:
            if lookup == self.default_value:
                query_string = changelist.get_query_string(remove=[self.parameter_name])
            else:
                query_string = changelist.get_query_string({self.parameter_name: lookup})
            yield {"selected": current == lookup, "query_string": query_string, "display": title}

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """Filter by the selected state (the default keeps only unresolved conflicts)."""
        current = self.current()
        if current == "unresolved":
            return queryset.filter(is_resolved=False)
        if current == "resolved":
            return queryset.filter(is_resolved=True)
        return queryset


class _ConstantChoicesFilter(admin.SimpleListFilter):
    """Exact match on one field, with choices that cost no query over the filtered table."""

    field_name = ""

    def choice_values(self) -> list[str]:
        """The values offered (subclasses)."""
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        """The offered values, plus the current one when a link elsewhere chose a value not offered."""
        values = list(self.choice_values())
        current = self.value()
        if current and current not in values:
            values.append(current)
        return [(value, value or "(none)") for value in values]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """Keep rows whose field equals the selected value (an indexed equality)."""
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(**{self.field_name: value})


class ItemTypeFilter(_ConstantChoicesFilter):
    title = "item type"
    parameter_name = "item_type"
    field_name = "item_type"

    def choice_values(self) -> list[str]:
        """The item types the agent writes."""
        return list(KNOWN_ITEM_TYPES)


class _PairFieldFilter(_ConstantChoicesFilter):
    """Page or team choices from SyncState (one row per pair), never a DISTINCT over conflicts."""

    def choice_values(self) -> list[str]:
        """The distinct pages/teams known to SyncState, at most FILTER_CHOICES_LIMIT of them.

        Only the pairs of the user's organizations (``accounts.tenancy``): another tenant's page and
        team ids are not offered.
        """
        states = visible_to(SyncState.objects.all(), self.request.user)
        return list(
            states.order_by(self.field_name)
            .values_list(self.field_name, flat=True)
            .distinct()[:FILTER_CHOICES_LIMIT]
        )

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        """The user's pages/teams (see ``choice_values``), each labelled with its directory name where
        one is known (one more query)."""
        self.request = request
        choices = super().lookups(request, model_admin)
        labels = self.labels([value for value, _ in choices if value])
        return [(value, labels.get(value, label)) for value, label in choices]

    def labels(self, values: list[str]) -> dict[str, str]:
        """``id → name`` from the directory of the organizations that sync these ids."""
        if not values:
            return {}
        entries = visible_to(self.directory.objects.all(), self.request.user)
        directory = entries.filter(**{f"{self.field_name}__in": values}).filter(
            Exists(
                SyncState.objects.filter(
                    organization=OuterRef("organization"), **{self.field_name: OuterRef(self.field_name)}
                )
            )
        )
        return {getattr(entry, self.field_name): self.label(entry) for entry in directory.order_by("pk")}


class PageFilter(_PairFieldFilter):
    title = "Confluence page"
    parameter_name = "confluence_page_id"
    field_name = "confluence_page_id"
    directory = ConfluencePage

    @staticmethod
    def label(page: ConfluencePage) -> str:
        """The page's title."""
        return page.title


class TeamFilter(_PairFieldFilter):
    title = "Linear team"
    parameter_name = "linear_team_id"
    field_name = "linear_team_id"
    directory = LinearTeam

    @staticmethod
    def label(team: LinearTeam) -> str:
        """The team's name and key."""
        return f"{team.name} ({team.key})"


class SyncOutcomeFilter(admin.SimpleListFilter):
    """Failed or succeeded sync runs."""

    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        """Failed first: that is what operators look for."""
        return [("failed", "Failed"), ("succeeded", "Succeeded")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """Filter on ``success``."""
        if self.value() == "failed":
            return queryset.filter(success=False)
        if self.value() == "succeeded":
            return queryset.filter(success=True)
        return queryset


class ResolutionOrganizationFilter(OrganizationFilter):
    """Log entries whose conflict belongs to the organization (``Conflict.organization``)."""

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """Entries of the selected organization's conflicts."""
        if self.value() is None:
            return queryset
        pk = self.organization_pk()
        if pk is None:
            return queryset.none()
        return queryset.filter(conflict_id__in=Conflict.objects.filter(organization_id=pk).values("pk"))


# --- Conflict ------------------------------------------------------------------------------------


def _either_side(*path: str) -> Coalesce:
    """A text value of the item from the Linear change, else from the Confluence change (in SQL)."""
    key = "__".join(path)
    return Coalesce(KT(f"linear_change__itemData__{key}"), KT(f"confluence_change__itemData__{key}"))


class ConflictChangeList(NamedChangeList):
    """The conflict changelist: its rows load no JSON column, only the item's title, identifier and URL."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
        """The filtered, ordered queryset with the JSON columns deferred and the item's names extracted."""
        return (
            super()
            .get_queryset(request, exclude_parameters)
            .defer(*CONFLICT_JSON_FIELDS)
            .annotate(
                title_text=_either_side("title"),
                identifier_text=_either_side("identifier"),
                url_text=_either_side("url"),
            )
        )


class LargeTableAdminMixin:
    """Changelist settings for tables that may hold millions of rows."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    list_per_page = 50


class ExactSearchMixin:
    """Search by equality on indexed columns instead of Django's ``icontains``/``iexact``.

    Those compile to ``UPPER(col) LIKE ...`` (PostgreSQL) or ``LIKE`` (SQLite): no plain index helps,
    so on a big table every search is a full scan. Ids are exact strings; equality uses the index.
    """

    #: The columns a search term is compared with (any of them may equal it).
    exact_search_fields: tuple[str, ...] = ()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Rows where one of ``exact_search_fields`` equals the (stripped) term."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if len(term) > MAX_SEARCH_TERM_LENGTH:
            return queryset.none(), False
        condition = Q()
        for field in self.exact_search_fields:
            condition |= Q(**{field: term})
        return queryset.filter(condition), False


class ReadOnlyAdminMixin:
    """No add, change or delete through the admin, for anyone: the rows are written by code only."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never: rows are written by agent code."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never: the row is a record, shown read-only."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never: records are append-only."""
        return False


# --- Conflict: the resolution outbox (sync.models.outbox) ----------------------------------------


class OutboxFilter(admin.SimpleListFilter):
    """Resolutions waiting to be applied by a worker, applied, or failing to apply."""

    title = "application"
    parameter_name = "outbox"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        """Failing first: that is what operators look for."""
        return [("failing", "Failing to apply"), ("waiting", "Waiting to be applied"), ("applied", "Applied")]

    def choices(self, changelist: ChangeList) -> Any:
        """Each link also selects resolved conflicts: only those are applied (the status defaults to open)."""
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "All",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string(
                    {self.parameter_name: lookup, ConflictStatusFilter.parameter_name: "resolved"}
                ),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """``failing_to_apply()``, ``awaiting_application()`` or ``applied()``."""
        if self.value() == "failing":
            return queryset.failing_to_apply()
        if self.value() == "waiting":
            return queryset.awaiting_application()
        if self.value() == "applied":
            return queryset.applied()
        return queryset


class ConflictOutboxAdminMixin:
    """The changelist column that says where a resolution stands in the outbox."""

    @admin.display(description="application")
    def application(self, conflict: Conflict) -> str:
        """Applied (by whom, when), being applied, waiting, or failing with attempts and the last error."""
        if not conflict.is_resolved or conflict.resolution_strategy in NOT_FOR_THE_OUTBOX:
            return "—"
        if conflict.applied_at is not None:
            return f"✓ applied by {conflict.applied_by} at {when(conflict.applied_at)}"
        lease_until = conflict.apply_lease_expires_at
        if conflict.apply_lease_owner and lease_until is not None and lease_until > timezone.now():
            return f"being applied by {conflict.apply_lease_owner}"
        if conflict.apply_attempts:
            error = redact(conflict.last_apply_error)
            error = error if len(error) <= 80 else error[:79] + "…"
            return format_html(
                '<span class="excerpt">✗ failing ({} attempts): {}</span>', conflict.apply_attempts, error
            )
        return "waiting"


@admin.register(Conflict)
class ConflictAdmin(TenantScopedAdminMixin, ConflictOutboxAdminMixin, LargeTableAdminMixin, admin.ModelAdmin):
    """Review conflicts: list unresolved ones, compare the sides, resolve, reopen, bulk resolve."""

    # Names, not ids (issue 19): the item's title links to the review page (its conflict id on hover),
    # its Linear identifier to Linear; the pair's page links to Confluence. Fits 1366 px.
    # The outbox state (issue 17) is the resolution's second line: a column of its own overflowed 1366 px.
    list_display = ["item", "organization_name", "pair", "age", "differing_fields", "resolution"]
    list_display_links = None  # the item column links to the review page itself
    list_filter = [
        ConflictStatusFilter,
        OutboxFilter,
        OrganizationFilter,  # Conflict.organization: what scopes a reviewer's rows, not the pair's state
        "resolution_strategy",
        ItemTypeFilter,
        PageFilter,
        TeamFilter,
        ("created_at", admin.DateFieldListFilter),
    ]
    list_select_related = ["resolved_by"]
    search_fields = ["id", "item_id"]
    search_help_text = (
        "Title, Linear identifier (PAY-412), team or page name, or part of an id (three characters or "
        "more); end with * to search ids by prefix."
    )
    ordering = ["-created_at", "-id"]
    actions = ["resolve_keeping_linear", "resolve_keeping_confluence"]

    class Media:
        css = LIST_CSS

    review_template = "admin/sync/conflict/review.html"
    confirmation_template = "admin/sync/conflict/resolve_selected_confirmation.html"

    # Permissions --------------------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Never: conflicts come from the sync agent."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never through the model form: the change page is the review page, changes are resolutions."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never: the agent discards conflicts (``Conflict.objects.discard``); the console reviews them."""
        return False

    def has_resolve_conflict_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Whether the user may resolve or reopen conflicts: ``sync.resolve_conflict`` *and* the view
        permission (resolving what one may not look at would be deciding blind, and would reveal ids)."""
        return self.has_view_permission(request, obj) and request.user.has_perm(
            f"{self.opts.app_label}.resolve_conflict"
        )

    # Changelist ---------------------------------------------------------------------------------

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        """The changelist that defers the JSON columns."""
        return ConflictChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Exact (or ``*``-suffixed prefix) matches on the indexed id and item id columns.

        Django's default ``icontains`` search is ``UPPER(col) LIKE '%x%'``: a full scan on a big table.
        Equality uses the primary key and ``item_id`` indexes.
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        if len(term) > MAX_SEARCH_TERM_LENGTH:
            return queryset.none(), False
        if term.endswith("*") and term.rstrip("*"):
            prefix = term.rstrip("*")
            # One collation lookup per search (a query on PostgreSQL), shared by both columns.
            by_code_point = sorts_by_code_point(queryset.db)
            condition = prefix_condition("pk", prefix, by_code_point) | prefix_condition(
                "item_id", prefix, by_code_point
            )
            return queryset.filter(condition), False
        # Titles, identifiers, names and id fragments: sync.search (trigram-indexed on PostgreSQL).
        return search_conflicts(queryset, term), False

    def attach_row_names(self, rows: list[Conflict]) -> None:
        """Name the page's conflicts: organization (the conflict's own), team, page; titles and
        identifiers the changes lack come from the organization's issue cache. At most four queries."""
        organizations = Organization.objects.in_bulk({row.organization_id for row in rows} - {None})
        attach_names(
            rows,
            organization=lambda row: organizations.get(row.organization_id),
            team_id=lambda row: row.linear_team_id,
        )
        lacking = [
            row for row in rows if row.names.organization and not (row.title_text and row.identifier_text)
        ]
        if not lacking:
            return
        cached = (
            LinearIssueCache.objects.filter(
                organization_id__in={row.names.organization.pk for row in lacking},
                linear_issue_id__in={row.item_id for row in lacking if row.item_id},
            )
            .annotate(
                title=KT("issue_data__title"),
                identifier=KT("issue_data__identifier"),
                url=KT("issue_data__url"),
            )
            .values_list("organization_id", "linear_issue_id", "title", "identifier", "url")
        )
        found = {(org, issue): (title, identifier, url) for org, issue, title, identifier, url in cached}
        for row in lacking:
            title, identifier, url = found.get((row.names.organization.pk, row.item_id), ("", "", ""))
            row.title_text = row.title_text or title or ""
            row.identifier_text = row.identifier_text or identifier or ""
            row.url_text = row.url_text or url or ""

    @admin.display(description="item", ordering="item_id")
    def item(self, conflict: Conflict) -> str:
        """The item's title linked to the review page (conflict id on hover), over its Linear identifier
        (linked to Linear where the URL is known) and type; the item id where no title is known."""
        review = reverse("admin:sync_conflict_change", args=[quote(conflict.pk)])
        title = getattr(conflict, "title_text", None) or conflict.item_id or conflict.pk
        identifier = getattr(conflict, "identifier_text", None) or ""
        url = getattr(conflict, "url_text", None) or ""
        label = identifier or short_id(conflict.item_id)
        if url:
            reference = format_html(
                '<a href="{}" target="_blank" rel="noopener noreferrer" title="Open in Linear">{}</a>',
                url,
                label,
            )
        else:
            reference = format_html('<span title="{}">{}</span>', conflict.item_id, label)
        return format_html(
            '<a class="item-title" href="{}" title="{}">{}</a><div class="name-sub">{} · {}</div>',
            review,
            conflict.pk,
            title,
            reference,
            conflict.item_type or "item",
        )

    @admin.display(description="organization")
    def organization_name(self, conflict: Conflict) -> str:
        """The organization of the conflict's (page, team)."""
        return organization_html(conflict.names.organization if hasattr(conflict, "names") else None)

    @admin.display(description="page · team", ordering="confluence_page_id")
    def pair(self, conflict: Conflict) -> str:
        """The Confluence page (linked) over the Linear team; ids where the directory has no name."""
        names = getattr(conflict, "names", RowNames(None, None, None))
        if not conflict.confluence_page_id and not conflict.linear_team_id:
            return "—"  # conflicts imported from the old system have no pair
        return format_html(
            '{}<div class="name-sub">{}</div>',
            page_html(names.page, conflict.confluence_page_id),
            team_html(names.team, conflict.linear_team_id),
        )

    @admin.display(description="≠ fields", ordering="differing_field_count")
    def differing_fields(self, conflict: Conflict) -> int:
        """How many top-level itemData fields differ between the sides."""
        return conflict.differing_field_count

    @admin.display(description="age", ordering="-created_at")
    def age(self, conflict: Conflict) -> str:
        """How long ago the conflict was stored."""
        return timesince(conflict.created_at, timezone.now(), depth=1)

    @admin.display(description="resolution")
    def resolution(self, conflict: Conflict) -> str:
        """ "Unresolved", or the strategy and who resolved it."""
        if not conflict.is_resolved:
            return mark_safe('<span class="conflict-state conflict-state--open">● Unresolved</span>')
        who = conflict.resolved_by.get_username() if conflict.resolved_by else "agent"
        return format_html(
            '<span class="conflict-state conflict-state--resolved">✓ {} · {}</span>'
            '<div class="name-sub conflict-application">{}</div>',
            conflict.get_resolution_strategy_display(),
            who,
            self.application(conflict),
        )

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """The changelist, with the console's stylesheet."""
        status = request.GET.get(ConflictStatusFilter.parameter_name)
        title = {"resolved": "Resolved conflicts", "all": "All conflicts"}.get(status, "Unresolved conflicts")
        extra_context = {"title": title, **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    # History page -----------------------------------------------------------------------------

    object_history_template = "admin/sync/conflict/object_history.html"

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> Any:
        """Django's History page, with the conflict's resolutions and reopenings from the log on top."""
        resolutions = (
            ConflictResolution.objects.filter(conflict_id=unquote(object_id))
            .select_related("by")
            .order_by("at", "id")
        )
        return super().history_view(request, object_id, {"resolutions": resolutions, **(extra_context or {})})

    # Review (change) page -----------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        """The resolve and reopen POST endpoints, before the admin's own object URLs."""
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "bulk-resolve/",
                self.admin_site.admin_view(self.bulk_progress_view),
                name="{}_{}_bulk_resolve".format(*info),
            ),
            path(
                "<path:object_id>/resolve/",
                self.admin_site.admin_view(self.resolve_view),
                name="{}_{}_resolve".format(*info),
            ),
            path(
                "<path:object_id>/reopen/",
                self.admin_site.admin_view(self.reopen_view),
                name="{}_{}_reopen".format(*info),
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The review page (GET); a POST here is refused — changes are resolutions, posted to resolve/."""
        self._refuse_invisible(request, object_id)
        if request.method not in ("GET", "HEAD"):
            raise PermissionDenied
        conflict = self.get_object(request, unquote(object_id))
        if not self.has_view_permission(request, conflict):
            raise PermissionDenied
        if conflict is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        side = request.GET.get("prefill")
        form = ManualResolutionForm.prefilled(conflict, "confluence" if side == "confluence" else "linear")
        return self.render_review(request, conflict, form, extra_context=extra_context)

    def _review_context(self, conflict: Conflict, picks_form: FieldPicksForm | None) -> dict[str, Any]:
        """The three-way part of the review page: rows, paths to pick, decisions and owner rules."""
        try:
            merge = conflict.merge()
        except ValidationError as exc:
            # JSON too deep to merge field by field: the page still shows both sides whole, and the
            # reviewer keeps a side or edits manually.
            return {
                "three_way_rows": [
                    {**row, "kind": "conflict" if row["differs"] else "same", "base": None}
                    for row in diff_rows(conflict)
                ],
                "has_base": False,
                "conflict_paths": [],
                "merged_rows": [],
                "owner_rules": [],
                "picks_form": FieldPicksForm(paths=[]),
                "version": conflict.version,
                "merge_error": " ".join(exc.messages),
            }
        paths = conflict.conflict_paths(merge)
        rows = three_way_rows(conflict, merge)
        if picks_form is None:
            picks_form = FieldPicksForm(paths=paths)
        for row in rows:
            if row["kind"] == "conflict":
                row["pick"] = picks_form[picks_form.field_name(row["field"])]
        rules = [
            {"path": path, "rule": rule, "owner": merge.decisions.get(path, "")}
            for path, rule in merge.owner_rules_applied.items()
        ]
        return {
            "three_way_rows": rows,
            "has_base": conflict.base_change is not None,
            "conflict_paths": paths,
            "merged_rows": [row for row in rows if row["kind"] == "merged"],
            "owner_rules": rules,
            "picks_form": picks_form,
            "version": conflict.version,
        }

    def render_review(
        self,
        request: HttpRequest,
        conflict: Conflict,
        manual_form: ManualResolutionForm,
        *,
        extra_context: dict[str, Any] | None = None,
        status: int = 200,
        picks_form: FieldPicksForm | None = None,
    ) -> TemplateResponse:
        """Render the review page of one conflict: last synced, Linear and Confluence side by side."""
        can_resolve = self.has_resolve_conflict_permission(request, conflict)
        rows = diff_rows(conflict)
        log = [
            {
                "entry": entry,
                "json": pretty_json(entry.resolved_change) if entry.resolved_change is not None else "",
            }
            for entry in ConflictResolution.objects.for_conflict(conflict.pk).select_related("by")
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Review conflict {conflict.pk}",
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "original": conflict,
            "conflict": conflict,
            "object_id": conflict.pk,
            "has_view_permission": self.has_view_permission(request, conflict),
            "can_resolve": can_resolve and not conflict.is_resolved,
            "can_reopen": can_resolve and conflict.is_resolved,
            "rows": rows,
            "differing_count": sum(row["differs"] for row in rows),
            "sides": {
                "linear": side_summary(conflict.linear_change),
                "confluence": side_summary(conflict.confluence_change),
            },
            "manual_form": manual_form,
            "prefill_side": request.GET.get("prefill") or "linear",
            "resolved_change_json": (
                pretty_json(conflict.resolved_change) if conflict.resolved_change is not None else ""
            ),
            "log": log,
            "resolve_url": reverse(
                f"{self.admin_site.name}:sync_conflict_resolve", args=[quote(conflict.pk)]
            ),
            "reopen_url": reverse(f"{self.admin_site.name}:sync_conflict_reopen", args=[quote(conflict.pk)]),
            "changelist_url": self._changelist_url(request),
            "change_url": reverse(f"{self.admin_site.name}:sync_conflict_change", args=[quote(conflict.pk)]),
            "preserved_filters": self.get_preserved_filters(request),
            "is_popup": False,
            "to_field": None,
            **self._review_context(conflict, picks_form),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.review_template, context, status=status)

    def _next_unresolved(self, request: HttpRequest, conflict: Conflict) -> Conflict | None:
        """The conflict after this one in the user's review queue (unresolved, newest first, only the
        organizations the user may see), else the first."""
        queue = visible_to(Conflict.objects.unresolved(), request.user).exclude(pk=conflict.pk).only("pk")
        after = queue.filter(
            Q(created_at__lt=conflict.created_at) | Q(created_at=conflict.created_at, id__lt=conflict.pk)
        ).first()
        return after or queue.first()

    def _changelist_url(self, request: HttpRequest) -> str:
        """The changelist URL with the filters the user came from (Django's preserved filters)."""
        url = reverse(f"{self.admin_site.name}:sync_conflict_changelist")
        preserved = self.get_preserved_filters(request)
        return add_preserved_filters({"preserved_filters": preserved, "opts": self.opts}, url)

    def _change_url(self, request: HttpRequest, conflict_id: str) -> str:
        """The review page URL of a conflict, keeping the preserved filters."""
        url = reverse(f"{self.admin_site.name}:sync_conflict_change", args=[quote(conflict_id)])
        preserved = self.get_preserved_filters(request)
        return add_preserved_filters({"preserved_filters": preserved, "opts": self.opts}, url)

    # Resolve / reopen (POST) --------------------------------------------------------------------

    @staticmethod
    def _strategy_label(strategy: str) -> str:
        return str(ResolutionStrategy(strategy).label)

    def resolve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: resolve one conflict with Keep Linear, Keep Confluence or the manual JSON; 403 without
        the resolve permission. Stale (resolved meanwhile) → a warning and nothing written."""
        return require_POST(self._resolve)(request, object_id)

    def _resolve(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_resolve_conflict_permission(request):
            raise PermissionDenied
        conflict_id = unquote(object_id)
        conflict = self.get_object(request, conflict_id)
        if conflict is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        strategy = request.POST.get("strategy", "")
        resolved_change = None
        picks = None
        # What the reviewer typed or picked is kept whatever happens next: a stale version or an error
        # re-renders the page with these bound forms.
        manual_form = ManualResolutionForm(request.POST, conflict=conflict) if strategy == "manual" else None
        picks_form = (
            FieldPicksForm(request.POST, paths=conflict.conflict_paths()) if strategy == "fields" else None
        )
        version = _posted_version(request)
        if strategy == ResolutionStrategy.MANUAL:
            if not manual_form.is_valid():
                return self.render_review(request, conflict, manual_form, picks_form=picks_form)
            resolved_change = manual_form.cleaned_data["resolved_change"]
        elif strategy == ResolutionStrategy.FIELDS:
            if not picks_form.is_valid():
                return self.render_review(request, conflict, _default_manual(conflict), picks_form=picks_form)
            picks = picks_form.picks()
        elif strategy not in (
            ResolutionStrategy.LINEAR,
            ResolutionStrategy.CONFLUENCE,
            ResolutionStrategy.NEWEST,
        ):
            self.message_user(request, f"Unknown resolution strategy {strategy!r}.", messages.ERROR)
            return HttpResponseRedirect(self._change_url(request, conflict_id))
        try:
            conflict.resolve(
                strategy, resolved_change, by=request.user, expected_version=version, picks=picks
            )
        except ConflictAlreadyResolved as exc:
            self.message_user(request, exc.messages[0] + " Nothing was changed.", messages.WARNING)
            return HttpResponseRedirect(self._change_url(request, conflict_id))
        except ConflictChanged as exc:
            return self._render_changed(request, exc, manual_form, picks_form)
        except ValidationError as exc:
            if manual_form is not None:
                manual_form.add_error("resolved_change", exc)
                return self.render_review(request, conflict, manual_form, status=200)
            if picks_form is not None:
                picks_form.add_error(None, exc)
                return self.render_review(request, conflict, _default_manual(conflict), picks_form=picks_form)
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(self._change_url(request, conflict_id))
        self.message_user(
            request,
            format_html(
                'Conflict <a href="{}">{}</a> resolved: {}.',
                self._change_url(request, conflict_id),
                conflict_id,
                self._strategy_label(strategy),
            ),
            messages.SUCCESS,
        )
        if request.POST.get("next"):
            following = self._next_unresolved(request, conflict)
            if following is not None:
                return HttpResponseRedirect(self._change_url(request, following.pk))
            self.message_user(request, "No unresolved conflict left in the queue.", messages.INFO)
        return HttpResponseRedirect(self._changelist_url(request))

    def _render_changed(
        self,
        request: HttpRequest,
        exc: ConflictChanged,
        manual_form: ManualResolutionForm | None,
        picks_form: FieldPicksForm | None,
    ) -> TemplateResponse:
        """The conflict changed since the reviewer opened it: show the new values, keep their input."""
        conflict = exc.conflict
        if picks_form is not None:
            # Picks re-bound to the new conflicting paths: those still in conflict keep the choice.
            picks_form = FieldPicksForm(request.POST, paths=conflict.conflict_paths(), keep_only=True)
        if manual_form is not None:
            manual_form = ManualResolutionForm(request.POST, conflict=conflict)
            manual_form.is_valid()  # shows errors against the new shape, keeps the text
        changed = {
            "stale_version": exc.expected_version,
            "current_version": exc.current_version,
            "manual_open": manual_form is not None,
        }
        return self.render_review(
            request,
            conflict,
            manual_form or _default_manual(conflict),
            picks_form=picks_form,
            extra_context={"changed": changed},
            status=409,
        )

    def reopen_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: reopen a resolved conflict (logged); 403 without the resolve permission."""
        return require_POST(self._reopen)(request, object_id)

    def _reopen(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_resolve_conflict_permission(request):
            raise PermissionDenied
        conflict_id = unquote(object_id)
        conflict = self.get_object(request, conflict_id)
        if conflict is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        try:
            conflict.reopen(by=request.user)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages) + " Nothing was changed.", messages.WARNING)
        else:
            self.message_user(
                request, f"Conflict {conflict_id} reopened: it is unresolved again.", messages.SUCCESS
            )
        return HttpResponseRedirect(self._change_url(request, conflict_id))

    # Bulk actions -------------------------------------------------------------------------------

    @admin.action(permissions=["resolve_conflict"], description="Resolve selected keeping Linear")
    def resolve_keeping_linear(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Confirm, then resolve every selected unresolved conflict with the Linear side."""
        return self._bulk_resolve(request, queryset, ResolutionStrategy.LINEAR)

    @admin.action(permissions=["resolve_conflict"], description="Resolve selected keeping Confluence")
    def resolve_keeping_confluence(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Confirm, then resolve every selected unresolved conflict with the Confluence side."""
        return self._bulk_resolve(request, queryset, ResolutionStrategy.CONFLUENCE)

    def _selected_ids(self, request: HttpRequest, queryset: QuerySet) -> list[str]:
        """The ids the user ticked; with "select all", every id of the filtered queryset.

        Ticked ids come from the POST, not from the filtered queryset: a conflict someone resolved
        while the confirmation page was open has left the default "unresolved" filter, and must be
        reported as resolved meanwhile rather than silently dropped.
        """
        if request.POST.get("select_across") == "1":
            # "Select all" may mean a million rows: the confirmation lists the first ones only, and
            # the resolution itself runs in batches (bulk_progress_view).
            return list(queryset.order_by("pk").values_list("pk", flat=True)[:CONFIRMATION_DETAIL_LIMIT])
        posted = list(dict.fromkeys(request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)))
        if not is_limited(request.user):
            return posted
        # A user limited to organizations acts only on their rows: ids of another tenant's conflicts
        # (a tampered POST) are dropped here, before the service sees them.
        visible = set(
            self.get_queryset(request)
            .filter(pk__in=[pk for pk in posted if "\x00" not in pk])
            .values_list("pk", flat=True)
        )
        return [pk for pk in posted if pk in visible]

    def _bulk_resolve(self, request: HttpRequest, queryset: QuerySet, strategy: str) -> HttpResponse | None:
        label = self._strategy_label(strategy)
        select_across = request.POST.get("select_across") == "1"
        if request.POST.get("post") == "yes" and select_across:
            limit = self.bulk_inline_limit
            ids = list(
                queryset.filter(is_resolved=False).order_by("pk").values_list("pk", flat=True)[: limit + 1]
            )
            if len(ids) > limit:
                return self._start_bulk_job(request, strategy)
        else:
            ids = self._selected_ids(request, queryset)
        if request.POST.get("post") == "yes":
            try:
                # Ticked ids (at most DATA_UPLOAD_MAX_NUMBER_FIELDS): a few short transactions.
                result = resolve_conflicts_in_batches(
                    ids,
                    strategy,
                    by=request.user,
                    expected_versions=_posted_versions(request),
                    batch_size=self.bulk_batch_size,
                )
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages) + " Nothing was changed.", messages.ERROR)
                return None
            resolved, skipped, missing = list(result.resolved), list(result.skipped), list(result.missing)
            noun = "conflict" if len(resolved) == 1 else "conflicts"
            self.message_user(request, f"Resolved {len(resolved)} {noun} ({label}).", messages.SUCCESS)
            if skipped:
                self.message_user(
                    request,
                    f"{len(skipped)} already resolved by someone else, left alone: {', '.join(skipped)}.",
                    messages.WARNING,
                )
            if missing:
                self.message_user(
                    request, f"{len(missing)} no longer exist: {', '.join(missing)}.", messages.WARNING
                )
            if result.changed:
                self.message_user(
                    request,
                    f"{len(result.changed)} changed since you confirmed, left alone (review them again): "
                    f"{', '.join(result.changed)}.",
                    messages.WARNING,
                )
            # None: the admin redirects back to the changelist, keeping its filters.
            return None

        selected = (
            Conflict.objects.filter(pk__in=ids).select_related("resolved_by").order_by("-created_at", "-id")
        )
        shown = list(selected[:CONFIRMATION_DETAIL_LIMIT])
        pending = [conflict for conflict in shown if not conflict.is_resolved]
        already = [conflict for conflict in shown if conflict.is_resolved]
        changes = []
        for conflict in pending:
            fields = []
            for row in conflict.item_data_diff():
                if not row.differs:
                    continue
                kept, dropped = (
                    (row.linear, row.confluence) if strategy == "linear" else (row.confluence, row.linear)
                )
                fields.append(
                    {
                        "field": row.field,
                        "kept": None if kept is MISSING else pretty_json(kept),
                        "dropped": None if dropped is MISSING else pretty_json(dropped),
                    }
                )
            changes.append({"conflict": conflict, "fields": fields})
        if select_across:
            total = EstimatedCountPaginator(queryset.order_by("pk"), 1).count
            title = f"Resolve all {total} selected conflict{'s' if total != 1 else ''} — {label}?"
        else:
            total = len(ids)
            title = f"Resolve {total} selected conflict{'s' if total != 1 else ''} — {label}?"
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "batch_size": self.bulk_batch_size,
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "strategy": strategy,
            "strategy_label": label,
            "kept_side": "Linear" if strategy == "linear" else "Confluence",
            "dropped_side": "Confluence" if strategy == "linear" else "Linear",
            "action_name": request.POST.get("action", ""),
            "selected_ids": ids,
            "select_across": request.POST.get("select_across") == "1",
            "changes": changes,
            "already_resolved": already,
            "not_shown": max(0, total - len(shown)),
            "found": len(shown),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "queryset": queryset,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.confirmation_template, context)

    # Bulk resolution of "select all", in batches ----------------------------------------------

    #: Conflicts per transaction (each batch locks at most this many rows, for a fraction of a second).
    bulk_batch_size = DEFAULT_BULK_BATCH_SIZE
    #: "Select all" over at most this many unresolved conflicts is resolved in the request (in batches);
    #: more go through the progress page.
    bulk_inline_limit = 1000
    #: Seconds of batches per progress request: far below gunicorn's 30 s worker timeout.
    bulk_step_seconds = 5.0
    #: Batches per progress request at most (a bound that does not depend on the clock).
    bulk_step_batches = 200
    bulk_progress_template = "admin/sync/conflict/bulk_progress.html"
    bulk_session_key = "sync.conflict.bulk_resolution"

    def _start_bulk_job(self, request: HttpRequest, strategy: str) -> HttpResponse:
        """Remember what "select all" chose (the changelist's filters) and go to the progress page."""
        query = request.GET.copy()
        query.pop(PAGE_VAR, None)
        request.session[self.bulk_session_key] = {
            "strategy": strategy,
            "query": query.urlencode(),
            "after": None,
            "resolved": 0,
            "skipped": [],
            "missing": 0,
            "batches": 0,
            "estimate": EstimatedCountPaginator(self._bulk_queryset(request, query.urlencode()), 1).count,
            "finished": False,
        }
        return HttpResponseRedirect(reverse(f"{self.admin_site.name}:sync_conflict_bulk_resolve"))

    def _bulk_queryset(self, request: HttpRequest, query: str) -> QuerySet:
        """The changelist's queryset (tenant scope, filters, search) for the filters in ``query``."""
        saved = request.GET
        request.GET = QueryDict(query)
        try:
            return self.get_changelist_instance(request).queryset
        finally:
            request.GET = saved

    def bulk_progress_view(self, request: HttpRequest) -> HttpResponse:
        """Progress of a "select all" bulk resolution: GET shows it, POST runs the next batches.

        Each POST runs batches (each one short transaction) for at most ``bulk_step_seconds`` and
        redirects back here; the page posts again by itself until every selected conflict is done, then
        shows the final report. Closing the page pauses the work; opening it again resumes it.
        """
        if not self.has_resolve_conflict_permission(request):
            raise PermissionDenied
        job = request.session.get(self.bulk_session_key)
        if job is None:
            self.message_user(request, "No bulk resolution is in progress.", messages.INFO)
            return HttpResponseRedirect(self._changelist_url(request))
        if request.method == "POST":
            if request.POST.get("cancel"):
                job["finished"] = True
                job["cancelled"] = True
            else:
                self._run_bulk_step(request, job)
            request.session[self.bulk_session_key] = job
            return HttpResponseRedirect(request.path)
        if job["finished"]:
            del request.session[self.bulk_session_key]
        label = self._strategy_label(job["strategy"])
        done = job["resolved"] + len(job["skipped"]) + job["missing"]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Resolving selected conflicts — {label}",
            "subtitle": None,
            "opts": self.opts,
            "job": job,
            "done": done,
            "percent": 100 if job["finished"] else min(99, 100 * done // max(job["estimate"], 1)),
            "strategy_label": label,
            "changelist_url": reverse(f"{self.admin_site.name}:sync_conflict_changelist")
            + "?"
            + job["query"],
            "batch_size": self.bulk_batch_size,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.bulk_progress_template, context)

    def _run_bulk_step(self, request: HttpRequest, job: dict[str, Any]) -> None:
        if job["finished"]:
            return
        queryset = self._bulk_queryset(request, job["query"])
        deadline = time.monotonic() + self.bulk_step_seconds
        for _ in range(self.bulk_step_batches):
            try:
                batch = resolve_next_batch(
                    queryset,
                    job["strategy"],
                    by=request.user,
                    after=job["after"],
                    batch_size=self.bulk_batch_size,
                )
            except ValidationError as exc:
                job["finished"] = True
                job["error"] = " ".join(exc.messages)
                return
            job["after"] = batch.last_id
            job["resolved"] += len(batch.resolved)
            job["skipped"] = (job["skipped"] + batch.skipped)[:CONFIRMATION_DETAIL_LIMIT]
            job["missing"] += len(batch.missing)
            job["batches"] += 1
            if batch.finished:
                job["finished"] = True
                return
            if time.monotonic() >= deadline:
                return


def _posted_version(request: HttpRequest) -> int | None:
    """The ``version`` a review form posted (the version it showed); None when absent or malformed."""
    raw = request.POST.get("version", "")
    return int(raw) if raw.isdigit() and int(raw) >= 1 else None


def _posted_versions(request: HttpRequest) -> dict[str, int]:
    """``conflict id -> version`` the bulk confirmation page showed (``version:<id>`` fields)."""
    versions = {}
    for key, value in request.POST.items():
        if key.startswith("version:") and value.isdigit() and int(value) >= 1:
            versions[key.removeprefix("version:")] = int(value)
    return versions


def _default_manual(conflict: Conflict) -> ManualResolutionForm:
    return ManualResolutionForm.prefilled(conflict, "linear")


# --- FieldOwnership --------------------------------------------------------------------------------


@admin.register(FieldOwnership)
class FieldOwnershipAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Owner rules: which side decides a field path, per organization (optionally per type/page/team)."""

    form = FieldOwnershipForm
    list_display = [
        "field_path",
        "owner",
        "organization",
        "item_type",
        "confluence_page_id",
        "linear_team_id",
    ]
    list_filter = ["owner"]
    list_select_related = ["organization"]
    raw_id_fields = ["organization"]
    search_fields = ["field_path", "organization__linear_id", "organization__name"]
    ordering = ["organization", "field_path", "item_type", "confluence_page_id", "linear_team_id"]
    show_full_result_count = False


# --- ConflictResolution --------------------------------------------------------------------------


@admin.register(ConflictResolution)
class ConflictResolutionAdmin(
    TenantScopedAdminMixin, ExactSearchMixin, ReadOnlyAdminMixin, LargeTableAdminMixin, admin.ModelAdmin
):
    """The append-only resolution log, read-only."""

    list_display = ["when", "conflict_link", "organization_of_entry", "action", "strategy", "by"]
    list_display_links = ["when"]
    list_filter = [ResolutionOrganizationFilter, "action", "strategy", ("at", admin.DateFieldListFilter)]
    list_select_related = ["by"]
    search_fields = ["conflict_id"]
    exact_search_fields = ("conflict_id",)
    search_help_text = "Exact conflict id."
    ordering = ["-at", "-id"]
    fields = ["conflict_link", "action", "strategy", "by", "at", "resolved_change_pretty"]
    readonly_fields = fields

    class Media:
        css = LIST_CSS

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        """The changelist that names its rows."""
        return NamedChangeList

    def attach_row_names(self, rows: list[ConflictResolution]) -> None:
        """Each entry's organization: its conflict's (two queries). An entry whose conflict was deleted
        since has none."""
        organization_of = dict(
            Conflict.objects.filter(pk__in={row.conflict_id for row in rows}, organization__isnull=False)
            .values_list("pk", "organization_id")
        )
        organizations = Organization.objects.in_bulk(set(organization_of.values()))
        for row in rows:
            row.organization_of_conflict = organizations.get(organization_of.get(row.conflict_id))

    @admin.display(description="at", ordering="at")
    def when(self, entry: ConflictResolution) -> str:
        """``at`` in the console's date format."""
        return when(entry.at)

    @admin.display(description="organization")
    def organization_of_entry(self, entry: ConflictResolution) -> str:
        """The organization of the entry's conflict; once the conflict is gone, the name recorded when
        its organization was offboarded ("—" when neither is known)."""
        organization = getattr(entry, "organization_of_conflict", None)
        if organization is None and entry.organization_name:
            return entry.organization_name
        return organization_html(organization)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        """Entries without their JSON on the list; the detail page loads it."""
        queryset = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name.endswith("_changelist"):
            queryset = queryset.defer("resolved_change")
        return queryset

    @admin.display(description="conflict", ordering="conflict_id")
    def conflict_link(self, entry: ConflictResolution) -> str:
        """The conflict id, linked to its review page (the conflict may have been deleted since)."""
        url = reverse("admin:sync_conflict_change", args=[quote(entry.conflict_id)])
        return format_html('<a href="{}">{}</a>', url, entry.conflict_id)

    @admin.display(description="resolved change")
    def resolved_change_pretty(self, entry: ConflictResolution) -> str:
        """The resolved change as indented JSON."""
        if entry.resolved_change is None:
            return "—"
        return format_html('<pre class="json-value">{}</pre>', pretty_json(entry.resolved_change))


# --- SyncState (schedule, leases and failures of many workers) ----------------------------------


class SyncScheduleFilter(admin.SimpleListFilter):
    """Pairs due now, held by a worker now, or failing (the queryset methods workers use)."""

    title = "schedule"
    parameter_name = "schedule"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        """Failing first: that is what operators look for."""
        return [("failing", "Failing"), ("leased", "Being synced"), ("due", "Due now")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """Filter with ``failing()``, ``leased(now)`` or ``due(now)``."""
        now = timezone.now()
        if self.value() == "failing":
            return queryset.failing()
        if self.value() == "leased":
            return queryset.leased(now)
        if self.value() == "due":
            return queryset.due(now)
        return queryset


@admin.register(SyncState)
class SyncStateAdmin(TenantScopedAdminMixin, ExactSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every (page, team) pair: last sync, schedule, the worker holding it, failures, conflicts.

    Only ``sync_interval`` can be edited (``sync.change_syncstate``); "Sync now" makes pairs due at once.
    """

    # The date is the link to the state's page: the other columns hold links of their own.
    list_display = [
        "last_synced",
        "page",
        "team",
        "organization_name",
        "status_and_runs",
        "schedule",
        "failures",
        "unresolved_conflicts",
    ]
    list_filter = [
        OrganizationFilter,
        SyncScheduleFilter,
        "status",
        ("last_synced_at", admin.DateFieldListFilter),
    ]
    list_select_related = ["organization"]
    search_fields = ["confluence_page_id", "linear_team_id"]
    exact_search_fields = ("confluence_page_id", "linear_team_id")
    search_help_text = (
        "Page title, team name or key, or part of a page or team id (three characters or more)."
    )
    ordering = ["-last_synced_at", "confluence_page_id", "linear_team_id"]
    actions = ["sync_now"]

    class Media:
        css = LIST_CSS

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        """The changelist that names its rows."""
        return NamedChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Names and id fragments, as on the sync history (the table has one row per pair: a scan is fine)."""
        return search_history(queryset, search_term), False

    def attach_row_names(self, rows: list[SyncState]) -> None:
        """Team and page names from the row's organization's directory (two queries)."""
        attach_names(rows, organization=lambda row: row.organization, team_id=lambda row: row.linear_team_id)

    @admin.display(description="Confluence page", ordering="confluence_page_id")
    def page(self, state: SyncState) -> str:
        """The page's title, linked to Confluence; its id on hover (the id where no title is known)."""
        return page_html(state.names.page if hasattr(state, "names") else None, state.confluence_page_id)

    @admin.display(description="Linear team", ordering="linear_team_id")
    def team(self, state: SyncState) -> str:
        """The team's name and key; its id on hover."""
        return team_html(state.names.team if hasattr(state, "names") else None, state.linear_team_id)

    @admin.display(description="organization", ordering="organization__name")
    def organization_name(self, state: SyncState) -> str:
        """The organization's name, linked to its page."""
        return organization_html(state.organization)

    @admin.display(description="last synced", ordering="last_synced_at")
    def last_synced(self, state: SyncState) -> str:
        """``last_synced_at`` in the console's date format."""
        return when(state.last_synced_at, empty="never")

    readonly_fields = [
        "organization",
        "confluence_page_id",
        "linear_team_id",
        "status",
        "last_synced_at",
        "next_sync_at",
        "lease",
        "failure_count",
        "last_error_text",
        "unresolved_conflicts",
        "history",
        "created_at",
        "updated_at",
    ]
    fields = [*readonly_fields[:4], "sync_interval", *readonly_fields[4:]]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """With ``sync.change_syncstate``: the interval and "Sync now"; every other field stays read-only."""
        return admin.ModelAdmin.has_change_permission(self, request, obj)

    def save_model(self, request: HttpRequest, obj: SyncState, form: Any, change: bool) -> None:
        """Write the interval alone: a full save would overwrite a worker's lease written meanwhile."""
        SyncState.objects.filter(pk=obj.pk).update(sync_interval=obj.sync_interval, updated_at=timezone.now())

    @admin.action(description="Sync now (make the selected pairs due at once)", permissions=["change"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Make the selected pairs due now; a pair a worker holds keeps its lease and runs after it."""
        count = queryset.schedule_now()
        self.message_user(
            request, f"{count} pair(s) will be synced by the next free worker.", messages.SUCCESS
        )

    @admin.display(description="next sync", ordering="next_sync_at")
    def schedule(self, state: SyncState) -> str:
        """When the pair is next due ("due now" when never scheduled), the lease holder below it."""
        due = when(state.next_sync_at, empty="due now")
        if not state.lease_owner:
            return due
        return format_html('{}<div class="console-sub">{}</div>', due, self.lease(state))

    @admin.display(description="lease")
    def lease(self, state: SyncState) -> str:
        """The worker holding the pair and until when, or "—" (an expired lease says so)."""
        if not state.lease_owner:
            return "—"
        until = when(state.lease_expires_at)
        if state.lease_is_held():
            return f"{state.lease_owner} until {until}"
        return f"{state.lease_owner}, expired {until}"

    @admin.display(description="last error")
    def short_last_error(self, state: SyncState) -> str:
        """The first 80 characters of the last error, redacted."""
        error = self.last_error_text(state)
        return error if len(error) <= 80 else error[:79] + "…"

    @admin.display(description="last error")
    def last_error_text(self, state: SyncState) -> str:
        """The last error, with anything that looks like a token redacted (again: older rows)."""
        return redact(state.last_error or "")

    @admin.display(description="status", ordering="status")
    def status_and_runs(self, state: SyncState) -> str:
        """The status, and below it a link to the pair's sync runs."""
        return format_html(
            '{}<div class="name-sub">{}</div>', state.get_status_display(), self.history(state)
        )

    @admin.display(description="failures", ordering="failure_count")
    def failures(self, state: SyncState) -> str:
        """Consecutive failures, and the last error as a wrapping excerpt (redacted); "—" for none."""
        if not state.failure_count:
            return "—"
        return format_html(
            '{}<span class="excerpt">{}</span>', state.failure_count, self.short_last_error(state)
        )

    @admin.display(description="history")
    def history(self, state: SyncState) -> str:
        """A link to the pair's sync runs."""
        url = reverse("admin:sync_synchistory_changelist")
        query = urlencode(
            {"confluence_page_id": state.confluence_page_id, "linear_team_id": state.linear_team_id}
        )
        return format_html('<a href="{}?{}">runs</a>', url, query)

    @admin.display(description="unresolved conflicts", ordering="conflict_count")
    def unresolved_conflicts(self, state: SyncState) -> str:
        """The pair's unresolved conflict count, linked to those conflicts."""
        url = reverse("admin:sync_conflict_changelist")
        query = urlencode(
            {"confluence_page_id": state.confluence_page_id, "linear_team_id": state.linear_team_id}
        )
        return format_html('<a href="{}?{}">{}</a>', url, query, state.conflict_count)


# --- SyncHistory ---------------------------------------------------------------------------------


@admin.register(SyncHistory)
class SyncHistoryAdmin(
    TenantScopedAdminMixin, ExactSearchMixin, ReadOnlyAdminMixin, LargeTableAdminMixin, admin.ModelAdmin
):
    """Sync runs, read-only; failed runs one click away."""

    # A short timestamp and the five counters in one column: with them spread out, the error (what an
    # operator opens a failed run for) was pushed past the right edge of a laptop screen. The entry
    # page shows each counter.
    list_display = [
        "synced",
        "organization_name",
        "page",
        "team",
        "success",
        "changes",
        "short_error",
    ]
    list_display_links = ["synced"]
    list_filter = [
        SyncOutcomeFilter,
        OrganizationFilter,
        ("synced_at", admin.DateFieldListFilter),
        PageFilter,
        TeamFilter,
    ]
    # No list_select_related: a JOIN on a table of millions of runs; the page's organizations are read
    # by key in attach_row_names.
    search_fields = ["confluence_page_id", "linear_team_id"]
    exact_search_fields = ("confluence_page_id", "linear_team_id")
    search_help_text = (
        "Find sync runs by Confluence page title, Linear team name or key, or part of a page or team "
        "id (three characters or more). The filters on the right show only failed runs, one "
        "organization, one page or one team."
    )
    ordering = ["-synced_at", "-id"]

    class Media:
        css = LIST_CSS

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        """The changelist that names its rows."""
        return NamedChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Names and id fragments (trigram-indexed on PostgreSQL)."""
        return search_history(queryset, search_term), False

    def attach_row_names(self, rows: list[SyncHistory]) -> None:
        """The page's organizations by key (one query), then team and page names (two queries)."""
        organizations = Organization.objects.in_bulk(
            {row.organization_id for row in rows if row.organization_id}
        )
        attach_names(
            rows,
            organization=lambda row: organizations.get(row.organization_id),
            team_id=lambda row: row.linear_team_id,
        )

    @admin.display(description="organization", ordering="organization__name")
    def organization_name(self, entry: SyncHistory) -> str:
        """The organization's name, linked to its page."""
        return organization_html(entry.names.organization if hasattr(entry, "names") else None)

    @admin.display(description="Confluence page", ordering="confluence_page_id")
    def page(self, entry: SyncHistory) -> str:
        """The page's title, linked to Confluence; its id on hover."""
        return page_html(entry.names.page if hasattr(entry, "names") else None, entry.confluence_page_id)

    @admin.display(description="Linear team", ordering="linear_team_id")
    def team(self, entry: SyncHistory) -> str:
        """The team's name and key; its id on hover."""
        return team_html(entry.names.team if hasattr(entry, "names") else None, entry.linear_team_id)

    readonly_fields = [
        "organization",
        "confluence_page_id",
        "linear_team_id",
        "success",
        "error_text",
        "created_issues",
        "updated_issues",
        "confluence_changes",
        "conflicts_detected",
        "conflicts_resolved",
        "imported_direction",
        "imported_deletions",
        "synced",
    ]
    fields = readonly_fields

    #: Above the list: what a sync run is, in the operator's words (the model's help texts speak of the
    #: old system's tables).
    LIST_SUBTITLE = (
        "Each row is one run of the agent between a Confluence page and a Linear team: when it ran, "
        "what it created and updated on each side, how many conflicts it found and resolved, and, for a "
        "failed run, the error it stopped on. Open a run to see every counter and the whole error."
    )

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """The list, titled "Sync history" and explained in one sentence."""
        extra_context = {"title": "Sync history", "list_intro": self.LIST_SUBTITLE, **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    @admin.display(description="sync direction (runs imported from the old system only)")
    def imported_direction(self, entry: SyncHistory) -> str:
        """The old system's direction setting of the run, "—" for runs of this system."""
        return entry.direction or "—"

    @admin.display(description="issues deleted (runs imported from the old system only)")
    def imported_deletions(self, entry: SyncHistory) -> str:
        """Deleted issues as the old system counted them, "—" where it did not."""
        return "—" if entry.deleted_issues is None else str(entry.deleted_issues)

    @admin.display(description="synced at", ordering="synced_at")
    def synced(self, entry: SyncHistory) -> str:
        """``synced_at`` in the console's date format (local time, with the zone)."""
        return when(entry.synced_at)

    @admin.display(description="changes")
    def changes(self, entry: SyncHistory) -> str:
        """The five counters as two short lines: Linear issues and Confluence changes, then conflicts."""
        return format_html(
            '<span style="white-space:nowrap">{} created, {} updated, {} in Confluence</span><br>'
            '<span style="white-space:nowrap">{} conflicts, {} resolved</span>',
            entry.created_issues,
            entry.updated_issues,
            entry.confluence_changes,
            entry.conflicts_detected,
            entry.conflicts_resolved,
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        """On the list, only the head of each error is read (an error can be 20,000 characters)."""
        queryset = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name.endswith("_changelist"):
            queryset = queryset.defer("error").annotate(error_head=Substr("error", 1, ERROR_HEAD_LENGTH))
        return queryset

    @admin.display(description="error")
    def short_error(self, entry: SyncHistory) -> str:
        """An excerpt of the error (first 120 characters, wrapping), redacted as in :meth:`error_text`;
        the longer head the list loaded (``error_head``, never the whole error) on hover."""
        head = getattr(entry, "error_head", None)
        error = redact(head) if head is not None else self.error_text(entry)
        if not error:
            return ""
        return format_html('<span class="excerpt" title="{}">{}</span>', error, error_excerpt(error, 120))

    @admin.display(description="error")
    def error_text(self, entry: SyncHistory) -> str:
        """The error as stored, with anything that looks like a token redacted.

        Agent code stores what the provider answered; an answer may quote the token it was sent.
        The log filter redacts logs, not database text: the admin does the same for what it shows.
        """
        return redact(entry.error or "")


# --- LinearIssueCache ----------------------------------------------------------------------------


@admin.register(LinearIssueCache)
class LinearIssueCacheAdmin(
    TenantScopedAdminMixin, ExactSearchMixin, ReadOnlyAdminMixin, LargeTableAdminMixin, admin.ModelAdmin
):
    """Cached Linear issues, read-only; the list reads only each issue's title out of the JSON."""

    list_display = ["issue", "team", "organization_name", "updated"]
    list_display_links = None  # the issue column links to the entry page itself
    list_filter = [OrganizationFilter, ("last_updated", admin.DateFieldListFilter)]
    list_select_related = ["organization"]
    search_fields = ["linear_issue_id"]
    exact_search_fields = ("linear_issue_id",)
    search_help_text = (
        "Title, Linear identifier (PAY-412), team name or key, or part of an issue id (three characters "
        "or more)."
    )
    ordering = ["-last_updated", "-id"]
    fields = ["linear_issue_id", "organization", "last_updated", "issue_data_pretty"]
    readonly_fields = fields

    class Media:
        css = LIST_CSS

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        """Title, identifier, URL and team extracted in SQL; on the list the JSON stays in the database."""
        queryset = (
            super()
            .get_queryset(request)
            .annotate(
                title_text=KT("issue_data__title"),
                identifier_text=KT("issue_data__identifier"),
                url_text=KT("issue_data__url"),
                team_id_text=KT("issue_data__team__id"),
            )
        )
        if request.resolver_match and request.resolver_match.url_name.endswith("_changelist"):
            queryset = queryset.defer("issue_data")
        return queryset

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        """The changelist that names its rows."""
        return NamedChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Titles, identifiers, team names and id fragments (trigram-indexed on PostgreSQL)."""
        return search_issue_cache(queryset, search_term), False

    def attach_row_names(self, rows: list[LinearIssueCache]) -> None:
        """The team's name from the organization's directory (one query: cached issues have no page)."""
        attach_names(
            rows,
            organization=lambda row: row.organization,
            team_id=lambda row: row.team_id_text or "",
            page_id=lambda row: None,
        )

    @admin.display(description="title", ordering="title_text")
    def title(self, entry: LinearIssueCache) -> str:
        """The issue's title from the cached data."""
        return entry.title_text or ""

    @admin.display(description="issue", ordering="linear_issue_id")
    def issue(self, entry: LinearIssueCache) -> str:
        """The title linked to the entry page (issue id on hover), over the identifier linked to Linear."""
        page = reverse("admin:sync_linearissuecache_change", args=[entry.pk])
        identifier = entry.identifier_text or short_id(entry.linear_issue_id)
        if entry.url_text:
            reference = format_html(
                '<a href="{}" target="_blank" rel="noopener noreferrer" title="Open in Linear">{}</a>',
                entry.url_text,
                identifier,
            )
        else:
            reference = format_html('<span title="{}">{}</span>', entry.linear_issue_id, identifier)
        return format_html(
            '<a class="item-title" href="{}" title="{}">{}</a><div class="name-sub">{}</div>',
            page,
            entry.linear_issue_id,
            entry.title_text or entry.linear_issue_id,
            reference,
        )

    @admin.display(description="Linear team")
    def team(self, entry: LinearIssueCache) -> str:
        """The issue's team by name (from its cached data and the directory)."""
        return team_html(entry.names.team if hasattr(entry, "names") else None, entry.team_id_text or "")

    @admin.display(description="organization", ordering="organization__name")
    def organization_name(self, entry: LinearIssueCache) -> str:
        """The organization's name, linked to its page."""
        return organization_html(entry.organization)

    @admin.display(description="last updated", ordering="last_updated")
    def updated(self, entry: LinearIssueCache) -> str:
        """``last_updated`` in the console's date format."""
        return when(entry.last_updated)

    @admin.display(description="issue data")
    def issue_data_pretty(self, entry: LinearIssueCache) -> str:
        """The cached issue as indented JSON."""
        return format_html('<pre class="json-value">{}</pre>', pretty_json(entry.issue_data))
