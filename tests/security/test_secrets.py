"""No plaintext token in logs (every logger at DEBUG, SQL included), admin pages, admin history,
exception messages, ``repr``, ``dumpdata`` or the DEBUG crash page.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import DatabaseError, connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.views.debug import technical_500_response

from accounts.fields import TokenDecryptionError
from accounts.models import ConfluenceToken, LinearToken, TokenRefreshError
from sync.models import SyncHistory
from tests.db_faults import fail_statements
from tests.factories import make_planning_session
from tests.security.conftest import (
    CONFLUENCE_ACCESS,
    CONFLUENCE_REFRESH,
    LINEAR_ACCESS,
    LINEAR_REFRESH,
    TOKENS,
    leaked,
)
from tests.security.logcapture import every_logger_at_debug

pytestmark = pytest.mark.django_db

NEW_KEY = "security-test-new-fernet-key-0123456789abcdef"
REFRESHED_ACCESS = "lin_oauth_refreshed_9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a"
REFRESHED_REFRESH = "lin_refresh_rotated_Zy9Xw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg"
ADMIN_ACCESS = "lin_oauth_typed_in_admin_1a2b3c4d5e6f7a8b9c0d1e2f3a4b"
ADMIN_REFRESH = "lin_refresh_typed_in_admin_Mn8Bv7Cx6Zl5Kj4Hg3Fd2Sa1"
ALL_TOKENS = (*TOKENS, REFRESHED_ACCESS, REFRESHED_REFRESH, ADMIN_ACCESS, ADMIN_REFRESH)
#: Fernet tokens start with the version byte 0x80: base64 "gAAAAA", which the SQL shows as hex bytes.
FERNET_HEX = b"gAAAAA".hex()


def assert_no_token(text: str, where: str) -> None:
    found = leaked(text, ALL_TOKENS)
    assert not found, f"plaintext token(s) {[t[:12] + '…' for t in found]} in {where}"


def failing_refresher(refresh_token: str) -> Any:
    # What a careless HTTP client does: quote the request, token included, in its error.
    raise ConnectionError(f"POST https://api.linear.app/oauth/token refresh_token={refresh_token} failed")


# --- logs --------------------------------------------------------------------------------------------


def test_token_flows_log_no_plaintext_even_at_debug(tokens, settings):
    with every_logger_at_debug() as logs:
        linear = LinearToken.objects.for_organization("org-secrets")
        assert linear.access_token == LINEAR_ACCESS
        linear.refresh(issue_new_pair)
        confluence = ConfluenceToken.objects.for_organization("org-secrets", "cloud-1")
        spent: list[str] = []

        def recording_failing_refresher(refresh_token: str) -> Any:
            spent.append(refresh_token)
            return failing_refresher(refresh_token)

        with pytest.raises(TokenRefreshError) as refused:
            confluence.refresh(recording_failing_refresher)
        LinearToken.objects.store(
            "org-secrets-2",
            access_token=LINEAR_ACCESS,
            refresh_token=LINEAR_REFRESH,
            app_user_id="a",
            expires_at=timezone.now() + dt.timedelta(hours=1),
        )
        settings.FERNET_KEYS = [NEW_KEY, *settings.FERNET_KEYS]
        call_command("rotate_token_keys", "--batch-size", "1", stdout=io.StringIO())

    assert "django.db.backends" in logs.names, "SQL was not logged: the test would prove nothing"
    assert any("accounts_lineartoken" in text for text in logs.texts)
    assert "accounts.models" in logs.names
    assert_no_token(logs.text, "log records")
    # The refresher really got the plaintext (so its error quoted it): otherwise the check below is empty.
    assert spent == [CONFLUENCE_REFRESH]
    assert_no_token(str(refused.value), "the TokenRefreshError message")
    # The rotation re-encrypted under the new key: still the same plaintext behind it.
    assert LinearToken.objects.for_organization("org-secrets").access_token == REFRESHED_ACCESS


def test_encrypted_columns_send_ciphertext_to_the_database(db):
    with CaptureQueriesContext(connection) as queries:
        LinearToken.objects.store(
            "org-sql",
            access_token=LINEAR_ACCESS,
            refresh_token=LINEAR_REFRESH,
            app_user_id="a",
            expires_at=timezone.now() + dt.timedelta(hours=1),
        )
    sql = "\n".join(query["sql"] for query in queries.captured_queries)
    insert = [
        q["sql"]
        for q in queries.captured_queries
        if "accounts_lineartoken" in q["sql"] and "INSERT" in q["sql"]
    ]
    assert len(insert) == 1
    # Two Fernet ciphertexts (access and refresh) travel as bytes, the plaintexts not at all.
    assert insert[0].lower().count(FERNET_HEX) == 2
    assert_no_token(sql, "SQL sent to the database")


def test_admin_flows_log_nothing_and_pages_show_no_token(world, clients):
    client = clients["superuser"]
    linear = world["linear"]
    change_url = reverse("admin:accounts_lineartoken_change", args=[linear.pk])
    pages = {}
    with every_logger_at_debug() as logs:
        for name in ("accounts_lineartoken", "accounts_confluencetoken", "accounts_organization"):
            pages[f"{name} changelist"] = client.get(reverse(f"admin:{name}_changelist"))
        pages["linear change"] = client.get(change_url)
        pages["confluence change"] = client.get(
            reverse("admin:accounts_confluencetoken_change", args=[world["confluence"].pk])
        )
        # Searching by a token finds nothing: tokens are not searchable (the page echoes the query
        # the operator typed, so it is checked by its result count, not by its text).
        searched = client.get(reverse("admin:accounts_lineartoken_changelist"), {"q": LINEAR_ACCESS})
        replaced = client.post(
            change_url,
            {
                "organization": linear.organization_id,
                "app_user_id": linear.app_user_id,
                "scope": "read",
                "expires_at_0": "2031-01-02",
                "expires_at_1": "03:04:05",
                "new_access_token": ADMIN_ACCESS,
                "new_refresh_token": ADMIN_REFRESH,
            },
        )
        pages["after replace"] = client.get(change_url)
        pages["history"] = client.get(reverse("admin:accounts_lineartoken_history", args=[linear.pk]))
        pages["index"] = client.get(reverse("admin:index"))
        # A rejected replacement renders the form again: the typed value must not come back.
        pages["rejected replace"] = client.post(
            change_url,
            {
                "organization": linear.organization_id,
                "app_user_id": linear.app_user_id,
                "expires_at_0": "not a date",
                "expires_at_1": "",
                "new_access_token": LINEAR_ACCESS,
            },
        )

    assert replaced.status_code == 302
    assert searched.status_code == 200 and searched.context["cl"].result_count == 0
    assert pages["rejected replace"].status_code == 200
    for name, response in pages.items():
        assert response.status_code == 200, name
        assert_no_token(response.content.decode(), f"the admin page {name!r}")
    # The masked hint is what operators get instead.
    assert "••••" + ADMIN_ACCESS[-4:] in pages["after replace"].content.decode()
    stored = LinearToken.objects.get(pk=linear.pk)
    assert (stored.access_token, stored.refresh_token) == (ADMIN_ACCESS, ADMIN_REFRESH)
    entries = LogEntry.objects.filter(object_id=str(linear.pk))
    assert entries.count() == 1
    assert_no_token(
        " ".join(f"{e.object_repr} {e.change_message} {e.get_change_message()}" for e in entries),
        "admin history (LogEntry)",
    )
    assert_no_token(logs.text, "log records of the admin flows")


def test_stored_errors_that_quote_a_token_are_redacted_on_admin_pages(world, clients):
    """Agent code stores what a provider answered; an answer may quote the token it was sent."""
    quoted = f"Linear API 401: token {LINEAR_ACCESS} was revoked (Authorization: Bearer {CONFLUENCE_ACCESS})"
    run = SyncHistory.objects.record("page-1", "team-1", success=False, error=quoted)
    session = make_planning_session()
    session.mark_failed(quoted)
    client = clients["superuser"]

    pages = {
        "sync history list": client.get(reverse("admin:sync_synchistory_changelist")),
        "sync history entry": client.get(reverse("admin:sync_synchistory_change", args=[run.pk])),
        "planning session": client.get(reverse("admin:planning_planningsession_change", args=[session.pk])),
        "dashboard": client.get(reverse("admin:index")),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        text = response.content.decode()
        assert_no_token(text, f"the admin page {name!r}")
        assert "[REDACTED]" in text, name
    # What is stored stays as the agent wrote it: the redaction is in what the admin shows.
    assert SyncHistory.objects.get(pk=run.pk).error == quoted


# --- repr, exceptions, dumps -------------------------------------------------------------------------


def test_repr_str_and_error_messages_show_no_token(tokens, settings):
    linear, confluence = tokens["linear"], tokens["confluence"]
    texts = [
        repr(linear),
        str(linear),
        repr(confluence),
        str(confluence),
        repr(list(LinearToken.objects.all())),
    ]
    # A key that decrypts nothing: the error names the row and field, not the ciphertext or plaintext.
    settings.FERNET_KEYS = [NEW_KEY]
    with pytest.raises(TokenDecryptionError) as undecryptable:
        _ = LinearToken.objects.get(pk=linear.pk).access_token
    texts.append(str(undecryptable.value))
    assert f"id={linear.pk}" in str(undecryptable.value) and "access_token" in str(undecryptable.value)
    settings.FERNET_KEYS = settings.FERNET_KEYS[1:] or [NEW_KEY]
    for text in texts:
        assert_no_token(text, "repr/str/exception")


def test_refused_store_never_quotes_the_token(db):
    naive = dt.datetime(2030, 1, 1)
    for kwargs in (
        {"expires_at": naive},
        {"expires_at": "tomorrow"},
        {"app_user_id": ""},
        {"scope": "x" * 2000},
        {"refresh_token": LINEAR_REFRESH + "\x00"},
    ):
        arguments = {
            "access_token": LINEAR_ACCESS,
            "refresh_token": LINEAR_REFRESH,
            "app_user_id": "a",
            "expires_at": timezone.now(),
            **kwargs,
        }
        with pytest.raises((ValueError, ValidationError)) as error:
            LinearToken.objects.store("org-refused", **arguments)
        assert_no_token(str(error.value), f"the error for {sorted(kwargs)}")
    assert not LinearToken.objects.exists()


def test_dumpdata_accounts_writes_ciphertext_only(tokens):
    out = io.StringIO()
    call_command("dumpdata", "accounts", "--indent", "2", stdout=out)
    dump = out.getvalue()
    assert_no_token(dump, "dumpdata accounts")
    rows = {row["model"]: row["fields"] for row in json.loads(dump) if row["model"].endswith("token")}
    for model in ("accounts.lineartoken", "accounts.confluencetoken"):
        assert rows[model]["access_token"].startswith("fernet:gAAAAA")
        assert rows[model]["refresh_token"].startswith("fernet:gAAAAA")


# --- the DEBUG crash page and error reports ----------------------------------------------------------
#
# Django renders the same report for the DEBUG crash page and, with DEBUG off, for the error e-mails
# (AdminEmailHandler). ``sensitive_variables`` hides marked locals only when the exception reporter filter
# is active, and Django's default filter is active only with DEBUG off: so the token code keeps no
# plaintext in its frames at all (accounts: sealed values), which these tests check with DEBUG on and off.

DEBUG_ON_OFF = [pytest.param(True, id="debug-on"), pytest.param(False, id="debug-off")]


def crash_page(exc_info: Any) -> str:
    """The technical 500 page (DEBUG on) / error report (DEBUG off) for the exception being handled."""
    request = RequestFactory().get("/agent/refresh")
    return technical_500_response(request, *exc_info).content.decode()


def issue_new_pair(refresh_token: Any) -> tuple[str, str, dt.datetime]:
    """The provider's answer; returns before the crash, so its frame is not in the report."""
    return REFRESHED_ACCESS, REFRESHED_REFRESH, timezone.now() + dt.timedelta(hours=1)


