"""Small ``make_<model>(**overrides)`` functions that build valid rows for tests.

One section per app; each function returns a saved instance and accepts overrides for any field.
"""

from __future__ import annotations

import itertools
from typing import Any

from accounts.models import ConfluenceToken, LinearToken, Organization

_sequence = itertools.count(1)


def unique(prefix: str) -> str:
    """A string no other call in this process returns: ``<prefix>-<n>``."""
    return f"{prefix}-{next(_sequence)}"


# --- accounts --------------------------------------------------------------------------------


def make_organization(**overrides: Any) -> Organization:
    fields = {"linear_id": unique("org"), "name": "Acme"}
    fields.update(overrides)
    return Organization.objects.create(**fields)


def make_linear_token(**overrides: Any) -> LinearToken:
    """A saved Linear token (valid for an hour) of a new organization unless ``organization`` is given."""
    import datetime as dt  # local: the shared import block at the top belongs to every section

    from django.utils import timezone

    fields: dict[str, Any] = {
        "access_token": unique("lin-access-token"),
        "refresh_token": unique("lin-refresh-token"),
        "app_user_id": unique("app-user"),
        "expires_at": timezone.now() + dt.timedelta(hours=1),
        "scope": "read,write",
    }
    fields.update(overrides)
    if "organization" not in fields:
        fields["organization"] = make_organization()
    return LinearToken.objects.create(**fields)


def make_confluence_token(**overrides: Any) -> ConfluenceToken:
    """A saved Confluence token (valid for an hour) of a new organization unless ``organization`` is given."""
    import datetime as dt

    from django.utils import timezone

    fields: dict[str, Any] = {
        "cloud_id": unique("cloud"),
        "site_url": "https://acme.atlassian.net",
        "access_token": unique("conf-access-token"),
        "refresh_token": unique("conf-refresh-token"),
        "expires_at": timezone.now() + dt.timedelta(hours=1),
    }
    fields.update(overrides)
    if "organization" not in fields:
        fields["organization"] = make_organization()
    return ConfluenceToken.objects.create(**fields)


# --- end accounts ----------------------------------------------------------------------------

# --- planning --------------------------------------------------------------------------------
# Imported here, not at the top, so that each app's section stays self-contained.
import datetime as dt  # noqa: E402

from planning.models import (  # noqa: E402
    Enabler,
    Feature,
    PIFeature,
    PIObjective,
    PIRisk,
    PlanningSession,
    ProgramIncrement,
    Story,
)


def make_program_increment(**overrides: Any) -> ProgramIncrement:
    fields: dict[str, Any] = {
        "pi_id": unique("PI"),
        "name": "Increment",
        "start_date": dt.date(2026, 1, 5),
        "end_date": dt.date(2026, 3, 27),
    }
    fields.update(overrides)
    if "organization" not in fields:
        fields["organization"] = make_organization()
    return ProgramIncrement.objects.create(**fields)


def make_pi_feature(**overrides: Any) -> PIFeature:
    fields: dict[str, Any] = {"feature_id": unique("pif"), "team_id": "team-1"}
    fields.update(overrides)
    if "program_increment" not in fields:
        fields["program_increment"] = make_program_increment()
    return PIFeature.objects.create(**fields)


def make_pi_objective(**overrides: Any) -> PIObjective:
    fields: dict[str, Any] = {"objective_id": unique("obj"), "team_id": "team-1", "description": "Ship it"}
    fields.update(overrides)
    if "program_increment" not in fields:
        fields["program_increment"] = make_program_increment()
    return PIObjective.objects.create(**fields)


def make_pi_risk(**overrides: Any) -> PIRisk:
    fields: dict[str, Any] = {"risk_id": unique("risk"), "description": "Vendor late"}
    fields.update(overrides)
    if "program_increment" not in fields:
        fields["program_increment"] = make_program_increment()
    return PIRisk.objects.create(**fields)


def make_planning_session(**overrides: Any) -> PlanningSession:
    fields: dict[str, Any] = {
        "confluence_page_url": "https://acme.atlassian.net/wiki/spaces/PLAN/pages/1",
        "planning_title": "Q1 planning",
    }
    fields.update(overrides)
    if "organization" not in fields:
        fields["organization"] = make_organization()
    return PlanningSession.objects.create(**fields)


