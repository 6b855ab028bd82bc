"""How each old table becomes rows of a new model: columns read, value conversions, keys, checks.

One :class:`Spec` per old table (PostgreSQL, or the SQLite sync file for the sync tables). Its
``convert`` turns an old row (a dict) into the new model's field values or raises
:class:`~legacy.convert.Invalid`; :func:`check_values` then applies the rules the new model's fields
and constraints would (choices, lengths, ranges, required values, URLs) without a query, so that a row
the database would refuse is reported with its table and id instead of failing a whole batch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models
from django.views.decorators.debug import sensitive_variables

from accounts.fields import SERIALIZED_PREFIX
from accounts.models import ConfluenceToken, LinearToken
from accounts.validation import MAX_IDENTIFIER_LENGTH
from legacy import convert
from legacy.convert import Invalid
from planning.models import (
    Enabler,
    Feature,
    PIFeature,
    PIObjective,
    PIRisk,
    PlanningSession,
    ProgramIncrement,
    Story,
)
from sync.diff import differing_field_count
from sync.models import Conflict, SyncHistory, SyncState, clean_change

# --- Table specifications -----------------------------------------------------------------------


@dataclasses.dataclass
class Spec:
    """How one old table becomes rows of one new model."""

    table: str
    model: type[models.Model]
    columns: tuple[str, ...]
    convert: Callable[[dict[str, Any]], dict[str, Any]]
    parent_table: str | None = None
    parent_column: str | None = None
    parent_field: str | None = None
    keep_id: bool = False
    merge_key: tuple[str, ...] = ()
    newer_wins: bool = False
    query: str | None = None
    #: Old columns in merge-key order, so that duplicates arrive next to each other.
    order_by: tuple[str, ...] = ("id",)
    id_of: Callable[[dict[str, Any]], str] = lambda row: str(row["id"])


def _org_id(value: Any) -> str:
    linear_id = convert.text(value, "organization_id", required=True).strip()
    if not linear_id:
        raise Invalid("organization_id is empty")
    if len(linear_id) > MAX_IDENTIFIER_LENGTH or "\x00" in linear_id:
        raise Invalid("organization_id is not a valid identifier (too long or contains NUL)")
    return linear_id


@sensitive_variables("row", "access", "refresh")
def _tokens(row: dict[str, Any]) -> dict[str, Any]:
    access = row["access_token"]
    refresh = row["refresh_token"]
    if not isinstance(access, str) or not access.strip():
        raise Invalid("access_token is empty")
    if refresh is not None and (not isinstance(refresh, str) or not refresh.strip()):
        refresh = None  # an empty refresh token is no refresh token
    for name, value in (("access_token", access), ("refresh_token", refresh)):
        if value is not None and ("\x00" in value or value.startswith(SERIALIZED_PREFIX)):
            raise Invalid(f"{name} is not a plain token (NUL character or serialized ciphertext)")
    return {"access_token": access, "refresh_token": refresh}


def _timestamps(row: dict[str, Any]) -> dict[str, Any]:
    created = convert.aware(row.get("created_at"), "created_at", required=False)
    updated = convert.aware(row.get("updated_at"), "updated_at", required=False)
    created = created or updated or now()
    return {"created_at": created, "updated_at": updated or created}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _linear_token(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "_org": _org_id(row["organization_id"]),
        **_tokens(row),
        "app_user_id": convert.text(row["app_user_id"], "app_user_id", required=True),
        "expires_at": convert.aware(row["expires_at"], "expires_at"),
        **_timestamps(row),
    }


def _confluence_token(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "_org": _org_id(row["organization_id"]),
        **_tokens(row),
        "cloud_id": "",
        "site_url": convert.text(row["site_url"], "site_url", required=True),
        "expires_at": convert.aware(row["expires_at"], "expires_at"),
        **_timestamps(row),
    }


def _date_of(value: Any, name: str, data: dict[str, Any]) -> dt.date:
    moment = convert.aware(value, name)
    utc = moment.astimezone(dt.UTC)
    if utc.time() != dt.time(0):
        # The new column is a date: keep the old time of day in the map rather than lose it.
        data[name] = utc.isoformat()
    return utc.date()


def _program_increment(row: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    values = {
        "_org": _org_id(row["organization_id"]),
        "pi_id": convert.text(row["pi_id"], "pi_id", required=True),
        "name": convert.text(row["name"], "name"),
        "start_date": _date_of(row["start_date"], "start_date", data),
        "end_date": _date_of(row["end_date"], "end_date", data),
        "description": convert.text(row["description"], "description"),
        "status": convert.vocabulary(row["status"] or "planning"),
        **_timestamps(row),
        "_data": data,
    }
    if values["end_date"] < values["start_date"]:
        raise Invalid(f"end_date {values['end_date']} is before start_date {values['start_date']}")
    return values


def _pi_feature(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "feature_id": convert.text(row["feature_id"], "feature_id", required=True),
        "team_id": convert.text(row["team_id"], "team_id"),
        "status": convert.vocabulary(row["status"] or "planned"),
        "confidence": convert.integer(row["confidence"], "confidence", default=3),
        "_data": _child_timestamps(row),
    }


def _pi_objective(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "objective_id": convert.text(row["objective_id"], "objective_id", required=True),
        "team_id": convert.text(row["team_id"], "team_id"),
        "description": convert.text(row["description"], "description"),
        "business_value": convert.integer(row["business_value"], "business_value", default=5),
        "status": convert.vocabulary(row["status"] or "planned"),
        "_data": _child_timestamps(row),
    }


def _pi_risk(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "risk_id": convert.text(row["risk_id"], "risk_id", required=True),
        "description": convert.text(row["description"], "description"),
        "impact": convert.integer(row["impact"], "impact", default=3),
        "likelihood": convert.integer(row["likelihood"], "likelihood", default=3),
        "status": convert.vocabulary(row["status"] or "identified"),
        "mitigation_plan": convert.text(row["mitigation_plan"], "mitigation_plan"),
        "_data": _child_timestamps(row),
    }


def _child_timestamps(row: dict[str, Any]) -> dict[str, Any]:
    """PI children have no timestamps in the new schema: keep the old ones in the map."""
    return {
        name: convert.aware(row.get(name), name, required=False).isoformat()
        for name in ("created_at", "updated_at")
        if row.get(name) is not None
    }


def _planning_session(row: dict[str, Any]) -> dict[str, Any]:
    if row["organization_id"] is None:
        raise Invalid("organization_id is missing (the new schema needs an organization)")
    status = convert.session_status(row["status"])
    return {
        "_org": _org_id(row["organization_id"]),
        "confluence_page_url": convert.text(row["confluence_page_url"], "confluence_page_url", required=True),
        "planning_title": convert.text(row["planning_title"], "planning_title", required=True),
        "epic_id": convert.text(row["epic_id"], "epic_id"),
        "status": status,
        # The old schema had no progress; a completed session is done (as mark_completed() sets it).
        "progress": 100 if status == "completed" else 0,
        **_timestamps(row),
    }


def _feature(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "feature_id": convert.text(row["feature_id"], "feature_id", required=True),
        "title": convert.text(row["title"], "title", required=True),
        "description": convert.text(row["description"], "description"),
        **_timestamps(row),
    }


def _story(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "story_id": convert.text(row["story_id"], "story_id", required=True),
        "title": convert.text(row["title"], "title", required=True),
        "description": convert.text(row["description"], "description"),
        **_timestamps(row),
    }


def _enabler(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "enabler_id": convert.text(row["enabler_id"], "enabler_id", required=True),
        "title": convert.text(row["title"], "title", required=True),
        "description": convert.text(row["description"], "description"),
        "enabler_type": convert.vocabulary(row["enabler_type"] or ""),
        **_timestamps(row),
    }


def _sync_state(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "confluence_page_id": convert.text(row["confluence_page_id"], "confluence_page_id", required=True),
        "linear_team_id": convert.text(row["linear_team_id"], "linear_team_id", required=True),
        "last_synced_at": convert.aware(row["timestamp"], "timestamp"),
        "status": "idle",
        **_timestamps(row),
    }


def _sync_config(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "_org": _org_id(row["organization_id"]),
        "confluence_page_id": convert.text(row["confluence_page_url"], "confluence_page_url", required=True),
        "linear_team_id": convert.text(row["team_id"], "team_id", required=True),
        "last_synced_at": convert.aware(row["last_sync_time"], "last_sync_time", required=False),
        "status": "idle",
        **_timestamps(row),
        "_data": {name: row[name] for name in ("direction", "frequency", "enabled")},
    }


def _change(value: Any, name: str) -> dict[str, Any]:
    change = convert.json_value(value, name)
    try:
        return clean_change(change, name)
    except ValidationError as exc:
        raise Invalid("; ".join(exc.messages)) from None


def _conflict(row: dict[str, Any]) -> dict[str, Any]:
    linear = _change(row["linear_change"], "linear_change")
    confluence = _change(row["confluence_change"], "confluence_change")
    if linear["itemId"] != confluence["itemId"]:
        raise Invalid(
            f"linear_change and confluence_change are about different items "
            f"({linear['itemId']!r} and {confluence['itemId']!r})"
        )
    stamps = _timestamps(row)
    resolved = convert.boolean(row["is_resolved"], "is_resolved")
    strategy = convert.vocabulary(row["resolution_strategy"]) if row["resolution_strategy"] else ""
    resolved_change = None
    if row["resolved_change"] is not None:
        resolved_change = _change(row["resolved_change"], "resolved_change")
    if resolved and not strategy and resolved_change is not None:
        # The old code stored the winning side's change: its source names the strategy.
        strategy = convert.vocabulary(resolved_change.get("source", ""))
    if resolved and not strategy:
        raise Invalid("is_resolved is true but resolution_strategy is missing")
    if not resolved and strategy:
        raise Invalid(f"resolution_strategy {strategy!r} is set on an unresolved conflict")
    return {
        "id": convert.text(row["id"], "id", required=True),
        "linear_change": linear,
        "confluence_change": confluence,
        "resolved_change": resolved_change,
        "item_type": linear.get("itemType") or confluence.get("itemType") or "",
        "item_id": linear["itemId"],
        "differing_field_count": differing_field_count(linear["itemData"], confluence["itemData"]),
        "is_resolved": resolved,
        "resolution_strategy": strategy,
        "resolved_at": stamps["updated_at"] if resolved else None,
        # The old agent applied its resolutions itself: they do not enter the outbox (sync.models.outbox).
        "applied_at": stamps["updated_at"] if resolved else None,
        "applied_by": "legacy-import" if resolved else "",
        **stamps,
    }


def _wrap_side(data: Any, side: str, item_id: str, ms: int) -> dict[str, Any]:
    """A first-shape ``sync_conflicts`` side as a change object (wrapped unless it already is one)."""
    if isinstance(data, dict) and {"itemId", "source", "itemData"} <= data.keys():
        return data
    item = data if isinstance(data, dict) else {"value": data}
    return {
        "id": f"{side}-change-{item_id}",
        "type": "updated",
        "source": side,
        "itemType": str(item.get("itemType") or item.get("type") or ""),
        "itemId": item_id,
        "itemData": item,
        "timestamp": ms,
    }


def _sync_conflict(row: dict[str, Any]) -> dict[str, Any]:
    created = convert.aware(row["created_at"], "created_at", required=False) or now()
    linear_raw = convert.json_value(row["linear_data"], "linear_data", required=False)
    confluence_raw = convert.json_value(row["confluence_data"], "confluence_data", required=False)
    item_id = ""
    for raw in (linear_raw, confluence_raw):
        if isinstance(raw, dict):
            item_id = str(raw.get("itemId") or raw.get("identifier") or raw.get("id") or "")
            if item_id:
                break
    item_id = item_id or f"sync-conflict-{row['id']}"
    ms = convert.ms_of(created)
    linear = _wrap_side(linear_raw, "linear", item_id, ms)
    confluence = _wrap_side(confluence_raw, "confluence", item_id, ms)
    for name, change in (("linear_data", linear), ("confluence_data", confluence)):
        try:
            clean_change(change, name)
        except ValidationError as exc:
            raise Invalid("; ".join(exc.messages)) from None
    resolved = row["resolution"] is not None and str(row["resolution"]).strip() != ""
    strategy = convert.resolution_strategy(row["resolution"], "resolution") if resolved else ""
    conflict_id = f"sync-conflict-{row['id']}"
    resolved_change = None
    if strategy in ("linear", "confluence"):
        resolved_change = {
            **(linear if strategy == "linear" else confluence),
            "id": f"resolved-{conflict_id}",
        }
    resolved_at = convert.aware(row["resolved_at"], "resolved_at", required=False) if resolved else None
    return {
        "id": conflict_id,
        "confluence_page_id": convert.text(row["confluence_page_url"], "confluence_page_url"),
        "linear_team_id": convert.text(row["team_id"], "team_id"),
        "linear_change": linear,
        "confluence_change": confluence,
        "resolved_change": resolved_change,
        "item_type": linear.get("itemType") or confluence.get("itemType") or "",
        "item_id": item_id,
        "differing_field_count": differing_field_count(linear["itemData"], confluence["itemData"]),
        "is_resolved": resolved,
        "resolution_strategy": strategy,
        "resolved_at": (resolved_at or created) if resolved else None,
        # Applied by the old agent: not for the outbox (sync.models.outbox).
        "applied_at": (resolved_at or created) if resolved else None,
        "applied_by": "legacy-import" if resolved else "",
        "created_at": created,
        "updated_at": resolved_at or created,
        "_data": {"type": row["type"]},
    }


def _history(row: dict[str, Any]) -> dict[str, Any]:
    counters = {
        name: convert.integer(row[name], name, default=0)
        for name in (
            "created_issues",
            "updated_issues",
            "confluence_changes",
            "conflicts_detected",
            "conflicts_resolved",
        )
    }
    synced_at = convert.aware(row["timestamp"], "timestamp", required=False) or convert.aware(
        row["created_at"], "created_at"
    )
    return {
        "confluence_page_id": convert.text(row["confluence_page_id"], "confluence_page_id", required=True),
        "linear_team_id": convert.text(row["linear_team_id"], "linear_team_id", required=True),
        "success": convert.boolean(row["success"], "success"),
        "error": convert.text(row["error"], "error"),
        **counters,
        "synced_at": synced_at,
        "_data": _child_timestamps({"created_at": row["created_at"]}),
    }


def _history_first_shape(row: dict[str, Any]) -> dict[str, Any]:
    if row["sync_config_id"] is None or row["team_id"] is None:
        raise Invalid("sync_config_id points to no sync_configs row (page and team unknown)")
    status = convert.vocabulary(row["status"] or "")
    completed = convert.aware(row["completed_at"], "completed_at", required=False)
    started = convert.aware(row["started_at"], "started_at", required=completed is not None)
    data: dict[str, Any] = {"status": row["status"]}
    if completed is not None and started is not None:
        data["started_at"] = started.isoformat()
    return {
        "_org": _org_id(row["organization_id"]),
        "confluence_page_id": convert.text(row["confluence_page_url"], "confluence_page_url", required=True),
        "linear_team_id": convert.text(row["team_id"], "team_id", required=True),
        "success": status in ("completed", "success"),
        "error": convert.text(row["error"], "error"),
        "created_issues": convert.integer(row["changes_created"], "changes_created", default=0),
        "updated_issues": convert.integer(row["changes_updated"], "changes_updated", default=0),
        "conflicts_detected": convert.integer(row["conflicts"], "conflicts", default=0),
        "deleted_issues": convert.integer(row["changes_deleted"], "changes_deleted", default=0),
        "direction": convert.text(row["direction"] or row["config_direction"], "direction"),
        "synced_at": completed or started,
        "_data": data,
    }


_TOKEN_COLUMNS = (
    "id",
    "organization_id",
    "access_token",
    "refresh_token",
    "expires_at",
    "created_at",
    "updated_at",
)

_HISTORY_FIRST_SHAPE_QUERY = """
SELECT h.id, h.sync_config_id, h.status, h.direction, h.changes_created, h.changes_updated,
       h.changes_deleted, h.conflicts, h.error, h.started_at, h.completed_at,
       c.organization_id, c.team_id, c.confluence_page_url, c.direction AS config_direction
