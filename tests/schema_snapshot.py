"""Print, as JSON, the schema that our migrations build on the database of DATABASE_URL.

Run as ``python -m tests.schema_snapshot`` in a fresh process per engine (the schema alignment test
does so): it migrates, then describes every table of our apps through Django's introspection —
columns and nullability, unique column sets, foreign keys, indexed column sets and check constraint
names (those our models declare) — in an engine-neutral form that two engines can be compared in.
"""

from __future__ import annotations

import json
import os
import sys

OUR_APPS = ("accounts", "planning", "sync", "legacy")


def snapshot() -> dict[str, dict]:
    from django.apps import apps
    from django.db import connection
    from django.db.models import CheckConstraint

    tables: set[str] = set()
    declared_checks: set[str] = set()
    for app in OUR_APPS:
        for model in apps.get_app_config(app).get_models(include_auto_created=True):
            if model._meta.managed and not model._meta.proxy:
                tables.add(model._meta.db_table)
                declared_checks.update(
                    c.name for c in model._meta.constraints if isinstance(c, CheckConstraint)
                )

    result: dict[str, dict] = {}
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
        for table in sorted(tables):
            if table not in existing:
                result[table] = {"missing": True}
                continue
            columns = {
                col.name: {"null": bool(col.null_ok)}
                for col in connection.introspection.get_table_description(cursor, table)
            }
            constraints = connection.introspection.get_constraints(cursor, table)
            unique, indexes, checks, foreign_keys, primary_key = set(), set(), set(), {}, []
            for name, info in constraints.items():
                cols = tuple(info["columns"] or ())
                if info.get("foreign_key"):
                    for col in cols:
                        foreign_keys[col] = list(info["foreign_key"])
                if info.get("primary_key"):
                    primary_key = list(cols)
                elif info.get("unique") and cols:
                    unique.add(",".join(cols))
                elif info.get("index") and cols:
                    indexes.add(",".join(cols))
                if info.get("check") and name in declared_checks:
                    checks.add(name)
            # PostgreSQL adds a pattern-ops ("_like") index beside a unique varchar; the unique
            # index already covers those columns, so only indexes on other column sets count.
            indexes -= unique
            indexes.discard(",".join(primary_key))  # the same "_like" index beside a text pk
            result[table] = {
                "columns": columns,
                "primary_key": primary_key,
                "unique": sorted(unique),
                "indexes": sorted(indexes),
                "foreign_keys": foreign_keys,
                "checks": sorted(checks),
            }
    return result


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    json.dump(snapshot(), sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
