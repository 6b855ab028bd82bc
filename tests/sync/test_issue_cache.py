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


def test_upsert_many_moves_an_issue_to_the_organization_that_upserts_it():
    LinearIssueCache.objects.upsert_many("org-1", [{"id": "i1"}])
    LinearIssueCache.objects.upsert_many("org-2", [{"id": "i1"}])
    assert LinearIssueCache.objects.get().organization.linear_id == "org-2"


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


def test_upsert_many_is_one_statement_per_batch(django_assert_num_queries):
    make_organization(linear_id="org-1")
    issues = [{"id": f"issue-{n}", "n": n} for n in range(250)]

    # 1 organization lookup + savepoint/release of atomic() inside the test transaction + 3 batches.
    with django_assert_num_queries(6) as captured:
        assert LinearIssueCache.objects.upsert_many("org-1", issues, batch_size=100) == 250

    statements = inserts(captured)
    assert len(statements) == 3
    assert all("ON CONFLICT" in sql.upper() for sql in statements)
    assert LinearIssueCache.objects.count() == 250


@pytest.mark.postgres
def test_upsert_many_on_postgresql_inserts_multi_row_values_not_unnest(django_assert_num_queries):
    # Django's UNNEST insert makes psycopg escape every '"' of the JSON in Python (benchmarks/bulk.py).
    make_organization(linear_id="org-1")
    issues = [{"id": f"issue-{n}", "title": f'say "hi" {n}'} for n in range(3)]

    with django_assert_num_queries(4) as captured:
        LinearIssueCache.objects.upsert_many("org-1", issues)

    (statement,) = inserts(captured)
    assert "UNNEST" not in statement.upper()
    assert LinearIssueCache.objects.get(linear_issue_id="issue-2").issue_data == issues[2]


def test_upsert_many_default_batch_is_capped_to_one_statement_per_database_limit(django_assert_num_queries):
    make_organization(linear_id="org-1")
    issues = [{"id": f"issue-{n}"} for n in range(2500)]
    # PostgreSQL takes the default 1000 rows per statement; SQLite 999 parameters = 249 rows of 4.
    expected_batches = 3 if connection.vendor == "postgresql" else 11

    with django_assert_num_queries(3 + expected_batches) as captured:
        LinearIssueCache.objects.upsert_many("org-1", issues)

    assert len(inserts(captured)) == expected_batches
    assert LinearIssueCache.objects.count() == 2500


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
        ([{"id": "a", "t": {"u": "\\\\\x00"}}], ValidationError, "issues[0] must not contain NUL characters."),
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


def test_database_refuses_a_second_row_for_an_issue():
    make_linear_issue_cache(linear_issue_id="i1")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_linear_issue_cache(linear_issue_id="i1")


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
