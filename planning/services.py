"""Writes of the planning app that span several models.

The main one is :func:`save_planning_result`, the agent's write of what it parsed from a Confluence page
(epics, features with their stories and enablers, session-level enablers) and created in Linear.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import connections, models, transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.validation import clean_identifier, clean_text
from planning.models import (
    MAX_STORY_POINTS,
    MAX_TITLE_LENGTH,
    Enabler,
    Epic,
    Feature,
    ItemType,
    PlanningSession,
    Priority,
    Story,
    clean_json_value,
)

logger = logging.getLogger(__name__)

#: The keys an item of each level accepts. Where the old parser and today's shape spell a field
#: differently, both spellings are accepted (one of them per item): see ``_ALIASES``.
_COMMON_KEYS = frozenset(
    {"id", "planning_id", "type", "title", "description", "attributes", "labels", "parentId"}
)
_ESTIMATE_KEYS = frozenset(
    {"storyPoints", "story_points", "priority", "acceptanceCriteria", "acceptance_criteria"}
)
_EPIC_KEYS = _COMMON_KEYS | {"epic_id", "features"}
_FEATURE_KEYS = _COMMON_KEYS | _ESTIMATE_KEYS | {"feature_id", "stories", "enablers"}
_STORY_KEYS = _COMMON_KEYS | _ESTIMATE_KEYS | {"story_id"}
_ENABLER_KEYS = _COMMON_KEYS | {"enabler_id", "enabler_type", "enablerType", "featureId"}
#: field → its spellings (the old parser's camelCase, today's snake_case).
_ALIASES = {
    "planning_id": ("id", "planning_id"),
    "story_points": ("storyPoints", "story_points"),
    "acceptance_criteria": ("acceptanceCriteria", "acceptance_criteria"),
    "enabler_type": ("enablerType", "enabler_type"),
}
#: Priority names the old parser and Linear use, for the integer Linear stores.
_PRIORITY_NAMES = {
    "none": Priority.NONE,
    "no priority": Priority.NONE,
    "urgent": Priority.URGENT,
    "high": Priority.HIGH,
    "medium": Priority.MEDIUM,
    "low": Priority.LOW,
}
#: Computed once: ``TextChoices.values`` builds a new list on every access.
_PRIORITY_VALUES = frozenset(Priority.values)
_ENABLER_TYPES = frozenset(Enabler.Type.values)
MAX_LABEL_LENGTH = 255
MAX_CRITERION_LENGTH = 10_000


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
    epics: RowCounts = RowCounts()

    def __str__(self) -> str:
        return (
            f"epics: {self.epics}; features: {self.features}; stories: {self.stories}; "
            f"enablers: {self.enablers}"
        )


@dataclass(frozen=True)
class _Item:
    """One validated input item: its Linear id, its parent's Linear id and its values."""

    linear_id: str
    values: dict[str, Any]
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
    if not allowed.issuperset(value):
        # Refused rather than dropped: a misspelt key would otherwise lose data silently.
        names = ", ".join(sorted(map(str, set(value) - allowed)))
        raise ValidationError(
            f"{where}: unknown keys {names} (allowed: {', '.join(sorted(allowed))}).", code="unknown_key"
        )
    for field, (old, new) in _ALIASES.items():
        if value.get(old) is not None and value.get(new) is not None:
            raise ValidationError(
                f"{where}: {old} and {new} both given; they are the same field ({field}).",
                code="duplicate_key",
            )
    return value


def _get(item: Mapping[str, Any], field: str) -> Any:
    """The item's value for ``field`` under whichever spelling it used (``None`` if absent)."""
    for key in _ALIASES.get(field, (field,)):
        if item.get(key) is not None:
            return item[key]
    return None


def _check(where: str, check: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a ``clean_*`` helper, prefixing its message with the item's place in the input."""
    try:
        return check(*args, **kwargs)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc.messages[0]}", code=exc.code) from None


def _required(item: Mapping[str, Any], key: str, where: str) -> Any:
    value = _get(item, key)
    if value is None:
        raise ValidationError(f"{where}: {key} is required.", code="required")
    return value


