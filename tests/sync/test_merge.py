"""sync.merge.three_way: exact outcomes of every rule, and its laws as property-based tests."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.diff import json_equal
from sync.merge import MAX_MERGE_DEPTH, REMOVED, _eq, apply_updates, pick_sides, three_way

T0 = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)


# --- Rules, with exact values ----------------------------------------------------------------------


def test_one_sided_edit_flows_to_the_other_side():
    m = three_way({"title": "A", "estimate": 3}, {"title": "B", "estimate": 3}, {"title": "A", "estimate": 3})
    assert m.merged == {"title": "B", "estimate": 3}
    assert m.conflicts == []
    assert m.decisions == {"title": "linear"}
    assert m.to_linear == {}
    assert m.to_confluence == {"title": "B"}


def test_edits_to_different_fields_both_apply():
    m = three_way({"title": "A", "estimate": 3}, {"title": "B", "estimate": 3}, {"title": "A", "estimate": 5})
    assert m.merged == {"title": "B", "estimate": 5}
    assert m.decisions == {"estimate": "confluence", "title": "linear"}
    assert m.to_linear == {"estimate": 5}
    assert m.to_confluence == {"title": "B"}


def test_same_edit_on_both_sides_is_same():
    m = three_way({"title": "A"}, {"title": "B"}, {"title": "B"})
    assert (m.merged, m.conflicts, m.decisions) == ({"title": "B"}, [], {"title": "same"})
    assert m.to_linear == m.to_confluence == {}


def test_different_edits_to_one_field_conflict_and_merged_keeps_the_base():
    m = three_way({"title": "A", "n": 1}, {"title": "B", "n": 1}, {"title": "C", "n": 2})
    assert m.conflicts == ["title"]
    assert m.merged == {"title": "A", "n": 2}
    assert m.decisions == {"n": "confluence"}
    assert m.to_linear == {"n": 2}  # the conflicting title is not sent
    assert m.to_confluence == {}


def test_nested_objects_merge_field_by_field_with_dotted_paths():
    base = {"state": {"name": "Todo", "id": 1, "color": "grey"}}
    linear = {"state": {"name": "Doing", "id": 1, "color": "grey"}}
    confluence = {"state": {"name": "Todo", "id": 2, "color": "red"}}
    m = three_way(base, linear, confluence)
    assert m.merged == {"state": {"name": "Doing", "id": 2, "color": "red"}}
    assert m.decisions == {"state.color": "confluence", "state.id": "confluence", "state.name": "linear"}
    # a nested change sends the whole top-level value
    assert m.to_linear == {"state": {"name": "Doing", "id": 2, "color": "red"}}
    assert m.to_confluence == {"state": {"name": "Doing", "id": 2, "color": "red"}}


def test_nested_conflict_keeps_each_sides_value_at_the_conflicting_path():
    base = {"state": {"name": "Todo", "id": 1}}
    linear = {"state": {"name": "Doing", "id": 1}}
    confluence = {"state": {"name": "Done", "id": 2}}
    m = three_way(base, linear, confluence)
    assert m.conflicts == ["state.name"]
    assert m.merged == {"state": {"name": "Todo", "id": 2}}
    # each side gets the decided id, but its own name (the conflict is not decided)
    assert m.to_linear == {"state": {"name": "Doing", "id": 2}}
    assert m.to_confluence == {}


def test_string_lists_merge_as_sets_in_base_then_linear_then_confluence_order():
    base = {"labels": ["a", "b", "c"]}
    linear = {"labels": ["b", "a", "x", "c"]}  # adds x
    confluence = {"labels": ["a", "c", "y", "z"]}  # removes b, adds y, z
    m = three_way(base, linear, confluence)
    assert m.merged == {"labels": ["a", "c", "x", "y", "z"]}
    assert m.decisions == {"labels": "merged"}
    assert m.conflicts == []


def test_number_lists_merge_as_sets_and_one_equals_one_point_zero():
    m = three_way({"ids": [1, 2]}, {"ids": [1, 2, 3]}, {"ids": [2.0, 4]})
    assert m.merged == {"ids": [2, 3, 4]}


def test_lists_of_objects_are_atomic():
    base = {"links": [{"u": 1}]}
    m = three_way(base, {"links": [{"u": 1}, {"u": 2}]}, {"links": []})
    assert m.conflicts == ["links"]
    assert m.merged == base


def test_lists_with_booleans_are_atomic():
    m = three_way({"f": [True]}, {"f": [True, False]}, {"f": []})
    assert m.conflicts == ["f"]


def test_one_sided_list_change_takes_that_list_exactly():
    m = three_way({"labels": ["a", "b"]}, {"labels": ["b", "a", "a"]}, {"labels": ["a", "b"]})
    assert m.merged == {"labels": ["b", "a", "a"]}
    assert m.decisions == {"labels": "linear"}


def test_scalar_change_of_type_is_atomic():
    m = three_way({"estimate": 3}, {"estimate": "3"}, {"estimate": 3})
    assert m.merged == {"estimate": "3"}
    m = three_way({"done": 1}, {"done": True}, {"done": 2})
    assert m.conflicts == ["done"]


def test_deleted_on_one_side_and_unchanged_on_the_other_is_deleted():
    m = three_way({"title": "A", "due": "2026-05-01"}, {"title": "A"}, {"title": "A", "due": "2026-05-01"})
    assert m.merged == {"title": "A"}
    assert m.decisions == {"due": "linear"}
    assert m.to_confluence == {"due": REMOVED}
    assert m.to_linear == {}


def test_deleted_on_one_side_and_changed_on_the_other_is_a_conflict():
    m = three_way({"due": "2026-05-01"}, {}, {"due": "2026-06-01"})
    assert m.conflicts == ["due"]
    assert m.merged == {"due": "2026-05-01"}
    assert m.to_linear == {} and m.to_confluence == {}


def test_deleted_object_against_a_nested_change_conflicts_at_the_object():
    m = three_way({"state": {"name": "A"}}, {}, {"state": {"name": "B"}})
    assert m.conflicts == ["state"]


def test_added_on_both_sides_differently_is_a_conflict_and_merged_keeps_it_absent():
    m = three_way({}, {"due": "x"}, {"due": "y"})
    assert m.conflicts == ["due"]
    assert m.merged == {}


def test_without_base_every_difference_is_a_conflict_and_merged_keeps_linear():
    m = three_way(None, {"title": "L", "n": 1, "only": 1}, {"title": "C", "n": 1})
    assert m.conflicts == ["only", "title"]
    assert m.merged == {"title": "L", "n": 1, "only": 1}
    assert m.decisions == {}
    assert m.has_base is False
    assert m.to_linear == {} and m.to_confluence == {}


def test_without_base_nested_objects_conflict_at_their_leaves():
    m = three_way(None, {"state": {"name": "A", "id": 1}}, {"state": {"name": "B", "id": 1}})
    assert m.conflicts == ["state.name"]


def test_owner_rule_decides_a_would_be_conflict():
    m = three_way({"title": "A"}, {"title": "B"}, {"title": "C"}, owners={"title": "confluence"})
    assert m.conflicts == []
    assert m.merged == {"title": "C"}
    assert m.decisions == {"title": "owner:confluence"}
    assert m.owner_rules_applied == {"title": "title"}
    assert m.to_linear == {"title": "C"}


def test_owner_rule_on_a_parent_path_decides_everything_below():
    base = {"state": {"name": "A", "id": 1}}
    m = three_way(
        base, {"state": {"name": "B", "id": 2}}, {"state": {"name": "C", "id": 3}}, owners={"state": "linear"}
    )
    assert m.merged == {"state": {"name": "B", "id": 2}}
    assert m.decisions == {"state.id": "owner:linear", "state.name": "owner:linear"}
    assert m.owner_rules_applied == {"state.id": "state", "state.name": "state"}


def test_owner_rule_without_base_decides_differing_fields():
    m = three_way(None, {"title": "L"}, {"title": "C"}, owners={"title": "linear"})
    assert (m.conflicts, m.merged, m.decisions) == ([], {"title": "L"}, {"title": "owner:linear"})


def test_owner_rule_does_not_override_a_one_sided_edit():
    m = three_way({"title": "A"}, {"title": "B"}, {"title": "A"}, owners={"title": "confluence"})
    assert m.merged == {"title": "B"}
    assert m.decisions == {"title": "linear"}


def test_newest_owner_takes_the_later_change():
    m = three_way({"t": "A"}, {"t": "B"}, {"t": "C"}, owners={"t": "newest"}, linear_at=T1, confluence_at=T0)
    assert (m.merged, m.decisions) == ({"t": "B"}, {"t": "newest:linear"})
    m = three_way({"t": "A"}, {"t": "B"}, {"t": "C"}, owners={"t": "newest"}, linear_at=T0, confluence_at=T1)
    assert (m.merged, m.decisions) == ({"t": "C"}, {"t": "newest:confluence"})


def test_newest_owner_with_equal_times_stays_a_conflict():
    m = three_way({"t": "A"}, {"t": "B"}, {"t": "C"}, owners={"t": "newest"}, linear_at=T0, confluence_at=T0)
    assert m.conflicts == ["t"]


def test_newest_owner_needs_both_times():
    with pytest.raises(ValidationError, match="needs both linear_at and confluence_at"):
        three_way({"t": "A"}, {"t": "B"}, {"t": "C"}, owners={"t": "newest"}, linear_at=T0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"linear": []}, ValueError, "linear must be a dict"),
        ({"base": "x"}, ValueError, "base must be a dict"),
        ({"owners": ["title"]}, ValueError, "owners must be a dict"),
        ({"owners": {"title": "someone"}}, ValidationError, "owners['title'] must be one of"),
        ({"owners": {"a..b": "linear"}}, ValidationError, "is not a dotted field path"),
        ({"owners": {" title": "linear"}}, ValidationError, "is not a dotted field path"),
        ({"owners": {"": "linear"}}, ValidationError, "must not be empty"),
        ({"owners": {"title": 1}}, ValueError, "must be a string"),
        ({"linear_at": "2026-01-01"}, ValueError, "linear_at must be a datetime"),
        ({"confluence_at": dt.datetime(2026, 1, 1)}, ValidationError, "confluence_at must be an aware"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, error, message):
    arguments = {"base": {"t": 1}, "linear": {"t": 2}, "confluence": {"t": 3}, **kwargs}
    with pytest.raises(error) as excinfo:
        three_way(arguments.pop("base"), arguments.pop("linear"), arguments.pop("confluence"), **arguments)
    assert message in str(excinfo.value)


def _nested(depth: int) -> dict:
    root: dict = {}
    node = root
    for _ in range(depth - 1):
        node["a"] = {}
        node = node["a"]
    return root


def test_json_at_the_depth_limit_merges():
    deep = _nested(MAX_MERGE_DEPTH)
    m = three_way(deep, deep, {"x": 1})
    assert m.merged == {"x": 1}


@pytest.mark.parametrize("depth", [MAX_MERGE_DEPTH + 1, 50_000])
def test_json_deeper_than_the_limit_is_a_validation_error_not_a_recursion_error(depth):
    with pytest.raises(ValidationError, match=f"confluence is nested deeper than {MAX_MERGE_DEPTH}"):
        three_way({}, {}, _nested(depth))


def test_deep_lists_count_towards_the_limit():
    value: list = []
    for _ in range(MAX_MERGE_DEPTH + 5):
        value = [value]
    with pytest.raises(ValidationError, match="base is nested deeper"):
        three_way({"v": value}, {}, {})


def test_pick_sides_sets_each_conflicting_path_and_keeps_the_automatic_merge():
    base = {"title": "A", "n": 1, "state": {"name": "T", "id": 1}}
    linear = {"title": "B", "n": 1, "state": {"name": "L", "id": 1}}
    confluence = {"title": "C", "n": 2, "state": {"name": "C"}}
    m = three_way(base, linear, confluence)
    assert m.conflicts == ["state.name", "title"]
    result = pick_sides(m, linear, confluence, {"title": "confluence", "state.name": "linear"})
    assert result == {"title": "C", "n": 2, "state": {"name": "L"}}


def test_pick_sides_refuses_missing_and_unknown_paths():
    m = three_way({"a": 1, "b": 1}, {"a": 2, "b": 2}, {"a": 3, "b": 3})
    with pytest.raises(ValidationError, match="missing: b"):
        pick_sides(m, {}, {}, {"a": "linear"})
    with pytest.raises(ValidationError, match="not in conflict: c"):
        pick_sides(m, {}, {}, {"a": "linear", "b": "linear", "c": "linear"})
    with pytest.raises(ValidationError, match=r"picks\['a'\] must be 'linear' or 'confluence'"):
        pick_sides(m, {}, {}, {"a": "base", "b": "linear"})


# --- Laws (hypothesis) -----------------------------------------------------------------------------

_KEYS = st.sampled_from(["title", "state", "labels", "n", "due"])
_SCALARS = st.sampled_from([0, 1, 2.5, "x", "y", True, False, None])
_LISTS = st.lists(st.sampled_from(["p", "q", "r", 1, 2]), max_size=4)
_VALUES = st.recursive(
    st.one_of(_SCALARS, _LISTS),
    lambda children: st.dictionaries(_KEYS, children, max_size=3),
    max_leaves=8,
)
_ITEMS = st.dictionaries(_KEYS, _VALUES, max_size=5)
_OWNERS = st.dictionaries(
    st.sampled_from(["title", "state", "state.title", "labels", "n"]),
    st.sampled_from(["linear", "confluence", "newest"]),
    max_size=2,
)
_TIMES = st.sampled_from([T0, T1])
_SWAP = {"linear": "confluence", "confluence": "linear"}


# JSON values as decoded (no NaN: clean_json refuses it; no tuples: JSON arrays decode as lists).
_NUMBERS_AND_BOOLS = st.one_of(
    st.sampled_from([0, 1, 0.0, 1.0, -0.0, True, False, None, "1", ""]),
    st.integers(),
    st.floats(allow_nan=False),
)
_EQ_VALUES = st.recursive(
    _NUMBERS_AND_BOOLS,
    lambda children: st.one_of(
        st.dictionaries(st.sampled_from(["a", "b"]), children, max_size=2),
        st.lists(children, max_size=3),
    ),
    max_leaves=6,
)


@settings(max_examples=500, deadline=None)
@given(a=_EQ_VALUES, b=_EQ_VALUES)
def test_law_the_merges_equality_is_json_equal(a, b):
    """sync.merge._eq answers what json_equal answers, only faster (True is not 1; 1 is 1.0)."""
    assert _eq(a, b) == json_equal(a, b)
    assert _eq(b, a) == json_equal(b, a)
    assert _eq(a, copy.deepcopy(a)) is True
    loosened = _loosen(a)  # equal to a for Python's ==, not always for JSON
    assert _eq(a, loosened) == json_equal(a, loosened)
    assert _eq(loosened, a) == json_equal(loosened, a)


def _loosen(value):
    """``value`` with every boolean as the number Python finds equal to it, every int as a float."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and abs(value) < 2**53:
        return float(value)
    if isinstance(value, dict):
        return {key: _loosen(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_loosen(child) for child in value]
    return value


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ({"a": True}, {"a": 1}, False),
        ({"a": [[False]]}, {"a": [[0]]}, False),
        ({"a": 1}, {"a": 1.0}, True),
        ([1, "x", None], [1.0, "x", None], True),
        ({"a": {"b": True}}, {"a": {"b": True}}, True),
    ],
)
def test_the_merges_equality_tells_booleans_from_numbers_inside_equal_containers(a, b, equal):
    assert _eq(a, b) is equal
    assert _eq(b, a) is equal


