"""Three-way merge of an item's ``itemData``: the last-synced base, the Linear side, the Confluence side.

Pure functions, no database. :func:`three_way` compares each side with what both last agreed on (the
base) and decides every field that only one side changed, that both changed the same way, or that an
owner rule decides; only fields both sides changed differently are left to a person (``conflicts``).

Rules (``DESIGN.md``, "Public API, second part"):

- Nested objects merge field by field; paths are dotted (``state.name``).
- Lists of strings or numbers merge as sets when both sides changed them: removals of either side apply,
  then the result keeps the base order, then Linear's additions, then Confluence's.
- Other lists and scalars are atomic. A field deleted on one side and unchanged on the other is deleted;
  deleted on one side and changed on the other is a conflict.
- ``base=None`` (first sync, imported rows): every differing field is a conflict unless an owner rule
  decides it.
- ``owners``: path (or a parent path) -> ``linear`` | ``confluence`` | ``newest``; a rule decides a field
  that would otherwise be a conflict. ``newest`` takes the side whose change is later (``linear_at`` /
  ``confluence_at``, both needed; equal times stay a conflict).

Decisions vocabulary (``Merge.decisions``, one entry per decided path): ``linear`` / ``confluence``
(only that side changed it), ``same`` (both changed it the same way), ``merged`` (a set-like list both
sides changed), ``owner:linear`` / ``owner:confluence`` and ``newest:linear`` / ``newest:confluence``
(an owner rule decided a field both changed).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

from accounts.validation import MAX_JSON_DEPTH
from sync.diff import MISSING, json_equal

#: Deepest nesting (objects and lists) that :func:`three_way` merges; deeper input is a ValidationError.
#: The stored-JSON limit: a side that could not be stored is never merged.
MAX_MERGE_DEPTH = MAX_JSON_DEPTH
#: Longest field path of an ownership rule or a pick.
FIELD_PATH_MAX_LENGTH = 255
#: Owners a rule may name.
OWNERS = ("linear", "confluence", "newest")

_FIELD_PATH = re.compile(r"[^.\s](?:[^.]*[^.\s])?(?:\.[^.\s](?:[^.]*[^.\s])?)*")


class _Removed:
    """The value ``to_linear``/``to_confluence`` give a field that the merged item no longer has."""

    _instance: _Removed | None = None

    def __new__(cls) -> _Removed:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "REMOVED"

    def __reduce__(self) -> str:
        return "REMOVED"


#: In ``to_linear``/``to_confluence``: delete this top-level field on that side.
REMOVED: Any = _Removed()


@dataclass(frozen=True)
class Merge:
    """The outcome of :func:`three_way`."""

    #: itemData after every decided field; at a conflicting path the base value (Linear's without base).
    merged: dict[str, Any]
    #: Paths both sides changed differently, sorted.
    conflicts: list[str]
    #: Path -> how it was decided (see the module docstring).
    decisions: dict[str, str]
    #: Top-level field -> value to write on Linear (``REMOVED``: delete it) to reach ``merged``.
    to_linear: dict[str, Any]
    #: The same for Confluence.
    to_confluence: dict[str, Any]
    #: Whether a base was known (``False``: first sync or imported row).
    has_base: bool = True
    #: Owner rules that decided a path: path -> the rule's path (the path itself or a parent).
    owner_rules_applied: dict[str, str] = field(default_factory=dict)

    @property
    def is_conflict(self) -> bool:
        return bool(self.conflicts)


# --- Argument checks (shared with the FieldOwnership model and conflict resolution) ----------------


def clean_field_path(value: Any, name: str = "field_path") -> str:
    """A dotted field path (``title``, ``state.name``), else a ``ValidationError`` naming ``name``."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {type(value).__name__}.")
    if not value.strip():
        raise ValidationError(f"{name} must not be empty.", code="required")
    if len(value) > FIELD_PATH_MAX_LENGTH:
        raise ValidationError(
            f"{name} is {len(value)} characters long; at most {FIELD_PATH_MAX_LENGTH} are allowed.",
            code="max_length",
        )
    if "\x00" in value or not _FIELD_PATH.fullmatch(value):
        raise ValidationError(
            f"{name} {value!r} is not a dotted field path (keys separated by dots, e.g. 'state.name').",
            code="invalid_path",
        )
    return value


