"""Fixtures of the security tests: the four kinds of admin user and one row of every admin model."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from accounts.models import ConfluenceToken, LinearToken
from tests.factories import (
    make_conflict,
    make_enabler,
    make_feature,
    make_linear_issue_cache,
    make_organization,
    make_planning_session,
    make_program_increment,
    make_story,
    make_sync_history,
)
from tests.reliability.legacy_fixtures import deployment, old_db, pg_admin_url, sqlite_sync  # noqa: F401

#: Plaintext tokens of the shapes the providers issue. Long and random enough that finding one in a page
#: or a log cannot be a coincidence; the admin may show the last four characters, so the tests look for
#: the whole token and for a 16-character run from its middle (a truncated copy is a leak too).
LINEAR_ACCESS = "lin_oauth_7f3c9a1e5b2d4c6e8a0f1b3d5c7e9a2b4d6f8a0c"
LINEAR_REFRESH = "lin_refresh_Qz8xV2mN6pL4kJ9hG3fD1sA7wE5rT0yU"
CONFLUENCE_ACCESS = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhdGxhc3NpYW4tdXNlciJ9.c2lnbmF0dXJlLXBhcnQteHl6"
CONFLUENCE_REFRESH = "atl_refresh_Hq4Lm9Xz2Vb7Nc5Rk8Tw1Jy6Pd3Fg0Sa"
TOKENS = (LINEAR_ACCESS, LINEAR_REFRESH, CONFLUENCE_ACCESS, CONFLUENCE_REFRESH)

REVIEWERS = "Conflict reviewers"


def leaked(text: str, tokens: tuple[str, ...] = TOKENS) -> list[str]:
    """The tokens (whole, or 16 characters from their middle) that appear in ``text``."""
    return [token for token in tokens if token in text or token[8:24] in text]


@pytest.fixture
def tokens(db: Any) -> dict[str, Any]:
    """A Linear and a Confluence token holding the known plaintexts."""
    expires = timezone.now() + dt.timedelta(hours=2)
    linear = LinearToken.objects.store(
        "org-secrets",
        access_token=LINEAR_ACCESS,
        refresh_token=LINEAR_REFRESH,
        app_user_id="app-user-1",
        expires_at=expires,
    )
    confluence = ConfluenceToken.objects.store(
        "org-secrets",
        cloud_id="cloud-1",
        site_url="https://acme.atlassian.net",
        access_token=CONFLUENCE_ACCESS,
        refresh_token=CONFLUENCE_REFRESH,
        expires_at=expires,
    )
    return {"linear": linear, "confluence": confluence}


@pytest.fixture
def world(db: Any, tokens: dict[str, Any], users: dict[str, Any]) -> dict[str, Any]:
    """At least one row of every model registered in the admin (so every change page can be opened)."""
    organization = make_organization()
    session = make_planning_session(organization=organization)
    feature = make_feature(planning_session=session)
    make_story(planning_feature=feature)
    make_enabler(planning_session=session)
    make_program_increment(organization=organization)
    unresolved = make_conflict(confluence_page_id="page-1", linear_team_id="team-1")
    resolved = make_conflict(confluence_page_id="page-1", linear_team_id="team-1")
    resolved.resolve("linear", by=users["superuser"])
    make_sync_history()
    make_linear_issue_cache(organization=organization)
    # Three-way sync (issue 16): an owner rule, editable in the admin.
    from sync.models import FieldOwnership

    FieldOwnership.objects.set_owner(organization.linear_id, "state.name", "linear")
    missing = [model._meta.label for model in admin.site._registry if not model._default_manager.exists()]
    assert not missing, f"add a row of each of {missing} to the security world fixture"
    return {"conflict": unresolved, "resolved_conflict": resolved, **tokens}


@pytest.fixture
def users(db: Any) -> dict[str, Any]:
    """Staff without permissions, a member of the Conflict reviewers group, and a superuser."""
    user_model = get_user_model()
    staff = user_model.objects.create_user("staff", password=None, is_staff=True)
    reviewer = user_model.objects.create_user("reviewer", password=None, is_staff=True)
    reviewer.groups.add(Group.objects.get(name=REVIEWERS))
    superuser = user_model.objects.create_superuser("root", email="root@example.com", password=None)
    return {"staff": staff, "reviewer": reviewer, "superuser": superuser}


@pytest.fixture
def clients(users: dict[str, Any]) -> dict[str, Client]:
    """A logged-in test client per user, plus ``anonymous``."""
    result = {"anonymous": Client()}
    for name, user in users.items():
        client = Client()
        client.force_login(user)
        result[name] = client
    return result