def _linear_id(item: Mapping[str, Any], key: str, where: str) -> str:
    return _check(where, clean_identifier, _required(item, key, where), key)


def _strings(value: Any, name: str, max_length: int) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list of strings, not {type(value).__name__}.")
    return [clean_text(entry, f"{name}[{i}]", max_length=max_length) for i, entry in enumerate(value)]


def _story_points(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"story_points must be a number, not {type(value).__name__}.")
    if isinstance(value, float) or not 0 <= value <= MAX_STORY_POINTS:
        raise ValidationError(
            f"story_points must be a whole number from 0 to {MAX_STORY_POINTS} (got {value!r}).", code="range"
        )
    return value


def _priority(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        key = " ".join(value.strip().lower().replace("_", " ").split())
        if key in _PRIORITY_NAMES:
            return int(_PRIORITY_NAMES[key])
        raise ValidationError(
            f"priority {value!r} is not one of {', '.join(_PRIORITY_NAMES)} or 0-4.", code="invalid_choice"
        )
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"priority must be an integer 0-4 or a name, not {type(value).__name__}.")
    if value not in _PRIORITY_VALUES:
        raise ValidationError(f"priority must be from 0 (none) to 4 (low) (got {value}).", code="range")
    return value


def _attributes(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"attributes must be a dict, not {type(value).__name__}.")
    return clean_json_value(dict(value), "attributes")


def _common_values(
    item: Mapping[str, Any], where: str, level: str, parent_planning_id: str | None
) -> dict[str, Any]:
    """Planning id, title, description, labels and attributes, checked; ``type`` and ``parentId`` too."""
    kind = item.get("type")
    if kind is not None and (not isinstance(kind, str) or kind.strip().lower() != level):
        raise ValidationError(f"{where}: type {kind!r} is not {level!r}.", code="invalid_type")
    planning_id = _check(where, clean_identifier, _get(item, "planning_id"), "id", required=False)
    parent = item.get("parentId")
    if parent is not None:
        if parent_planning_id is None:
            raise ValidationError(
                f"{where}: parentId {parent!r} given at session level; nest the item under its parent.",
                code="invalid_parent",
            )
        if parent != parent_planning_id:
            raise ValidationError(
                f"{where}: parentId {parent!r} is not the id of the item it is nested in "
                f"({parent_planning_id!r}).",
                code="invalid_parent",
            )
    return {
        "planning_id": planning_id,
        "title": _check(
            where, clean_text, _required(item, "title", where), "title", max_length=MAX_TITLE_LENGTH
        ),
        "description": _check(where, clean_text, item.get("description"), "description", required=False),
        "labels": _check(where, _strings, item.get("labels"), "labels", MAX_LABEL_LENGTH),
        "attributes": _check(where, _attributes, item.get("attributes")),
    }