def test_the_merges_equality_finds_one_nan_object_unequal_to_itself_inside_a_container():
    nan = float("nan")
    assert _eq({"a": nan}, {"a": nan}) is False
    assert _eq([nan], [nan]) is False


def _swap_decision(decision: str) -> str:
    prefix, _, side = decision.rpartition(":")
    side = _SWAP.get(side, side)
    return f"{prefix}:{side}" if prefix else side


@settings(max_examples=300, deadline=None)
@given(base=st.one_of(st.none(), _ITEMS), side=_ITEMS)
def test_law_merging_identical_sides_is_that_side(base, side):
    m = three_way(base, side, side)
    assert json_equal(m.merged, side)
    assert m.conflicts == []
    assert m.to_linear == {} and m.to_confluence == {}


@settings(max_examples=300, deadline=None)
@given(base=_ITEMS, other=_ITEMS, owners=_OWNERS, linear_at=_TIMES, confluence_at=_TIMES)
def test_law_one_side_equal_to_the_base_yields_the_other_side(base, other, owners, linear_at, confluence_at):
    times = {"linear_at": linear_at, "confluence_at": confluence_at}
    m = three_way(base, base, other, owners=owners, **times)
    assert json_equal(m.merged, other) and m.conflicts == []
    assert json_equal(apply_updates(base, m.to_linear), other)
    m = three_way(base, other, base, owners=owners, **times)
    assert json_equal(m.merged, other) and m.conflicts == []
    assert json_equal(apply_updates(base, m.to_confluence), other)


