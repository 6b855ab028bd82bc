"""The operator dashboard on the admin index: what needs attention across accounts, planning and sync.

Three panels, each shown only to users who may view its model:

* unresolved conflicts per (Confluence page, Linear team), linking to the filtered conflict list;
* planning sessions processing and failed, linking to the filtered session lists;
* Linear and Confluence tokens expired or expiring within 24 hours, linking to the filtered token lists.

Every number comes from a maintained counter (``SyncState.conflict_count``), a grouped aggregate or a
``LIMIT``-ed, indexed query, so the page costs a fixed number of queries (eleven with every panel)
however many rows the tables hold. No token is ever loaded: token rows are read with ``values()`` on
their non-secret columns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode

from django.db.models import Count, Model, Q, Sum
from django.db.models.functions import Substr
from django.urls import reverse
from django.utils import timezone

from accounts.models import (
    EXPIRING_SOON_WINDOW,
    ConfluenceToken,
    LinearToken,
    OAuthToken,
    OAuthTokenQuerySet,
    TokenStatus,
    expiry_condition,
)
from accounts.tenancy import visible_to
from accounts.validation import ERROR_EXCERPT_LENGTH, error_excerpt
from config.logging import redact
from planning.models import PlanningSession
from sync.models import Conflict, SyncState

#: Rows per list on the dashboard.
PAIR_LIMIT = 10
SESSION_LIMIT = 5
TOKEN_LIMIT = 5


def _changelist(model: type[Model], **params: str) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def _change(model: type[Model], pk: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[pk])


@dataclass(frozen=True)
class PairRow:
    """Unresolved conflicts of one (page, team)."""

    confluence_page_id: str
    linear_team_id: str
    count: int
    url: str


@dataclass(frozen=True)
class ConflictPanel:
    total: int
    pairs: list[PairRow]
    more: bool
    url: str


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
    reauthorization: ReauthorizationPanel | None = None

    @property
    def empty(self) -> bool:
        """No panel is visible to this user."""
        return self.conflicts is None and self.sessions is None and self.tokens is None


def build_dashboard(user: Any, *, now: dt.datetime | None = None) -> Dashboard:
    """The dashboard as ``user`` may see it: a panel per model the user has the view permission for."""
    now = now or timezone.now()
    token_models: list[type[OAuthToken]] = [
        m for m in (LinearToken, ConfluenceToken) if user.has_perm(_view_perm(m))
    ]
    return Dashboard(
        conflicts=conflict_panel(user=user) if user.has_perm(_view_perm(Conflict)) else None,
        sessions=session_groups(user=user) if user.has_perm(_view_perm(PlanningSession)) else None,
        tokens=token_panel(token_models, now=now, user=user) if token_models else None,
        reauthorization=reauthorization_panel(token_models, user=user) if token_models else None,
    )


def _scoped(queryset: Any, user: Any) -> Any:
    """``queryset`` as ``user`` may see it (every row for ``None``): the dashboard's tenant scoping."""
    return queryset if user is None else visible_to(queryset, user)


def _view_perm(model: type[Model]) -> str:
    return f"{model._meta.app_label}.view_{model._meta.model_name}"


def conflict_panel(limit: int = PAIR_LIMIT, *, user: Any = None) -> ConflictPanel:
    """Unresolved conflicts per (page, team), most first, and their total: four small queries.

    Complete pairs come from ``SyncState.conflict_count``, which every conflict write (the model
    methods, bulk resolution, the legacy import) recounts in its own transaction: reading it costs one
    row per pair, where grouping the conflicts themselves reads every unresolved conflict (0.34 s for
    200,000 on PostgreSQL). Conflicts without a page or a team have no state row; they are grouped
    directly — the page/team indexes find them, and they are the old system's few.

    ``user``: count only the rows of the organizations the user may see (``accounts.tenancy``);
    ``None`` counts everything.
    """
    states = _scoped(SyncState.objects.all(), user)
    top_pairs = list(
        states.filter(conflict_count__gt=0)
        .order_by("-conflict_count", "confluence_page_id", "linear_team_id")
        .values_list("confluence_page_id", "linear_team_id", "conflict_count")[: limit + 1]
    )
    incomplete_qs = (
        _scoped(Conflict.objects.all(), user)
        .filter(is_resolved=False)
        .filter(Q(confluence_page_id="") | Q(linear_team_id=""))
    )
    incomplete = list(
        incomplete_qs.values_list("confluence_page_id", "linear_team_id")
        .annotate(count=Count("pk"))
        .order_by("-count", "confluence_page_id", "linear_team_id")[: limit + 1]
    )
    grouped = sorted(top_pairs + incomplete, key=lambda row: (-row[2], row[0], row[1]))
    pairs = [
        PairRow(
            confluence_page_id=page,
            linear_team_id=team,
            count=count,
            # The conflict changelist's page and team filters; its status filter shows unresolved ones
            # by default.
            url=_changelist(Conflict, confluence_page_id=page, linear_team_id=team),
        )
        for page, team, count in grouped[:limit]
    ]
    return ConflictPanel(
        # Summed from the per-pair counters too: counting the unresolved conflicts themselves reads
        # every one of them (0.1 s for 200,000 even as an index-only scan).
        total=(states.aggregate(n=Sum("conflict_count"))["n"] or 0) + incomplete_qs.count(),
        pairs=pairs,
        more=len(grouped) > limit,
        url=_changelist(Conflict),
    )


def session_groups(limit: int = SESSION_LIMIT, *, user: Any = None) -> list[SessionGroup]:
    """Sessions processing and failed: their counts (one grouped query) and the latest of each.

    ``user``: only the sessions of the organizations the user may see; ``None`` counts every session.
    """
    sessions = _scoped(PlanningSession.objects.all(), user)
    statuses = [
        (PlanningSession.Status.PROCESSING, "In progress"),
        (PlanningSession.Status.FAILED, "Failed"),
    ]
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
                url=_changelist(PlanningSession, status__exact=status),
            )
        )
    return groups


def token_panel(
    models: list[type[OAuthToken]], *, now: dt.datetime, limit: int = TOKEN_LIMIT, user: Any = None
) -> TokenPanel:
    """Tokens expired or expiring within 24 hours: per model, one aggregate and one short list.

    ``user``: only the tokens of the organizations the user may see; ``None`` counts every token.
    """
    soon = now + EXPIRING_SOON_WINDOW
    counts: list[TokenCount] = []
    rows: list[TokenRow] = []
    for model in models:
        kind = str(model._meta.verbose_name)
        # The WHERE on expires_at uses its index; only tokens due within the day are counted.
        due = _scoped(model._default_manager.all(), user).filter(expires_at__lte=soon)
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
    models: list[type[OAuthToken]], *, limit: int = TOKEN_LIMIT, user: Any = None
) -> ReauthorizationPanel:
    """Marked tokens, most recently rejected first: one ``LIMIT``-ed query per model, no count.

    ``user``: only the tokens of the organizations the user may see; ``None`` lists every token.
    """
    rows: list[ReauthorizationRow] = []
    for model in models:
        kind = str(model._meta.verbose_name)
        # values(): the token columns (ciphertext) are never read.
        for row in (
            cast(OAuthTokenQuerySet, _scoped(model._default_manager.all(), user))
            .needing_reauthorization()
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
