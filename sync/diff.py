"""Field-by-field comparison of the two sides of a conflict.

A conflict holds a Linear change and a Confluence change; each carries an ``itemData`` object (the Linear
issue, or the item parsed from the Confluence page). The admin console shows them side by side with the
differing fields marked, and ``Conflict.differing_field_count`` is the number of differing rows, computed
once when the conflict is stored.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class _Missing:
    """The value of a key that one side does not have (distinct from JSON ``null``)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


#: Placeholder for a key present on one side only.
MISSING: Any = _Missing()


class DiffRow(NamedTuple):
    """One key of the compared objects: its value on each side and whether they differ."""

    field: str
    linear: Any
    confluence: Any
    differs: bool


def json_equal(a: Any, b: Any) -> bool:
    """Whether two decoded JSON values are equal as JSON values.

    Python's ``==`` says ``True == 1`` and ``1 == 1.0``; JSON has distinct booleans, and a number is a
    number (``1`` and ``1.0`` denote the same value), so booleans only equal booleans.
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[key], b[key]) for key in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if a is MISSING or b is MISSING:
        return a is b
    return type(a) is type(b) and a == b


def item_data_diff(linear_item: dict[str, Any], confluence_item: dict[str, Any]) -> list[DiffRow]:
    """Compare two ``itemData`` objects key by key: differing keys first, then the rest, each by key.

    Every top-level key of either side gets a row; a key one side lacks has :data:`MISSING` there and
    always differs (a missing key is not the same as ``null``). Values are compared as JSON
    (:func:`json_equal`); nested objects are compared whole, not flattened.
    """
    if not isinstance(linear_item, dict) or not isinstance(confluence_item, dict):
        raise ValueError("item_data_diff compares two dicts (the itemData of each side).")
    rows = []
    for key in linear_item.keys() | confluence_item.keys():
        linear_value = linear_item.get(key, MISSING)
        confluence_value = confluence_item.get(key, MISSING)
        rows.append(
            DiffRow(
                field=key,
                linear=linear_value,
                confluence=confluence_value,
                differs=not json_equal(linear_value, confluence_value),
            )
        )
    rows.sort(key=lambda row: (not row.differs, row.field))
    return rows


def differing_field_count(linear_item: dict[str, Any], confluence_item: dict[str, Any]) -> int:
    """The number of top-level keys whose values differ between the two ``itemData`` objects."""
    return sum(row.differs for row in item_data_diff(linear_item, confluence_item))
