"""Hypothesis profiles and strategies for bad input: the shapes agent code and operators get wrong.

Profiles (not loaded globally, so other suites keep their own settings): ``reliability`` runs in
``make test`` (few examples, derandomized so that CI is repeatable, no deadline because every example
hits the database); ``reliability-deep`` is for a longer local hunt:
``RELIABILITY_HYPOTHESIS_PROFILE=reliability-deep pytest tests/reliability tests/security``.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

_SUPPRESSED = [
    HealthCheck.function_scoped_fixture,  # the db fixture is meant to span the examples
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
]
settings.register_profile(
    "reliability",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=_SUPPRESSED,
    database=None,
)
settings.register_profile(
    "reliability-deep", max_examples=500, deadline=None, suppress_health_check=_SUPPRESSED
)
#: Decorator for every property test of these suites.
FUZZ = settings(settings.get_profile(os.environ.get("RELIABILITY_HYPOTHESIS_PROFILE", "reliability")))

# --- text ------------------------------------------------------------------------------------------

#: A string holding a NUL byte somewhere (PostgreSQL refuses those in text and jsonb).
NUL_TEXT = st.builds(lambda a, b: f"{a}\x00{b}", st.text(max_size=5), st.text(max_size=5))
#: Over-long strings, one character repeated: past 255 (identifiers), 1000, and 70k (a page of junk).
HUGE_TEXT = st.builds(
    lambda char, n: char * n,
    st.sampled_from(["a", "é", "😀", " ", "\x00"]),
    st.sampled_from([256, 1001, 70_000]),
)
TEXT = st.one_of(st.text(max_size=40), NUL_TEXT, HUGE_TEXT, st.sampled_from(["", " ", "\t\n", "x" * 255]))

# --- datetimes -------------------------------------------------------------------------------------

_OFFSETS = [dt.UTC, dt.timezone(dt.timedelta(hours=14)), dt.timezone(dt.timedelta(hours=-12))]
NAIVE_DATETIME = st.datetimes()
#: Aware datetimes, including the two whose UTC value leaves the calendar (years 1-9999) by a few hours.
AWARE_DATETIME = st.one_of(
    st.datetimes(timezones=st.sampled_from(_OFFSETS)),
    st.sampled_from(
        [
            dt.datetime(1, 1, 1, tzinfo=_OFFSETS[1]),
            dt.datetime(9999, 12, 31, 23, 59, tzinfo=_OFFSETS[2]),
        ]
    ),
)
DATETIMES = st.one_of(NAIVE_DATETIME, AWARE_DATETIME)

# --- wrong types -----------------------------------------------------------------------------------

WRONG_TYPES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.just(object()),
    st.dates(),
    DATETIMES,
)
#: Any value an argument could be given.
ANYTHING = st.one_of(TEXT, WRONG_TYPES)
#: Mostly plausible identifiers, often bad ones.
IDENTIFIER = st.one_of(st.sampled_from(["org-1", "page-1", "team-1", "x"]), ANYTHING)
#: Counters: negative, huge, bool, float, str.
COUNTER = st.one_of(st.integers(min_value=-(2**40), max_value=2**40), st.just(2**31), ANYTHING)

# --- JSON ------------------------------------------------------------------------------------------

JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
JSON = st.recursive(
    JSON_SCALAR,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
#: Depths of nested JSON; the test builds the value (a hypothesis repr of it would itself recurse).
DEPTHS = st.sampled_from([2, 100, 500, 800, 990, 1_200, 5_000])


def nested(depth: int, kind: str = "list") -> Any:
    """``depth`` levels of nested lists or objects around an empty one."""
    value: Any = [] if kind == "list" else {}
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


def change(item_id: Any, source: Any = "linear") -> st.SearchStrategy[Any]:
    """A change object, right or wrong in each key, or not an object at all."""
    return st.one_of(
        st.fixed_dictionaries(
            {
                "itemId": st.one_of(st.just(item_id), IDENTIFIER),
                "source": st.one_of(st.just(source), ANYTHING),
                "itemData": st.one_of(st.dictionaries(TEXT, JSON, max_size=4), JSON),
            },
            optional={"itemType": st.one_of(st.just("story"), ANYTHING), "id": ANYTHING, "timestamp": JSON},
        ),
        JSON,
    )