def make_feature(**overrides: Any) -> Feature:
    fields: dict[str, Any] = {"feature_id": unique("FEAT"), "title": "A feature"}
    fields.update(overrides)
    if "planning_session" not in fields:
        fields["planning_session"] = make_planning_session()
    return Feature.objects.create(**fields)


def make_story(**overrides: Any) -> Story:
    fields: dict[str, Any] = {"story_id": unique("STORY"), "title": "A story"}
    fields.update(overrides)
    if "planning_feature" not in fields:
        fields["planning_feature"] = make_feature()
    return Story.objects.create(**fields)


def make_enabler(**overrides: Any) -> Enabler:
    fields: dict[str, Any] = {
        "enabler_id": unique("ENAB"),
        "title": "An enabler",
        "enabler_type": Enabler.Type.ARCHITECTURE,
    }
    fields.update(overrides)
    if "planning_session" not in fields:
        fields["planning_session"] = make_planning_session()
    return Enabler.objects.create(**fields)


# --- end planning ----------------------------------------------------------------------------

# --- sync ------------------------------------------------------------------------------------
# Imported here, not at the top, so that each app's section stays self-contained.
from sync.models import (  # noqa: E402
    Conflict,
    ConflictResolution,
    LinearIssueCache,
    SyncHistory,
    SyncState,
)


def make_change(source: str = "linear", **overrides: Any) -> dict[str, Any]:
    """A valid change object (legacy-schema.md, "Conflict JSON"); not saved anywhere."""
    item_id = overrides.pop("itemId", "item-1")
    change: dict[str, Any] = {
        "id": f"{source}-change-{item_id}",
        "type": "updated",
        "source": source,
        "itemType": "story",
        "itemId": item_id,
        "itemData": {"title": f"Title from {source}", "estimate": 3},
        "timestamp": 1_767_225_600_000,
    }
    change.update(overrides)
    return change


def make_sync_state(**overrides: Any) -> SyncState:
    fields: dict[str, Any] = {"confluence_page_id": unique("page"), "linear_team_id": unique("team")}
    fields.update(overrides)
    return SyncState.objects.create(**fields)


def make_conflict(**overrides: Any) -> Conflict:
    """A stored, unresolved conflict through ``Conflict.objects.store`` (so counters stay true).

    Overrides: ``id``, ``item_id``, ``linear_change``, ``confluence_change``, ``confluence_page_id``,
    ``linear_team_id``.
    """
    item_id = overrides.pop("item_id", None) or unique("item")
    conflict_id = overrides.pop("id", f"conflict-{item_id}")
    linear_change = overrides.pop("linear_change", None) or make_change("linear", itemId=item_id)
    confluence_change = overrides.pop("confluence_change", None) or make_change(
        "confluence", itemId=item_id, itemData={"title": "Title from confluence", "estimate": 3}
    )
    return Conflict.objects.store(
        conflict_id, linear_change=linear_change, confluence_change=confluence_change, **overrides
    )


def make_conflict_resolution(**overrides: Any) -> ConflictResolution:
    fields: dict[str, Any] = {"conflict_id": unique("conflict"), "action": "resolved", "strategy": "linear"}
    fields.update(overrides)
    return ConflictResolution.objects.create(**fields)


def make_sync_history(**overrides: Any) -> SyncHistory:
    fields: dict[str, Any] = {
        "confluence_page_id": unique("page"),
        "linear_team_id": unique("team"),
        "success": True,
    }
    fields.update(overrides)
    return SyncHistory.objects.create(**fields)


def make_linear_issue_cache(**overrides: Any) -> LinearIssueCache:
    fields: dict[str, Any] = {"linear_issue_id": unique("issue"), "issue_data": {"title": "Issue"}}
    fields.update(overrides)
    if "organization" not in fields:
        fields["organization"] = make_organization()
    return LinearIssueCache.objects.create(**fields)


# --- end sync --------------------------------------------------------------------------------
