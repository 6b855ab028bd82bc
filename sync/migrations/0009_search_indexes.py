"""PostgreSQL: pg_trgm GIN indexes on the search documents of conflicts, sync history and the issue cache.

The expressions are those ``sync.search.SearchDocument`` renders for ``CONFLICT_DOCUMENT``,
``HISTORY_DOCUMENT`` and ``ISSUE_CACHE_DOCUMENT`` (``tests/sync/test_search.py`` checks on PostgreSQL
that a search uses them). SQLite has no trigram index: its searches scan, and this migration does
nothing there. Not model ``Meta.indexes``: an expression with an operator class and the GIN method is
PostgreSQL only.
"""

from django.db import migrations

INDEXES = {
    "sync_conflict_search_trgm": (
        "sync_conflict",
        "lower(id || ' ' || item_id || ' ' || COALESCE((linear_change #>> '{itemData,identifier}'), '')"
        " || ' ' || COALESCE((linear_change #>> '{itemData,title}'), '')"
        " || ' ' || COALESCE((confluence_change #>> '{itemData,title}'), ''))",
    ),
    "sync_history_search_trgm": (
        "sync_synchistory",
        "lower(confluence_page_id || ' ' || linear_team_id)",
    ),
    "sync_issuecache_search_trgm": (
        "sync_linearissuecache",
        "lower(linear_issue_id || ' ' || COALESCE((issue_data #>> '{identifier}'), '')"
        " || ' ' || COALESCE((issue_data #>> '{title}'), ''))",
    ),
}


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, (table, expression) in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (({expression}) gin_trgm_ops)"
        )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
    # The extension stays: other databases objects may use it, and it costs nothing unused.


class Migration(migrations.Migration):
    dependencies = [("sync", "0008_directory_of_names")]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
