"""The directory of names: Linear teams and Confluence pages per organization."""

from __future__ import annotations

import datetime as dt

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.models import Organization
from sync.models import ConfluencePage, LinearTeam

AT = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)

pytestmark = pytest.mark.django_db


def teams_of(linear_id: str) -> list[tuple[str, str, str]]:
    return list(LinearTeam.objects.for_organization(linear_id).values_list("linear_team_id", "key", "name"))


def test_upsert_many_inserts_teams_and_creates_the_organization():
    written = LinearTeam.objects.upsert_many(
        "org-a",
        [
            {"id": "team-2", "key": "PAY", "name": "Payments"},
            {"id": "team-1", "key": "NW", "name": "Storefront"},
        ],
        at=AT,
    )
    assert written == 2
    assert teams_of("org-a") == [("team-1", "NW", "Storefront"), ("team-2", "PAY", "Payments")]
    assert set(LinearTeam.objects.values_list("updated_at", flat=True)) == {AT}
    assert Organization.objects.filter(linear_id="org-a").count() == 1


def test_upsert_many_updates_names_and_keeps_teams_not_named():
    LinearTeam.objects.upsert_many(
        "org-a",
        [{"id": "t1", "key": "PAY", "name": "Payments"}, {"id": "t2", "key": "WH", "name": "Warehouse"}],
    )
    later = AT + dt.timedelta(days=1)
    assert (
        LinearTeam.objects.upsert_many("org-a", [{"id": "t1", "key": "PAYX", "name": "Checkout"}], at=later)
        == 1
    )
    assert teams_of("org-a") == [("t1", "PAYX", "Checkout"), ("t2", "WH", "Warehouse")]
    assert LinearTeam.objects.get(linear_team_id="t1").updated_at == later
    assert LinearTeam.objects.count() == 2


def test_a_duplicate_id_in_one_call_keeps_the_last_dict():
    LinearTeam.objects.upsert_many(
        "org-a", [{"id": "t1", "key": "A", "name": "First"}, {"id": "t1", "key": "B", "name": "Second"}]
    )
    assert teams_of("org-a") == [("t1", "B", "Second")]


def test_the_same_team_id_in_two_organizations_is_two_rows_and_each_keeps_its_name():
    LinearTeam.objects.upsert_many("org-a", [{"id": "t1", "key": "PAY", "name": "Payments"}])
    LinearTeam.objects.upsert_many("org-b", [{"id": "t1", "key": "OPS", "name": "Operations"}])
    assert teams_of("org-a") == [("t1", "PAY", "Payments")]
    assert teams_of("org-b") == [("t1", "OPS", "Operations")]


def test_empty_call_writes_nothing_not_even_the_organization():
    assert LinearTeam.objects.upsert_many("org-new", []) == 0
    assert ConfluencePage.objects.upsert_many("org-new", iter([])) == 0
    assert not Organization.objects.filter(linear_id="org-new").exists()


def test_upsert_many_writes_more_teams_than_one_sqlite_statement_takes():
    teams = [{"id": f"t{n:04}", "key": f"K{n}", "name": f"Team {n}"} for n in range(700)]
    assert LinearTeam.objects.upsert_many("org-a", teams) == 700
    assert LinearTeam.objects.count() == 700
    assert LinearTeam.objects.get(linear_team_id="t0699").name == "Team 699"


@pytest.mark.parametrize(
    ("teams", "error", "message"),
    [
        ({"id": "t1"}, ValueError, "teams must be an iterable of dicts"),
        (42, ValueError, "teams must be an iterable of dicts, not int"),
        ([["t1"]], ValueError, r"teams\[1\] must be a dict"),
        ([{"key": "A", "name": "A"}], ValidationError, r"teams\[1\] has no 'id' key"),
        ([{"id": "", "key": "A", "name": "A"}], ValidationError, r"teams\[1\]\['id'\] must not be empty"),
        ([{"id": "t1", "name": "A"}], ValueError, r"teams\[1\]\['key'\] must be a string"),
        ([{"id": "t1", "key": "A", "name": " "}], ValidationError, r"teams\[1\]\['name'\] must not be empty"),
        ([{"id": "t1", "key": "A" * 33, "name": "A"}], ValidationError, r"teams\[1\]\['key'\] is 33"),
        ([{"id": "t1", "key": "A", "name": "a\x00b"}], ValidationError, "NUL"),
    ],
)
def test_bad_teams_are_refused_before_anything_is_written(teams, error, message):
    good = {"id": "t0", "key": "OK", "name": "Fine"}
    with pytest.raises(error, match=message):
        LinearTeam.objects.upsert_many("org-a", [good, *teams] if isinstance(teams, list) else teams)
    assert LinearTeam.objects.count() == 0
    assert not Organization.objects.exists()


