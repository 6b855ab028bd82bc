"""Statements made to fail at the database, for tests of what a failed write leaves behind.

Through Django's documented hook, ``connection.execute_wrapper``: every statement the project runs
passes through it (``config.db.execute`` takes Django's cursor while a wrapper is installed), so a
test sees the failure where production would, after the values were built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import DEFAULT_DB_ALIAS, connections


def fail_statements(
    monkeypatch: pytest.MonkeyPatch, failure_for: Callable[[str], BaseException | None]
) -> None:
    """Until the test ends, raise ``failure_for(sql)`` instead of running a statement, when not ``None``."""

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        failure = failure_for(sql)
        if failure is not None:
            raise failure
        return execute(sql, params, many, context)

    wrapped = connections[DEFAULT_DB_ALIAS]  # this thread's connection object (not the proxy)
    monkeypatch.setattr(wrapped, "execute_wrappers", [*wrapped.execute_wrappers, wrapper])
