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

    assert [row["name"] for row in results] == list(hot_paths.OPERATIONS)
    engine = "postgresql" if connection.vendor == "postgresql" else "sqlite"
    for row in results:
        assert tuple(row) == RESULT_KEYS
        assert row["engine"] == engine
        assert row["metric"] == "median_us", row["note"]  # an "error" row carries the exception here
        assert row["unit"] == "µs/op"
        assert row["value"] > 0 and row["baseline"] > 0
        assert row["ratio"] == pytest.approx(row["value"] / row["baseline"], rel=0.01)
        assert "API statements" in row["note"]