FROM sync_history h LEFT JOIN sync_configs c ON c.id = h.sync_config_id
ORDER BY h.id
"""

_SYNC_CONFLICTS_QUERY = """
SELECT sc.id, sc.type, sc.confluence_data, sc.linear_data, sc.resolution, sc.resolved_at, sc.created_at,
       c.team_id, c.confluence_page_url
FROM sync_conflicts sc
LEFT JOIN sync_history h ON h.id = sc.sync_history_id
LEFT JOIN sync_configs c ON c.id = h.sync_config_id
ORDER BY sc.id
"""


def postgres_specs(shape: str | None) -> list[Spec]:
    """The PostgreSQL tables in import order: parents before children."""
    specs = [
        Spec(
            "linear_tokens",
            LinearToken,
            (*_TOKEN_COLUMNS, "app_user_id"),
            _linear_token,
            order_by=("organization_id", "id"),
            merge_key=("organization_id",),
            newer_wins=True,
        ),
        Spec(
            "confluence_tokens",
            ConfluenceToken,
            (*_TOKEN_COLUMNS, "site_url"),
            _confluence_token,
            order_by=("organization_id", "id"),
            merge_key=("organization_id", "cloud_id"),
            newer_wins=True,
        ),
        Spec(
            "program_increments",
            ProgramIncrement,
            (
                "id",
                "organization_id",
                "pi_id",
                "name",
                "start_date",
                "end_date",
                "description",
                "status",
                "created_at",
                "updated_at",
            ),
            _program_increment,
            keep_id=True,
            order_by=("organization_id", "pi_id", "id"),
            merge_key=("organization_id", "pi_id"),
        ),
        Spec(
            "pi_features",
            PIFeature,
            (
                "id",
                "program_increment_id",
                "feature_id",
                "team_id",
                "status",
                "confidence",
                "created_at",
                "updated_at",
            ),
            _pi_feature,
            order_by=("program_increment_id", "feature_id", "id"),
            parent_table="program_increments",
            parent_column="program_increment_id",
            parent_field="program_increment_id",
            merge_key=("program_increment_id", "feature_id"),
        ),
        Spec(
            "pi_objectives",
            PIObjective,
            (
                "id",
                "program_increment_id",
                "objective_id",
                "team_id",
                "description",
                "business_value",
                "status",
                "created_at",
                "updated_at",
            ),
            _pi_objective,
            order_by=("program_increment_id", "objective_id", "id"),
            parent_table="program_increments",
            parent_column="program_increment_id",
            parent_field="program_increment_id",
            merge_key=("program_increment_id", "objective_id"),
        ),
        Spec(
            "pi_risks",
            PIRisk,
            (
                "id",
                "program_increment_id",
                "risk_id",
                "description",
                "impact",
                "likelihood",
                "status",
                "mitigation_plan",
                "created_at",
                "updated_at",
            ),
            _pi_risk,
            order_by=("program_increment_id", "risk_id", "id"),
            parent_table="program_increments",
            parent_column="program_increment_id",
            parent_field="program_increment_id",
            merge_key=("program_increment_id", "risk_id"),
        ),
        Spec(
            "planning_sessions",
            PlanningSession,
            (
                "id",
                "organization_id",
                "confluence_page_url",
                "planning_title",
                "epic_id",
                "status",
                "created_at",
                "updated_at",
            ),
            _planning_session,
            keep_id=True,
        ),
        Spec(
            "planning_features",
            Feature,
            ("id", "planning_session_id", "feature_id", "title", "description", "created_at", "updated_at"),
            _feature,
            order_by=("planning_session_id", "feature_id", "id"),
            parent_table="planning_sessions",
            parent_column="planning_session_id",
            parent_field="planning_session_id",
            keep_id=True,
            merge_key=("planning_session_id", "feature_id"),
        ),
        Spec(
            "planning_stories",
            Story,
            ("id", "planning_feature_id", "story_id", "title", "description", "created_at", "updated_at"),
            _story,
            order_by=("planning_feature_id", "story_id", "id"),
            parent_table="planning_features",
            parent_column="planning_feature_id",
            parent_field="planning_feature_id",
            keep_id=True,
            merge_key=("planning_feature_id", "story_id"),
        ),
        Spec(
            "planning_enablers",
            Enabler,
            (
                "id",
                "planning_session_id",
                "enabler_id",
                "title",
                "description",
                "enabler_type",
                "created_at",
                "updated_at",
            ),
            _enabler,
            order_by=("planning_session_id", "enabler_id", "id"),
            parent_table="planning_sessions",
            parent_column="planning_session_id",
            parent_field="planning_session_id",
            keep_id=True,
            merge_key=("planning_session_id", "enabler_id"),
        ),
        SYNC_STATE,
    ]
    if shape == "first":
        specs.append(
            Spec(
                "sync_configs",
                SyncState,
                (
                    "id",
                    "organization_id",
                    "team_id",
                    "confluence_page_url",
                    "direction",
                    "frequency",
                    "last_sync_time",
                    "enabled",
                    "created_at",
                    "updated_at",
                ),
                _sync_config,
                order_by=("confluence_page_url", "team_id", "id"),
                merge_key=("confluence_page_id", "linear_team_id"),
                newer_wins=True,
            )
        )
    specs.append(CONFLICTS)
    if shape == "first":
        specs.append(
            Spec(
                "sync_conflicts",
                Conflict,
                ("id", "type", "confluence_data", "linear_data", "resolution", "resolved_at", "created_at"),
                _sync_conflict,
                merge_key=("id",),
                newer_wins=True,
                query=_SYNC_CONFLICTS_QUERY,
            )
        )
        specs.append(
            Spec(
                "sync_history",
                SyncHistory,
                (
                    "id",
                    "sync_config_id",
                    "status",
                    "direction",
                    "changes_created",
                    "changes_updated",
                    "changes_deleted",
                    "conflicts",
                    "error",
                    "started_at",
                    "completed_at",
                ),
                _history_first_shape,
                query=_HISTORY_FIRST_SHAPE_QUERY,
            )
        )
    elif shape == "second":
        specs.append(HISTORY)
    return specs


SYNC_STATE = Spec(
    "sync_state",
    SyncState,
    ("id", "confluence_page_id", "linear_team_id", "timestamp", "created_at", "updated_at"),
    _sync_state,
    order_by=("confluence_page_id", "linear_team_id", "id"),
    merge_key=("confluence_page_id", "linear_team_id"),
    newer_wins=True,
)
CONFLICTS = Spec(
    "conflicts",
    Conflict,
    (
        "id",
        "linear_change",
        "confluence_change",
        "is_resolved",
        "resolution_strategy",
        "resolved_change",
        "created_at",
        "updated_at",
    ),
    _conflict,
    merge_key=("id",),
    newer_wins=True,
)
HISTORY = Spec(
    "sync_history",
    SyncHistory,
    (
        "id",
        "confluence_page_id",
        "linear_team_id",
        "success",
        "error",
        "created_issues",
        "updated_issues",
        "confluence_changes",
        "conflicts_detected",
        "conflicts_resolved",
        "timestamp",
        "created_at",
    ),
    _history,
)

#: The tables of the SQLite sync file, in import order (after the PostgreSQL ones of the same kind).
SQLITE_SPECS = [SYNC_STATE, CONFLICTS, HISTORY]

#: What the first shape had and the new models have no column for (kept in the import map's data).
UNPLACED_FIRST_SHAPE = [
    "sync_configs.frequency, sync_configs.enabled, sync_configs.direction (SyncState has no place; "
    "direction goes to each SyncHistory run)",
    "sync_history.status (SyncHistory keeps success only), and sync_history.started_at when "
    "completed_at is set",
    "sync_conflicts.type",
]
UNPLACED_ALWAYS = [
    "pi_features / pi_objectives / pi_risks created_at, updated_at (no timestamps in the new models)",
    "program_increments.start_date / end_date time of day (the new columns are dates), when not midnight",
    "sync_history.created_at (SyncHistory keeps synced_at)",
]


# --- Validation mirroring the new models' rules ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    null: bool
    blank: bool
    max_length: int | None
    choices: frozenset[str] | None
    low: int | None
    high: int | None
    url: bool


def field_rules(model: type[models.Model]) -> list[Rule]:
    rules = []
    for field in model._meta.concrete_fields:
        if field.primary_key and isinstance(field, models.AutoField):
            continue
        low = high = None
        if isinstance(field, models.IntegerField) and not isinstance(field, models.AutoField):
            for validator in field.validators:
                if isinstance(validator, MinValueValidator):
                    low = validator.limit_value if low is None else max(low, validator.limit_value)
                elif isinstance(validator, MaxValueValidator):
                    high = validator.limit_value if high is None else min(high, validator.limit_value)
        rules.append(
            Rule(
                name=field.attname,
                null=field.null,
                blank=field.blank,
                max_length=getattr(field, "max_length", None)
                if isinstance(field, models.CharField)
                else None,
                choices=frozenset(str(c[0]) for c in field.flatchoices) if field.choices else None,
                low=low,
                high=high,
                url=isinstance(field, models.URLField),
            )
        )
    return rules


_URL = URLValidator(schemes=["http", "https"])


def check_values(rules: list[Rule], values: dict[str, Any]) -> None:
    """Raise :class:`Invalid` for the first value the model's fields or constraints would refuse."""
    for rule in rules:
        if rule.name not in values:
            continue
        value = values[rule.name]
        if value is None:
            if not rule.null:
                raise Invalid(f"{rule.name} is missing")
            continue
        if isinstance(value, str):
            if not rule.blank and not value.strip():
                raise Invalid(f"{rule.name} is empty")
            if "\x00" in value:
                raise Invalid(f"{rule.name} contains a NUL character")
            if rule.max_length is not None and len(value) > rule.max_length:
                raise Invalid(f"{rule.name} is {len(value)} characters long; at most {rule.max_length} fit")
            if rule.choices is not None and value not in rule.choices and (value or not rule.blank):
                raise Invalid(f"{rule.name} {value!r} is not one of {', '.join(sorted(rule.choices))}")
            if rule.url and value:
                try:
                    _URL(value)
                except ValidationError:
                    raise Invalid(f"{rule.name} {value[:80]!r} is not an http(s) URL") from None
        elif isinstance(value, int) and not isinstance(value, bool):
            if rule.low is not None and value < rule.low:
                raise Invalid(f"{rule.name} {value} is below {rule.low}")
            if rule.high is not None and value > rule.high:
                raise Invalid(f"{rule.name} {value} is above {rule.high}")
