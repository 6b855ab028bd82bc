"""Aware datetimes whose UTC value falls outside years 1-9999 (year 1 at UTC+14, 31 Dec 9999 at UTC-12):
every API taking a datetime refuses them with a ValidationError instead of failing in the database
(OverflowError on SQLite, DataError on PostgreSQL).
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from accounts.models import ConfluenceToken, LinearToken, Organization, TokenRefreshError
from sync.models import SyncHistory, SyncState

pytestmark = pytest.mark.django_db

EXPIRES = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
EDGES = [
    pytest.param(dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14))), id="year-1-at-utc+14"),
    pytest.param(
        dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=-12))),
        id="year-9999-at-utc-12",
    ),
]
CALLS = {
    "LinearToken.store": lambda when: LinearToken.objects.store(
        "org-edge", access_token="a", app_user_id="u", expires_at=when
    ),
    "ConfluenceToken.store": lambda when: ConfluenceToken.objects.store(
        "org-edge", site_url="https://acme.atlassian.net", access_token="a", expires_at=when
    ),
    "SyncState.mark_synced": lambda when: SyncState.objects.mark_synced("page", "team", when),
    "SyncHistory.record": lambda when: SyncHistory.objects.record(
        "page", "team", success=True, synced_at=when
    ),
}


@pytest.mark.parametrize("when", EDGES)
@pytest.mark.parametrize("name", list(CALLS))
def test_datetime_outside_the_utc_calendar_is_a_validation_error(name, when):
    with pytest.raises(ValidationError):
        CALLS[name](when)
    for model in (Organization, LinearToken, ConfluenceToken, SyncState, SyncHistory):
        assert not model.objects.exists(), f"a refused {name} left a {model.__name__} row"


@pytest.mark.parametrize("when", EDGES)
def test_refresher_returning_such_a_datetime_is_refused_and_the_pair_kept(when):
    token = LinearToken.objects.store(
        "org-edge",
        access_token="old",
        refresh_token="old-r",
        app_user_id="u",
        expires_at=EXPIRES,
    )
    with pytest.raises(TokenRefreshError):
        token.refresh(lambda refresh_token: ("new", "new-r", when))
    stored = LinearToken.objects.get()
    assert (stored.access_token, stored.refresh_token) == ("old", "old-r")
    assert stored.expires_at == EXPIRES