@pytest.mark.parametrize("debug", DEBUG_ON_OFF)
def test_crash_inside_refresh_after_the_provider_answered_hides_the_tokens(
    debug, tokens, monkeypatch, settings
):
    settings.DEBUG = debug

    def save_fails(self: Any, *args: Any, **kwargs: Any) -> None:
        raise DatabaseError("disk full")

    monkeypatch.setattr(LinearToken, "save", save_fails)
    token = LinearToken.objects.for_organization("org-secrets")
    assert token.access_token == LINEAR_ACCESS  # read in this process: the instance holds plaintext too
    try:
        token.refresh(issue_new_pair)
    except DatabaseError:
        page = crash_page(sys.exc_info())
    else:
        pytest.fail("the injected failure did not happen")
    assert "disk full" in page and "in refresh" in page  # the real report, with the frames
    assert_no_token(page, "the crash page / error report of a failed refresh")


@pytest.mark.parametrize("debug", DEBUG_ON_OFF)
def test_crash_inside_store_at_the_database_hides_the_tokens(debug, db, monkeypatch, settings):
    settings.DEBUG = debug
    fail_statements(
        monkeypatch,
        lambda sql: DatabaseError("connection reset while inserting")
        if sql.startswith("INSERT INTO") and "accounts_lineartoken" in sql
        else None,
    )
    try:
        store_token_for_agent()
    except DatabaseError:
        page = crash_page(sys.exc_info())
    else:
        pytest.fail("the injected failure did not happen")
    assert "connection reset while inserting" in page and "in store" in page
    assert_no_token(page, "the crash page / error report of a failed store")


def store_token_for_agent() -> None:
    """Agent-side caller whose own frame holds no token (it passes them on from a mapping elsewhere):
    only the store API's own frames could show them."""
    LinearToken.objects.store(
        "org-crash", app_user_id="a", expires_at=timezone.now() + dt.timedelta(hours=1), **_CREDENTIALS
    )


_CREDENTIALS = {"access_token": LINEAR_ACCESS, "refresh_token": LINEAR_REFRESH}
