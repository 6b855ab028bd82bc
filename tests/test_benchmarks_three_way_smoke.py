"""The three-way benchmark runs on the test engine and yields a ratio for each figure (no timing asserted)."""

from __future__ import annotations

import pytest
from django.db import connection

from benchmarks import three_way
from benchmarks.common import RESULT_KEYS


@pytest.mark.django_db(transaction=True)
def test_three_way_benchmark_returns_a_ratio_for_each_figure() -> None:
    results = three_way.run(iterations=1, items=40, prefix="smoke")

    engine = "postgresql" if connection.vendor == "postgresql" else "sqlite"
    assert [row["name"] for row in results] == [
        "ItemSnapshot.record_synced (new items)",
        "ItemSnapshot.record_synced (existing items)",
        "reconcile_many",
    ]
    for row in results:
        assert tuple(row) == RESULT_KEYS
        assert (row["engine"], row["metric"], row["unit"]) == (engine, "items_per_s", "items/s"), row["note"]
        assert row["value"] > 0 and row["baseline"] > 0
        assert row["ratio"] == pytest.approx(row["baseline"] / row["value"], rel=0.01)
    # 40 items: 10 in sync, 20 merged, 10 in conflict, as the module describes.
    assert "(10 in sync, 20 merged, 10 conflicts)" in results[2]["note"]
