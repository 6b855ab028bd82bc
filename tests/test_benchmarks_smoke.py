"""The hot-path benchmark runs on the test engine and yields a ratio for every operation.

A smoke test of the measuring code, not of speed: tiny row counts and iteration counts, and no
assertion on any timing. ``transaction=True`` because the benchmark's raw connection must see the rows
the ORM side committed (and must not wait on its locks).
"""

from __future__ import annotations

import pytest
from django.db import connection

from benchmarks import hot_paths
from benchmarks.common import RESULT_KEYS


@pytest.mark.django_db(transaction=True)
def test_hot_paths_returns_a_ratio_for_every_operation() -> None:
    results = hot_paths.run(scale="tiny", iterations=4, warmup=1, prefix="smoke")

    engine = "postgresql" if connection.vendor == "postgresql" else "sqlite"
    ratios = [row for row in results if "group" not in row]
    assert [row["name"] for row in ratios] == list(hot_paths.OPERATIONS)
    # On PostgreSQL, each operation is also timed under each settings variant.
    variants = hot_paths.SETTINGS_VARIANTS if engine == "postgresql" else {}
    assert [row["name"] for row in results if row.get("group") == "settings"] == [
        f"{name} — {label}" for name in hot_paths.OPERATIONS for label in variants
    ]
    # Each async twin is timed against its sync form.
    assert [row["name"] for row in results if row.get("group") == "async"] == [
        f"{name} — async twin ({twin})" for name, twin in hot_paths.ASYNC_TWINS.items()
    ]
    for row in results:
        row.pop("group", None)
        assert tuple(row) == RESULT_KEYS
        assert row["engine"] == engine
        assert row["metric"] == "median_us", row["note"]  # an "error" row carries the exception here
        assert row["unit"] == "µs/op"
        assert row["value"] > 0 and row["baseline"] > 0
        assert row["ratio"] == pytest.approx(row["value"] / row["baseline"], rel=0.01)
    for row in ratios:
        assert "API statements" in row["note"]
