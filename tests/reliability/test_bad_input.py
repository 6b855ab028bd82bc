"""Property-based bad input for every public API function: success, or a clear ValidationError/ValueError
raised before anything is written. Never a DataError, IntegrityError, TypeError or OverflowError.

Each example runs in its own savepoint so that a database error (the bug these tests hunt) is reported
as itself instead of poisoning the following examples.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from hypothesis import given
from hypothesis import strategies as st

from accounts.models import ConfluenceToken, LinearToken, Organization, TokenRefreshError
from planning.models import Enabler, Feature, PlanningSession, ProgramIncrement, Story
from planning.services import save_planning_result
from sync.models import Conflict, ConflictResolution, LinearIssueCache, SyncHistory, SyncState
from sync.services import resolve_conflicts
from tests.clock import FROZEN_NOW, frozen_clock
from tests.factories import make_change, make_conflict, make_planning_session
from tests.reliability.strategies import (
    ANYTHING,
    AWARE_DATETIME,
    COUNTER,
    DATETIMES,
    DEPTHS,
    FUZZ,
    IDENTIFIER,
    JSON,
    TEXT,
    change,
    nested,
)

pytestmark = pytest.mark.django_db

CLEAR_ERRORS = (ValidationError, ValueError)
#: Years after the tests' frozen clock (tests.clock), so "valid now" holds on any day the suite runs.
EXPIRES = FROZEN_NOW + dt.timedelta(days=4 * 365)


def attempt(
    call: Callable[[], Any], allowed: tuple[type[BaseException], ...] = CLEAR_ERRORS
) -> tuple[bool, Any]:
    """``(True, result)`` or ``(False, error)`` for an allowed error with a message; anything else raises."""
    try:
        with transaction.atomic():
            return True, call()
    except allowed as exc:
        message = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        assert message.strip(), f"{type(exc).__name__} without a message"
        return False, exc


def row_counts() -> dict[str, int]:
    """Rows of every table the public API writes: compared before and after a refused call."""
    models = [
        Organization,
        LinearToken,
        ConfluenceToken,
        PlanningSession,
        Feature,
        Story,
        Enabler,
        SyncState,
        Conflict,
        ConflictResolution,
        SyncHistory,
        LinearIssueCache,
    ]
    return {model.__name__: model.objects.count() for model in models}


def secret_free(error: BaseException, *secrets: Any) -> None:
    """The error's message quotes none of ``secrets`` (tokens given to a refused call)."""
    text = str(error)
    for secret in secrets:
        if isinstance(secret, str) and len(secret.strip()) >= 8 and "\x00" not in secret:
            assert secret not in text, "a token appears in an error message"


def attempt_write(call: Callable[[], Any], *secrets: Any) -> tuple[bool, Any]:
    """``attempt(call)``; a refused call must have written no row and quote none of ``secrets``."""
    before = row_counts()
    ok, result = attempt(call)
    if not ok:
        assert row_counts() == before
        secret_free(result, *secrets)
    return ok, result


# --- accounts ----------------------------------------------------------------------------------------


@FUZZ
@given(linear_id=IDENTIFIER)
def test_organization_ensure_and_lookup(linear_id):
    ok, organization = attempt(lambda: Organization.objects.ensure(linear_id))
    if ok:
        assert organization.linear_id == linear_id
        assert Organization.objects.by_linear_id(linear_id) == organization
    else:
        assert attempt(lambda: Organization.objects.by_linear_id(linear_id))[0] is False


@FUZZ
@given(
    organization_id=IDENTIFIER,
    access=ANYTHING,
    refresh=st.one_of(st.none(), ANYTHING),
    app_user_id=IDENTIFIER,
    expires_at=st.one_of(AWARE_DATETIME, ANYTHING),
    scope=st.one_of(TEXT, ANYTHING),
)
def test_linear_token_store(organization_id, access, refresh, app_user_id, expires_at, scope):
    ok, token = attempt_write(
        lambda: LinearToken.objects.store(
            organization_id,
            access_token=access,
            refresh_token=refresh,
            app_user_id=app_user_id,
            expires_at=expires_at,
            scope=scope,
        ),
        access,
        refresh,
    )
    if ok:
        stored = LinearToken.objects.for_organization(organization_id)
        assert (stored.access_token, stored.refresh_token, stored.app_user_id, stored.scope) == (
            access,
            refresh,
            app_user_id,
            scope,
        )
        assert stored.expires_at == expires_at


