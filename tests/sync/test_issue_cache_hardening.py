"""LinearIssueCache hardening (issue 18): Django's exceptions only, per-organization keys, async twin."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from asgiref.sync import async_to_sync
from django.db import DatabaseError, OperationalError, connection

from sync.models import LinearIssueCache


def terminate_own_backend() -> None:
    """Kill this connection's backend from another session and wait until it is gone."""
    pid = connection.connection.info.backend_pid
    params = connection.settings_dict
    with psycopg.connect(
        dbname=params["NAME"],
        user=params["USER"] or None,
        password=params["PASSWORD"] or None,
        host=params["HOST"] or None,
        port=params["PORT"] or None,
        autocommit=True,
    ) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", [pid]).fetchone() == (True,)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_connection_lost_during_the_copy_raises_djangos_operational_error():
    LinearIssueCache.objects.upsert_many("org-1", [{"id": "before"}])

    def kill_after_staging_table(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith("CREATE TEMPORARY TABLE"):
            terminate_own_backend()  # the next thing upsert_many does is the COPY
        return result

    try:
        with pytest.raises(DatabaseError) as caught, connection.execute_wrapper(kill_after_staging_table):
            LinearIssueCache.objects.upsert_many("org-1", [{"id": "a"}, {"id": "b"}])
        # Django's class (not psycopg's, which is no subclass of it): agent code's except clauses see it.
        assert isinstance(caught.value, OperationalError | DatabaseError)
        assert type(caught.value).__module__ == "django.db.utils"
        assert not isinstance(caught.value, psycopg.Error)
    finally:
        connection.close()
    assert sorted(LinearIssueCache.objects.values_list("linear_issue_id", flat=True)) == ["before"]


@pytest.mark.django_db(transaction=True)
def test_aupsert_many_is_the_async_twin():
    count = async_to_sync(LinearIssueCache.objects.aupsert_many)(
        "org-1", [{"id": "i1", "v": 1}, {"id": "i2"}], batch_size=1
    )

    assert count == 2
    assert dict(LinearIssueCache.objects.values_list("linear_issue_id", "issue_data")) == {
        "i1": {"id": "i1", "v": 1},
        "i2": {"id": "i2"},
    }
    # The queryset methods are lazy: Django's own async terminals run them (acount, adelete...).
    stale = LinearIssueCache.objects.older_than(dt.timedelta(0))
    assert async_to_sync(stale.acount)() == 2