def clean_owner(value: Any, name: str = "owner") -> str:
    """``linear``, ``confluence`` or ``newest``, else a ``ValidationError`` (``ValueError``: not a str)."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {type(value).__name__}.")
    if value not in OWNERS:
        raise ValidationError(
            f"{name} must be one of {', '.join(OWNERS)} (got {value!r}).", code="invalid_owner"
        )
    return value


def clean_owners(owners: Any) -> dict[str, str]:
    """A ``{path: owner}`` mapping with every path and owner checked."""
    if owners is None:
        return {}
    if not isinstance(owners, Mapping):
        raise ValueError(f"owners must be a dict of field path -> owner, not {type(owners).__name__}.")
    return {
        clean_field_path(path, f"owners key {path!r}"): clean_owner(owner, f"owners[{path!r}]")
        for path, owner in owners.items()
    }


def json_depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0, ``{}``/``[]`` 1), computed without recursion.

    Stops counting once past :data:`MAX_MERGE_DEPTH` (the answer is then just "too deep").
    """
    if type(value) not in _CONTAINERS:
        return 0
    deepest = 1
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if depth > MAX_MERGE_DEPTH:
                return depth
        children = node.values() if type(node) is dict else node
        for child in children:
            if type(child) in _CONTAINERS:
                stack.append((child, depth + 1))
    return deepest


_CONTAINERS = (dict, list, tuple)


def _eq(a: Any, b: Any) -> bool:
    """:func:`sync.diff.json_equal`, with the common cases answered without walking the values."""
    if a is b:
        return True
    kind = type(a)
    if kind is type(b):
        if kind is str or kind is int or kind is bool or kind is float:
            return a == b
        if kind is dict or kind is list:
            # Python's == is looser than JSON's (True == 1), never stricter: unequal there is unequal
            # here, and equal there leaves only the leaves whose types differ to look at.
            return a == b and _same_leaf_types(a, b)
    return json_equal(a, b)


def _same_leaf_types(a: dict[str, Any] | list[Any] | tuple[Any, ...], b: Any) -> bool:
    """For ``a == b`` (Python's ==, same container type): whether they are also equal as JSON.

    Python's == found every pair of values equal, so a pair of one type (str, int, bool, None) is equal
    as JSON too; a float pair unless it is one NaN object (Python's containers compare an object with
    itself as equal; :func:`json_equal` says NaN equals nothing). Containers are walked; any other pair,
    of two types (``True`` against ``1``) or of another type, goes to :func:`json_equal`. The depth is
    bounded by :data:`MAX_MERGE_DEPTH`, checked before a merge starts.
    """
    # a == b: the same keys, the same lengths.
    pairs: Iterable[tuple[Any, Any]] = (
        ((value, b[key]) for key, value in a.items()) if isinstance(a, dict) else zip(a, b, strict=True)
    )
    for x, y in pairs:
        kind = type(x)
        if kind is not type(y):
            if not json_equal(x, y):
                return False
        elif kind is str or kind is int or kind is bool or x is None:
            continue
        elif kind is float:
            if x != x:  # NaN
                return False
        elif kind is dict or kind is list or kind is tuple:
            if not _same_leaf_types(x, y):
                return False
        elif not json_equal(x, y):
            return False
    return True


def _clean_item(value: Any, name: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a dict (an itemData object), not {type(value).__name__}.")
    if json_depth(value) > MAX_MERGE_DEPTH:
        raise ValidationError(
            f"{name} is nested deeper than {MAX_MERGE_DEPTH} levels; three-way merge refuses it.",
            code="too_deep",
        )
    return value


def _clean_at(value: Any, name: str) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise ValueError(f"{name} must be a datetime or None, not {type(value).__name__}.")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(f"{name} must be an aware datetime.", code="naive_datetime")
    return value


# --- The merge -------------------------------------------------------------------------------------

#: The base of a merge without base: every difference is a conflict (distinct from an absent key).
_UNKNOWN: Any = object()


def _is_scalar_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, str) or (isinstance(item, int | float) and not isinstance(item, bool))
        for item in value
    )


def _set_key(item: str | float) -> tuple[str, Any]:
    # "1" and 1 are different JSON values; 1 and 1.0 are the same number.
    return ("s", item) if isinstance(item, str) else ("n", item)