def _estimate_values(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {
        "story_points": _check(where, _story_points, _get(item, "story_points")),
        "priority": _check(where, _priority, item.get("priority")),
        "acceptance_criteria": _check(
            where, _strings, _get(item, "acceptance_criteria"), "acceptance_criteria", MAX_CRITERION_LENGTH
        ),
    }


def _unique(seen: dict[str, str], linear_id: str, where: str, id_name: str) -> None:
    if linear_id in seen:
        raise ValidationError(
            f"{where}: {id_name} {linear_id!r} appears twice (first at {seen[linear_id]}).", code="duplicate"
        )
    seen[linear_id] = where


class _Parsed:
    """Every item of one call, validated, with the uniqueness checks of a session."""

    def __init__(self) -> None:
        self.epics: list[_Item] = []
        self.features: list[_Item] = []
        self.stories: list[_Item] = []
        self.enablers: list[_Item] = []
        self.seen: dict[str, dict[str, str]] = {name: {} for name in ("epic", "feature", "enabler")}
        self.seen_planning: dict[str, dict[str, str]] = {name: {} for name in ItemType.values}

    def planning_id(self, values: dict[str, Any], kind: str, where: str) -> None:
        if values["planning_id"]:
            _unique(self.seen_planning[kind], values["planning_id"], where, "id")

    def epic(self, raw: Any, where: str) -> None:
        epic = _mapping(raw, where, _EPIC_KEYS)
        epic_id = _linear_id(epic, "epic_id", where)
        _unique(self.seen["epic"], epic_id, where, "epic_id")
        values = _common_values(epic, where, "epic", None)
        self.planning_id(values, "epic", where)
        self.epics.append(_Item(epic_id, values))
        for i, feature in enumerate(_sequence(epic.get("features"), f"{where}.features")):
            self.feature(feature, f"{where}.features[{i}]", epic_id, values["planning_id"])

    def feature(self, raw: Any, where: str, epic_id: str = "", epic_planning_id: str | None = None) -> None:
        feature = _mapping(raw, where, _FEATURE_KEYS)
        feature_id = _linear_id(feature, "feature_id", where)
        _unique(self.seen["feature"], feature_id, where, "feature_id")
        values = {
            **_common_values(feature, where, "feature", epic_planning_id),
            **_estimate_values(feature, where),
        }
        self.planning_id(values, "feature", where)
        self.features.append(_Item(feature_id, values, parent_id=epic_id))
        seen_stories: dict[str, str] = {}
        for j, raw_story in enumerate(_sequence(feature.get("stories"), f"{where}.stories")):
            story_where = f"{where}.stories[{j}]"
            story = _mapping(raw_story, story_where, _STORY_KEYS)
            story_id = _linear_id(story, "story_id", story_where)
            _unique(seen_stories, story_id, story_where, "story_id")
            story_values = {
                **_common_values(story, story_where, "story", values["planning_id"]),
                **_estimate_values(story, story_where),
            }
            self.planning_id(story_values, "story", story_where)
            self.stories.append(_Item(story_id, story_values, parent_id=feature_id))
        for k, enabler in enumerate(_sequence(feature.get("enablers"), f"{where}.enablers")):
            self.enabler(enabler, f"{where}.enablers[{k}]", feature_id, values["planning_id"])

    def enabler(
        self, raw: Any, where: str, feature_id: str = "", feature_planning_id: str | None = None
    ) -> None:
        enabler = _mapping(raw, where, _ENABLER_KEYS)
        enabler_id = _linear_id(enabler, "enabler_id", where)
        _unique(self.seen["enabler"], enabler_id, where, "enabler_id")
        owner = enabler.get("featureId")
        if owner is not None and owner != feature_planning_id:
            raise ValidationError(
                f"{where}: featureId {owner!r} is not the id of the feature it is nested in "
                f"({feature_planning_id!r}).",
                code="invalid_parent",
            )
        values = _common_values(enabler, where, "enabler", feature_planning_id)
        self.planning_id(values, "enabler", where)
        raw_type = _check(
            where, clean_text, _required(enabler, "enabler_type", where), "enabler_type", max_length=50
        )
        enabler_type = Enabler.normalise_type(raw_type)
        if enabler_type not in _ENABLER_TYPES:
            raise ValidationError(
                f"{where}: enabler_type {raw_type!r} is not one of {', '.join(Enabler.Type.values)}.",
                code="invalid_choice",
            )
        values["enabler_type"] = enabler_type
        self.enablers.append(_Item(enabler_id, values, parent_id=feature_id))


def _parse(epics: Any, features: Any, enablers: Any) -> _Parsed:
    parsed = _Parsed()
    for i, epic in enumerate(_sequence(epics, "epics")):
        parsed.epic(epic, f"epics[{i}]")
    for i, feature in enumerate(_sequence(features, "features")):
        parsed.feature(feature, f"features[{i}]")
    for i, enabler in enumerate(_sequence(enablers, "enablers")):
        parsed.enabler(enabler, f"enablers[{i}]")
    return parsed


def _upsert(
    model: type[Epic | Feature | Story | Enabler],
    id_field: str,
    parent_field: str,
    stored: QuerySet[Any],
    wanted: list[tuple[int, str, dict[str, Any]]],
    now: Any,
) -> tuple[RowCounts, dict[tuple[int, str], int | None], bool | None]:
    """Create the missing rows and update the changed ones with one bulk query each (per batch).

    ``stored`` holds the rows already in the session; ``wanted`` lists (parent pk, Linear id,
    values). Returns the counts, the primary key of every wanted row by (parent pk, Linear id)
    (``None`` for a created row where the backend cannot return ids from a bulk insert), and whether
    ``stored`` had any row (``None``: not read, as nothing was wanted).

    A planning id that moves to another Linear id (the item was re-created in Linear) is first taken
    from the row that held it, in one ``UPDATE``, so the id map points at the new issue and the
    unique (parent, planning id) index is never violated half-way through the upsert.

    Changed rows are written with ``INSERT ... ON CONFLICT (parent, id) DO UPDATE`` rather than
    ``bulk_update``, whose ``CASE WHEN`` per row costs rows × rows comparisons (on PostgreSQL,
    ``bulk_update`` of 1,000 story titles alone took 0.53 s, median of 5; the whole 100-feature ×
    10-story changed-title save with upserts 0.30 s). Only the value fields and ``updated_at`` are
    updated, so ``created_at`` stays.
    """
    if not wanted:
        return RowCounts(), {}, None
    parent_attname = f"{parent_field}_id"
    value_fields = list(wanted[0][2])
    # Dicts, not model instances: a re-save of 1,000 unchanged stories spent a sixth of its time in
    # Model.__init__.
    columns = ["pk", parent_attname, id_field, "created_at", *value_fields]
    existing = {(row[parent_attname], row[id_field]): row for row in stored.order_by().values(*columns)}
    holders = {row["planning_id"]: key for key, row in existing.items() if row["planning_id"]}
    moved = []
    for parent_pk, linear_id, values in wanted:
        holder = holders.get(values["planning_id"])
        if holder is not None and holder != (parent_pk, linear_id):
            moved.append(existing[holder])
    if moved:
        model.objects.filter(pk__in=[row["pk"] for row in moved]).update(planning_id="", updated_at=now)
        for row in moved:
            row["planning_id"] = ""
    pks: dict[tuple[int, str], int | None] = {}
    to_create: list[dict[str, Any]] = []
    to_update: list[Any] = []
    for parent_pk, linear_id, values in wanted:
        found = existing.get((parent_pk, linear_id))
        if found is None:
            keys = {parent_attname: parent_pk, id_field: linear_id}
            to_create.append({**keys, **values, "created_at": now, "updated_at": now})
            pks[parent_pk, linear_id] = None
            continue
        pks[parent_pk, linear_id] = found["pk"]
        if all(found[name] == value for name, value in values.items()):
            continue
        to_update.append(
            model(
                **{parent_attname: parent_pk, id_field: linear_id},
                **values,
                created_at=found["created_at"],
                updated_at=now,
            )
        )
    if to_create:
        created = _insert_new(model, to_create)
        pks.update(
            ((row[parent_attname], row[id_field]), pk) for row, pk in zip(to_create, created, strict=True)
        )
    if to_update:
        model.objects.bulk_create(
            to_update,
            update_conflicts=True,
            unique_fields=[parent_field, id_field],
            update_fields=[*value_fields, "updated_at"],
        )
    unchanged = len(wanted) - len(to_create) - len(to_update)
    counts = RowCounts(created=len(to_create), updated=len(to_update), unchanged=unchanged)
    return counts, pks, bool(existing)


#: psycopg's name for the binary COPY type of each column type Django creates here.
_COPY_TYPES = {
    "varchar": "varchar",
    "text": "text",
    "smallint": "int2",
    "integer": "int4",
    "bigint": "int8",
    "boolean": "bool",
    "jsonb": "jsonb",
    "timestamp with time zone": "timestamptz",
}


def _insert_new(model: type[models.Model], rows: list[dict[str, Any]]) -> list[int | None]:
    """Insert rows known to be new (``{attname: value}``, every column but the primary key).

    Returns their primary keys in order, or ``None`` each where the engine does not return them.

    PostgreSQL: one binary ``COPY`` straight into the table. ``bulk_create`` spent most of a
    1,110-row nested save in Python — a model instance, then every value prepared and compiled one by
    one, then psycopg quoting each ``jsonb[]``/``text[]`` array of its ``UNNEST`` insert element by
    element with regular expressions — where ``COPY`` sends each value in its binary form (client CPU
    of the benchmark's nested save: 81 → 28 ms). The caller holds the session's row lock, so no
    other save inserts the same rows meanwhile (a concurrent admin edit would fail on the unique
    constraint, as with ``bulk_create``); the ids are the table's identity defaults, which ``COPY``
    does not return: the caller reads them back where it needs them. Driver errors come out as
    Django's (``IntegrityError``...), and the statement is logged like any query (query counts and
    ``connection.queries`` see it). Other engines: ``bulk_create``.
    """
    manager = model._default_manager
    connection = connections[manager.db]
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    types = [_COPY_TYPES.get((field.db_type(connection) or "").split("(")[0]) for field in fields]
    # A column type this function does not know how to send (a field added later) takes the ORM path.
    if connection.vendor != "postgresql" or None in types:
        return [row.pk for row in manager.bulk_create([model(**row) for row in rows])]
    from psycopg.types.json import Jsonb  # PostgreSQL only

    attnames = [field.attname for field in fields]
    json_positions = [i for i, type_name in enumerate(types) if type_name == "jsonb"]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    statement = f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN (FORMAT BINARY)"
    started = time.monotonic()
    copying = connection.cursor()
    with copying as cursor, connection.wrap_database_errors, cursor.cursor.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            values = [row[name] for name in attnames]
            for i in json_positions:
                values[i] = Jsonb(values[i])
            copy.write_row(values)
    if connection.queries_logged:
        connection.queries_log.append(
            {"sql": f"{statement} -- {len(rows)} rows", "time": f"{time.monotonic() - started:.3f}"}
        )
    return [None] * len(rows)


def _read_back_pks(
    pks: dict[tuple[int, str], int | None], stored: QuerySet[Any], parent_attname: str, id_field: str
) -> dict[tuple[int, str], int | None]:
    """The pks again from the database, for a backend that cannot return ids from a bulk insert."""
    if None not in pks.values():
        return pks
    return {
        (parent, linear_id): pk
        for parent, linear_id, pk in stored.values_list(parent_attname, id_field, "pk")
    }


def save_planning_result(
    session: PlanningSession,
    *,
    epics: Sequence[Mapping[str, Any]] | None = None,
    features: Sequence[Mapping[str, Any]] | None = None,
    enablers: Sequence[Mapping[str, Any]] | None = None,
) -> PlanningResultCounts:
    """Store the epics, features, stories and enablers the agent produced for ``session``.

    Two input shapes, which may be mixed in one call:

    * **The old parser's nested shape**, ``epics=[...]``: an epic ``{id, type, title, description,
      attributes, labels, epic_id, features}``, each feature ``{id, type, title, description,
      attributes, labels, parentId, feature_id, storyPoints, priority, acceptanceCriteria, stories,
      enablers}``, each story ``{id, …, parentId, acceptanceCriteria, storyPoints, priority, story_id}``
      and each enabler ``{id, …, featureId, enablerType, enabler_id}``. ``id`` is the item's planning
      id (its id in the parsed document), ``*_id`` its Linear id; ``type``, ``parentId`` and
      ``featureId``, when given, must agree with where the item is nested.
    * **Today's flat shape**: ``features=[{"feature_id", "title", "description", "stories": [...]}]``
      (features under no epic) and ``enablers=[{"enabler_id", "title", "description",
      "enabler_type"}]`` (enablers under no feature). Items here take the same optional keys, in either
      spelling (``planning_id`` or ``id``, ``story_points`` or ``storyPoints``, ...).

    Only ``*_id``, ``title`` and (enablers) the type are required; any key not listed is refused.
    ``labels`` and ``acceptance_criteria`` are lists of strings, ``attributes`` a JSON object,
    ``story_points`` a whole number 0–1000, ``priority`` Linear's 0–4 or a name (``"high"``).

    * **Validated first, all or nothing.** Every item is checked before anything is written; the first
      bad item raises a ``ValidationError`` (bad value: empty or over-long title or id, NUL byte, unknown
      key or enabler type, a Linear id or planning id twice in the input) or ``ValueError`` (wrong
      type) whose message names it, e.g. ``epics[0].features[3].stories[1]: story_id 'X' appears
      twice (first at epics[0].features[3].stories[0])``.
    * **Idempotent on the Linear ids.** Rows are matched on (session, ``epic_id``), (session,
      ``feature_id``), (feature, ``story_id``) and (session, ``enabler_id``): new ids are inserted,
      changed rows are updated (a feature's epic and an enabler's feature included), identical rows are
      not touched (``updated_at`` stays).
    * **The id map.** Each item's planning id is stored with it, so ``session.linear_id_for(type,
      planning_id)`` and ``session.id_map()`` answer a re-run of the same document; a planning id that
      now comes with another Linear id moves to it.
    * **Rows absent from the input are kept.** The agent sends what it parsed this time; deleting what it
      did not mention would surprise whoever created those rows (an earlier run, the admin).
    * **Enabler types are normalised**: ``"Technical Debt"``, ``"technical-debt"`` and
      ``"TECHNICAL_DEBT"`` all store ``technical_debt``; anything else is refused.
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
    parsed = _parse(epics, features, enablers)
    pk = session.pk

    now = timezone.now()
    with transaction.atomic():
        # Serializes concurrent saves for this session: the second waits here until the first commits.
        locked = PlanningSession.objects.select_for_update().filter(pk=pk).values_list("pk")
        if not locked:
            raise ValidationError(f"Planning session {pk} does not exist.", code="missing")

        epic_stored = Epic.objects.filter(planning_session=pk)
        epic_counts, epic_pks, _ = _upsert(
            Epic,
            "epic_id",
            "planning_session",
            epic_stored,
            [(pk, item.linear_id, item.values) for item in parsed.epics],
            now,
        )
        if any(item.parent_id for item in parsed.features):
            epic_pks = _read_back_pks(epic_pks, epic_stored, "planning_session_id", "epic_id")

        feature_stored = Feature.objects.filter(planning_session=pk)
        feature_counts, feature_pks, features_existed = _upsert(
            Feature,
            "feature_id",
            "planning_session",
            feature_stored,
            [
                (
                    pk,
                    item.linear_id,
                    {**item.values, "epic_id": epic_pks[pk, item.parent_id] if item.parent_id else None},
                )
                for item in parsed.features
            ],
            now,
        )
        if parsed.stories or any(item.parent_id for item in parsed.enablers):
            feature_pks = _read_back_pks(feature_pks, feature_stored, "planning_session_id", "feature_id")

        story_counts, _, _ = _upsert(
            Story,
            "story_id",
            "planning_feature",
            # A session whose features are all new has no stories yet: nothing to read (the common
            # first save of a session skips a join over the story table).
            Story.objects.filter(planning_feature__planning_session=pk)
            if features_existed
            else Story.objects.none(),
            [(feature_pks[pk, item.parent_id], item.linear_id, item.values) for item in parsed.stories],
            now,
        )

        enabler_counts, _, _ = _upsert(
            Enabler,
            "enabler_id",
            "planning_session",
            Enabler.objects.filter(planning_session=pk),
            [
                (
                    pk,
                    item.linear_id,
                    {
                        **item.values,
                        "planning_feature_id": feature_pks[pk, item.parent_id] if item.parent_id else None,
                    },
                )
                for item in parsed.enablers
            ],
            now,
        )

    counts = PlanningResultCounts(
        epics=epic_counts, features=feature_counts, stories=story_counts, enablers=enabler_counts
    )
    logger.info("planning session %s: saved planning result (%s)", pk, counts)
    return counts


async def asave_planning_result(
    session: PlanningSession,
    *,
    epics: Sequence[Mapping[str, Any]] | None = None,
    features: Sequence[Mapping[str, Any]] | None = None,
    enablers: Sequence[Mapping[str, Any]] | None = None,
) -> PlanningResultCounts:
    """Async twin of :func:`save_planning_result`."""
    return await sync_to_async(save_planning_result)(
        session, epics=epics, features=features, enablers=enablers
    )
