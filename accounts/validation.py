"""Argument checks shared by every public API function of the project.

Agent code calls the ORM API with values from Linear, Confluence and its own state. These helpers turn
bad values into a clear ``ValueError`` (wrong type) or ``ValidationError`` (right type, bad value)
*before* anything reaches the database, where they would surface as a ``DataError`` (PostgreSQL
refuses NUL bytes in text and over-long varchars) or, worse, be stored.

``planning`` and ``sync`` import these; ``accounts`` imports neither of them.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

#: Longest identifier accepted (Linear ids are UUIDs, Confluence page ids are numbers; a URL fits).
MAX_IDENTIFIER_LENGTH = 255
#: Largest integer :func:`clean_non_negative_int` accepts: the top of a PostgreSQL ``integer`` column.
MAX_NON_NEGATIVE_INT = 2_147_483_647
#: Longest error message stored (``SyncHistory.error``, a planning session's error), in characters.
#: A provider's answer or a traceback fits many times over; a 10 MB body pasted into an error made
#: every list and the dashboard render megabytes. Longer errors are refused by :func:`clean_error`:
#: the caller keeps the head (``message[:MAX_ERROR_LENGTH]``) if that is what it wants.
MAX_ERROR_LENGTH = 20_000
#: Characters of an error shown on lists and the dashboard (the detail page shows all of it).
ERROR_EXCERPT_LENGTH = 200

#: A UTF-16 surrogate code point (U+D800-U+DFFF). Python strings can hold one alone ("\udce9", e.g. from
#: ``os.fsdecode`` or a JSON ``\ud83d`` escape without its pair), but it is no Unicode character: UTF-8
#: cannot encode it and PostgreSQL refuses it. Refused everywhere with a message naming the argument.
SURROGATE = re.compile("[\ud800-\udfff]")


#: Deepest nesting of objects and arrays a JSON argument may have (the argument itself is level 1):
#: the stored-JSON limit (``sync.models.values.clean_json``), which the three-way merge keeps too
#: (``sync.merge.MAX_MERGE_DEPTH``). Linear issues and Confluence changes nest a handful of levels; far
#: deeper values made the recursive code that stores and compares them raise ``RecursionError`` a few
#: hundred levels down.
MAX_JSON_DEPTH = 100

def has_surrogate(value: str) -> bool:
    """Whether ``value`` holds a UTF-16 surrogate code point (never valid text on its own)."""
    return not value.isascii() and SURROGATE.search(value) is not None


def describe_int(value: int) -> str:
    """``value`` for an error message: the number, or its size when it is too long to print.

    ``str()`` of an integer of more than 4,300 digits raises ``ValueError`` (CPython's guard against
    quadratic conversion), which would replace the message naming the argument.
    """
    if value.bit_length() <= 64:
        return str(value)
    digits = int(value.bit_length() * math.log10(2)) + 1
    return f"{'-' if value < 0 else ''}an integer of about {digits:,} digits"


def clean_text(value: Any, name: str, *, required: bool = True, max_length: int | None = None) -> str:
    """Return ``value`` as a string fit for a text column, or raise.

    ``None`` is accepted (as ``""``) only when ``required`` is false.
    """
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {type(value).__name__}.")
    if required and not value.strip():
        raise ValidationError(f"{name} must not be empty.", code="required")
    if "\x00" in value:
        raise ValidationError(f"{name} must not contain NUL characters.", code="invalid")
    if has_surrogate(value):
        # The value itself stays out of the message: it cannot be encoded (and may be a secret).
        raise ValidationError(
            f"{name} contains a lone UTF-16 surrogate (U+D800-U+DFFF), which is not valid Unicode text.",
            code="invalid",
        )
    if max_length is not None and len(value) > max_length:
        raise ValidationError(
            f"{name} is {len(value)} characters long; at most {max_length} are allowed.",
            code="max_length",
        )
    return value


def clean_error(value: Any, name: str = "error", *, required: bool = False) -> str:
    """Return an error message fit to store (at most :data:`MAX_ERROR_LENGTH` characters) or raise."""
    return clean_text(value, name, required=required, max_length=MAX_ERROR_LENGTH)


def error_excerpt(value: str, length: int = ERROR_EXCERPT_LENGTH) -> str:
    """The first ``length`` characters of an error, with an ellipsis when it was longer."""
    return value if len(value) <= length else value[: length - 1] + "…"


def clean_identifier(value: Any, name: str, *, required: bool = True) -> str:
    """Return an external identifier (organization, page, team, issue id) or raise."""
    return clean_text(value, name, required=required, max_length=MAX_IDENTIFIER_LENGTH)


def clean_optional_identifier(value: Any, name: str) -> str | None:
    """Like :func:`clean_identifier`, but ``None`` stays ``None`` (an absent scope)."""
    if value is None:
        return None
    return clean_identifier(value, name)


def clean_aware_datetime(value: Any, name: str, *, required: bool = True) -> dt.datetime | None:
    """Return an aware ``datetime`` or raise; naive datetimes are refused, not guessed."""
    if value is None and not required:
        return None
    if not isinstance(value, dt.datetime):
        raise ValueError(f"{name} must be a datetime, not {type(value).__name__}.")
    if timezone.is_naive(value):
        raise ValidationError(
            f"{name} must be timezone-aware (got a naive datetime).", code="naive_datetime"
        )
    try:
        # Both databases store UTC: year 1 at UTC+14 or 31 Dec 9999 at UTC-12 has no UTC value
        # (OverflowError on SQLite, DataError on PostgreSQL).
        value.astimezone(dt.UTC)
    except OverflowError:
        raise ValidationError(
            f"{name} is outside the years 1-9999 once converted to UTC.", code="out_of_range"
        ) from None
    return value


def clean_non_negative_int(value: Any, name: str) -> int:
    """Return a non-negative ``int`` (not a ``bool``) or raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, not {type(value).__name__}.")
    if value < 0:
        raise ValidationError(f"{name} must not be negative (got {describe_int(value)}).", code="min_value")
    if value > MAX_NON_NEGATIVE_INT:
        raise ValidationError(f"{name} is too large (got {describe_int(value)}).", code="max_value")
    return value
