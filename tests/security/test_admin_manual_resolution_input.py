"""The manual resolution editor turns the adversarial pass's JSON into form errors, never a 500.

Issue 18, items 5, 6 and 9 through the admin: a ``\\udce9`` escape (a lone UTF-16 surrogate), JSON nested
deeper than ``MAX_JSON_DEPTH`` (but not deep enough for ``json.loads`` to give up) and an integer of
thousands of digits.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from sync.models import Conflict, ConflictResolution
from sync.models.values import MAX_JSON_DEPTH


def resolved_change_text(conflict: Conflict, item_data_json: str) -> str:
    """The conflict's Linear change as JSON text, with ``itemData`` replaced by the given JSON text."""
    change = dict(conflict.linear_change)
    change["itemData"] = "__ITEM_DATA__"
    return json.dumps(change).replace('"__ITEM_DATA__"', item_data_json)


@pytest.mark.parametrize(
    ("item_data", "error"),
    [
        (
            '{"title": "caf\\udce9"}',
            "resolved_change contains a lone UTF-16 surrogate (U+D800-U+DFFF), "
            "which is not valid Unicode text.",
        ),
        (
            '{"deep": ' + '{"a": ' * (MAX_JSON_DEPTH + 10) + "1" + "}" * (MAX_JSON_DEPTH + 10) + "}",
            f"resolved_change is nested too deeply: more than {MAX_JSON_DEPTH} levels of objects and arrays.",
        ),
    ],
    ids=["lone-surrogate", "too-deep"],
)
def test_bad_json_in_the_manual_editor_is_a_form_error(item_data, error, world, clients):
    conflict = world["conflict"]
    url = reverse("admin:sync_conflict_resolve", args=[quote(conflict.pk)])

    response = clients["superuser"].post(
        url, {"strategy": "manual", "resolved_change": resolved_change_text(conflict, item_data)}
    )

    assert response.status_code == 200
    assert response.context["manual_form"].errors["resolved_change"] == [error]
    assert not Conflict.objects.get(pk=conflict.pk).is_resolved
    assert not ConflictResolution.objects.filter(conflict_id=conflict.pk).exists()


def test_an_integer_of_thousands_of_digits_in_the_manual_editor_is_a_form_error(world, clients):
    conflict = world["conflict"]
    url = reverse("admin:sync_conflict_resolve", args=[quote(conflict.pk)])
    text = resolved_change_text(conflict, '{"estimate": 1' + "0" * 5000 + "}")

    response = clients["superuser"].post(url, {"strategy": "manual", "resolved_change": text})

    assert response.status_code == 200
    (message,) = response.context["manual_form"].errors["resolved_change"]
    assert message.startswith("This is not valid JSON: ")
    assert "4300 digits" in message
    assert not Conflict.objects.get(pk=conflict.pk).is_resolved
