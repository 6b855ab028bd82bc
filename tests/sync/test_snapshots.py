"""ItemSnapshot (record_synced / base_for) and the organization and version of a conflict."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Organization
from sync.models import Conflict, ItemSnapshot, item_data_hash
from tests.factories import make_change, make_organization

AT = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)

pytestmark = pytest.mark.django_db


def _item(item_id: str, **data) -> dict:
    return {"itemId": item_id, "itemType": "story", "itemData": data or {"title": item_id}}


def _canonical_hash(data: dict) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


# --- record_synced ---------------------------------------------------------------------------------


def test_record_synced_writes_one_row_per_item_with_hash_page_team_and_time():
    written = ItemSnapshot.objects.record_synced(
        "org-a",
        [_item("i-1", title="One", labels=["b", "a"]), _item("i-2", title="Two")],
        confluence_page_id="page-1",
        linear_team_id="team-1",
        at=AT,
    )
    assert written == 2
    rows = {s.item_id: s for s in ItemSnapshot.objects.all()}
    assert set(rows) == {"i-1", "i-2"}
    one = rows["i-1"]
    assert one.organization.linear_id == "org-a"
    assert (one.item_type, one.confluence_page_id, one.linear_team_id) == ("story", "page-1", "team-1")
    assert one.item_data == {"title": "One", "labels": ["b", "a"]}
    assert one.synced_at == AT
    assert one.content_hash == _canonical_hash({"title": "One", "labels": ["b", "a"]})
    assert one.content_hash == item_data_hash(
        {"labels": ["b", "a"], "title": "One"}
    )  # key order is irrelevant


def test_record_synced_again_updates_the_rows_in_place():
    ItemSnapshot.objects.record_synced(
        "org-a", [_item("i-1", title="Old")], confluence_page_id="p", linear_team_id="t", at=AT
    )
    later = AT + dt.timedelta(hours=1)
    ItemSnapshot.objects.record_synced(
        "org-a", [_item("i-1", title="New")], confluence_page_id="p2", linear_team_id="t2", at=later
    )
    snapshot = ItemSnapshot.objects.get()
    assert snapshot.item_data == {"title": "New"}
    assert snapshot.synced_at == later
    assert (snapshot.confluence_page_id, snapshot.linear_team_id) == ("p2", "t2")
    assert snapshot.content_hash == _canonical_hash({"title": "New"})


def test_record_synced_repeated_item_keeps_the_last():
    written = ItemSnapshot.objects.record_synced(
        "org-a",
        [_item("i-1", title="First"), _item("i-1", title="Last")],
        confluence_page_id="p",
        linear_team_id="t",
        at=AT,
    )
    assert written == 1
    assert ItemSnapshot.objects.get().item_data == {"title": "Last"}


def test_record_synced_keeps_organizations_apart():
    for org, title in (("org-a", "A"), ("org-b", "B")):
        ItemSnapshot.objects.record_synced(
            org, [_item("same-id", title=title)], confluence_page_id="p", linear_team_id="t", at=AT
        )
    assert ItemSnapshot.objects.count() == 2
    assert ItemSnapshot.objects.base_for("org-a", ["same-id"]) == {"same-id": {"title": "A"}}
    assert ItemSnapshot.objects.base_for("org-b", ["same-id"]) == {"same-id": {"title": "B"}}


def test_record_synced_in_batches_writes_everything():
    items = [_item(f"i-{n:03}", n=n) for n in range(25)]
    assert (
        ItemSnapshot.objects.record_synced(
            "org-a", items, confluence_page_id="p", linear_team_id="t", at=AT, batch_size=7
        )
        == 25
    )
    assert ItemSnapshot.objects.count() == 25
    assert ItemSnapshot.objects.get(item_id="i-017").item_data == {"n": 17}


def test_record_synced_nothing_creates_no_organization():
    assert ItemSnapshot.objects.record_synced("org-new", [], confluence_page_id="p", linear_team_id="t") == 0
    assert not Organization.objects.filter(linear_id="org-new").exists()


@pytest.mark.parametrize(
    ("items", "error", "message"),
    [
        ({"itemId": "x"}, ValueError, "items must be an iterable of dicts"),
        ([["not", "a", "dict"]], ValueError, "items[0] must be a dict"),
        ([{"itemData": {}}], ValidationError, "items[0] has no 'itemId' key"),
        ([{"itemId": "x"}], ValidationError, "items[0] has no 'itemData' key"),
        ([{"itemId": "", "itemData": {}}], ValidationError, "items[0]['itemId'] must not be empty"),
        ([{"itemId": "x", "itemData": []}], ValidationError, "items[0]['itemData'] must be a JSON object"),
        ([{"itemId": "x", "itemData": {"v": float("nan")}}], ValidationError, "is not valid JSON"),
        ([{"itemId": "x", "itemData": {"v": {1, 2}}}], ValidationError, "is not valid JSON"),
        ([{"itemId": "x", "itemData": {"v": "a\x00b"}}], ValidationError, "must not contain NUL"),
        (
            [{"itemId": "x", "itemType": 3, "itemData": {}}],
            ValueError,
            "items[0]['itemType'] must be a string",
        ),
    ],
)
def test_record_synced_refuses_bad_items_before_writing(items, error, message):
    good = _item("good")
    with pytest.raises(error) as excinfo:
        ItemSnapshot.objects.record_synced(
            "org-a",
            [good, *items] if isinstance(items, list) else items,
            confluence_page_id="p",
            linear_team_id="t",
        )
    assert message.replace("[0]", "[1]") in str(excinfo.value) or message in str(excinfo.value)
    assert ItemSnapshot.objects.count() == 0
    assert not Organization.objects.filter(linear_id="org-a").exists()


def test_record_synced_refuses_deep_json_with_a_validation_error():
    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(ValidationError, match="nested too deeply"):
        ItemSnapshot.objects.record_synced(
            "org-a", [{"itemId": "x", "itemData": deep}], confluence_page_id="p", linear_team_id="t"
        )


def test_record_synced_refuses_bad_scope_and_time():
    with pytest.raises(ValidationError, match="confluence_page_id must not be empty"):
        ItemSnapshot.objects.record_synced("org-a", [_item("i")], confluence_page_id="", linear_team_id="t")
    with pytest.raises(ValidationError, match="at"):
        ItemSnapshot.objects.record_synced(
            "org-a", [_item("i")], confluence_page_id="p", linear_team_id="t", at=dt.datetime(2026, 1, 1)
        )
    with pytest.raises(ValueError, match="batch_size"):
        ItemSnapshot.objects.record_synced(
            "org-a", [_item("i")], confluence_page_id="p", linear_team_id="t", batch_size=0
        )
    assert ItemSnapshot.objects.count() == 0


def test_record_synced_of_many_items_runs_one_insert_per_batch():
    items = [_item(f"i-{n}", n=n) for n in range(600)]
    with CaptureQueriesContext(connection) as context:
        ItemSnapshot.objects.record_synced(
            "org-a", items, confluence_page_id="p", linear_team_id="t", at=AT, batch_size=5000
        )
    inserts = [q for q in context.captured_queries if q["sql"].startswith('INSERT INTO "sync_itemsnapshot"')]
    # PostgreSQL: one INSERT ... SELECT from the COPY staging table; SQLite: 999 parameters per
    # statement, 8 per row -> batches of 124.
    assert len(inserts) == (1 if connection.vendor == "postgresql" else 5)
    assert len(context.captured_queries) <= len(inserts) + 10
    assert ItemSnapshot.objects.count() == 600


# --- base_for --------------------------------------------------------------------------------------


def test_base_for_answers_known_items_in_one_query(django_assert_num_queries):
    ItemSnapshot.objects.record_synced(
        "org-a",
        [_item("i-1", title="One"), _item("i-2", title="Two")],
        confluence_page_id="p",
        linear_team_id="t",
    )
    with django_assert_num_queries(1) as captured:
        base = ItemSnapshot.objects.base_for("org-a", ["i-2", "i-1", "unknown", "i-1"])
    assert base == {"i-1": {"title": "One"}, "i-2": {"title": "Two"}}
    if connection.vendor == "postgresql":
        # One array parameter, whatever the number of ids (config.db.AnyOf): a prepared statement's
        # generic plan for IN ($2, …, $501) read every snapshot of the organization.
        assert '"item_id" = ANY(' in captured.captured_queries[0]["sql"]
        assert " IN (" not in captured.captured_queries[0]["sql"]


def test_base_for_unknown_organization_is_empty_and_creates_nothing():
    assert ItemSnapshot.objects.base_for("org-none", ["i-1"]) == {}
    assert not Organization.objects.filter(linear_id="org-none").exists()


def test_base_for_refuses_bad_ids():
    with pytest.raises(ValueError, match="item_ids must be an iterable"):
        ItemSnapshot.objects.base_for("org-a", "i-1")
    with pytest.raises(ValidationError, match=r"item_ids\[1\] must not be empty"):
        ItemSnapshot.objects.base_for("org-a", ["i-1", ""])


def test_snapshots_for_returns_whole_rows():
    ItemSnapshot.objects.record_synced(
        "org-a", [_item("i-1", title="One")], confluence_page_id="p", linear_team_id="t", at=AT
    )
    rows = ItemSnapshot.objects.snapshots_for("org-a", ["i-1", "i-2"])
    assert list(rows) == ["i-1"]
    assert rows["i-1"].synced_at == AT


@pytest.mark.django_db(transaction=True)
def test_async_twins_of_snapshots():
    written = async_to_sync(ItemSnapshot.objects.arecord_synced)(
        "org-a", [_item("i-1", title="One")], confluence_page_id="p", linear_team_id="t", at=AT
    )
    assert written == 1
    assert async_to_sync(ItemSnapshot.objects.abase_for)("org-a", ["i-1"]) == {"i-1": {"title": "One"}}
    rows = async_to_sync(ItemSnapshot.objects.asnapshots_for)("org-a", ["i-1"])
    assert rows["i-1"].synced_at == AT


# --- Conflict.organization and version -----------------------------------------------------------


def _sides(item_id: str = "item-1", linear_title: str = "L", confluence_title: str = "C"):
    return (
        make_change("linear", itemId=item_id, itemData={"title": linear_title}),
        make_change("confluence", itemId=item_id, itemData={"title": confluence_title}),
    )


def test_store_sets_the_organization_and_starts_at_version_one():
    linear, confluence = _sides()
    conflict = Conflict.objects.store(
        "conflict-item-1", linear_change=linear, confluence_change=confluence, organization_id="org-a"
    )
    conflict.refresh_from_db()
    assert conflict.organization.linear_id == "org-a"
    assert conflict.version == 1
    assert conflict.base_change is None
    assert conflict.conflicting_fields == []
    assert list(Conflict.objects.for_organization("org-a")) == [conflict]
    assert list(Conflict.objects.for_organization("org-b")) == []


def test_store_without_organization_keeps_old_behaviour():
    linear, confluence = _sides()
    conflict = Conflict.objects.store("conflict-item-1", linear_change=linear, confluence_change=confluence)
    conflict.refresh_from_db()
    assert conflict.organization is None
    assert conflict.version == 1
    assert conflict.differing_field_count == 1


def test_version_goes_up_only_when_a_store_changes_the_content():
    linear, confluence = _sides()
    Conflict.objects.store("conflict-item-1", linear_change=linear, confluence_change=confluence)
    Conflict.objects.store("conflict-item-1", linear_change=linear, confluence_change=confluence)
    assert Conflict.objects.get().version == 1
    linear2, _ = _sides(linear_title="L2")
    Conflict.objects.store("conflict-item-1", linear_change=linear2, confluence_change=confluence)
    assert Conflict.objects.get().version == 2
    # the organization alone is no content change
    Conflict.objects.store(
        "conflict-item-1", linear_change=linear2, confluence_change=confluence, organization_id="org-a"
    )
    conflict = Conflict.objects.get()
    assert (conflict.version, conflict.organization.linear_id) == (2, "org-a")
    # a base and conflicting fields are content
    base = make_change("linear", itemId="item-1", itemData={"title": "B"})
    Conflict.objects.store(
        "conflict-item-1",
        linear_change=linear2,
        confluence_change=confluence,
        base_change=base,
        conflicting_fields=["title"],
    )
    conflict = Conflict.objects.get()
    assert conflict.version == 3
    assert conflict.base_change["itemData"] == {"title": "B"}
    assert (conflict.conflicting_fields, conflict.differing_field_count) == (["title"], 1)


def test_store_refuses_a_conflict_of_another_organization():
    linear, confluence = _sides()
    Conflict.objects.store(
        "conflict-item-1", linear_change=linear, confluence_change=confluence, organization_id="org-a"
    )
    linear2, _ = _sides(linear_title="other")
    with pytest.raises(ValidationError, match="belongs to another organization"):
        Conflict.objects.store(
            "conflict-item-1", linear_change=linear2, confluence_change=confluence, organization_id="org-b"
        )
    conflict = Conflict.objects.get()
    assert (conflict.organization.linear_id, conflict.version) == ("org-a", 1)
    assert conflict.linear_change["itemData"] == {"title": "L"}


def test_store_refuses_bad_conflicting_fields_and_base():
    linear, confluence = _sides()
    with pytest.raises(ValidationError, match="not a dotted field path"):
        Conflict.objects.store(
            "conflict-item-1", linear_change=linear, confluence_change=confluence, conflicting_fields=["a..b"]
        )
    with pytest.raises(ValueError, match="conflicting_fields must be a list"):
        Conflict.objects.store(
            "conflict-item-1", linear_change=linear, confluence_change=confluence, conflicting_fields="title"
        )
    with pytest.raises(ValidationError, match="base_change has no 'itemData' key"):
        Conflict.objects.store(
            "conflict-item-1",
            linear_change=linear,
            confluence_change=confluence,
            base_change={"itemId": "item-1", "source": "snapshot"},
        )
    assert Conflict.objects.count() == 0


def test_conflict_organization_is_protected():
    organization = make_organization(linear_id="org-a")
    linear, confluence = _sides()
    Conflict.objects.store(
        "conflict-item-1", linear_change=linear, confluence_change=confluence, organization_id="org-a"
    )
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        organization.delete()


def test_snapshot_table_has_the_unique_key():
    constraints = connection.introspection.get_constraints(connection.cursor(), ItemSnapshot._meta.db_table)
    assert any(c["unique"] and c["columns"] == ["organization_id", "item_id"] for c in constraints.values())