def _set_merge(base: list[Any], linear: list[Any], confluence: list[Any]) -> list[Any]:
    """Base order without what either side removed, then Linear's additions, then Confluence's."""
    base_keys = {_set_key(item) for item in base}
    linear_keys = {_set_key(item) for item in linear}
    confluence_keys = {_set_key(item) for item in confluence}
    result: dict[tuple[str, Any], Any] = {}
    for item in base:
        key = _set_key(item)
        if key in linear_keys and key in confluence_keys:
            result.setdefault(key, item)
    for side in (linear, confluence):
        for item in side:
            key = _set_key(item)
            if key not in base_keys:
                result.setdefault(key, item)
    return list(result.values())


class _Merger:
    def __init__(
        self,
        owners: dict[str, str],
        linear_at: dt.datetime | None,
        confluence_at: dt.datetime | None,
    ) -> None:
        self.owners = owners
        self.linear_at = linear_at
        self.confluence_at = confluence_at
        self.conflicts: list[str] = []
        self.decisions: dict[str, str] = {}
        self.rules_applied: dict[str, str] = {}

    def owner_of(self, path: str) -> tuple[str, str] | None:
        """The rule deciding ``path``: (rule path, owner) of the path itself or its nearest parent."""
        candidate = path
        while True:
            if candidate in self.owners:
                return candidate, self.owners[candidate]
            if "." not in candidate:
                return None
            candidate = candidate.rsplit(".", 1)[0]

    def merge_object(
        self, prefix: str, base: Any, linear: dict[str, Any], confluence: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Merge two objects key by key: (merged, what Linear should end as, what Confluence should)."""
        merged: dict[str, Any] = {}
        for_linear: dict[str, Any] = {}
        for_confluence: dict[str, Any] = {}
        base_dict = base if isinstance(base, dict) else {}
        keys = dict.fromkeys([*base_dict, *linear, *confluence])
        for key in keys:
            path = f"{prefix}.{key}" if prefix else str(key)
            base_value = _UNKNOWN if base is _UNKNOWN else base_dict.get(key, MISSING)
            results = self.merge_value(
                path, base_value, linear.get(key, MISSING), confluence.get(key, MISSING)
            )
            for target, value in zip((merged, for_linear, for_confluence), results, strict=True):
                if value is not MISSING:
                    target[key] = value
        return merged, for_linear, for_confluence

    def merge_value(self, path: str, base: Any, linear: Any, confluence: Any) -> tuple[Any, Any, Any]:
        """(merged, Linear's target, Confluence's target) at ``path``; ``MISSING`` means absent."""
        if _eq(linear, confluence):
            if base is not _UNKNOWN and not _eq(base, linear):
                self.decisions[path] = "same"
            return linear, linear, linear
        if base is not _UNKNOWN:
            if _eq(linear, base):
                self.decisions[path] = "confluence"
                return confluence, confluence, confluence
            if _eq(confluence, base):
                self.decisions[path] = "linear"
                return linear, linear, linear
        # Both sides differ from the base (or the base is unknown), and from each other.
        if (
            isinstance(linear, dict)
            and isinstance(confluence, dict)
            and (base is _UNKNOWN or base is MISSING or isinstance(base, dict))
        ):
            return self.merge_object(path, base, linear, confluence)
        if (
            base is not _UNKNOWN
            and _is_scalar_list(base)
            and _is_scalar_list(linear)
            and _is_scalar_list(confluence)
        ):
            value = _set_merge(base, linear, confluence)
            self.decisions[path] = "merged"
            return value, value, value
        rule = self.owner_of(path)
        if rule is not None:
            winner = self.decide_by_rule(path, rule)
            if winner is not None:
                value = linear if winner == "linear" else confluence
                return value, value, value
        self.conflicts.append(path)
        kept = linear if base is _UNKNOWN else base
        return kept, linear, confluence

    def decide_by_rule(self, path: str, rule: tuple[str, str]) -> str | None:
        rule_path, owner = rule
        if owner == "newest":
            if self.linear_at is None or self.confluence_at is None:
                raise ValidationError(
                    f"The owner rule 'newest' on {rule_path!r} needs both linear_at and confluence_at.",
                    code="newest_needs_times",
                )
            if self.linear_at == self.confluence_at:
                return None  # no newest side: a person decides
            winner = "linear" if self.linear_at > self.confluence_at else "confluence"
            self.decisions[path] = f"newest:{winner}"
        else:
            winner = owner
            self.decisions[path] = f"owner:{winner}"
        self.rules_applied[path] = rule_path
        return winner


def _updates(side: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """Top-level field -> target value for every field where ``side`` differs (``REMOVED``: delete)."""
    updates: dict[str, Any] = {}
    for key in dict.fromkeys([*side, *target]):
        if key not in target:
            updates[key] = REMOVED
        elif key not in side or not _eq(side[key], target[key]):
            updates[key] = target[key]
    return updates


def three_way(
    base: dict[str, Any] | None,
    linear: dict[str, Any],
    confluence: dict[str, Any],
    *,
    owners: dict[str, str] | None = None,
    linear_at: dt.datetime | None = None,
    confluence_at: dt.datetime | None = None,
) -> Merge:
    """Merge Linear's and Confluence's ``itemData`` against the last-synced ``base`` (see the module doc).

    Bad input raises before anything is merged: ``ValueError`` for a wrong type, ``ValidationError``
    for a malformed owner path, an unknown owner, a naive time, or JSON nested deeper than
    :data:`MAX_MERGE_DEPTH` (never a ``RecursionError``).
    """
    base = _clean_item(base, "base", optional=True)
    linear = _clean_item(linear, "linear")
    confluence = _clean_item(confluence, "confluence")
    owners = clean_owners(owners)
    linear_at = _clean_at(linear_at, "linear_at")
    confluence_at = _clean_at(confluence_at, "confluence_at")

    merger = _Merger(owners, linear_at, confluence_at)
    merged, for_linear, for_confluence = merger.merge_object(
        "", _UNKNOWN if base is None else base, linear, confluence
    )
    return Merge(
        merged=merged,
        conflicts=sorted(merger.conflicts),
        decisions=dict(sorted(merger.decisions.items())),
        to_linear=_updates(linear, for_linear),
        to_confluence=_updates(confluence, for_confluence),
        has_base=base is not None,
        owner_rules_applied=dict(sorted(merger.rules_applied.items())),
    )


def apply_updates(item: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """``item`` with ``to_linear``/``to_confluence``-style updates applied (a new dict)."""
    result = dict(item)
    for key, value in updates.items():
        if value is REMOVED:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def pick_sides(
    merge: Merge, linear: dict[str, Any], confluence: dict[str, Any], picks: dict[str, str]
) -> dict[str, Any]:
    """``merge.merged`` with each conflicting path set to the picked side's value (absent there: removed).

    ``picks`` must name every conflicting path and nothing else, each ``linear`` or ``confluence``.
    """
    if not isinstance(picks, Mapping):
        raise ValueError(f"picks must be a dict of field path -> side, not {type(picks).__name__}.")
    for path, side in picks.items():
        clean_field_path(path, f"picks key {path!r}")
        if side not in ("linear", "confluence"):
            raise ValidationError(
                f"picks[{path!r}] must be 'linear' or 'confluence' (got {side!r}).", code="invalid_pick"
            )
    unknown = sorted(set(picks) - set(merge.conflicts))
    if unknown:
        raise ValidationError(
            f"picks name paths that are not in conflict: {', '.join(unknown)} "
            f"(conflicting: {', '.join(merge.conflicts) or 'none'}).",
            code="unknown_pick",
        )
    missing = [path for path in merge.conflicts if path not in picks]
    if missing:
        raise ValidationError(
            f"picks must choose a side for every conflicting path; missing: {', '.join(missing)}.",
            code="missing_pick",
        )
    result = _deep_copy_dicts(merge.merged)
    for path in merge.conflicts:
        source = linear if picks[path] == "linear" else confluence
        _set_path(result, path, _get_path(source, path))
    return result


def _deep_copy_dicts(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _deep_copy_dicts(child) for key, child in value.items()}
    return value


def _get_path(item: dict[str, Any], path: str) -> Any:
    node: Any = item
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return MISSING
        node = node[key]
    return node


def _set_path(item: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node = item
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            if value is MISSING:
                return
            child = node[key] = {}
        node = child
    if value is MISSING:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
