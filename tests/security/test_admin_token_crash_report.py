"""A crash while a superuser saves a replacement token: no token in the DEBUG page or the error report.

Issue 18, item 11. Django's DEBUG page shows the POST data and every frame's local variables, and the
report ``AdminEmailHandler`` mails with DEBUG off is the same report as text and HTML. The token admin
views are ``sensitive_post_parameters`` and their reports are cleaned in both modes.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.core import mail
from django.db import DatabaseError
from django.test import Client
from django.urls import reverse
from django.utils.log import AdminEmailHandler

from accounts.models import LinearToken
from tests.db_faults import fail_statements
from tests.factories import make_organization

#: Typed into the replace fields; long and random so that finding one cannot be a coincidence.
NEW_ACCESS = "lin_oauth_REPLACEMENT_9c1e5b2d4c6e8a0f1b3d5c7e9a2b4d6f8a0c"
NEW_REFRESH = "lin_refresh_REPLACEMENT_Zx8xV2mN6pL4kJ9hG3fD1sA7wE5rT0yU"


def leaks(text: str) -> list[str]:
    """The typed tokens (whole, or 16 characters from their middle) found in ``text``."""
    return [token for token in (NEW_ACCESS, NEW_REFRESH) if token in text or token[10:26] in text]


@pytest.fixture
def crashing_token_write(monkeypatch):
    """Every INSERT or UPDATE of a token row fails at the database, after Django built its values."""
    fail_statements(
        monkeypatch,
        lambda sql: DatabaseError("server closed the connection while updating the token row")
        if sql.startswith(("INSERT", "UPDATE")) and "token" in sql
        else None,
    )


@pytest.fixture
def superuser_client(users) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(users["superuser"])
    return client


def post_replacement(client: Client, token: LinearToken | None) -> Any:
    """Replace ``token``'s pair on its change page, or add a token for a new organization (``None``)."""
    if token is None:
        url, organization_id = reverse("admin:accounts_lineartoken_add"), make_organization().pk
    else:
        url = reverse("admin:accounts_lineartoken_change", args=[token.pk])
        organization_id = token.organization_id
    return client.post(
        url,
        {
            "organization": organization_id,
            "app_user_id": "app-user-1",
            "scope": "read",
            "expires_at_0": "2031-01-02",
            "expires_at_1": "03:04:05",
            "new_access_token": NEW_ACCESS,
            "new_refresh_token": NEW_REFRESH,
        },
    )


@pytest.mark.parametrize("view", ["change", "add"])
def test_debug_on_crash_page_shows_no_token(view, world, superuser_client, crashing_token_write, settings):
    settings.DEBUG = True

    response = post_replacement(superuser_client, world["linear"] if view == "change" else None)

    assert response.status_code == 500
    page = response.content.decode()
    # The real technical page, with the crash and the POST parameters' names...
    assert "server closed the connection while updating the token row" in page
    assert "new_access_token" in page and "new_refresh_token" in page
    # ...and no value of them, in the POST data or in any frame's variables.
    assert leaks(page) == []
    assert LinearToken.objects.get(pk=world["linear"].pk).access_token != NEW_ACCESS
    assert LinearToken.objects.count() == 1  # the crashed add wrote nothing


def test_debug_off_error_report_mails_no_token(world, superuser_client, crashing_token_write, settings):
    settings.DEBUG = False
    settings.ADMINS = [("Ops", "ops@example.com")]
    handler = AdminEmailHandler(include_html=True)
    handler.setLevel(logging.ERROR)
    request_logger = logging.getLogger("django.request")
    request_logger.addHandler(handler)
    try:
        response = post_replacement(superuser_client, world["linear"])
    finally:
        request_logger.removeHandler(handler)

    assert response.status_code == 500
    assert leaks(response.content.decode()) == []
    (report,) = mail.outbox
    text = report.body
    (html, _mimetype) = report.alternatives[0]
    assert "server closed the connection while updating the token row" in text
    assert "new_access_token" in text  # the parameter is listed, its value starred
    assert leaks(report.subject) == []
    assert leaks(text) == []
    assert leaks(html) == []
