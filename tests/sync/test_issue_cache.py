"""LinearIssueCache: upsert_many (one statement per batch), stale queries and purge_issue_cache."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from accounts.models import Organization
from sync.management.commands.purge_issue_cache import parse_duration
from sync.models import LinearIssueCache
from tests.factories import make_linear_issue_cache, make_organization

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def cached() -> dict[str, dict]:
    return dict(LinearIssueCache.objects.values_list("linear_issue_id", "issue_data"))


def inserts(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if q["sql"].upper().startswith("INSERT")]


def test_upsert_many_inserts_and_returns_the_count(clock):
    issues = [{"id": "i1", "title": "One"}, {"id": "i2", "title": "Zwei ✓", "labels": [{"n": "a"}]}]

    assert LinearIssueCache.objects.upsert_many("org-1", issues) == 2

    assert cached() == {"i1": issues[0], "i2": issues[1]}
    org = Organization.objects.get(linear_id="org-1")
    assert set(LinearIssueCache.objects.values_list("organization", "last_updated")) == {(org.pk, T0)}


def test_upsert_many_updates_existing_rows_and_last_updated(clock):
    LinearIssueCache.objects.upsert_many("org-1", [{"id": "i1", "v": 1}, {"id": "i2", "v": 1}])
    clock.advance(hours=2)

    assert LinearIssueCache.objects.upsert_many("org-1", [{"id": "i1", "v": 2}]) == 1

    assert cached() == {"i1": {"id": "i1", "v": 2}, "i2": {"id": "i2", "v": 1}}
    assert dict(LinearIssueCache.objects.values_list("linear_issue_id", "last_updated")) == {
        "i1": T0 + dt.timedelta(hours=2),
        "i2": T0,
    }
    assert LinearIssueCache.objects.count() == 2


def test_another_organization_cannot_move_or_overwrite_an_organizations_entry(clock):
    LinearIssueCache.objects.upsert_many("org-a", [{"id": "i1", "owner": "a"}])
    clock.advance(hours=1)

    assert LinearIssueCache.objects.upsert_many("org-b", [{"id": "i1", "owner": "b"}]) == 1

    rows = LinearIssueCache.objects.order_by("organization__linear_id").values_list(
        "organization__linear_id", "linear_issue_id", "issue_data", "last_updated"
    )
    assert list(rows) == [
        ("org-a", "i1", {"id": "i1", "owner": "a"}, T0),
        ("org-b", "i1", {"id": "i1", "owner": "b"}, T0 + dt.timedelta(hours=1)),
    ]


def test_upsert_many_keeps_the_last_of_duplicate_ids():
    count = LinearIssueCache.objects.upsert_many(
        "org-1", [{"id": "i1", "v": 1}, {"id": "i2"}, {"id": "i1", "v": 3}]
    )
    assert count == 2
    assert cached() == {"i1": {"id": "i1", "v": 3}, "i2": {"id": "i2"}}


def test_upsert_many_accepts_a_generator_and_an_empty_iterable():
    assert LinearIssueCache.objects.upsert_many("org-1", ({"id": f"i{n}"} for n in range(3))) == 3
    assert LinearIssueCache.objects.upsert_many("org-1", []) == 0
    assert LinearIssueCache.objects.count() == 3


def test_an_empty_upsert_creates_no_organization_and_a_failed_one_leaves_none():
    assert LinearIssueCache.objects.upsert_many("org-empty", []) == 0
    assert not Organization.objects.filter(linear_id="org-empty").exists()
    with pytest.raises(ValidationError):
        LinearIssueCache.objects.upsert_many("", [])  # the organization id is still checked

    def fail_insert(execute, sql, params, many, context):
        if sql.upper().startswith("INSERT") and "sync_linearissuecache" in sql:
            raise IntegrityError("injected failure of the upsert")
        return execute(sql, params, many, context)

    with pytest.raises(IntegrityError), connection.execute_wrapper(fail_insert):
        LinearIssueCache.objects.upsert_many("org-failed", [{"id": "i1"}])
    assert not Organization.objects.filter(linear_id="org-failed").exists()


def statements_around_batches(batches: int) -> int:
    """Queries of upsert_many for ``batches`` batches of a known organization, inside a test's transaction.

    Both: the organization lookup, the savepoint and its release. SQLite: one INSERT ... ON CONFLICT
    per batch. PostgreSQL: the staging table's CREATE, then per batch INSERT ... SELECT ... ON
    CONFLICT and TRUNCATE (the COPY goes past Django's cursor wrapper, so it is not counted).
    """
    if connection.vendor == "postgresql":
        return 3 + 1 + 2 * batches
    return 3 + batches


def test_upsert_many_is_one_upsert_statement_per_batch(django_assert_num_queries):
    make_organization(linear_id="org-1")
    issues = [{"id": f"issue-{n}", "n": n} for n in range(250)]

    with django_assert_num_queries(statements_around_batches(3)) as captured:
        assert LinearIssueCache.objects.upsert_many("org-1", issues, batch_size=100) == 250

    statements = inserts(captured)
    assert len(statements) == 3
    assert all("ON CONFLICT" in sql.upper() for sql in statements)
    assert cached() == {issue["id"]: issue for issue in issues}


def test_upsert_many_default_batch_is_capped_to_one_statement_per_database_limit(django_assert_num_queries):
    make_organization(linear_id="org-1")
    issues = [{"id": f"issue-{n}"} for n in range(2500)]
    # PostgreSQL takes the default 1000 rows per statement; SQLite 999 parameters = 249 rows of 4.
    expected_batches = 3 if connection.vendor == "postgresql" else 11

    with django_assert_num_queries(statements_around_batches(expected_batches)) as captured:
        LinearIssueCache.objects.upsert_many("org-1", issues)

    assert len(inserts(captured)) == expected_batches
    assert LinearIssueCache.objects.count() == 2500


def test_a_failing_later_batch_leaves_no_batch_written():
    LinearIssueCache.objects.upsert_many("org-1", [{"id": "issue-0", "v": "old"}])
    seen = []

    def fail_second_insert(execute, sql, params, many, context):
        if sql.upper().startswith("INSERT"):
            seen.append(sql)
            if len(seen) == 2:
                raise IntegrityError("injected failure of the second batch")
        return execute(sql, params, many, context)

    issues = [{"id": f"issue-{n}", "v": "new"} for n in range(5)]
    with pytest.raises(IntegrityError), connection.execute_wrapper(fail_second_insert):
        LinearIssueCache.objects.upsert_many("org-1", issues, batch_size=2)

    assert len(seen) == 2
    assert cached() == {"issue-0": {"id": "issue-0", "v": "old"}}


@pytest.mark.postgres
def test_upsert_many_on_postgresql_copies_to_a_staging_table(django_assert_num_queries):
    # Django's bulk insert cost ~60 us of Python per issue; binary COPY a few (benchmarks/bulk.py).
    make_organization(linear_id="org-1")
    tricky = {
        "id": "issue-1",
        "title": 'say "hi" \\ back\\slash \\u0000 is no NUL',
        "unicode": "Zwei ✓ \U0001f680",
        "nested": {"list": [1, 2.5, None, True, {"deep": ["x"]}], "empty": {}},
    }

    with django_assert_num_queries(statements_around_batches(1)) as captured:
        LinearIssueCache.objects.upsert_many("org-1", [tricky, {"id": "issue-0"}])

    (statement,) = inserts(captured)
    assert "SYNC_ISSUE_UPLOAD" in statement.upper()
    assert "ORDER BY" in statement.upper()  # rows locked in id order, as on the SQLite path
    assert cached() == {"issue-1": tricky, "issue-0": {"id": "issue-0"}}


@pytest.mark.postgres
def test_two_calls_in_one_transaction_reuse_an_empty_staging_table():
    with transaction.atomic():
        LinearIssueCache.objects.upsert_many("org-1", [{"id": "a", "v": 1}, {"id": "b", "v": 1}])
        LinearIssueCache.objects.upsert_many("org-2", [{"id": "c", "v": 2}])
    # The second call wrote only its own issue: the first call's rows did not linger in the table.
    assert dict(LinearIssueCache.objects.values_list("linear_issue_id", "organization__linear_id")) == {
        "a": "org-1",
        "b": "org-1",
        "c": "org-2",
    }


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_staging_table_is_dropped_at_commit():
    LinearIssueCache.objects.upsert_many("org-1", [{"id": "a"}])
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('pg_temp.sync_issue_upload')")
        assert cursor.fetchone() == (None,)
    assert LinearIssueCache.objects.count() == 1


@pytest.mark.parametrize(
    ("issues", "error", "message"),
    [
        ([{"id": "ok"}, {"title": "no id"}], ValidationError, "issues[1] has no 'id' key."),
        ([{"id": ""}], ValidationError, "issues[0]['id'] must not be empty."),
        ([{"id": 7}], ValueError, "issues[0]['id'] must be a string, not int."),
        ([{"id": "ok"}, "i2"], ValueError, "issues[1] must be a dict, not str."),
        ([{"id": "a", "t": "x\x00"}], ValidationError, "issues[0] must not contain NUL characters."),
        ([{"id": "a", "k\x00": 1}], ValidationError, "issues[0] must not contain NUL characters."),
        ([{"id": "a", "t": ["\\\x00"]}], ValidationError, "issues[0] must not contain NUL characters."),
        (
            [{"id": "a", "t": {"u": "\\\\\x00"}}],
            ValidationError,
            "issues[0] must not contain NUL characters.",
        ),
        ([{"id": "a", "when": T0}], ValidationError, "issues[0] is not valid JSON"),
        ([{"id": "a", "n": float("inf")}], ValidationError, "issues[0] is not valid JSON"),
        ({"id": "a"}, ValueError, "issues must be an iterable of dicts, not a single value."),
        (7, ValueError, "issues must be an iterable of dicts, not int."),
        (None, ValueError, "issues must be an iterable of dicts, not NoneType."),
    ],
)
def test_upsert_many_refuses_bad_input_before_writing(issues, error, message):
    with pytest.raises(error) as excinfo:
        LinearIssueCache.objects.upsert_many("org-1", issues)
    assert message in str(excinfo.value)
    assert LinearIssueCache.objects.count() == 0
    assert Organization.objects.count() == 0


def test_upsert_many_refuses_a_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        LinearIssueCache.objects.upsert_many("org-1", [{"id": "a"}], batch_size=0)


def test_database_refuses_a_second_row_for_an_issue_of_one_organization():
    first = make_linear_issue_cache(linear_issue_id="i1")
    make_linear_issue_cache(linear_issue_id="i1")  # another organization's entry for the same issue id
    with pytest.raises(IntegrityError), transaction.atomic():
        make_linear_issue_cache(linear_issue_id="i1", organization=first.organization)


def test_older_than_and_stale_select_by_last_updated(clock):
    make_linear_issue_cache(linear_issue_id="fresh", last_updated=T0 - dt.timedelta(hours=1))
    make_linear_issue_cache(linear_issue_id="day-old", last_updated=T0 - dt.timedelta(days=1, seconds=1))
    make_linear_issue_cache(linear_issue_id="week-old", last_updated=T0 - dt.timedelta(days=8))

    def ids(qs):
        return sorted(qs.values_list("linear_issue_id", flat=True))

    assert ids(LinearIssueCache.objects.older_than(dt.timedelta(days=1))) == ["day-old", "week-old"]
    assert ids(LinearIssueCache.objects.stale()) == ["week-old"]
    assert ids(LinearIssueCache.objects.stale(dt.timedelta(minutes=30))) == ["day-old", "fresh", "week-old"]
    with pytest.raises(ValueError, match="age must be a timedelta"):
        LinearIssueCache.objects.older_than(7)


# --- purge_issue_cache -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", dt.timedelta(minutes=30)),
        ("12h", dt.timedelta(hours=12)),
        ("7d", dt.timedelta(days=7)),
        ("2w", dt.timedelta(weeks=2)),
        ("45s", dt.timedelta(seconds=45)),
        (" 7D ", dt.timedelta(days=7)),
        ("0d", dt.timedelta(0)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


def test_purge_deletes_entries_older_than_the_age_and_reports_the_count(clock):
    make_linear_issue_cache(linear_issue_id="fresh", last_updated=T0 - dt.timedelta(days=6))
    make_linear_issue_cache(linear_issue_id="old", last_updated=T0 - dt.timedelta(days=7, seconds=1))
    make_linear_issue_cache(linear_issue_id="older", last_updated=T0 - dt.timedelta(days=30))
    out = StringIO()

    call_command("purge_issue_cache", "--older-than", "7d", stdout=out)

    assert out.getvalue() == (
        "Deleted 2 cached Linear issue(s) last updated before 2025-12-25T12:00:00+00:00.\n"
    )
    assert list(LinearIssueCache.objects.values_list("linear_issue_id", flat=True)) == ["fresh"]


def test_purge_with_nothing_to_delete_reports_zero(clock):
    make_linear_issue_cache(last_updated=T0)
    out = StringIO()
    call_command("purge_issue_cache", "--older-than=30m", stdout=out)
    assert out.getvalue().startswith("Deleted 0 cached Linear issue(s)")
    assert LinearIssueCache.objects.count() == 1


@pytest.mark.parametrize("value", ["7", "d", "7 days", "-1d", "1.5h", "7y", "", "99999999999d", "999999d"])
def test_purge_refuses_a_bad_duration(value):
    make_linear_issue_cache(last_updated=T0 - dt.timedelta(days=365))
    with pytest.raises(CommandError, match="--older-than: "):
        call_command("purge_issue_cache", "--older-than", value)
    assert LinearIssueCache.objects.count() == 1


def test_purge_requires_older_than():
    with pytest.raises(CommandError, match="--older-than"):
        call_command("purge_issue_cache")


@pytest.mark.parametrize("text", ["\\u0000", "\\\\u0000", "u0000", "\\x00", "\u2400"])
def test_text_that_only_looks_like_a_nul_escape_is_stored(text):
    # A backslash followed by "u0000" is escaped as \\u0000 in JSON: not a NUL character.
    LinearIssueCache.objects.upsert_many("org-1", [{"id": "a", "t": text, text: [text]}])
    assert LinearIssueCache.objects.get().issue_data == {"id": "a", "t": text, text: [text]}
