"""The operator dashboard on the admin index: what needs attention across accounts, planning and sync.

Panels, each shown only to users who may view its model:

* unresolved conflicts per (Confluence page, Linear team), linking to the filtered conflict list;
* failing syncs: pairs whose syncs fail (``failure_count`` > 0), with the failure count, next retry and
  last error excerpt, linking to their failed runs in the sync history and to the failing sync states;
* planning sessions processing and failed, linking to the filtered session lists;
* Linear and Confluence tokens expired or expiring within 24 hours, linking to the filtered token lists;
* tokens needing re-authorization;
* resolutions failing to apply (``workers_panel``).

Every number comes from a maintained counter (``SyncState.conflict_count``), a grouped aggregate or a
``LIMIT``-ed, indexed query, so the page costs a fixed number of queries (twenty with every panel:
the organization choices, the panels, and the team and page names of every listed pair from the
directory, two queries for all of them) however many rows the tables hold. No token is ever loaded:
token rows are read with ``values()`` on their non-secret columns.

Pairs, pages and teams are shown by name (``sync.models.LinearTeam`` / ``ConfluencePage``), with the
id on hover; ``?organization=<pk>`` on the admin index narrows every panel to one organization.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode

from django.db.models import Count, Model, Q, QuerySet, Sum
from django.db.models.functions import Substr
from django.urls import reverse
from django.utils import timezone

from accounts.models import (
    EXPIRING_SOON_WINDOW,
    ConfluenceToken,
    LinearToken,
    OAuthToken,
    OAuthTokenQuerySet,
    Organization,
    TokenStatus,
    expiry_condition,
)
from accounts.tenancy import visible_to
from accounts.validation import ERROR_EXCERPT_LENGTH, error_excerpt
from config.logging import redact
from planning.models import PlanningSession
from sync.models import Conflict, ConfluencePage, LinearTeam, SyncHistory, SyncState

#: Rows per list on the dashboard.
PAIR_LIMIT = 10
FAILURE_LIMIT = 5
SESSION_LIMIT = 5
TOKEN_LIMIT = 5
ORGANIZATION_LIMIT = 20


def _changelist(model: type[Model], **params: str) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def _change(model: type[Model], pk: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[pk])


@dataclass
class PairRow:
    """Unresolved conflicts of one (page, team), named from the directory where it knows them."""

    confluence_page_id: str
    linear_team_id: str
    count: int
    url: str
    organization_pk: int | None = None
    organization: str = ""
    page_title: str = ""
    page_url: str = ""
    team_name: str = ""


@dataclass(frozen=True)
class ConflictPanel:
    total: int
    pairs: list[PairRow]
    more: bool
    url: str


@dataclass
class FailureRow:
    """A (page, team) whose syncs fail: how often in a row, the last error's excerpt, the next retry."""

    confluence_page_id: str
    linear_team_id: str
    #: Consecutive failed syncs (``SyncState.failure_count``).
    failures: int
    #: The head of the last error, secrets redacted, cut to ``ERROR_EXCERPT_LENGTH``.
    error: str
    #: When the next attempt is due, short ("in 4 min", "due now").
    retry: str
    #: The pair's failed runs in the sync history.
    url: str
    #: The pair's sync state (schedule, lease, failures).
    state_url: str
    organization_pk: int | None = None
    organization: str = ""
    page_title: str = ""
    page_url: str = ""
    team_name: str = ""


@dataclass(frozen=True)
class FailurePanel:
    rows: list[FailureRow]
    #: Every failing pair the user may see (in the chosen organization), not only the rows listed.
    count: int
    #: The sync-state list filtered to failing pairs (and to the chosen organization).
    url: str


@dataclass(frozen=True)
class OrganizationChoice:
    label: str
    linear_id: str
    url: str
    selected: bool


@dataclass(frozen=True)
class SessionRow:
    title: str
    organization: str
    progress: int
    error: str
    url: str


@dataclass(frozen=True)
class SessionGroup:
    label: str
    status: str
    count: int
    rows: list[SessionRow]
    url: str


@dataclass(frozen=True)
class TokenRow:
    kind: str
    organization: str
    expires_at: dt.datetime
    expired: bool
    #: Time to (or since) expiry, short: "4 h 57 min".
    when: str
    url: str


