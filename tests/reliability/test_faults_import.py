"""The legacy import failing part-way leaves the target exactly as it was; the re-run imports everything."""

from __future__ import annotations

from typing import Any

import pytest

from legacy import services
from legacy.models import ImportedRow
from legacy.services import import_legacy
from tests.legacy.test_import import TARGET_MODELS

pytestmark = pytest.mark.django_db


class Boom(RuntimeError):
    """The injected failure."""


def counts() -> dict[str, int]:
    return {model.__name__: model._base_manager.count() for model in TARGET_MODELS}


def test_failure_at_the_first_middle_or_last_insert_leaves_nothing(deployment, monkeypatch):
    original = services._Writer.insert
    calls = {"n": 0, "fail_at": 0}

    def insert(self: Any, model: Any, rows: list[dict[str, Any]]) -> list[Any]:
        if rows:
            calls["n"] += 1
            if calls["n"] == calls["fail_at"]:
                raise Boom(f"injected failure inserting {model.__name__}")
        return original(self, model, rows)

    monkeypatch.setattr(services._Writer, "insert", insert)
    empty = counts()
    dry = import_legacy(source_url=deployment["url"], sqlite_file=deployment["sqlite_file"], dry_run=True)
    inserts = calls["n"]
    assert inserts >= 10, "the deployment should need many inserts"
    assert counts() == empty

    for fail_at in sorted({1, inserts // 2, inserts}):
        calls.update(n=0, fail_at=fail_at)
        with pytest.raises(Boom):
            import_legacy(source_url=deployment["url"], sqlite_file=deployment["sqlite_file"])
        assert counts() == empty, f"insert {fail_at} of {inserts} failed and left rows behind"
        assert not ImportedRow.objects.exists()

    calls.update(n=0, fail_at=0)
    report = import_legacy(source_url=deployment["url"], sqlite_file=deployment["sqlite_file"])
    assert report.committed and calls["n"] == inserts
    # The failed attempts left no trace the re-run could trip over: it imports exactly what was planned.
    assert dry.total("imported") > 0 and report.tables == dry.tables
    assert report.organizations_created == dry.organizations_created
    after = counts()
    assert all(after[name] > 0 for name in ("Organization", "LinearToken", "Conflict", "ImportedRow"))
