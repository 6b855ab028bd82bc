"""Checks of the JSON values and ids that sync rows store (shared by every sync model)."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from accounts.validation import (
    clean_identifier,
    clean_text,
    has_surrogate,
)

#: Longest ``itemType`` accepted (the agent writes epic, feature, story, enabler).
ITEM_TYPE_MAX_LENGTH = 64

#: Keys every change object must have (``legacy-schema.md``, "Conflict JSON").
CHANGE_REQUIRED_KEYS = ("itemId", "source", "itemData")


# --- JSON values ---------------------------------------------------------------------------------

#: ``\u0000`` in JSON text that is an escape, not an escaped backslash followed by "u0000".
_JSON_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


#: Deepest nesting of objects and arrays a JSON argument may have (the argument itself is level 1).
#: Linear issues and Confluence changes nest a handful of levels; far deeper values made the recursive
#: code that stores and compares them raise ``RecursionError`` a few hundred levels down.
MAX_JSON_DEPTH = 100

#: The Python types json.dumps writes as objects and arrays.
_CONTAINERS = (dict, list, tuple)


def _check_json_structure(value: Any, name: str) -> None:
    """Refuse nesting beyond ``MAX_JSON_DEPTH`` and object keys that are not strings; no recursion."""
    if not isinstance(value, _CONTAINERS):
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValidationError(
                f"{name} is nested too deeply: more than {MAX_JSON_DEPTH} levels of objects and arrays.",
                code="too_deep",
            )
        if isinstance(node, dict):
            for key, child in node.items():
                if not isinstance(key, str):
                    # json.dumps would turn 1 into "1" (and lose a value when "1" is a key as well).
                    raise ValidationError(
                        f"{name} has an object key that is not a string ({type(key).__name__}); "
                        f"JSON object keys are strings.",
                        code="invalid_json",
                    )
                if isinstance(child, _CONTAINERS):
                    stack.append((child, depth + 1))
        else:
            stack.extend((child, depth + 1) for child in node if isinstance(child, _CONTAINERS))


def clean_json(value: Any, name: str) -> Any:
    """Return ``value`` if it can be stored in a JSON column on both databases, else raise.

    Refused with a ``ValidationError`` naming ``name``: values ``json`` cannot serialise (sets, datetimes,
    Decimals, objects), non-finite floats (JSON has no NaN/Infinity), NUL characters in any string or
    key (PostgreSQL's ``jsonb`` refuses ``\\u0000``), lone UTF-16 surrogates (not Unicode; PostgreSQL
    refuses them), object keys that are not strings (``json`` would silently rewrite ``1`` as ``"1"``),
    nesting deeper than :data:`MAX_JSON_DEPTH` and integers too long for Python to print (more than
    ``sys.get_int_max_str_digits()`` digits, 4,300 by default). Any other JSON passes.
    """
    _check_json_structure(value, name)
    try:
        # ensure_ascii=False: a surrogate stays one character (ASCII output would escape it, and every
        # character beyond the BMP as a surrogate pair, so the two could not be told apart).
        dumped = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            raise ValidationError(
                f"{name} has an integer of more than {sys.get_int_max_str_digits():,} digits.",
                code="invalid_json",
            ) from None
        raise ValidationError(f"{name} is not valid JSON: {exc}.", code="invalid_json") from exc
    except TypeError as exc:
        raise ValidationError(f"{name} is not valid JSON: {exc}.", code="invalid_json") from exc
    except RecursionError as exc:
        raise ValidationError(f"{name} is nested too deeply.", code="too_deep") from exc
    # json.dumps writes a NUL in any string or key as the escape \u0000: a substring search of its
    # output (the regex only when that finds one) instead of walking the value again, which cost
    # LinearIssueCache.upsert_many a tenth of its time (it checks every issue).
    if "\\u0000" in dumped and _JSON_NUL_ESCAPE.search(dumped):
        raise ValidationError(f"{name} must not contain NUL characters.", code="invalid_json")
    if has_surrogate(dumped):
        raise ValidationError(
            f"{name} contains a lone UTF-16 surrogate (U+D800-U+DFFF), which is not valid Unicode text.",
            code="invalid_json",
        )
    return value


def clean_change(value: Any, name: str) -> dict[str, Any]:
    """Return ``value`` if it is a change object (``itemId``, ``source``, ``itemData``), else raise.

    ``name`` says which side is checked (``linear_change``, ``confluence_change``, ``resolved_change``)
    and appears in the message together with the missing or bad key.
    """
    if not isinstance(value, dict):
        raise ValidationError(
            f"{name} must be a JSON object, not {type(value).__name__}.", code="invalid_change"
        )
    for key in CHANGE_REQUIRED_KEYS:
        if key not in value:
            raise ValidationError(f"{name} has no '{key}' key.", code="missing_key")
    for key in ("itemId", "source"):
        if not isinstance(value[key], str) or not value[key].strip():
            raise ValidationError(f"{name}['{key}'] must be a non-empty string.", code="invalid_change")
    clean_identifier(value["itemId"], f"{name}['itemId']")
    if not isinstance(value["itemData"], dict):
        raise ValidationError(
            f"{name}['itemData'] must be a JSON object, not {type(value['itemData']).__name__}.",
            code="invalid_change",
        )
    item_type = value.get("itemType")
    if item_type is not None:
        if not isinstance(item_type, str):
            raise ValidationError(f"{name}['itemType'] must be a string.", code="invalid_change")
        clean_text(item_type, f"{name}['itemType']", required=False, max_length=ITEM_TYPE_MAX_LENGTH)
    return clean_json(value, name)


def clean_acting_user(by: Any) -> Any:
    """The acting user for a resolution: ``None`` (agent code) or a saved user instance."""
    if by is None:
        return None
    user_model = get_user_model()
    if not isinstance(by, user_model):
        raise ValueError(f"by must be a {user_model.__name__} or None, not {type(by).__name__}.")
    if by.pk is None:
        raise ValueError("by must be a saved user.")
    return by