def short_duration(delta: dt.timedelta) -> str:
    """``delta`` (its absolute value) as days and hours, hours and minutes, or minutes."""
    minutes = int(abs(delta).total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


@dataclass(frozen=True)
class TokenCount:
    kind: str
    state: str
    label: str
    count: int
    url: str


@dataclass(frozen=True)
class TokenPanel:
    counts: list[TokenCount]
    rows: list[TokenRow]

    @property
    def total(self) -> int:
        """Tokens expired or expiring within 24 hours, over every model shown."""
        return sum(count.count for count in self.counts)


@dataclass(frozen=True)
class Dashboard:
    conflicts: ConflictPanel | None
    sessions: list[SessionGroup] | None
    tokens: TokenPanel | None
    failures: FailurePanel | None = None
    reauthorization: ReauthorizationPanel | None = None
    workers: WorkersPanel | None = None
    organizations: list[OrganizationChoice] | None = None
    organization: str = ""

    @property
    def empty(self) -> bool:
        """No panel is visible to this user."""
        panels = (self.conflicts, self.sessions, self.tokens, self.failures, self.workers)
        return all(panel is None for panel in panels)


def build_dashboard(
    user: Any, *, now: dt.datetime | None = None, organization: int | None = None
) -> Dashboard:
    """The dashboard as ``user`` may see it: a panel per model the user has the view permission for.

    ``organization`` (a primary key) narrows every panel to that organization's rows.
    """
    now = now or timezone.now()
    token_models: list[type[OAuthToken]] = [
        m for m in (LinearToken, ConfluenceToken) if user.has_perm(_view_perm(m))
    ]
    narrow = {"organization": organization, "user": user}
    conflicts = conflict_panel(**narrow) if user.has_perm(_view_perm(Conflict)) else None
    failures = failure_panel(now=now, **narrow) if user.has_perm(_view_perm(SyncState)) else None
    name_pairs([*(conflicts.pairs if conflicts else []), *(failures.rows if failures else [])])
    dashboard = Dashboard(
        conflicts=conflicts,
        failures=failures,
        sessions=session_groups(**narrow)
        if user.has_perm(_view_perm(PlanningSession))
        else None,
        tokens=token_panel(token_models, now=now, **narrow) if token_models else None,
        reauthorization=reauthorization_panel(token_models, **narrow)
        if token_models
        else None,
        workers=workers_panel(user, now=now, organization=organization),
    )
    if dashboard.empty:
        return dashboard
    choices = organization_choices(organization, user=user)
    current = next((choice.label for choice in choices if choice.selected and choice.linear_id), "")
    return Dashboard(
        conflicts=dashboard.conflicts,
        failures=dashboard.failures,
        sessions=dashboard.sessions,
        tokens=dashboard.tokens,
        reauthorization=dashboard.reauthorization,
        workers=dashboard.workers,
        organizations=choices,
        organization=current,
    )


def organization_choices(
    selected: int | None, limit: int = ORGANIZATION_LIMIT, *, user: Any = None
) -> list[OrganizationChoice]:
    """ "All organizations" and each organization by name (those ``user`` may see), as links that
    narrow the dashboard."""
    index = reverse("admin:index")
    organizations = _scoped(Organization.objects.all(), user)
    rows = organizations.order_by("name", "linear_id").values_list("pk", "name", "linear_id")[:limit]
    choices = [OrganizationChoice("All organizations", "", index, selected is None)]
    for pk, name, linear_id in rows:
        choices.append(
            OrganizationChoice(
                name or linear_id, linear_id, f"{index}?{urlencode({'organization': pk})}", pk == selected
            )
        )
    return choices


def name_pairs(rows: list[PairRow | FailureRow]) -> None:
    """Fill each row's page title and URL and team name from its organization's directory: two queries
    for every row of every panel (none without rows)."""
    keyed = [(row.organization_pk, row) for row in rows if row.organization_pk is not None]
    if not keyed:
        return
    teams = LinearTeam.objects.lookup((org, row.linear_team_id) for org, row in keyed)
    pages = ConfluencePage.objects.lookup((org, row.confluence_page_id) for org, row in keyed)
    for org, row in keyed:
        team = teams.get((org, row.linear_team_id))
        page = pages.get((org, row.confluence_page_id))
        if team is not None:
            row.team_name = f"{team.name} ({team.key})"
        if page is not None:
            row.page_title, row.page_url = page.title, page.url


def failure_panel(
    *,
    organization: int | None = None,
    limit: int = FAILURE_LIMIT,
    user: Any = None,
    now: dt.datetime | None = None,
) -> FailurePanel:
    """Pairs whose syncs fail (``SyncState.objects.failing()``: ``failure_count`` > 0), most failures
    first: two queries (the count and the rows), both on the partial ``failure_count > 0`` index.

    ``failure_count`` rather than ``status == failed``: a worker's ``release(success=False)`` sets both,
    but ``claim_due`` turns the status to running while a failing pair is retried, so the status would
    drop a pair from the panel during each retry; ``failure_count`` is reset only by a successful sync.
    It is also the sync-state list's "Failing" filter the panel links to, so both count the same pairs.
    Only the head of ``last_error`` is read (an error may be 4,000 characters; the panel shows 200).
    """
    now = now or timezone.now()
    failing = _narrowed(SyncState.objects.all(), user, organization).failing()
    rows = failing.values(
        "pk",
        "confluence_page_id",
        "linear_team_id",
        "failure_count",
        "next_sync_at",
        "organization_id",
        "organization__name",
        "organization__linear_id",
        error_head=Substr("last_error", 1, 2 * ERROR_EXCERPT_LENGTH),
    )[:limit]
    return FailurePanel(
        rows=[
            FailureRow(
                confluence_page_id=row["confluence_page_id"],
                linear_team_id=row["linear_team_id"],
                failures=row["failure_count"],
                error=error_excerpt(redact(row["error_head"])),
                retry=_retry(row["next_sync_at"], now),
                url=_changelist(
                    SyncHistory,
                    outcome="failed",
                    confluence_page_id=row["confluence_page_id"],
                    linear_team_id=row["linear_team_id"],
                ),
                state_url=_change(SyncState, row["pk"]),
                organization_pk=row["organization_id"],
                organization=row["organization__name"] or row["organization__linear_id"] or "",
            )
            for row in rows
        ],
        count=failing.count(),
        url=_changelist(
            SyncState, schedule="failing", **({"organization": str(organization)} if organization else {})
        ),
    )


def _scoped(queryset: Any, user: Any) -> Any:
    """``queryset`` as ``user`` may see it (every row for ``None``): the dashboard's tenant scoping."""
    return queryset if user is None else visible_to(queryset, user)


def _narrowed(queryset: Any, user: Any, organization: int | None) -> Any:
    """``queryset`` as ``user`` may see it, narrowed to one organization (a pk) when one is chosen."""
    queryset = _scoped(queryset, user)
    return queryset if organization is None else queryset.filter(organization_id=organization)


def _view_perm(model: type[Model]) -> str:
    return f"{model._meta.app_label}.view_{model._meta.model_name}"


def conflict_panel(
    limit: int = PAIR_LIMIT, *, organization: int | None = None, user: Any = None
) -> ConflictPanel:
    """Unresolved conflicts per (page, team), most first, and their total: four small queries.

    Complete pairs come from ``SyncState.conflict_count``, which every conflict write (the model
    methods, bulk resolution, the legacy import) recounts in its own transaction: reading it costs one
    row per pair, where grouping the conflicts themselves reads every unresolved conflict (0.34 s for
    200,000 on PostgreSQL). Conflicts without a page or a team have no state row; they are grouped
    directly — the page/team indexes find them, and they are the old system's few.
    """
    states = _narrowed(SyncState.objects.all(), user, organization)
    top_pairs = list(
        states.filter(conflict_count__gt=0)
        .order_by("-conflict_count", "confluence_page_id", "linear_team_id")
        .values_list(
            "confluence_page_id",
            "linear_team_id",
            "conflict_count",
            "organization_id",
            "organization__name",
            "organization__linear_id",
        )[: limit + 1]
    )
    incomplete: list[tuple] = []
    incomplete_total = 0
    if organization is None:
        # Conflicts without a page or team have no sync state, hence no organization: shown unfiltered only.
        incomplete_qs = _scoped(Conflict.objects.all(), user).filter(is_resolved=False).filter(
            Q(confluence_page_id="") | Q(linear_team_id="")
        )
        incomplete = [
            (page, team, count, None, "", "")
            for page, team, count in incomplete_qs.values_list("confluence_page_id", "linear_team_id")
            .annotate(count=Count("pk"))
            .order_by("-count", "confluence_page_id", "linear_team_id")[: limit + 1]
        ]
        incomplete_total = incomplete_qs.count()
    grouped = sorted(top_pairs + incomplete, key=lambda row: (-row[2], row[0], row[1]))
    pairs = [
        PairRow(
            confluence_page_id=page,
            linear_team_id=team,
            count=count,
            # The conflict changelist's page and team filters; its status filter shows unresolved ones
            # by default.
            url=_changelist(Conflict, confluence_page_id=page, linear_team_id=team),
            organization_pk=org_pk,
            organization=org_name or org_linear_id or "",
        )
        for page, team, count, org_pk, org_name, org_linear_id in grouped[:limit]
    ]
    return ConflictPanel(
        # Summed from the per-pair counters too: counting the unresolved conflicts themselves reads
        # every one of them (0.1 s for 200,000 even as an index-only scan).
        total=(states.aggregate(n=Sum("conflict_count"))["n"] or 0) + incomplete_total,
        pairs=pairs,
        more=len(grouped) > limit,
        url=_changelist(Conflict, organization=str(organization)) if organization else _changelist(Conflict),
    )


def session_groups(
    limit: int = SESSION_LIMIT, *, organization: int | None = None, user: Any = None
) -> list[SessionGroup]:
    """Sessions processing and failed: their counts (one grouped query) and the latest of each."""
    statuses = [
        (PlanningSession.Status.PROCESSING, "In progress"),
        (PlanningSession.Status.FAILED, "Failed"),
    ]
    sessions = _narrowed(PlanningSession.objects.all(), user, organization)
    counts = dict(
        sessions.filter(status__in=[status for status, _ in statuses])
        .values_list("status")
        .annotate(count=Count("pk"))
        .order_by()
    )
    groups = []
    for status, label in statuses:
        rows = []
        if counts.get(status):
            latest = (
                sessions.filter(status=status)
                .order_by("-created_at", "-id")
                .values(
                    "pk",
                    "planning_title",
                    "organization__name",
                    "organization__linear_id",
                    "progress",
                    # The head of the error only: one can be 20,000 characters, the panel shows 200.
                    error_head=Substr("error", 1, 2 * ERROR_EXCERPT_LENGTH),
                )[:limit]
            )
            rows = [
                SessionRow(
                    title=row["planning_title"],
                    organization=row["organization__name"] or row["organization__linear_id"],
                    progress=row["progress"],
                    error=error_excerpt(redact(row["error_head"])),
                    url=_change(PlanningSession, row["pk"]),
                )
                for row in latest
            ]
        groups.append(
            SessionGroup(
                label=label,
                status=status,
                count=counts.get(status, 0),
                rows=rows,
                url=_changelist(
                    PlanningSession,
                    status__exact=status,
                    **({"organization__id__exact": str(organization)} if organization else {}),
                ),
            )
        )
    return groups


def token_panel(
    models: list[type[OAuthToken]],
    *,
    now: dt.datetime,
    limit: int = TOKEN_LIMIT,
    organization: int | None = None,
    user: Any = None,
) -> TokenPanel:
    """Tokens expired or expiring within 24 hours: per model, one aggregate and one short list."""
    soon = now + EXPIRING_SOON_WINDOW
    counts: list[TokenCount] = []
    rows: list[TokenRow] = []
    for model in models:
        kind = str(model._meta.verbose_name)
        # The WHERE on expires_at uses its index; only tokens due within the day are counted.
        # QuerySet[Any]: the organization FK is declared by each concrete token model, not OAuthToken.
        due: QuerySet[Any] = _narrowed(model._default_manager.all(), user, organization)
        due = due.filter(expires_at__lte=soon)
        totals = due.aggregate(
            expired=Count("pk", filter=expiry_condition(TokenStatus.EXPIRED, at=now)),
            expiring=Count("pk", filter=expiry_condition(TokenStatus.EXPIRING, at=now)),
        )
        for state, label in ((TokenStatus.EXPIRED, "expired"), (TokenStatus.EXPIRING, "expiring within 24h")):
            counts.append(
                TokenCount(
                    kind=kind,
                    state=state,
                    label=label,
                    count=totals[state.value],
                    url=_changelist(model, state=state.value),
                )
            )
        # values(): the token columns (ciphertext) are never read.
        # (The plugin resolves lookups on the abstract OAuthToken, which names no organization field.)
        for row in due.order_by("expires_at", "pk").values(  # type: ignore[misc]
            "pk", "expires_at", "organization__name", "organization__linear_id"
        )[:limit]:
            rows.append(
                TokenRow(
                    kind=kind,
                    organization=row["organization__name"] or row["organization__linear_id"],
                    expires_at=row["expires_at"],
                    expired=row["expires_at"] <= now,
                    when=short_duration(row["expires_at"] - now),
                    url=_change(model, row["pk"]),
                )
            )
    rows.sort(key=lambda row: row.expires_at)
    return TokenPanel(counts=counts, rows=rows[:limit])


# --- Tokens needing re-authorization -------------------------------------------------------------


@dataclass(frozen=True)
class ReauthorizationRow:
    kind: str
    organization: str
    since: dt.datetime
    url: str


@dataclass(frozen=True)
class ReauthorizationPanel:
    """Tokens whose refresh token the provider rejected: an operator must have the organization
    authorize the app again. ``links`` go to each model's filtered token list."""

    rows: list[ReauthorizationRow]
    more: bool
    links: list[tuple[str, str]]


def reauthorization_panel(
    models: list[type[OAuthToken]],
    *,
    limit: int = TOKEN_LIMIT,
    organization: int | None = None,
    user: Any = None,
) -> ReauthorizationPanel:
    """Marked tokens, most recently rejected first: one ``LIMIT``-ed query per model, no count."""
    rows: list[ReauthorizationRow] = []
    for model in models:
        kind = str(model._meta.verbose_name)
        marked = cast(
            OAuthTokenQuerySet, _narrowed(model._default_manager.all(), user, organization)
        ).needing_reauthorization()
        # values(): the token columns (ciphertext) are never read.
        for row in (
            marked
            .order_by("-reauthorization_required_at", "-pk")
            .values("pk", "reauthorization_required_at", "organization__name", "organization__linear_id")[
                : limit + 1
            ]
        ):
            rows.append(
                ReauthorizationRow(
                    kind=kind,
                    organization=row["organization__name"] or row["organization__linear_id"],
                    since=row["reauthorization_required_at"],
                    url=_change(model, row["pk"]),
                )
            )
    rows.sort(key=lambda row: row.since, reverse=True)
    return ReauthorizationPanel(
        rows=rows[:limit],
        more=len(rows) > limit,
        links=[
            (str(model._meta.verbose_name), _changelist(model, reauthorization="required"))
            for model in models
        ],
    )


# --- agent workers: resolutions failing to apply --------------------------------------------------

#: Rows of the resolutions list.
FAILING_LIMIT = 5


@dataclass(frozen=True)
class FailingResolutionRow:
    conflict_id: str
    attempts: int
    error: str
    retry: str
    url: str


@dataclass(frozen=True)
class WorkersPanel:
    """Resolutions the agent workers fail to apply (shown as "Resolutions failing to apply"; pairs
    failing to sync are in the failure panel, ``failure_panel``)."""

    resolutions_total: int
    resolutions: list[FailingResolutionRow]
    resolutions_url: str


def _retry(next_at: dt.datetime | None, now: dt.datetime) -> str:
    if next_at is None or next_at <= now:
        return "due now"
    return f"in {short_duration(next_at - now)}"


def workers_panel(
    user: Any, *, now: dt.datetime, limit: int = FAILING_LIMIT, organization: int | None = None
) -> WorkersPanel | None:
    """Resolutions failing to apply (``Conflict.objects.failing_to_apply()``): two queries, on the
    partial index of resolved, not applied conflicts; no JSON column and only the head of each error
    is read. ``None`` when the user may not view conflicts."""
    if not user.has_perm(_view_perm(Conflict)):
        return None
    failing_resolutions = _narrowed(Conflict.objects.all(), user, organization).failing_to_apply()
    resolutions = [
        FailingResolutionRow(
            conflict_id=row["pk"],
            attempts=row["apply_attempts"],
            error=error_excerpt(redact(row["error_head"])),
            retry=_retry(row["next_apply_at"], now),
            url=_change(Conflict, row["pk"]),
        )
        for row in failing_resolutions.values(
            "pk",
            "apply_attempts",
            "next_apply_at",
            error_head=Substr("last_apply_error", 1, 2 * ERROR_EXCERPT_LENGTH),
        )[:limit]
    ]
    return WorkersPanel(
        resolutions_total=failing_resolutions.count(),
        resolutions=resolutions,
        resolutions_url=_changelist(Conflict, outbox="failing", status="resolved"),
    )