@FUZZ
@given(
    organization_id=IDENTIFIER,
    cloud_id=st.one_of(st.just("cloud"), ANYTHING),
    site_url=ANYTHING,
    access=ANYTHING,
    refresh=st.one_of(st.none(), ANYTHING),
    expires_at=st.one_of(AWARE_DATETIME, ANYTHING),
)
def test_confluence_token_store(organization_id, cloud_id, site_url, access, refresh, expires_at):
    ok, token = attempt_write(
        lambda: ConfluenceToken.objects.store(
            organization_id,
            cloud_id=cloud_id,
            site_url=site_url,
            access_token=access,
            refresh_token=refresh,
            expires_at=expires_at,
        ),
        access,
        refresh,
    )
    if ok:
        stored = ConfluenceToken.objects.for_organization(organization_id, cloud_id)
        assert (stored.access_token, stored.refresh_token, stored.site_url) == (access, refresh, site_url)
        assert stored.expires_at == expires_at


@FUZZ
@given(organization_id=IDENTIFIER, cloud_id=st.one_of(st.none(), IDENTIFIER))
def test_token_lookups(organization_id, cloud_id):
    ok, found = attempt(lambda: LinearToken.objects.for_organization(organization_id))
    assert not ok or found is None
    ok, found = attempt(lambda: ConfluenceToken.objects.for_organization(organization_id, cloud_id))
    assert not ok or found is None


@FUZZ
@given(
    answer=st.one_of(
        st.tuples(ANYTHING, st.one_of(st.none(), ANYTHING), st.one_of(AWARE_DATETIME, ANYTHING)),
        ANYTHING,
        st.tuples(ANYTHING),
    )
)
def test_refresh_with_a_refresher_returning_junk(answer):
    """A refresher returning junk is a TokenRefreshError and the stored pair stays as it was."""
    token = LinearToken.objects.store(
        "org-refresh",
        access_token="access-before",
        refresh_token="refresh-before",
        app_user_id="app",
        expires_at=EXPIRES,
    )
    ok, result = attempt(
        lambda: token.refresh(lambda refresh_token: answer), allowed=(*CLEAR_ERRORS, TokenRefreshError)
    )
    stored = LinearToken.objects.get(pk=token.pk)
    if ok:
        access, refresh, expires_at = answer
        assert (stored.access_token, stored.expires_at) == (access, expires_at)
        assert stored.refresh_token == (refresh if refresh is not None else "refresh-before")
    else:
        assert isinstance(result, TokenRefreshError)
        assert (stored.access_token, stored.refresh_token) == ("access-before", "refresh-before")
        secret_free(result, "access-before", "refresh-before", *(answer if isinstance(answer, tuple) else ()))


# --- planning ----------------------------------------------------------------------------------------


@FUZZ
@given(
    organization_id=IDENTIFIER,
    url=st.one_of(
        st.just("https://acme.atlassian.net/wiki/x"), st.builds("https://h/{}".format, TEXT), ANYTHING
    ),
    title=ANYTHING,
    document_id=st.one_of(st.none(), ANYTHING),
    epic_id=st.one_of(st.none(), ANYTHING),
)
def test_planning_session_start(organization_id, url, title, document_id, epic_id):
    ok, session = attempt_write(
        lambda: PlanningSession.objects.start(
            organization_id,
            confluence_page_url=url,
            planning_title=title,
            confluence_document_id=document_id,
            epic_id=epic_id,
        )
    )
    if ok:
        stored = PlanningSession.objects.get(pk=session.pk)
        assert (stored.confluence_page_url, stored.planning_title, stored.status) == (url, title, "pending")
        assert stored in PlanningSession.objects.for_organization(organization_id)


@FUZZ
@given(percent=COUNTER, error=ANYTHING)
def test_planning_session_progress_and_failure(percent, error):
    session = make_planning_session()
    session.mark_in_progress()
    ok, _ = attempt(lambda: session.set_progress(percent))
    assert PlanningSession.objects.get(pk=session.pk).progress == (percent if ok else 0)
    ok, _ = attempt(lambda: session.mark_failed(error))
    stored = PlanningSession.objects.get(pk=session.pk)
    assert (stored.status, stored.error) == (("failed", error) if ok else ("processing", ""))


