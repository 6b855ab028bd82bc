"""A realistic demo world, written through the public APIs agent code uses.

Three organizations with Linear and Confluence tokens (obviously fake), program increments with features,
objectives and risks, planning sessions in every status with their features, stories and enablers,
unresolved and resolved conflicts with real-looking Linear/Confluence change pairs, sync state and sync
history (failed runs included) and a few cached Linear issues.

Idempotent: everything is written in one transaction, so the demo organizations exist only when the
whole world does; a second run sees them and writes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import ConfluenceToken, LinearToken, Organization
from planning.models import PIFeature, PIObjective, PIRisk, PlanningSession, ProgramIncrement
from planning.services import save_planning_result
from sync.models import (
    Conflict,
    ConfluencePage,
    LinearIssueCache,
    LinearTeam,
    SyncHistory,
    SyncState,
    SyncStatus,
)

logger = logging.getLogger(__name__)

#: Namespace of the demo's deterministic UUIDs (Linear ids are UUIDs).
_NAMESPACE = uuid.UUID("6f0c1c8e-5d0a-4b8e-9a51-0d3c1b2a7e42")


def demo_uuid(name: str) -> str:
    """A stable, realistic-looking Linear id for a demo object."""
    return str(uuid.uuid5(_NAMESPACE, name))


@dataclass(frozen=True)
class DemoOrganization:
    """One tenant of the demo world."""

    key: str
    name: str
    site: str
    teams: tuple[tuple[str, str], ...]  # (team key, team name)
    pages: tuple[tuple[str, str], ...]  # (Confluence page id, title)

    @property
    def linear_id(self) -> str:
        return demo_uuid(f"org:{self.key}")

    def team_id(self, key: str) -> str:
        return demo_uuid(f"team:{self.key}:{key}")

    def issue_url(self, identifier: str) -> str:
        """The Linear web address of an issue (workspace ``<key>-demo``)."""
        return f"https://linear.app/{self.key}-demo/issue/{identifier}"

    def page_url(self, page_id: str, title: str) -> str:
        """The Confluence web address of a page, as Confluence builds it (space key, id, title slug)."""
        slug = "+".join(title.replace("–", "").split())
        return f"{self.site}/wiki/spaces/{self.space}/pages/{page_id}/{slug}"

    @property
    def space(self) -> str:
        return self.key[:4].upper()


ORGANIZATIONS = (
    DemoOrganization(
        key="northwind",
        name="Northwind Traders (demo)",
        site="https://northwind-demo.atlassian.net",
        teams=(("NW", "Storefront"), ("PAY", "Payments")),
        pages=(("163841", "PI 2026.4 Planning – Storefront"), ("163877", "Payments roadmap Q1")),
    ),
    DemoOrganization(
        key="globex",
        name="Globex Logistics (demo)",
        site="https://globex-demo.atlassian.net",
        teams=(("ROUTE", "Routing"), ("WH", "Warehouse")),
        pages=(("220114", "Fleet optimisation PI 2026.4"),),
    ),
    DemoOrganization(
        key="initech",
        name="Initech Payments (demo)",
        site="https://initech-demo.atlassian.net",
        teams=(("CORE", "Core Banking"),),
        pages=(("310502", "TPS report automation – planning"),),
    ),
)


def demo_present() -> bool:
    """Whether the demo world has been written (its first organization exists)."""
    return Organization.objects.filter(linear_id=ORGANIZATIONS[0].linear_id).exists()


def seed_demo(*, now: dt.datetime | None = None) -> bool:
    """Write the demo world unless it is present; whether anything was written. One transaction."""
    # Checked outside the transaction first: `make run` calls this on every start, so the usual case
    # costs one query. Checked again inside, where a concurrent run's rows would be visible.
    if demo_present():
        return False
    now = now or timezone.now()
    with transaction.atomic():
        if demo_present():
            return False
        for index, org in enumerate(ORGANIZATIONS):
            organization = Organization.objects.ensure(org.linear_id, name=org.name)
            _tokens(org, index, now)
            _directory(org, now)
            increments = _program_increments(org, organization, now)
            _planning_sessions(org, increments[1], now)
            _sync(org, now)
    logger.info("Demo data written for %d organizations", len(ORGANIZATIONS))
    return True


# --- accounts ------------------------------------------------------------------------------------

# Linear's expiries differ per organization so the dashboard has something in each state.
_TOKEN_EXPIRIES = (dt.timedelta(days=29), dt.timedelta(hours=5), -dt.timedelta(hours=3))


def _tokens(org: DemoOrganization, index: int, now: dt.datetime) -> None:
    LinearToken.objects.store(
        org.linear_id,
        access_token=f"lin_oauth_DEMO_{org.key}_not_a_real_token",
        refresh_token=f"lin_refresh_DEMO_{org.key}_not_a_real_token",
        app_user_id=demo_uuid(f"app-user:{org.key}"),
        expires_at=now + _TOKEN_EXPIRIES[index],
        scope="read,write,issues:create",
    )
    ConfluenceToken.objects.store(
        org.linear_id,
        cloud_id=demo_uuid(f"cloud:{org.key}"),
        site_url=org.site,
        access_token=f"DEMO-atlassian-access-token-{org.key}-not-real",
        refresh_token=f"DEMO-atlassian-refresh-token-{org.key}-not-real",
        # The second organization's Confluence token expires within the day too.
        expires_at=now + (dt.timedelta(hours=20) if index == 1 else dt.timedelta(days=45)),
        scope="read:confluence-content.all write:confluence-content offline_access",
    )


# --- directory of names --------------------------------------------------------------------------


def _directory(org: DemoOrganization, now: dt.datetime) -> None:
    """The names the agent would fetch from Linear and Confluence, for every team and page it syncs."""
    LinearTeam.objects.upsert_many(
        org.linear_id, [{"id": org.team_id(key), "key": key, "name": name} for key, name in org.teams], at=now
    )
    ConfluencePage.objects.upsert_many(
        org.linear_id,
        [
            {"id": page_id, "title": title, "url": org.page_url(page_id, title), "space": org.space}
            for page_id, title in org.pages
        ],
        at=now,
    )


# --- planning ------------------------------------------------------------------------------------


def _program_increments(
    org: DemoOrganization, organization: Organization, now: dt.datetime
) -> list[ProgramIncrement]:
    today = now.date()
    specs = [
        ("PI-2026.3", "Summer increment", today - dt.timedelta(days=100), ProgramIncrement.Status.COMPLETED),
        ("PI-2026.4", "Autumn increment", today - dt.timedelta(days=30), ProgramIncrement.Status.EXECUTION),
        ("PI-2027.1", "Winter increment", today + dt.timedelta(days=41), ProgramIncrement.Status.PLANNING),
    ]
    increments = [
        ProgramIncrement.objects.create(
            organization=organization,
            pi_id=pi_id,
            name=name,
            start_date=start,
            end_date=start + dt.timedelta(days=69),
            status=status,
            description=f"{name} of {org.name}: five two-week iterations and an IP iteration.",
        )
        for pi_id, name, start, status in specs
    ]
    current = increments[1]
    teams = [key for key, _ in org.teams]
    PIFeature.objects.bulk_create(
        PIFeature(
            program_increment=current,
            feature_id=demo_uuid(f"pi-feature:{org.key}:{n}"),
            team_id=org.team_id(teams[n % len(teams)]),
            status=status,
            confidence=confidence,
        )
        for n, (status, confidence) in enumerate(
            [("completed", 5), ("in_progress", 4), ("in_progress", 3), ("planned", 2)]
        )
    )
    PIObjective.objects.bulk_create(
        PIObjective(
            program_increment=current,
            objective_id=f"OBJ-{n + 1}",
            team_id=org.team_id(teams[n % len(teams)]),
            description=description,
            business_value=value,
            status=status,
        )
        for n, (description, value, status) in enumerate(
            [
                ("Checkout conversion +3 % through one-page payment", 9, "in_progress"),
                ("Cut p95 search latency below 300 ms", 7, "planned"),
                ("Retire the legacy order export (Überarbeitung abgeschlossen)", 4, "completed"),
            ]
        )
    )
    PIRisk.objects.bulk_create(
        [
            PIRisk(
                program_increment=current,
                risk_id="RISK-1",
                description="Card network certification may slip past the increment.",
                impact=4,
                likelihood=3,
                status=PIRisk.Status.IDENTIFIED,
            ),
            PIRisk(
                program_increment=current,
                risk_id="RISK-2",
                description="Only one engineer knows the warehouse PLC protocol.",
                impact=3,
                likelihood=2,
                status=PIRisk.Status.MITIGATED,
                mitigation_plan="Pairing rotation every iteration; runbook in Confluence.",
            ),
            PIRisk(
                program_increment=current,
                risk_id="RISK-3",
                description="Cloud cost ceiling reached during load tests.",
                impact=2,
                likelihood=4,
                status=PIRisk.Status.ACCEPTED,
            ),
        ]
    )
    return increments


_FEATURES = [
    (
        "One-page checkout",
        "Card, SEPA and wallet payment on a single page.",
        ["Payment method picker", "Address autocomplete", "Order summary sidebar"],
    ),
    (
        "Search relevance v2",
        "Typo tolerance and synonyms for the product search.",
        ["Synonym dictionary admin", "Typo-tolerant matching"],
    ),
    (
        "Lieferstatus in Echtzeit 🚚",
        "Live delivery tracking for customers (DE launch first).",
        ["Tracking page", "Push notification on dispatch"],
    ),
]
_ENABLERS = [
    ("Migrate sessions to Redis cluster", "infrastructure"),
    ("ADR: event-sourced order history", "architecture"),
    ("PCI DSS 4.0 evidence collection", "compliance"),
    ("Spike: vector search for catalogue", "exploration"),
    ("Remove Python 3.9 compatibility shims", "technical_debt"),
]


def _planning_sessions(org: DemoOrganization, pi: ProgramIncrement, now: dt.datetime) -> None:
    page_id, page_title = org.pages[0]
    url = f"{org.site}/wiki/spaces/PLAN/pages/{page_id}"

    def start(title: str, age: dt.timedelta, **fields: Any) -> PlanningSession:
        session = PlanningSession.objects.start(
            org.linear_id,
            confluence_page_url=url,
            planning_title=title,
            confluence_document_id=page_id,
            program_increment=pi,
            **fields,
        )
        # Spread the sessions over the past days, as a real history would be.
        PlanningSession.objects.filter(pk=session.pk).update(created_at=now - age, updated_at=now - age)
        return session

    completed = start(page_title, dt.timedelta(days=6), epic_id=demo_uuid(f"epic:{org.key}"))
    completed.mark_in_progress()
    save_planning_result(
        completed,
        features=[
            {
                "feature_id": demo_uuid(f"feature:{org.key}:{n}"),
                "title": title,
                "description": description,
                "stories": [
                    {
                        "story_id": demo_uuid(f"story:{org.key}:{n}:{m}"),
                        "title": story,
                        "description": f"As a customer I want {story.lower()} so that checkout is quicker.",
                    }
                    for m, story in enumerate(stories)
                ],
            }
            for n, (title, description, stories) in enumerate(_FEATURES)
        ],
        enablers=[
            {
                "enabler_id": demo_uuid(f"enabler:{org.key}:{n}"),
                "title": title,
                "description": f"{title}. Tracked as an enabler of {pi.pi_id}.",
                "enabler_type": enabler_type,
            }
            for n, (title, enabler_type) in enumerate(_ENABLERS)
        ],
    )
    completed.mark_completed()

    processing = start(f"{page_title} (re-plan after scope change)", dt.timedelta(hours=2))
    processing.mark_in_progress()
    processing.set_progress(65, "Creating stories in Linear")
    save_planning_result(
        processing,
        features=[
            {
                "feature_id": demo_uuid(f"feature:{org.key}:replan"),
                "title": "Gift cards",
                "description": "Sell and redeem digital gift cards.",
                "stories": [
                    {"story_id": demo_uuid(f"story:{org.key}:replan:0"), "title": "Redeem at checkout"}
                ],
            }
        ],
    )

    failed = start("Hackathon ideas – do not plan", dt.timedelta(days=2))
    failed.mark_in_progress()
    failed.set_progress(20, "Reading the Confluence page")
    failed.add_warning(
        "The page has no 'Features' heading; looked for tables instead.", code="missing_heading"
    )
    failed.mark_failed(
        f"Confluence returned 404 for page {page_id}: the page was moved to another space. "
        "Update the page URL and start a new session."
    )
    start(f"{org.pages[-1][1]} (queued)", dt.timedelta(minutes=5))


# --- sync ----------------------------------------------------------------------------------------


def _change(source: str, item_id: str, item_type: str, data: dict[str, Any], at: dt.datetime) -> dict:
    return {
        "id": f"{source}-change-{item_id}",
        "type": "updated",
        "source": source,
        "itemType": item_type,
        "itemId": item_id,
        "itemData": data,
        "timestamp": int(at.timestamp() * 1000),
    }


def _conflict_pairs(
    org: DemoOrganization, page_index: int, team_key: str, now: dt.datetime
) -> list[tuple[str, dict, dict]]:
    """(item id, Linear change, Confluence change) for a few realistic disagreements."""
    pairs = []
    samples = [
        (
            "story",
            {
                "title": "Payment method picker",
                "description": "Show card, SEPA and Apple Pay.\n\n- [x] card\n- [ ] SEPA",
                "state": {"name": "In Progress", "type": "started"},
                "estimate": 5,
                "priority": 2,
                "labels": [{"name": "checkout"}, {"name": "frontend"}],
                "assignee": {"name": "Zoë Åkesson", "email": "zoe@example.com"},
            },
            {
                "title": "Payment method picker (incl. Google Pay)",
                "description": "Show card, SEPA, Apple Pay and Google Pay.",
                "state": {"name": "Todo", "type": "unstarted"},
                "estimate": 8,
                "priority": 2,
                "labels": [{"name": "checkout"}],
                "assignee": {"name": "Zoë Åkesson", "email": "zoe@example.com"},
            },
        ),
        (
            "feature",
            {
                "title": "Lieferstatus in Echtzeit 🚚",
                "description": "Live tracking; DE first, then AT/CH.",
                "targetDate": "2026-12-18",
                "project": {"name": "Delivery", "milestones": ["Beta", "GA"]},
                "priority": 1,
            },
            {
                "title": "Lieferstatus in Echtzeit",
                "description": "Live tracking; DE, AT and CH at once.",
                "targetDate": "2027-01-15",
                "project": {"name": "Delivery", "milestones": ["Beta", "GA", "Nordics"]},
                "priority": 1,
            },
        ),
        (
            "enabler",
            {
                "title": "Migrate sessions to Redis cluster",
                "enablerType": "infrastructure",
                "estimate": 13,
                "acceptanceCriteria": ["No login loss during cut-over", "p99 < 5 ms"],
            },
            {
                "title": "Migrate sessions to Redis cluster",
                "enablerType": "architecture",
                "estimate": 8,
                "acceptanceCriteria": ["No login loss during cut-over"],
                "owner": "渡辺 健",
            },
        ),
        (
            "epic",
            {"title": "Checkout 2.0", "state": {"name": "Planned"}, "progress": 0.42},
            {"title": "Checkout 2.0 – one page", "state": {"name": "In Progress"}, "progress": 0.5},
        ),
    ]
    for n, (item_type, linear_data, confluence_data) in enumerate(samples):
        # One Linear issue per (page, team, sample): a conflict id is conflict-<itemId>.
        item_id = demo_uuid(f"issue:{org.key}:{page_index}:{team_key}:{n}")
        identifier = f"{team_key}-{120 + 10 * page_index + n}"
        at = now - dt.timedelta(hours=3 * n + 1)
        pairs.append(
            (
                item_id,
                _change(
                    "linear",
                    item_id,
                    item_type,
                    {"identifier": identifier, **linear_data, "url": org.issue_url(identifier)},
                    at,
                ),
                _change(
                    "confluence",
                    item_id,
                    item_type,
                    {"identifier": identifier, **confluence_data, "url": org.issue_url(identifier)},
                    at,
                ),
            )
        )
    return pairs


def _sync(org: DemoOrganization, now: dt.datetime) -> None:
    organization_id = org.linear_id
    for page_index, (page_id, _) in enumerate(org.pages):
        for team_index, (team_key, _) in enumerate(org.teams):
            team_id = org.team_id(team_key)
            pairs = _conflict_pairs(org, page_index, team_key, now)
            # Fewer conflicts on later pairs, so the dashboard's ranking shows.
            pairs = pairs[: 4 - team_index - page_index]
            for n, (item_id, linear_change, confluence_change) in enumerate(pairs):
                conflict = Conflict.objects.store(
                    f"conflict-{item_id}",
                    linear_change=linear_change,
                    confluence_change=confluence_change,
                    confluence_page_id=page_id,
                    linear_team_id=team_id,
                    organization_id=organization_id,  # what scopes it to this organization's reviewers
                )
                if n == 1:
                    conflict.resolve("linear")
                elif n == 2 and team_index == 0:
                    conflict.resolve(
                        "manual",
                        {
                            **confluence_change,
                            "itemData": {
                                **confluence_change["itemData"],
                                "estimate": linear_change["itemData"].get("estimate"),
                            },
                        },
                    )
            for run in range(6):
                failed = run in (1, 4) and team_index == 0
                SyncHistory.objects.record(
                    page_id,
                    team_id,
                    success=not failed,
                    error=(
                        "Linear API rate limit exceeded (HTTP 429); retry after 60 s"
                        if run == 1
                        else "Confluence page version conflict: expected 42, found 43"
                    )
                    if failed
                    else None,
                    created_issues=0 if failed else (3 if run == 5 else run % 2),
                    updated_issues=0 if failed else 2 + run,
                    confluence_changes=0 if failed else run % 3,
                    conflicts_detected=0 if failed else (2 if run in (0, 3) else 0),
                    conflicts_resolved=0 if failed else (1 if run == 3 else 0),
                    synced_at=now - dt.timedelta(hours=4 * (6 - run)),
                    organization_id=organization_id,
                )
            SyncState.objects.mark_synced(
                page_id, team_id, now - dt.timedelta(hours=4), organization_id=organization_id
            )
    # The last run of the first pair failed (its history's last failure): its state says so as a
    # worker's release(success=False) leaves it, failure count, error and retry included.
    SyncState.objects.for_pair(org.pages[0][0], org.team_id(org.teams[0][0])).update(
        status=SyncStatus.FAILED,
        failure_count=2,
        last_error="Confluence page version conflict: expected 42, found 43",
        next_sync_at=now + dt.timedelta(minutes=4),
    )
    LinearIssueCache.objects.upsert_many(
        organization_id,
        [
            {
                "id": demo_uuid(f"issue:{org.key}:0:{team_key}:{n}"),
                "identifier": f"{team_key}-{120 + n}",
                "title": title,
                "url": org.issue_url(f"{team_key}-{120 + n}"),
                "state": {"name": state},
                "team": {"id": org.team_id(team_key), "key": team_key},
            }
            for team_key, _ in org.teams
            for n, (title, state) in enumerate(
                [("Payment method picker", "In Progress"), ("Lieferstatus in Echtzeit 🚚", "Todo")]
            )
        ],
    )
