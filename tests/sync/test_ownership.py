"""FieldOwnership: rules per organization, the most specific wins, checked paths and owners."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from sync.models import FieldOwnership
from tests.factories import make_organization

pytestmark = pytest.mark.django_db


def test_owners_for_takes_the_most_specific_rule_per_path(django_assert_num_queries):
    FieldOwnership.objects.set_owner("org-a", "title", "linear")
    FieldOwnership.objects.set_owner("org-a", "title", "confluence", item_type="story")
    FieldOwnership.objects.set_owner("org-a", "title", "newest", item_type="story", linear_team_id="team-1")
    FieldOwnership.objects.set_owner("org-a", "state", "linear", confluence_page_id="page-1")
    FieldOwnership.objects.set_owner("org-a", "estimate", "confluence", linear_team_id="team-9")
    with django_assert_num_queries(1):
        owners = FieldOwnership.objects.owners_for(
            "org-a", item_type="story", confluence_page_id="page-1", linear_team_id="team-1"
        )
    assert owners == {"state": "linear", "title": "newest"}
    assert FieldOwnership.objects.owners_for("org-a", item_type="epic") == {"title": "linear"}
    assert FieldOwnership.objects.owners_for("org-a", item_type="story") == {"title": "confluence"}


def test_between_equally_specific_rules_team_beats_page_beats_type():
    FieldOwnership.objects.set_owner("org-a", "title", "linear", item_type="story")
    FieldOwnership.objects.set_owner("org-a", "title", "confluence", confluence_page_id="p")
    assert FieldOwnership.objects.owners_for("org-a", item_type="story", confluence_page_id="p") == {
        "title": "confluence"
    }
    FieldOwnership.objects.set_owner("org-a", "title", "newest", linear_team_id="t")
    assert FieldOwnership.objects.owners_for(
        "org-a", item_type="story", confluence_page_id="p", linear_team_id="t"
    ) == {"title": "newest"}


def test_rules_stay_in_their_organization():
    FieldOwnership.objects.set_owner("org-a", "title", "linear")
    assert FieldOwnership.objects.owners_for("org-b") == {}


def test_set_owner_twice_changes_the_one_rule():
    FieldOwnership.objects.set_owner("org-a", "title", "linear")
    rule = FieldOwnership.objects.set_owner("org-a", "title", "confluence")
    assert FieldOwnership.objects.count() == 1
    assert rule.owner == "confluence"
    assert str(rule) == "title → confluence"


@pytest.mark.parametrize(
    ("path", "owner", "error", "message"),
    [
        ("title", "someone", ValidationError, "owner must be one of linear, confluence, newest"),
        ("title", None, ValueError, "owner must be a string"),
        ("", "linear", ValidationError, "field_path must not be empty"),
        ("state..name", "linear", ValidationError, "is not a dotted field path"),
        (".title", "linear", ValidationError, "is not a dotted field path"),
        ("title ", "linear", ValidationError, "is not a dotted field path"),
        ("x" * 256, "linear", ValidationError, "at most 255"),
    ],
)
def test_set_owner_refuses_bad_paths_and_owners(path, owner, error, message):
    with pytest.raises(error, match=message):
        FieldOwnership.objects.set_owner("org-a", path, owner)
    assert FieldOwnership.objects.count() == 0


def test_model_clean_gives_field_errors():
    rule = FieldOwnership(organization=make_organization(), field_path="a..b", owner="nobody")
    with pytest.raises(ValidationError) as excinfo:
        rule.full_clean()
    assert set(excinfo.value.message_dict) >= {"field_path", "owner"}


def test_database_refuses_an_unknown_owner_and_a_duplicate_rule():
    organization = make_organization()
    with pytest.raises(IntegrityError), transaction.atomic():
        FieldOwnership.objects.create(organization=organization, field_path="title", owner="nobody")
    FieldOwnership.objects.create(organization=organization, field_path="title", owner="linear")
    with pytest.raises(IntegrityError), transaction.atomic():
        FieldOwnership.objects.create(organization=organization, field_path="title", owner="confluence")


@pytest.mark.django_db(transaction=True)
def test_async_twins_of_ownership():
    rule = async_to_sync(FieldOwnership.objects.aset_owner)("org-a", "title", "linear", item_type="story")
    assert rule.pk is not None
    assert async_to_sync(FieldOwnership.objects.aowners_for)("org-a", item_type="story") == {
        "title": "linear"
    }
