"""Forms of the conflict review console."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from sync.merge import clean_field_path
from sync.models import Conflict, FieldOwnership, clean_change

#: The change types the agent writes (``legacy-schema.md``, "Conflict JSON").
CHANGE_TYPES = ("created", "updated", "deleted")

#: Keys a resolution keeps from the conflicting item: the operator edits the item, not which item it is.
IDENTITY_KEYS = ("itemId", "itemType")


def _json_type_name(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages (``array``, not ``list``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _refuse_constant(name: str) -> Any:
    """``json.loads`` hook: Python accepts NaN and Infinity, JSON (and the JSON columns) do not."""
    raise ValueError(f"{name} is not valid JSON")


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON (two spaces, non-ASCII kept readable), as the console shows values."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


class ManualResolutionForm(forms.Form):
    """The operator's resolved change for one conflict, typed as JSON.

    Valid when the text parses as JSON, is an object, and keeps the shape of the conflict's changes:
    every key both sides have is still there, ``itemId``/``itemType`` are unchanged, ``itemData`` is an
    object, ``type`` is a change type and ``timestamp`` a millisecond number. The model's own
    ``clean_change`` then runs too, so the form never accepts what ``Conflict.resolve`` would refuse.
    """

    resolved_change = forms.CharField(
        label="Resolved change (JSON)",
        strip=False,
        widget=forms.Textarea(
            attrs={
                "rows": 22,
                "spellcheck": "false",
                "autocomplete": "off",
                "class": "json-editor",
                "aria-describedby": "manual-help",
            }
        ),
    )

    def __init__(self, *args: Any, conflict: Conflict, **kwargs: Any) -> None:
        """Bind the form to the conflict whose change shape the resolved change must keep."""
        super().__init__(*args, **kwargs)
        self.conflict = conflict

    @classmethod
    def prefilled(cls, conflict: Conflict, side: str) -> ManualResolutionForm:
        """An unbound form whose editor starts from one side's change (``linear`` or ``confluence``)."""
        change = conflict.confluence_change if side == "confluence" else conflict.linear_change
        return cls(conflict=conflict, initial={"resolved_change": pretty_json(change)})

    def required_keys(self) -> list[str]:
        """Keys both sides' changes have, except ``id`` (the resolution sets ``resolved-<conflict id>``)."""
        linear = self.conflict.linear_change or {}
        confluence = self.conflict.confluence_change or {}
        return sorted((set(linear) & set(confluence)) - {"id"})

    def clean_resolved_change(self) -> dict[str, Any]:
        """Parse and check the typed change; every error names what is wrong and where."""
        raw = self.cleaned_data["resolved_change"]
        try:
            value = json.loads(raw, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                "This is not valid JSON: %(msg)s (line %(line)d, column %(column)d).",
                code="invalid_json",
                params={"msg": exc.msg, "line": exc.lineno, "column": exc.colno},
            ) from exc
        except ValueError as exc:
            raise ValidationError(f"This is not valid JSON: {exc}.", code="invalid_json") from exc
        except RecursionError:
            # As clean_json refuses it for agent code: a crash page here would be a 500 for a typo.
            raise ValidationError("The resolved change is nested too deeply.", code="invalid_json") from None
        if not isinstance(value, dict):
            raise ValidationError(
                "The resolved change must be a JSON object ({…}), not %(kind)s.",
                code="not_an_object",
                params={"kind": _json_type_name(value)},
            )
        missing = [key for key in self.required_keys() if key not in value]
        if missing:
            raise ValidationError(
                "The resolved change must keep the change's shape; it lacks: %(keys)s.",
                code="missing_keys",
                params={"keys": ", ".join(missing)},
            )
        linear = self.conflict.linear_change or {}
        for key in IDENTITY_KEYS:
            if key in linear and value.get(key) != linear[key]:
                raise ValidationError(
                    "%(key)s must stay %(expected)s: a resolution edits the conflicting item, not which "
                    "item it is.",
                    code="identity_changed",
                    params={"key": key, "expected": json.dumps(linear[key], ensure_ascii=False)},
                )
        if "type" in value and value["type"] not in CHANGE_TYPES:
            raise ValidationError(
                "type must be one of %(types)s.",
                code="invalid_type",
                params={"types": ", ".join(CHANGE_TYPES)},
            )
        if "timestamp" in value and (
            isinstance(value["timestamp"], bool) or not isinstance(value["timestamp"], int)
        ):
            raise ValidationError(
                "timestamp must be a whole number of milliseconds since the epoch.", code="invalid_timestamp"
            )
        # The model's check of a change (itemId, source, itemData, storable JSON): one rule, one place.
        return clean_change(value, "resolved_change")


class FieldPicksForm(forms.Form):
    """A side per conflicting path (``fields`` strategy): one radio group per path, Linear or Confluence.

    Field names are ``pick:<path>``; :meth:`picks` gives ``{path: side}`` for ``Conflict.resolve``.
    ``keep_only`` (the conflict changed under the reviewer): an unbound form whose choices start from
    the posted ones for the paths still in conflict, so nothing typed is lost and no error is shown
    before the reviewer submits again.
    """

    SIDES = (("linear", "Linear"), ("confluence", "Confluence"))

    def __init__(self, data: Any = None, *, paths: list[str], keep_only: bool = False) -> None:
        initial = None
        if keep_only and data is not None:
            initial = {self.field_name(path): data.get(self.field_name(path)) for path in paths}
            data = None
        super().__init__(data, initial=initial)
        self.paths = list(paths)
        for path in self.paths:
            self.fields[self.field_name(path)] = forms.ChoiceField(
                label=path,
                choices=self.SIDES,
                widget=forms.RadioSelect(attrs={"class": "cc-pick", "data-path": path}),
                error_messages={"required": f"Pick a side for {path}."},
            )

    @staticmethod
    def field_name(path: str) -> str:
        return f"pick:{path}"

    def picks(self) -> dict[str, str]:
        """``{path: "linear" | "confluence"}`` of a valid form."""
        return {path: self.cleaned_data[self.field_name(path)] for path in self.paths}


class FieldOwnershipForm(forms.ModelForm):
    """An owner rule in the admin: the path is checked as ``three_way`` will read it."""

    class Meta:
        model = FieldOwnership
        fields = ["organization", "field_path", "owner", "item_type", "confluence_page_id", "linear_team_id"]

    def clean_field_path(self) -> str:
        try:
            return clean_field_path(self.cleaned_data["field_path"], "Field path")
        except ValueError as exc:
            raise ValidationError(str(exc), code="invalid_path") from exc