_STORY = st.one_of(
    st.fixed_dictionaries(
        {"story_id": IDENTIFIER, "title": ANYTHING}, optional={"description": ANYTHING, "points": ANYTHING}
    ),
    ANYTHING,
)
_FEATURE = st.one_of(
    st.fixed_dictionaries(
        {"feature_id": IDENTIFIER, "title": ANYTHING},
        optional={"description": ANYTHING, "stories": st.one_of(st.lists(_STORY, max_size=3), ANYTHING)},
    ),
    ANYTHING,
)
_ENABLER = st.one_of(
    st.fixed_dictionaries(
        {
            "enabler_id": IDENTIFIER,
            "title": ANYTHING,
            "enabler_type": st.one_of(st.sampled_from(["research", "Technical Debt"]), ANYTHING),
        },
        optional={"description": ANYTHING},
    ),
    ANYTHING,
)


@FUZZ
@given(
    features=st.one_of(st.lists(_FEATURE, max_size=3), ANYTHING),
    enablers=st.one_of(st.lists(_ENABLER, max_size=3), ANYTHING),
)
def test_save_planning_result(features, enablers):
    session = make_planning_session()
    ok, counts = attempt_write(lambda: save_planning_result(session, features=features, enablers=enablers))
    if ok:
        assert Feature.objects.filter(planning_session=session).count() == counts.features.created
        assert Enabler.objects.filter(planning_session=session).count() == counts.enablers.created
        assert set(Feature.objects.filter(planning_session=session).values_list("feature_id", flat=True)) == {
            f["feature_id"] for f in features or ()
        }


# --- sync --------------------------------------------------------------------------------------------


@FUZZ
@given(
    page=IDENTIFIER,
    team=IDENTIFIER,
    at=st.one_of(st.none(), DATETIMES, ANYTHING),
    organization_id=st.one_of(st.none(), IDENTIFIER),
    status=st.one_of(st.just("running"), ANYTHING),
)
def test_sync_state(page, team, at, organization_id, status):
    ok, state = attempt_write(
        lambda: SyncState.objects.mark_synced(page, team, at, organization_id=organization_id)
    )
    if ok:
        assert SyncState.objects.last_synced_at(page, team) == (at or state.last_synced_at)
        assert state.status == "idle"
    ok, state = attempt(lambda: SyncState.objects.set_status(page, team, status))
    assert not ok or SyncState.objects.get(pk=state.pk).status == status
    attempt(lambda: SyncState.objects.last_synced_at(page, team))


@FUZZ
@given(
    page=IDENTIFIER,
    team=IDENTIFIER,
    success=st.one_of(st.booleans(), ANYTHING),
    error=st.one_of(st.none(), ANYTHING),
    counters=st.lists(COUNTER, min_size=5, max_size=5),
    synced_at=st.one_of(st.none(), DATETIMES),
    organization_id=st.one_of(st.none(), IDENTIFIER),
)
def test_sync_history_record(page, team, success, error, counters, synced_at, organization_id):
    names = [
        "created_issues",
        "updated_issues",
        "confluence_changes",
        "conflicts_detected",
        "conflicts_resolved",
    ]
    ok, entry = attempt_write(
        lambda: SyncHistory.objects.record(
            page,
            team,
            success=success,
            error=error,
            synced_at=synced_at,
            organization_id=organization_id,
            **dict(zip(names, counters, strict=True)),
        )
    )
    if ok:
        stored = SyncHistory.objects.for_pair(page, team).get(pk=entry.pk)
        assert [getattr(stored, name) for name in names] == counters
        assert (stored.success, stored.error) == (success, error or "")


@FUZZ
@given(
    data=st.data(),
    conflict_id=IDENTIFIER,
    page=st.one_of(st.none(), IDENTIFIER),
    team=st.one_of(st.none(), IDENTIFIER),
)
def test_conflict_store(data, conflict_id, page, team):
    item_id = data.draw(IDENTIFIER)
    linear_change = data.draw(change(item_id, "linear"))
    confluence_change = data.draw(change(item_id, "confluence"))
    ok, conflict = attempt_write(
        lambda: Conflict.objects.store(
            conflict_id,
            linear_change=linear_change,
            confluence_change=confluence_change,
            confluence_page_id=page,
            linear_team_id=team,
        )
    )
    if ok:
        stored = Conflict.objects.get(pk=conflict_id)
        assert (stored.linear_change, stored.confluence_change) == (linear_change, confluence_change)
        assert stored in Conflict.objects.unresolved()


