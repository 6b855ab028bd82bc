"""Bad input found by the adversarial pass (issue 18, items 5, 6, 7, 9), on both databases.

Lone UTF-16 surrogates, JSON nested too deeply, JSON objects with non-string keys and integers of
thousands of digits: each is a ``ValidationError`` naming the argument, before anything is written.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from accounts.models import LinearToken, Organization
from planning.models import PlanningSession
from sync.models import Conflict, LinearIssueCache, SyncHistory, SyncState
from sync.models.values import MAX_JSON_DEPTH, clean_json
from tests.factories import make_change

pytestmark = pytest.mark.django_db

LONE = "caf\udce9"  # what os.fsdecode makes of Latin-1 bytes, or a JSON "\udce9" escape
T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def nested(depth: int) -> dict:
    """An object whose objects nest ``depth`` levels in all (itself included)."""
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"child": value}
    return value


def store_conflict(**item_data) -> Conflict:
    return Conflict.objects.store(
        "conflict-item-1",
        linear_change=make_change("linear", itemId="item-1", itemData=item_data),
        confluence_change=make_change("confluence", itemId="item-1"),
        confluence_page_id="page-1",
        linear_team_id="team-1",
    )


def nothing_written() -> bool:
    return not (
        Conflict.objects.exists()
        or LinearIssueCache.objects.exists()
        or SyncState.objects.exists()
        or SyncHistory.objects.exists()
        or Organization.objects.exists()
    )


# --- 5. Lone surrogates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: store_conflict(title=LONE), "linear_change"),
        (lambda: store_conflict(**{LONE: "key"}), "linear_change"),
        (
            lambda: LinearIssueCache.objects.upsert_many("org-1", [{"id": "a"}, {"id": "b", "t": [LONE]}]),
            "issues[1]",
        ),
        (lambda: LinearIssueCache.objects.upsert_many("org-1", [{"id": LONE}]), "issues[0]['id']"),
        (lambda: LinearIssueCache.objects.upsert_many(LONE, [{"id": "a"}]), "organization_id"),
        (lambda: SyncState.objects.mark_synced(LONE, "team-1"), "confluence_page_id"),
        (lambda: SyncHistory.objects.record("page-1", "team-1", success=False, error=LONE), "error"),
        (
            lambda: PlanningSession.objects.start(
                "org-1", confluence_page_url="https://x.test/1", planning_title=LONE
            ),
            "planning_title",
        ),
        (
            lambda: LinearToken.objects.store(
                "org-1", access_token="tok" + LONE, refresh_token="r", app_user_id="u", expires_at=T0
            ),
            "access_token",
        ),
    ],
    ids=[
        "conflict-value",
        "conflict-key",
        "issue-value",
        "issue-id",
        "organization-id",
        "page-id",
        "history-error",
        "session-title",
        "token",
    ],
)
def test_a_lone_surrogate_is_a_validation_error_naming_the_argument(call, argument):
    with pytest.raises(ValidationError) as caught:
        call()

    (message,) = caught.value.messages
    assert message.startswith(argument + " ")
    assert "surrogate" in message
    message.encode("utf-8")  # the message itself is printable text (it never quotes the value)
    assert nothing_written()


def test_characters_beyond_the_bmp_are_stored_unchanged():
    text = "Launch \U0001f680 \u00e9t\u00e9 \u4e2d\u6587"
    store_conflict(title=text)
    LinearIssueCache.objects.upsert_many("org-1", [{"id": "a", "t": text, text: 1}])

    assert Conflict.objects.get().linear_change["itemData"] == {"title": text}
    assert LinearIssueCache.objects.get().issue_data == {"id": "a", "t": text, text: 1}


# --- 6. Depth ---------------------------------------------------------------------------------------


def test_json_at_the_depth_limit_is_stored_and_read_back_unchanged():
    # The change is level 1, itemData level 2: itemData's value may nest MAX_JSON_DEPTH - 2 more.
    deep = nested(MAX_JSON_DEPTH - 2)
    store_conflict(deep=deep)
    store_conflict(deep=deep)  # the second store compares the stored and the new change
    LinearIssueCache.objects.upsert_many("org-1", [{"id": "a", "deep": nested(MAX_JSON_DEPTH - 1)}])

    assert Conflict.objects.get().linear_change["itemData"] == {"deep": deep}
    assert LinearIssueCache.objects.get().issue_data["deep"] == nested(MAX_JSON_DEPTH - 1)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 300, 900])
def test_json_deeper_than_the_limit_is_a_validation_error(depth):
    with pytest.raises(ValidationError) as caught:
        store_conflict(deep=nested(depth))
    assert caught.value.messages == [
        f"linear_change is nested too deeply: more than {MAX_JSON_DEPTH} levels of objects and arrays."
    ]
    assert caught.value.code == "too_deep"

    lists: list = [1]
    for _ in range(depth):
        lists = [lists]
    with pytest.raises(ValidationError, match=r"^\['issues\[0\] is nested too deeply"):
        LinearIssueCache.objects.upsert_many("org-1", [{"id": "a", "deep": lists}])
    assert nothing_written()


# --- 7. Non-string keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", [1, 2.5, True, None, ("a", "b")], ids=["int", "float", "bool", "none", "tuple"]
)
def test_a_non_string_object_key_is_a_validation_error(key):
    with pytest.raises(ValidationError) as caught:
        store_conflict(labels={"nested": {key: "one", "1": "uno"}})
    assert caught.value.messages == [
        f"linear_change has an object key that is not a string ({type(key).__name__}); "
        "JSON object keys are strings."
    ]

    with pytest.raises(ValidationError, match="issues\\[0\\] has an object key that is not a string"):
        LinearIssueCache.objects.upsert_many("org-1", [{"id": "a", "list": [{key: 1}]}])
    assert nothing_written()


def test_the_value_that_json_would_have_lost_is_not_silently_dropped():
    # Before: {1: "one", "1": "uno"} was written as {"1": "one", "1": "uno"} and read back as {"1": "uno"}.
    with pytest.raises(ValidationError):
        clean_json({1: "one", "1": "uno"}, "value")


# --- 9. Huge integers -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [10**5000, -(10**5000)], ids=["positive", "negative"])
def test_a_counter_of_thousands_of_digits_is_a_validation_error_naming_it(value):
    with pytest.raises(ValidationError) as caught:
        SyncHistory.objects.record("page-1", "team-1", success=True, created_issues=value)

    (message,) = caught.value.messages
    assert message.startswith("created_issues ")
    assert "an integer of about 5,001 digits" in message
    assert nothing_written()


def test_a_json_integer_of_thousands_of_digits_is_a_validation_error_naming_the_argument():
    with pytest.raises(ValidationError) as caught:
        store_conflict(estimate=10**5000)
    assert caught.value.messages == ["linear_change has an integer of more than 4,300 digits."]

    with pytest.raises(ValidationError) as caught:
        LinearIssueCache.objects.upsert_many("org-1", [{"id": "a", "n": -(10**5000)}])
    assert caught.value.messages == ["issues[0] has an integer of more than 4,300 digits."]
    assert nothing_written()


def test_a_json_integer_within_the_limit_is_stored_unchanged():
    big = 10**300 + 7
    store_conflict(estimate=big)
    assert Conflict.objects.get().linear_change["itemData"] == {"estimate": big}
