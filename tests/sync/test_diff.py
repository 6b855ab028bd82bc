"""sync.diff: the side-by-side comparison of the two itemData objects."""

from __future__ import annotations

import pytest

from sync.diff import MISSING, DiffRow, differing_field_count, item_data_diff, json_equal


def test_rows_cover_all_keys_differing_first_then_by_key():
    linear = {"title": "A", "estimate": 3, "labels": ["x"], "owner": "ann"}
    confluence = {"title": "B", "estimate": 3, "labels": ["x"], "due": None}

    assert item_data_diff(linear, confluence) == [
        DiffRow("due", MISSING, None, True),
        DiffRow("owner", "ann", MISSING, True),
        DiffRow("title", "A", "B", True),
        DiffRow("estimate", 3, 3, False),
        DiffRow("labels", ["x"], ["x"], False),
    ]
    assert differing_field_count(linear, confluence) == 3


def test_equal_objects_have_no_differing_rows():
    data = {"a": {"nested": [1, {"b": "ü"}]}, "c": 1.0}
    assert [row.differs for row in item_data_diff(data, {"c": 1, "a": {"nested": [1, {"b": "ü"}]}})] == [
        False,
        False,
    ]


def test_empty_objects_have_no_rows():
    assert item_data_diff({}, {}) == []


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1.0, True),
        (True, 1, False),
        (False, 0, False),
        (True, True, True),
        (None, MISSING, False),
        (None, None, True),
        ("1", 1, False),
        ([1, 2], [2, 1], False),
        ([1, [2]], [1, [2]], True),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
        ({"a": 1}, {"a": 1, "b": None}, False),
        ({"a": True}, {"a": 1}, False),
        ("ü", "ü", True),
    ],
)
def test_json_equal(a, b, equal):
    assert json_equal(a, b) is equal
    assert json_equal(b, a) is equal


def test_item_data_diff_refuses_non_dicts():
    with pytest.raises(ValueError, match="compares two dicts"):
        item_data_diff([], {})


def test_missing_is_falsy_and_reads_as_missing():
    assert not MISSING
    assert repr(MISSING) == "MISSING"