@settings(max_examples=400, deadline=None)
@given(
    base=st.one_of(st.none(), _ITEMS),
    linear=_ITEMS,
    confluence=_ITEMS,
    owners=_OWNERS,
    linear_at=_TIMES,
    confluence_at=_TIMES,
)
def test_law_swapping_sides_swaps_the_decisions(base, linear, confluence, owners, linear_at, confluence_at):
    m = three_way(base, linear, confluence, owners=owners, linear_at=linear_at, confluence_at=confluence_at)
    swapped_owners = {path: _SWAP.get(owner, owner) for path, owner in owners.items()}
    s = three_way(
        base, confluence, linear, owners=swapped_owners, linear_at=confluence_at, confluence_at=linear_at
    )
    assert s.conflicts == m.conflicts
    assert s.decisions == {path: _swap_decision(d) for path, d in m.decisions.items()}
    assert s.to_linear.keys() == m.to_confluence.keys()


@settings(max_examples=400, deadline=None)
@given(
    base=st.one_of(st.none(), _ITEMS),
    linear=_ITEMS,
    confluence=_ITEMS,
    owners=_OWNERS,
    linear_at=_TIMES,
    confluence_at=_TIMES,
)
def test_law_without_conflicts_the_updates_bring_both_sides_to_merged(
    base, linear, confluence, owners, linear_at, confluence_at
):
    m = three_way(base, linear, confluence, owners=owners, linear_at=linear_at, confluence_at=confluence_at)
    top_level_conflicts = {path.split(".")[0] for path in m.conflicts}
    assert not top_level_conflicts & {key for key, value in m.to_linear.items() if value is REMOVED}
    for path in m.conflicts:
        if "." not in path:
            assert path not in m.to_linear and path not in m.to_confluence
    if not m.conflicts:
        assert json_equal(apply_updates(linear, m.to_linear), m.merged)
        assert json_equal(apply_updates(confluence, m.to_confluence), m.merged)
        # and an update is only sent where that side differs
        for key, value in m.to_linear.items():
            assert value is REMOVED or key not in linear or not json_equal(linear[key], value)


@settings(max_examples=200, deadline=None)
@given(base=_ITEMS, linear=_ITEMS, confluence=_ITEMS)
def test_law_every_conflict_resolved_by_picks_gives_each_side_when_picked_everywhere(
    base, linear, confluence
):
    m = three_way(base, linear, confluence)
    all_linear = pick_sides(m, linear, confluence, dict.fromkeys(m.conflicts, "linear"))
    # picking Linear everywhere: each conflicting path has Linear's value
    for path in m.conflicts:
        node_l, node_r = linear, all_linear
        for key in path.split("."):
            node_l = node_l.get(key) if isinstance(node_l, dict) else None
            node_r = node_r.get(key) if isinstance(node_r, dict) else None
        assert json_equal(node_l, node_r)
