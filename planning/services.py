"""Writes of the planning app that span several models.

The main one is :func:`save_planning_result`, the agent's write of what it parsed from a Confluence page
(features with their stories, and enablers) and created in Linear.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.validation import clean_identifier, clean_text
from planning.models import MAX_TITLE_LENGTH, Enabler, Feature, PlanningSession, Story

logger = logging.getLogger(__name__)

_FEATURE_KEYS = frozenset({"feature_id", "title", "description", "stories"})
_STORY_KEYS = frozenset({"story_id", "title", "description"})
_ENABLER_KEYS = frozenset({"enabler_id", "title", "description", "enabler_type"})


@dataclass(frozen=True)
class RowCounts:
    """How many rows of one model a save created, updated and left unchanged."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"


@dataclass(frozen=True)
class PlanningResultCounts:
    """What :func:`save_planning_result` did, per model."""

    features: RowCounts
    stories: RowCounts
    enablers: RowCounts

    def __str__(self) -> str:
        return f"features: {self.features}; stories: {self.stories}; enablers: {self.enablers}"


@dataclass(frozen=True)
class _Item:
    """One validated input item: its Linear id, its parent's Linear id (stories) and its values."""

    linear_id: str
    values: dict[str, str]
    parent_id: str = ""


def _sequence(value: Any, where: str) -> Sequence[Any]:
    if value is None:
        return ()
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise ValueError(f"{where} must be a list, not {type(value).__name__}.")
    return value