@FUZZ
@given(depth=DEPTHS, kind=st.sampled_from(["list", "dict"]), where=st.sampled_from(["itemData", "change"]))
def test_conflict_store_deep_json(depth, kind, where):
    deep = nested(depth, kind)
    linear_change = make_change("linear", itemId="deep", itemData={"deep": deep})
    if where == "change":
        linear_change = deep
    ok, _ = attempt(
        lambda: Conflict.objects.store(
            "conflict-deep",
            linear_change=linear_change,
            confluence_change=make_change("confluence", itemId="deep"),
        )
    )
    if ok:
        assert Conflict.objects.get(pk="conflict-deep").linear_change == linear_change
        Conflict.objects.discard("conflict-deep")


@FUZZ
@given(
    strategy=st.one_of(st.sampled_from(["linear", "confluence", "manual"]), ANYTHING),
    resolved_change=st.one_of(st.none(), change("item-r", "manual")),
    by=st.one_of(st.none(), ANYTHING),
)
def test_conflict_resolve(strategy, resolved_change, by):
    conflict = make_conflict(id="conflict-r", item_id="item-r", confluence_page_id="p", linear_team_id="t")
    if conflict.is_resolved:
        conflict.reopen()
    log_before = ConflictResolution.objects.count()
    ok, _ = attempt(lambda: conflict.resolve(strategy, resolved_change, by=by))
    stored = Conflict.objects.get(pk="conflict-r")
    assert stored.is_resolved == ok
    assert ConflictResolution.objects.count() == log_before + (1 if ok else 0)
    assert SyncState.objects.get(confluence_page_id="p", linear_team_id="t").conflict_count == (
        0 if ok else 1
    )


@FUZZ
@given(page=st.one_of(st.none(), IDENTIFIER), team=st.one_of(st.none(), IDENTIFIER))
def test_conflict_queries_discard_and_clear(page, team):
    # Nothing is stored: an accepted query finds nothing (a query that matched junk would show here).
    for query in (
        lambda: list(Conflict.objects.unresolved(page, team)),
        lambda: list(Conflict.objects.resolved(page, team)),
        lambda: list(ConflictResolution.objects.for_conflict(page)),
    ):
        ok, rows = attempt(query)
        assert not ok or rows == []
    ok, gone = attempt(lambda: Conflict.objects.discard(page))
    assert not ok or gone is False
    ok, deleted = attempt(lambda: Conflict.objects.clear(page, team))
    assert not ok or deleted == 0


@FUZZ
@given(
    ids=st.one_of(st.lists(IDENTIFIER, max_size=4), TEXT, st.binary(max_size=4)),
    strategy=ANYTHING,
    by=st.one_of(st.none(), ANYTHING),
)
def test_bulk_resolve(ids, strategy, by):
    ok, outcome = attempt(lambda: resolve_conflicts(ids, strategy, by=by))
    assert not ok or outcome.resolved == []


NOT_ITERABLE = [None, 5, 1.5, True, object()]
NOT_ITERABLE_IDS = ["None", "int", "float", "bool", "object"]


@pytest.mark.parametrize("ids", NOT_ITERABLE, ids=NOT_ITERABLE_IDS)
def test_bulk_resolve_refuses_a_non_iterable(ids):
    ok, error = attempt(lambda: resolve_conflicts(ids, "linear", by=None))
    assert not ok and isinstance(error, ValueError)


@pytest.mark.parametrize("issues", NOT_ITERABLE, ids=NOT_ITERABLE_IDS)
def test_issue_cache_upsert_many_refuses_a_non_iterable(issues):
    ok, error = attempt(lambda: LinearIssueCache.objects.upsert_many("org-x", issues))
    assert not ok and isinstance(error, ValueError)


