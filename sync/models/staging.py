"""PostgreSQL bulk upserts of ``LinearIssueCache`` and ``ItemSnapshot``: ``COPY`` to a staging table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

_Item = TypeVar("_Item")


def upsert_through_copy(
    connection: Any,
    staging: str,
    columns: Sequence[tuple[str, str]],
    items: Sequence[_Item],
    row: Callable[[_Item], tuple[Any, ...]],
    upsert: Callable[[str], str],
    params: Sequence[Any],
    batch_size: int,
) -> None:
    """Per batch of ``items``: binary ``COPY`` of ``row(item)`` into ``staging``, ``upsert``, ``TRUNCATE``.

    ``staging`` is the session's temporary table (created when absent, dropped at commit) with
    ``columns`` (quoted name, PostgreSQL type), all ``NOT NULL``; ``upsert(quoted staging name)`` is the
    ``INSERT … SELECT … FROM staging … ON CONFLICT`` run with ``params`` after each batch's ``COPY``.
    Runs inside the caller's transaction; the staging table is emptied after every batch, so a second
    call in the same transaction starts from an empty table. ``wrap_database_errors``: the ``COPY``
    goes through psycopg's own cursor, whose errors would otherwise escape as psycopg's classes;
    callers get Django's (``OperationalError``, ``DataError``...) as from any query.
    """
    table = connection.ops.quote_name(staging)
    names = ", ".join(name for name, _type in columns)
    definition = ", ".join(f"{name} {kind} NOT NULL" for name, kind in columns)
    insert = upsert(table)
    with connection.wrap_database_errors, connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({definition}) ON COMMIT DROP")
        for start in range(0, len(items), batch_size):
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types([kind for _name, kind in columns])
                for item in items[start : start + batch_size]:
                    copy.write_row(row(item))
            cursor.execute(insert, params)
            cursor.execute(f"TRUNCATE {table}")