def test_bad_organization_id_and_at_are_refused():
    with pytest.raises(ValidationError, match="organization_id must not be empty"):
        LinearTeam.objects.upsert_many("", [{"id": "t1", "key": "A", "name": "A"}])
    with pytest.raises(ValidationError, match="aware"):
        LinearTeam.objects.upsert_many(
            "org", [{"id": "t1", "key": "A", "name": "A"}], at=dt.datetime(2026, 1, 1)
        )
    with pytest.raises(ValueError, match="at must be a datetime"):
        ConfluencePage.objects.upsert_many("org", [], at="today")
    assert LinearTeam.objects.count() == 0


def test_pages_upsert_with_optional_space_and_update():
    written = ConfluencePage.objects.upsert_many(
        "org-a",
        [
            {
                "id": "163841",
                "title": "PI planning",
                "url": "https://nw.atlassian.net/wiki/spaces/PAY/pages/163841",
            },
            {
                "id": "163877",
                "title": "Roadmap",
                "url": "https://nw.atlassian.net/wiki/x/163877",
                "space": "PAY",
            },
        ],
        at=AT,
    )
    assert written == 2
    ConfluencePage.objects.upsert_many(
        "org-a",
        [{"id": "163841", "title": "PI planning v2", "url": "https://nw.atlassian.net/p/1", "space": "NW"}],
    )
    rows = list(
        ConfluencePage.objects.for_organization("org-a").values_list(
            "confluence_page_id", "title", "url", "space"
        )
    )
    assert rows == [
        ("163841", "PI planning v2", "https://nw.atlassian.net/p/1", "NW"),
        ("163877", "Roadmap", "https://nw.atlassian.net/wiki/x/163877", "PAY"),
    ]


@pytest.mark.parametrize(
    ("page", "error", "message"),
    [
        ({"id": "1", "title": "T"}, ValueError, r"pages\[1\]\['url'\] must be a string"),
        (
            {"id": "1", "title": "T", "url": "javascript:alert(1)"},
            ValidationError,
            r"pages\[1\]\['url'\] must be",
        ),
        ({"id": "1", "title": "T", "url": "not a url"}, ValidationError, "http"),
        (
            {"id": "1", "title": "", "url": "https://x.example"},
            ValidationError,
            r"\['title'\] must not be empty",
        ),
        (
            {"id": "1", "title": "T", "url": "https://x.example", "space": 3},
            ValueError,
            r"\['space'\] must be",
        ),
        ({"title": "T", "url": "https://x.example"}, ValidationError, "has no 'id' key"),
    ],
)
def test_bad_pages_are_refused_before_anything_is_written(page, error, message):
    good = {"id": "0", "title": "Fine", "url": "https://ok.example/0"}
    with pytest.raises(error, match=message):
        ConfluencePage.objects.upsert_many("org-a", [good, page])
    assert ConfluencePage.objects.count() == 0


def test_the_database_refuses_a_second_row_for_the_same_organization_and_id():
    LinearTeam.objects.upsert_many("org-a", [{"id": "t1", "key": "A", "name": "A"}])
    organization = Organization.objects.get(linear_id="org-a")
    with pytest.raises(IntegrityError), transaction.atomic():
        LinearTeam.objects.create(organization=organization, linear_team_id="t1", key="B", name="B")
    with pytest.raises(IntegrityError), transaction.atomic():
        LinearTeam.objects.create(organization=organization, linear_team_id="t2", key="", name="B")