@FUZZ
@given(
    organization_id=IDENTIFIER,
    issues=st.one_of(
        st.lists(
            st.one_of(
                st.fixed_dictionaries({"id": IDENTIFIER}, optional={"title": JSON, "state": JSON}), ANYTHING
            ),
            max_size=4,
        ),
        TEXT,
        st.dictionaries(TEXT, JSON, max_size=3),
        st.binary(max_size=4),
    ),
    batch_size=st.one_of(st.just(1000), COUNTER),
)
def test_issue_cache_upsert_many(organization_id, issues, batch_size):
    ok, written = attempt_write(
        lambda: LinearIssueCache.objects.upsert_many(organization_id, issues, batch_size=batch_size)
    )
    if ok:
        by_id = {issue["id"]: issue for issue in issues}
        assert written == len(by_id)
        for issue_id, issue in by_id.items():
            assert LinearIssueCache.objects.get(linear_issue_id=issue_id).issue_data == issue


@FUZZ
@given(depth=DEPTHS, kind=st.sampled_from(["list", "dict"]))
def test_issue_cache_deep_json(depth, kind):
    issue = {"id": "ISS-deep", "data": nested(depth, kind)}
    ok, _ = attempt(lambda: LinearIssueCache.objects.upsert_many("org-deep", [issue]))
    if ok:
        assert LinearIssueCache.objects.get(linear_issue_id="ISS-deep").issue_data == issue


@FUZZ
@given(age=st.one_of(st.timedeltas(), ANYTHING))
def test_issue_cache_older_than(age):
    ok, queryset = attempt(lambda: list(LinearIssueCache.objects.older_than(age)))
    assert not ok or queryset == []


# One day more than the clock's distance to year 1: the cutoff would fall before year 1.
_BEYOND_YEAR_1 = FROZEN_NOW - dt.datetime.min.replace(tzinfo=dt.UTC) + dt.timedelta(days=1)


@pytest.mark.parametrize("age", [_BEYOND_YEAR_1, dt.timedelta.max], ids=["year-0", "max"])
def test_issue_cache_older_than_a_huge_age(age, clock):
    ok, result = attempt(lambda: list(LinearIssueCache.objects.older_than(age)))
    assert not ok and isinstance(result, ValidationError)
    assert "before year 1" in result.messages[0]


@FUZZ
@given(organization_id=IDENTIFIER, on=st.one_of(st.none(), st.dates(), ANYTHING))
def test_program_increment_queries(organization_id, on):
    ok, rows = attempt(lambda: list(ProgramIncrement.objects.for_organization(organization_id)))
    assert not ok or rows == []
    ok, rows = attempt(lambda: list(ProgramIncrement.objects.current(organization_id, on)))
    assert not ok or rows == []


@FUZZ
@given(by=st.one_of(st.none(), ANYTHING))
def test_conflict_reopen(by):
    conflict = make_conflict(id="conflict-o", item_id="item-o")
    if not conflict.is_resolved:
        conflict.resolve("linear")
    ok, _ = attempt(lambda: conflict.reopen(by=by))
    assert Conflict.objects.get(pk="conflict-o").is_resolved is not ok


@FUZZ
@given(
    leeway=st.one_of(st.timedeltas(), ANYTHING),
    at=st.one_of(st.none(), DATETIMES, ANYTHING),
    window=st.one_of(st.timedeltas(), ANYTHING),
)
def test_token_expiry_helpers(leeway, at, window):
    # Stopped at FROZEN_NOW: "now" is the same instant for every helper below, on any day.
    with frozen_clock():
        token = LinearToken.objects.store("org-exp", access_token="a", app_user_id="u", expires_at=EXPIRES)
        ok, expired = attempt(lambda: token.is_expired(leeway, at=at))
        if ok and at is not None:
            assert expired == (at + leeway >= EXPIRES)
        ok, rows = attempt(lambda: list(LinearToken.objects.expired(at=at)))
        if ok:
            assert rows == ([token] if at is not None and at >= EXPIRES else [])
        ok, soon = attempt(lambda: token.expires_soon(window))
        if ok:
            assert soon is token.is_expired(window)
        ok, rows = attempt(lambda: list(LinearToken.objects.expiring_within(window)))
        if ok:
            # The token is valid now (EXPIRES is years ahead): it is listed exactly when it expires soon.
            assert rows == ([token] if token.expires_soon(window) else [])
