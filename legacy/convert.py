"""Value conversions from the old schema's types and vocabularies to the new models' values.

Each function returns the new value or raises :class:`Invalid` with a reason an operator can act on
(the importer adds the table and row id). Kept free of database access so they cost little per row.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

#: 1970-01-01 UTC: millisecond timestamps count from here.
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class Invalid(Exception):
    """A value the new rules reject; ``str()`` is the reason (it never holds a token)."""


def aware(value: Any, name: str, *, required: bool = True) -> dt.datetime | None:
    """An aware datetime from an old timestamp: naive is UTC, ms integers count from the epoch.

    Accepts what the old databases hold: ``datetime`` (PostgreSQL ``timestamp``/``timestamptz``),
    integers or digit strings of milliseconds (``bigint`` columns, SQLite), and ISO text (SQLite's
    ``CURRENT_TIMESTAMP`` form ``YYYY-MM-DD HH:MM:SS``, or with ``T``, fractions, ``Z`` or an offset).
    """
    if value is None or value == "":
        if required:
            raise Invalid(f"{name} is missing")
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    if isinstance(value, bool):
        raise Invalid(f"{name} is not a timestamp (got a boolean)")
    if isinstance(value, int | float):
        return ms_to_datetime(value, name)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return ms_to_datetime(int(text), name)
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise Invalid(f"{name} {value[:40]!r} is not a timestamp") from None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
    raise Invalid(f"{name} is not a timestamp (got {type(value).__name__})")


def ms_to_datetime(value: Any, name: str) -> dt.datetime:
    """An aware UTC datetime from milliseconds since the epoch (exact: no float rounding for ints)."""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise Invalid(f"{name} is not a finite number")
        value = round(value)
    try:
        return EPOCH + dt.timedelta(milliseconds=value)
    except OverflowError:
        raise Invalid(f"{name} {value} milliseconds is out of range") from None


def text(value: Any, name: str, *, required: bool = False) -> str:
    """Old ``text`` (nullable) as a new text value: NULL becomes ``""``."""
    if value is None:
        if required:
            raise Invalid(f"{name} is missing")
        return ""
    if not isinstance(value, str):
        value = str(value)
    return value


def boolean(value: Any, name: str) -> bool:
    """A boolean from PostgreSQL ``boolean`` or SQLite 0/1 (or their text forms)."""
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false", "t", "f"):
        return value.strip().lower() in ("1", "true", "t")
    raise Invalid(f"{name} {value!r} is not a boolean")


def integer(value: Any, name: str, *, default: int | None = None) -> int:
    """An ``int`` from an old integer column (SQLite may hold text); NULL gives ``default``."""
    if value is None:
        if default is None:
            raise Invalid(f"{name} is missing")
        return default
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise Invalid(f"{name} {value!r} is not an integer") from None


def json_value(value: Any, name: str, *, required: bool = True) -> Any:
    """JSON kept as text (or already decoded ``jsonb``) as a Python value."""
    if value is None:
        if required:
            raise Invalid(f"{name} is missing")
        return None
    if isinstance(value, dict | list):
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    try:
        return json.loads(value)
    except (TypeError, ValueError) as exc:
        raise Invalid(f"{name} is not valid JSON ({exc})") from None


def vocabulary(value: Any) -> str:
    """An old status/type spelling in the new form: lower case, words joined by ``_``."""
    return "_".join(str(value).strip().lower().replace("-", " ").split())


def session_status(value: Any) -> str:
    """``planning_sessions.status``: the docs' ``in_progress`` is the code's ``processing``."""
    status = vocabulary(value if value is not None else "pending")
    return "processing" if status == "in_progress" else status


def resolution_strategy(value: Any, name: str) -> str:
    """A first-shape ``sync_conflicts.resolution`` as a strategy (linear, confluence, manual)."""
    norm = vocabulary(value)
    if norm in ("linear", "confluence", "manual"):
        return norm
    if "linear" in norm and "confluence" not in norm:
        return "linear"
    if "confluence" in norm and "linear" not in norm:
        return "confluence"
    if norm in ("merge", "merged", "custom"):
        return "manual"
    raise Invalid(f"{name} {value!r} is not a known resolution (linear, confluence, manual)")


def ms_of(moment: dt.datetime) -> int:
    """Milliseconds since the epoch of an aware datetime."""
    return (moment - EPOCH) // dt.timedelta(milliseconds=1)


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """An old row as JSON-safe values (datetimes as ISO text), for the import map's ``data``."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dt.datetime | dt.date):
            out[key] = value.isoformat()
        elif isinstance(value, bytes):
            out[key] = value.decode("utf-8", errors="replace")
        else:
            out[key] = value
    return out