def _mapping(value: Any, where: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a dict, not {type(value).__name__}.")
    unknown = set(value) - allowed
    if unknown:
        # Refused rather than dropped: a misspelt key would otherwise lose data silently.
        names = ", ".join(sorted(map(str, unknown)))
        raise ValidationError(
            f"{where}: unknown keys {names} (allowed: {', '.join(sorted(allowed))}).", code="unknown_key"
        )
    return value


def _check(where: str, check: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a ``clean_*`` helper, prefixing its message with the item's place in the input."""
    try:
        return check(*args, **kwargs)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc.messages[0]}", code=exc.code) from None


def _required(item: Mapping[str, Any], key: str, where: str) -> Any:
    value = item.get(key)
    if value is None:
        raise ValidationError(f"{where}: {key} is required.", code="required")
    return value


def _linear_id(item: Mapping[str, Any], key: str, where: str) -> str:
    return _check(where, clean_identifier, _required(item, key, where), key)


def _text_values(item: Mapping[str, Any], where: str) -> dict[str, str]:
    title = _required(item, "title", where)
    return {
        "title": _check(where, clean_text, title, "title", max_length=MAX_TITLE_LENGTH),
        "description": _check(where, clean_text, item.get("description"), "description", required=False),
    }


def _unique(seen: dict[str, str], linear_id: str, where: str, id_name: str) -> None:
    if linear_id in seen:
        raise ValidationError(
            f"{where}: {id_name} {linear_id!r} appears twice (first at {seen[linear_id]}).", code="duplicate"
        )
    seen[linear_id] = where


def _validate_features(features: Any) -> tuple[list[_Item], list[_Item]]:
    feature_items: list[_Item] = []
    story_items: list[_Item] = []
    seen_features: dict[str, str] = {}
    for i, raw in enumerate(_sequence(features, "features")):
        where = f"features[{i}]"
        feature = _mapping(raw, where, _FEATURE_KEYS)
        feature_id = _linear_id(feature, "feature_id", where)
        _unique(seen_features, feature_id, where, "feature_id")
        feature_items.append(_Item(feature_id, _text_values(feature, where)))
        seen_stories: dict[str, str] = {}
        for j, raw_story in enumerate(_sequence(feature.get("stories"), f"{where}.stories")):
            story_where = f"{where}.stories[{j}]"
            story = _mapping(raw_story, story_where, _STORY_KEYS)
            story_id = _linear_id(story, "story_id", story_where)
            _unique(seen_stories, story_id, story_where, "story_id")
            story_items.append(_Item(story_id, _text_values(story, story_where), parent_id=feature_id))
    return feature_items, story_items


def _validate_enablers(enablers: Any) -> list[_Item]:
    items: list[_Item] = []
    seen: dict[str, str] = {}
    for i, raw in enumerate(_sequence(enablers, "enablers")):
        where = f"enablers[{i}]"
        enabler = _mapping(raw, where, _ENABLER_KEYS)
        enabler_id = _linear_id(enabler, "enabler_id", where)
        _unique(seen, enabler_id, where, "enabler_id")
        values = _text_values(enabler, where)
        raw_type = _check(
            where, clean_text, _required(enabler, "enabler_type", where), "enabler_type", max_length=50
        )
        enabler_type = Enabler.normalise_type(raw_type)
        if enabler_type not in Enabler.Type.values:
            raise ValidationError(
                f"{where}: enabler_type {raw_type!r} is not one of {', '.join(Enabler.Type.values)}.",
                code="invalid_choice",
            )
        values["enabler_type"] = enabler_type
        items.append(_Item(enabler_id, values))
    return items


def _upsert(
    model: type[Feature | Story | Enabler],
    id_field: str,
    parent_field: str,
    stored: QuerySet[Any],
    wanted: list[tuple[int, str, dict[str, str]]],
    now: Any,
) -> tuple[RowCounts, dict[tuple[int, str], int | None]]:
    """Create the missing rows and update the changed ones with one bulk query each (per batch).

    ``stored`` holds the rows already under the parents; ``wanted`` lists (parent pk, Linear id,
    values). Returns the counts and the primary key of every wanted row by (parent pk, Linear id)
    (``None`` for a created row where the backend cannot return ids from a bulk insert).

    Changed rows are written with ``INSERT ... ON CONFLICT (parent, id) DO UPDATE`` rather than
    ``bulk_update``, whose ``CASE WHEN`` per row costs rows × rows comparisons (on PostgreSQL,
    ``bulk_update`` of 1,000 story titles alone took 0.53 s, median of 5; the whole 100-feature ×
    10-story changed-title save with upserts 0.30 s). Only the value fields and ``updated_at`` are
    updated, so ``created_at`` stays.
    """
    if not wanted:
        return RowCounts(), {}
    parent_attname = f"{parent_field}_id"
    existing = {(getattr(row, parent_attname), getattr(row, id_field)): row for row in stored.order_by()}
    pks: dict[tuple[int, str], int | None] = {}
    to_create: list[Any] = []
    to_update: list[Any] = []
    value_fields: list[str] = []
    for parent_pk, linear_id, values in wanted:
        value_fields = list(values)
        row = existing.get((parent_pk, linear_id))
        if row is not None:
            pks[parent_pk, linear_id] = row.pk
            if all(getattr(row, name) == value for name, value in values.items()):
                continue
        instance = model(
            **{parent_attname: parent_pk, id_field: linear_id},
            **values,
            created_at=now if row is None else row.created_at,
            updated_at=now,
        )
        (to_create if row is None else to_update).append(instance)
    if to_create:
        model.objects.bulk_create(to_create)
        pks.update({(getattr(row, parent_attname), getattr(row, id_field)): row.pk for row in to_create})
    if to_update:
        model.objects.bulk_create(
            to_update,
            update_conflicts=True,
            unique_fields=[parent_field, id_field],
            update_fields=[*value_fields, "updated_at"],
        )
    unchanged = len(wanted) - len(to_create) - len(to_update)
    return RowCounts(created=len(to_create), updated=len(to_update), unchanged=unchanged), pks


def save_planning_result(
    session: PlanningSession,
    *,
    features: Sequence[Mapping[str, Any]] | None = None,
    enablers: Sequence[Mapping[str, Any]] | None = None,
) -> PlanningResultCounts:
    """Store the features (with stories) and enablers the agent produced for ``session``.

    Input shape::

        features=[{"feature_id", "title", "description", "stories": [{"story_id", "title", "description"}]}]
        enablers=[{"enabler_id", "title", "description", "enabler_type"}]

    ``description`` and ``stories`` are optional; any other key is refused.

    * **Validated first, all or nothing.** Every item is checked before anything is written; the first
      bad item raises a ``ValidationError`` (bad value: empty or over-long title or id, NUL byte, unknown
      key or enabler type, an id twice in the input) or ``ValueError`` (wrong type) whose message names
      it, e.g. ``features[3].stories[1]: story_id 'X' appears twice (first at features[3].stories[0])``.
    * **Idempotent on the Linear ids.** Rows are matched on (session, ``feature_id``), (feature,
      ``story_id``) and (session, ``enabler_id``): new ids are inserted, rows whose title, description
      (or enabler type) changed are updated, identical rows are not touched (``updated_at`` stays).
    * **Rows absent from the input are kept.** The agent sends what it parsed this time; deleting what it
      did not mention would surprise whoever created those rows (an earlier run, the admin).
    * **Enabler types are normalised**: ``"Technical Debt"``, ``"technical-debt"`` and
      ``"TECHNICAL_DEBT"`` all store ``technical_debt`` (the old system wrote such variants); anything
      that does not normalise to a known type is refused.
    * **The session's status is neither checked nor changed**: the agent saves while processing and then
      calls ``session.mark_completed()``; an operator may also re-save a finished session.
    * **Bulk and serialized.** One transaction; the session row is locked (``select_for_update``) so two
      concurrent saves for one session run one after the other; reads and writes are a fixed number of
      bulk queries (the engine may split a very large insert into batches: SQLite binds at most 999
      parameters per query), never one per row.
    """
    if not isinstance(session, PlanningSession):
        raise ValueError(f"session must be a PlanningSession, not {type(session).__name__}.")
    if session.pk is None:
        raise ValueError("session must be saved first.")
    feature_items, story_items = _validate_features(features)
    enabler_items = _validate_enablers(enablers)

    now = timezone.now()
    with transaction.atomic():
        # Serializes concurrent saves for this session: the second waits here until the first commits.
        locked = PlanningSession.objects.select_for_update().filter(pk=session.pk).values_list("pk")
        if not locked:
            raise ValidationError(f"Planning session {session.pk} does not exist.", code="missing")

        feature_counts, feature_pks = _upsert(
            Feature,
            "feature_id",
            "planning_session",
            Feature.objects.filter(planning_session=session.pk),
            [(session.pk, item.linear_id, item.values) for item in feature_items],
            now,
        )

        # A backend that cannot return ids from a bulk insert: read the new features' ids back.
        if story_items and None in feature_pks.values():
            stored = Feature.objects.filter(planning_session=session.pk).values_list("feature_id", "id")
            feature_pks = {(session.pk, feature_id): pk for feature_id, pk in stored}
        story_counts, _ = _upsert(
            Story,
            "story_id",
            "planning_feature",
            Story.objects.filter(planning_feature__planning_session=session.pk),
            [(feature_pks[session.pk, item.parent_id], item.linear_id, item.values) for item in story_items],
            now,
        )

        enabler_counts, _ = _upsert(
            Enabler,
            "enabler_id",
            "planning_session",
            Enabler.objects.filter(planning_session=session.pk),
            [(session.pk, item.linear_id, item.values) for item in enabler_items],
            now,
        )

    counts = PlanningResultCounts(features=feature_counts, stories=story_counts, enablers=enabler_counts)
    logger.info("planning session %s: saved planning result (%s)", session.pk, counts)
    return counts