def test_lookup_names_rows_of_their_own_organization_only_in_one_query(django_assert_num_queries):
    LinearTeam.objects.upsert_many("org-a", [{"id": "t1", "key": "PAY", "name": "Payments"}])
    LinearTeam.objects.upsert_many("org-b", [{"id": "t2", "key": "OPS", "name": "Operations"}])
    a = Organization.objects.get(linear_id="org-a").pk
    b = Organization.objects.get(linear_id="org-b").pk
    with django_assert_num_queries(1):
        found = LinearTeam.objects.lookup([(a, "t1"), (a, "t2"), (b, "t2"), (None, "t1"), (b, "")])
    assert {key: team.name for key, team in found.items()} == {(a, "t1"): "Payments", (b, "t2"): "Operations"}
    with django_assert_num_queries(0):
        assert LinearTeam.objects.lookup([(None, "t1")]) == {}


def test_matching_finds_teams_by_name_key_and_id_prefix_and_pages_by_title_and_space():
    LinearTeam.objects.upsert_many(
        "org-a",
        [
            {"id": "abc-1", "key": "PAY", "name": "Payments"},
            {"id": "xyz-2", "key": "NW", "name": "Storefront"},
        ],
    )
    ConfluencePage.objects.upsert_many(
        "org-a",
        [{"id": "163841", "title": "Checkout planning", "url": "https://x.example/1", "space": "SHOP"}],
    )
    a = Organization.objects.get(linear_id="org-a").pk
    assert LinearTeam.objects.matching("paym") == [(a, "abc-1")]
    assert LinearTeam.objects.matching("nw") == [(a, "xyz-2")]
    assert LinearTeam.objects.matching("xyz") == [(a, "xyz-2")]
    assert LinearTeam.objects.matching("nothing") == []
    assert ConfluencePage.objects.matching("CHECKOUT") == [(a, "163841")]
    assert ConfluencePage.objects.matching("shop") == [(a, "163841")]
    assert ConfluencePage.objects.matching("1638") == [(a, "163841")]


def test_str_names_the_team_and_page():
    LinearTeam.objects.upsert_many("org-a", [{"id": "t1", "key": "PAY", "name": "Payments"}])
    ConfluencePage.objects.upsert_many("org-a", [{"id": "1", "title": "Roadmap", "url": "https://x.example"}])
    assert str(LinearTeam.objects.get()) == "Payments (PAY)"
    assert str(ConfluencePage.objects.get()) == "Roadmap"


@pytest.mark.django_db(transaction=True)
def test_async_twins_write_like_the_sync_methods():
    teams = async_to_sync(LinearTeam.objects.aupsert_many)(
        "org-a", [{"id": "t1", "key": "PAY", "name": "Payments"}], at=AT
    )
    pages = async_to_sync(ConfluencePage.objects.aupsert_many)(
        "org-a", [{"id": "9", "title": "Roadmap", "url": "https://x.example/9", "space": "PAY"}]
    )
    assert (teams, pages) == (1, 1)
    assert teams_of("org-a") == [("t1", "PAY", "Payments")]
    assert LinearTeam.objects.get().updated_at == AT
    assert list(ConfluencePage.objects.values_list("title", "space")) == [("Roadmap", "PAY")]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_upserts_of_overlapping_teams_neither_deadlock_nor_lose_a_team():
    """16 workers upsert the same 50 teams in different orders (each with its own name for them) and a
    team of their own, for a new organization: every call succeeds, one row per team, no deadlock
    (rows are written sorted by id) and no duplicate organization."""
    from django.db import connection

    from tests.reliability.concurrency import assert_no_errors, run_together

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only; runs in the PostgreSQL pass of make test")
    shared = [f"team-{n:02}" for n in range(50)]

    def work(i: int) -> int:
        order = shared[i % 7 :] + shared[: i % 7]
        order = order if i % 2 else list(reversed(order))
        teams = [{"id": team, "key": "K", "name": f"written by {i}"} for team in order]
        return LinearTeam.objects.upsert_many(
            "org-race", [*teams, {"id": f"own-{i}", "key": "O", "name": "own"}]
        )

    outcomes = run_together(work)
    assert_no_errors(outcomes)
    assert [outcome.result for outcome in outcomes] == [51] * 16
    assert Organization.objects.filter(linear_id="org-race").count() == 1
    assert LinearTeam.objects.count() == 50 + 16
    # Each shared team holds one writer's whole name, not a mix.
    assert set(LinearTeam.objects.filter(linear_team_id__in=shared).values_list("name", flat=True)) <= {
        f"written by {i}" for i in range(16)
    }
