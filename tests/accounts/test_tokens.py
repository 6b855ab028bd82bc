"""Token models: ciphertext at rest, upsert, lookups, expiry, refresh, undecryptable rows, bad input."""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
from collections.abc import Callable
from typing import Any

import pytest
from django.core import serializers
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, transaction
from django.test import RequestFactory
from django.utils import timezone
from django.views.debug import technical_500_response

from accounts import models as accounts_models
from accounts.fields import EncryptedValue, TokenDecryptionError
from accounts.models import (
    EXPIRING_SOON_WINDOW,
    ConfluenceToken,
    LinearToken,
    Organization,
    TokenRefreshError,
    TokenStatus,
    mask_token,
    status_for_expiry,
)
from tests.accounts.conftest import NEW_KEY, OLD_KEY, OTHER_KEY, fernet_of, raw_column
from tests.db_faults import fail_statements
from tests.factories import make_confluence_token, make_linear_token, make_organization

pytestmark = pytest.mark.django_db

ACCESS = "lin_oauth_access_PLAINTEXT_aaaa1111"
REFRESH = "lin_oauth_refresh_PLAINTEXT_bbbb2222"


def store_linear(organization_id: str = "org-linear", **overrides: Any) -> LinearToken:
    fields: dict[str, Any] = {
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "app_user_id": "app-user-1",
        "expires_at": timezone.now() + dt.timedelta(hours=1),
    }
    fields.update(overrides)
    return LinearToken.objects.store(organization_id, **fields)


# --- encryption at rest --------------------------------------------------------------------------


@pytest.mark.parametrize("model", [LinearToken, ConfluenceToken])
def test_tokens_are_stored_as_ciphertext_only(model: type, old_key: str) -> None:
    if model is LinearToken:
        token = store_linear()
    else:
        token = ConfluenceToken.objects.store(
            "org-conf",
            cloud_id="cloud-1",
            site_url="https://acme.atlassian.net",
            access_token=ACCESS,
            refresh_token=REFRESH,
            expires_at=timezone.now() + dt.timedelta(hours=1),
        )

    for column, plaintext in [("access_token", ACCESS), ("refresh_token", REFRESH)]:
        stored = raw_column(model, token.pk, column)
        assert plaintext.encode() not in stored
        assert b"PLAINTEXT" not in stored
        assert stored.startswith(b"gAAAAA")  # Fernet version byte and timestamp, base64
        assert fernet_of(old_key).decrypt(stored) == plaintext.encode()


def test_a_loaded_token_is_decrypted_on_first_access() -> None:
    token = store_linear()
    loaded = LinearToken.objects.get(pk=token.pk)

    assert isinstance(loaded.__dict__["access_token"], EncryptedValue)
    assert loaded.access_token == ACCESS
    assert loaded.refresh_token == REFRESH
    assert loaded.__dict__["access_token"] == ACCESS  # cached after the first read


def test_saving_an_unread_token_keeps_its_ciphertext() -> None:
    token = store_linear()
    before = raw_column(LinearToken, token.pk, "access_token")
    loaded = LinearToken.objects.get(pk=token.pk)
    loaded.scope = "read"
    loaded.save()

    assert raw_column(LinearToken, token.pk, "access_token") == before
    assert LinearToken.objects.get(pk=token.pk).access_token == ACCESS


def test_keys_follow_settings_changes(settings: Any) -> None:
    settings.FERNET_KEYS = [OLD_KEY]
    token = store_linear()
    settings.FERNET_KEYS = [NEW_KEY]
    token = store_linear(access_token="second-access-token-xyz9")

    stored = raw_column(LinearToken, token.pk, "access_token")
    assert fernet_of(NEW_KEY).decrypt(stored) == b"second-access-token-xyz9"


# --- store ---------------------------------------------------------------------------------------


def test_store_creates_the_organization_on_first_use() -> None:
    token = store_linear("org-new")

    organization = Organization.objects.get(linear_id="org-new")
    assert token.organization == organization
    assert (token.access_token, token.refresh_token, token.app_user_id) == (ACCESS, REFRESH, "app-user-1")


def test_store_twice_keeps_one_row_with_the_last_values() -> None:
    first = store_linear("org-1", scope="read")
    expires_at = timezone.now() + dt.timedelta(hours=5)
    second = store_linear(
        "org-1",
        access_token="access-two-cccc3333",
        refresh_token=None,
        app_user_id="app-user-2",
        expires_at=expires_at,
        scope="read,write",
    )

    assert LinearToken.objects.count() == 1
    assert Organization.objects.count() == 1
    assert second.pk == first.pk
    row = LinearToken.objects.get()
    assert row.access_token == "access-two-cccc3333"
    assert row.refresh_token is None  # a store replaces the whole grant
    assert (row.app_user_id, row.scope, row.expires_at) == ("app-user-2", "read,write", expires_at)
    assert row.created_at == first.created_at
    assert row.updated_at > first.updated_at
    assert second.created_at == first.created_at


def test_store_for_a_known_organization_is_a_lookup_and_one_upsert(
    django_assert_num_queries: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    organization = make_organization(linear_id="org-1")
    monkeypatch.setattr(transaction, "atomic", _refuse_transaction)
    # The organization lookup, then INSERT ... ON CONFLICT ... RETURNING: no transaction around the
    # single write (two round trips on PostgreSQL), no re-read of the token.
    with django_assert_num_queries(2) as captured:
        token = store_linear("org-1")
    sqls = [query["sql"].upper() for query in captured]
    assert sqls[0].startswith("SELECT") and "ACCOUNTS_ORGANIZATION" in sqls[0]
    assert sqls[1].startswith("INSERT") and "ON CONFLICT" in sqls[1]
    assert token.organization is not None and token.organization.pk == organization.pk
    assert token.access_token == ACCESS


def _refuse_transaction(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("a store for a known organization opened a transaction")


def test_store_for_a_new_organization_creates_it_in_the_tokens_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def failing_upsert(*args: Any, **kwargs: Any) -> None:
        raise IntegrityError("the token upsert failed")

    monkeypatch.setattr(accounts_models, "upsert_one", failing_upsert)
    with pytest.raises(IntegrityError):
        store_linear("org-new")
    assert not Organization.objects.filter(linear_id="org-new").exists()


def test_confluence_store_upserts_per_cloud_id() -> None:
    expires_at = timezone.now() + dt.timedelta(hours=1)
    common = {"site_url": "https://acme.atlassian.net", "expires_at": expires_at}
    a = ConfluenceToken.objects.store("org-1", cloud_id="cloud-a", access_token="conf-a-token-1111", **common)
    b = ConfluenceToken.objects.store("org-1", cloud_id="cloud-b", access_token="conf-b-token-2222", **common)
    a2 = ConfluenceToken.objects.store(
        "org-1",
        cloud_id="cloud-a",
        site_url="https://acme-new.atlassian.net",
        access_token="conf-a-token-3333",
        refresh_token="conf-a-refresh-44",
        expires_at=expires_at,
    )

    assert a2.pk == a.pk != b.pk
    rows = list(ConfluenceToken.objects.order_by("cloud_id").values_list("cloud_id", "site_url"))
    assert rows == [("cloud-a", "https://acme-new.atlassian.net"), ("cloud-b", "https://acme.atlassian.net")]
    assert ConfluenceToken.objects.get(pk=a.pk).access_token == "conf-a-token-3333"
    assert ConfluenceToken.objects.get(pk=a.pk).refresh_token == "conf-a-refresh-44"


def test_confluence_store_defaults_to_an_empty_cloud_id() -> None:
    token = ConfluenceToken.objects.store(
        "org-1",
        site_url="https://acme.atlassian.net",
        access_token="conf-token-5555",
        expires_at=timezone.now() + dt.timedelta(hours=1),
    )
    assert (token.cloud_id, token.refresh_token) == ("", None)


# --- for_organization ----------------------------------------------------------------------------


def test_for_organization_returns_the_token_in_one_query(django_assert_num_queries: Any) -> None:
    stored = store_linear("org-1")
    store_linear("org-2", access_token="other-org-token-9999")

    with django_assert_num_queries(1) as captured:
        token = LinearToken.objects.for_organization("org-1")
        assert token.organization.linear_id == "org-1"
    # At most one row matches: no ORDER BY to compile and sort (benchmarks/hot_paths.py).
    assert "ORDER BY" not in captured.captured_queries[0]["sql"].upper()
    assert token.pk == stored.pk
    assert token.access_token == ACCESS


def test_for_organization_returns_expired_tokens_too() -> None:
    store_linear("org-1", expires_at=timezone.now() - dt.timedelta(days=1))
    token = LinearToken.objects.for_organization("org-1")
    assert token is not None
    assert token.is_expired()


def test_for_organization_of_an_unknown_organization_is_none() -> None:
    make_organization(linear_id="org-without-token")
    assert LinearToken.objects.for_organization("org-unknown") is None
    assert LinearToken.objects.for_organization("org-without-token") is None
    assert ConfluenceToken.objects.for_organization("org-unknown") is None
    assert ConfluenceToken.objects.for_organization("org-unknown", cloud_id="x") is None
    assert Organization.objects.filter(linear_id="org-unknown").count() == 0


def test_confluence_for_organization_by_cloud_id_or_most_recent() -> None:
    organization = make_organization(linear_id="org-1")
    older = make_confluence_token(organization=organization, cloud_id="cloud-a")
    newer = make_confluence_token(organization=organization, cloud_id="cloud-b")

    assert ConfluenceToken.objects.for_organization("org-1", cloud_id="cloud-a").pk == older.pk
    assert ConfluenceToken.objects.for_organization("org-1", cloud_id="cloud-b").pk == newer.pk
    assert ConfluenceToken.objects.for_organization("org-1", cloud_id="cloud-c") is None
    assert ConfluenceToken.objects.for_organization("org-1").pk == newer.pk


# --- expiry --------------------------------------------------------------------------------------


def test_is_expired_honours_the_leeway() -> None:
    now = timezone.now()
    token = make_linear_token(expires_at=now + dt.timedelta(seconds=30))

    assert token.is_expired(at=now) is True  # default leeway: 60 seconds
    assert token.is_expired(leeway=dt.timedelta(0), at=now) is False
    assert token.is_expired(leeway=dt.timedelta(seconds=29), at=now) is False
    assert token.is_expired(leeway=dt.timedelta(seconds=30), at=now) is True


def test_expires_soon_and_status() -> None:
    now = timezone.now()
    assert make_linear_token(expires_at=now - dt.timedelta(minutes=1)).status() == TokenStatus.EXPIRED
    expiring = make_linear_token(expires_at=now + dt.timedelta(hours=2))
    assert expiring.expires_soon() is True
    assert expiring.expires_soon(within=dt.timedelta(hours=1)) is False
    assert expiring.status() == TokenStatus.EXPIRING
    valid = make_linear_token(expires_at=now + dt.timedelta(days=3))
    assert valid.expires_soon() is False
    assert valid.status() == TokenStatus.VALID
    assert status_for_expiry(None) == TokenStatus.NONE


def test_expired_and_expiring_querysets() -> None:
    now = timezone.now()
    expired = make_linear_token(expires_at=now - dt.timedelta(minutes=1))
    expiring = make_linear_token(expires_at=now + dt.timedelta(hours=2))
    make_linear_token(expires_at=now + dt.timedelta(days=3))

    assert list(LinearToken.objects.expired().values_list("pk", flat=True)) == [expired.pk]
    assert list(LinearToken.objects.expiring_within().values_list("pk", flat=True)) == [expiring.pk]


def test_the_sql_expiry_rule_puts_every_token_where_status_says_it_is() -> None:
    at = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    tick = dt.timedelta(microseconds=1)
    soon = at + EXPIRING_SOON_WINDOW
    tokens = [
        make_linear_token(expires_at=moment)
        for moment in (at - tick, at, at + tick, soon - tick, soon, soon + tick, at - dt.timedelta(days=400))
    ]

    for status in (TokenStatus.EXPIRED, TokenStatus.EXPIRING, TokenStatus.VALID):
        in_sql = set(LinearToken.objects.with_status(status, at=at).values_list("pk", flat=True))
        in_python = {token.pk for token in tokens if status_for_expiry(token.expires_at, at=at) == status}
        assert in_sql == in_python, status
    assert set(LinearToken.objects.with_status("expiring", at=at).values_list("pk", flat=True)) == {
        token.pk for token in tokens[2:5]
    }
    assert set(LinearToken.objects.expiring_within(at=at).values_list("pk", flat=True)) == {
        token.pk for token in tokens[2:5]
    }


@pytest.mark.parametrize("status", ["none", "soon", "", None])
def test_with_status_refuses_an_unknown_state(status: Any) -> None:
    with pytest.raises(ValueError, match="status must be one of expired, expiring, valid"):
        LinearToken.objects.with_status(status)


# --- refresh -------------------------------------------------------------------------------------


class RecordingRefresher:
    """A refresher that records every refresh token it is given and hands out numbered new tokens."""

    def __init__(self, *, rotate_refresh: bool = True) -> None:
        self.given: list[str] = []
        self.rotate_refresh = rotate_refresh

    def __call__(self, refresh_token: str) -> tuple[str, str | None, dt.datetime]:
        self.given.append(refresh_token)
        n = len(self.given)
        new_refresh = f"refreshed-refresh-{n:04d}" if self.rotate_refresh else None
        return f"refreshed-access-{n:04d}", new_refresh, timezone.now() + dt.timedelta(hours=n)


def test_refresh_saves_the_new_pair() -> None:
    token = store_linear(expires_at=timezone.now() - dt.timedelta(minutes=5))
    refresher = RecordingRefresher()

    result = token.refresh(refresher)

    assert result is token
    assert refresher.given == [REFRESH]
    row = LinearToken.objects.get(pk=token.pk)
    assert (row.access_token, row.refresh_token) == ("refreshed-access-0001", "refreshed-refresh-0001")
    assert row.is_expired() is False
    assert (token.access_token, token.refresh_token) == ("refreshed-access-0001", "refreshed-refresh-0001")
    assert token.updated_at == row.updated_at


def test_refresh_keeps_the_old_refresh_token_when_the_provider_sends_none() -> None:
    token = make_confluence_token(refresh_token="conf-refresh-keep-7777")
    token.refresh(RecordingRefresher(rotate_refresh=False))

    row = ConfluenceToken.objects.get(pk=token.pk)
    assert (row.access_token, row.refresh_token) == ("refreshed-access-0001", "conf-refresh-keep-7777")


def test_refresh_skips_the_call_when_another_worker_already_refreshed() -> None:
    store_linear("org-1")
    first = LinearToken.objects.for_organization("org-1")
    stale = LinearToken.objects.for_organization("org-1")
    refresher = RecordingRefresher()

    first.refresh(refresher)
    stale.refresh(refresher)

    assert refresher.given == [REFRESH]  # the stale copy did not spend the old refresh token again
    assert (stale.access_token, stale.refresh_token) == ("refreshed-access-0001", "refreshed-refresh-0001")


def test_refresh_after_key_rotation_still_refreshes(settings: Any) -> None:
    settings.FERNET_KEYS = [OLD_KEY]
    store_linear("org-1")
    loaded = LinearToken.objects.for_organization("org-1")
    settings.FERNET_KEYS = [NEW_KEY, OLD_KEY]
    call_command("rotate_token_keys", stdout=io.StringIO())
    refresher = RecordingRefresher()

    loaded.refresh(refresher)

    assert refresher.given == [REFRESH]  # re-encrypted, not refreshed by anybody: refresh goes ahead


def test_refresh_without_a_refresh_token_is_a_clear_error() -> None:
    token = store_linear(refresh_token=None)
    refresher = RecordingRefresher()

    with pytest.raises(TokenRefreshError, match=rf"LinearToken id={token.pk} .*has no refresh token"):
        token.refresh(refresher)
    assert refresher.given == []


def test_a_failing_refresher_raises_an_error_without_the_token() -> None:
    token = store_linear()

    def leaky(refresh_token: str) -> tuple[str, str | None, dt.datetime]:
        raise RuntimeError(f"POST https://api.linear.app/oauth/token?refresh_token={refresh_token} -> 400")

    with pytest.raises(TokenRefreshError) as caught:
        token.refresh(leaky)

    assert "RuntimeError" in str(caught.value)
    chain = [caught.value, caught.value.__cause__, caught.value.__context__]
    assert all(REFRESH not in repr(exc) for exc in chain)
    assert caught.value.__context__ is None
    assert LinearToken.objects.get(pk=token.pk).access_token == ACCESS


@pytest.mark.parametrize(
    "returned",
    [
        ("new-access-token-1", None, dt.datetime(2030, 1, 1)),  # naive
        ("", None, dt.datetime(2030, 1, 1, tzinfo=dt.UTC)),
        ("new-access-token-1",),
    ],
)
def test_a_refresher_returning_bad_values_changes_nothing(returned: tuple) -> None:
    token = store_linear()
    with pytest.raises(TokenRefreshError, match="Refreshing <LinearToken"):
        token.refresh(lambda refresh_token: returned)
    row = LinearToken.objects.get(pk=token.pk)
    assert (row.access_token, row.refresh_token) == (ACCESS, REFRESH)


# --- tokens that cannot be decrypted ------------------------------------------------------------


def test_an_undecryptable_token_raises_an_error_naming_model_field_and_row(settings: Any) -> None:
    settings.FERNET_KEYS = [OTHER_KEY]
    token = store_linear()
    settings.FERNET_KEYS = [NEW_KEY, OLD_KEY]

    loaded = LinearToken.objects.for_organization("org-linear")  # loading works
    with pytest.raises(TokenDecryptionError) as caught:
        _ = loaded.access_token

    message = str(caught.value)
    assert message.startswith(f"accounts.LinearToken.access_token of row id={token.pk} cannot be decrypted")
    ciphertext = raw_column(LinearToken, token.pk, "access_token").decode()
    assert ciphertext not in message and ACCESS not in message
    assert (caught.value.model_label, caught.value.field_name, caught.value.pk) == (
        "accounts.LinearToken",
        "access_token",
        token.pk,
    )
    assert loaded.token_hint("access_token") == "cannot be decrypted"
    assert str(loaded) == "Linear token of org-linear"


# --- str, repr, dumpdata ------------------------------------------------------------------------


def test_str_and_repr_show_no_token() -> None:
    token = make_confluence_token(access_token=ACCESS, refresh_token=REFRESH)
    loaded = ConfluenceToken.objects.select_related("organization").get(pk=token.pk)
    _ = loaded.access_token

    for text in (str(token), repr(token), str(loaded), repr(loaded)):
        assert ACCESS not in text and REFRESH not in text
        assert "PLAINTEXT" not in text
    assert repr(loaded) == (
        f"<ConfluenceToken id={token.pk} organization_id={token.organization_id} "
        f"expires_at={token.expires_at.isoformat()}>"
    )
    assert str(loaded) == f"Confluence token of {token.organization.linear_id}"
    assert repr(EncryptedValue(b"gAAAA")) == "<EncryptedValue>"


def test_mask_token_shows_only_the_last_four_characters() -> None:
    assert mask_token("abcdefghijklmnop") == "••••mnop"
    assert mask_token("short") == "••••"
    assert mask_token(None) == "—"


def test_dumpdata_writes_ciphertext_and_loaddata_round_trips(tmp_path: Any) -> None:
    token = store_linear()
    unread = LinearToken.objects.get(pk=token.pk)
    ciphertext = raw_column(LinearToken, token.pk, "access_token")

    out = io.StringIO()
    call_command("dumpdata", "accounts.lineartoken", "accounts.organization", stdout=out)
    dump = out.getvalue()
    assert ACCESS not in dump and REFRESH not in dump
    fields = next(item["fields"] for item in json.loads(dump) if item["model"] == "accounts.lineartoken")
    assert fields["access_token"] == "fernet:" + ciphertext.decode()
    # A token read (plaintext) in this process is serialized as (fresh) ciphertext too.
    assert ACCESS not in serializers.serialize("json", [token])
    assert serializers.serialize("json", [unread]) == serializers.serialize(
        "json", [LinearToken.objects.get(pk=token.pk)]
    )

    LinearToken.objects.all().delete()
    path = tmp_path / "tokens.json"
    path.write_text(dump)
    call_command("loaddata", str(path), stdout=io.StringIO())

    assert raw_column(LinearToken, token.pk, "access_token") == ciphertext  # not encrypted twice
    restored = LinearToken.objects.get(pk=token.pk)
    assert (restored.access_token, restored.refresh_token) == (ACCESS, REFRESH)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"organization_id": ""}, ValidationError, "organization_id must not be empty"),
        ({"organization_id": None}, ValueError, "organization_id must be a string"),
        ({"expires_at": dt.datetime(2030, 1, 1)}, ValidationError, "expires_at must be timezone-aware"),
        ({"expires_at": "2030-01-01"}, ValueError, "expires_at must be a datetime"),
        ({"access_token": 12345}, ValueError, "access_token must be a string, not int"),
        ({"access_token": b"bytes-token"}, ValueError, "access_token must be a string, not bytes"),
        ({"access_token": "   "}, ValidationError, "access_token must not be empty"),
        ({"access_token": "tok\x00en-aaaa"}, ValidationError, "access_token must not contain NUL"),
        ({"refresh_token": 42}, ValueError, "refresh_token must be a string, not int"),
        ({"refresh_token": "re\x00fresh"}, ValidationError, "refresh_token must not contain NUL"),
        ({"access_token": "fernet:gAAAAAxyz"}, ValidationError, "not serialized ciphertext"),
        ({"app_user_id": ""}, ValidationError, "app_user_id must not be empty"),
    ],
)
def test_bad_store_input_is_refused_before_anything_is_written(
    overrides: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {
        "organization_id": "org-bad",
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "app_user_id": "app-user-1",
        "expires_at": timezone.now() + dt.timedelta(hours=1),
    }
    arguments.update(overrides)
    organization_id = arguments.pop("organization_id")

    with pytest.raises(error, match=message) as caught:
        LinearToken.objects.store(organization_id, **arguments)

    assert ACCESS not in str(caught.value) and "tok\x00en" not in str(caught.value)
    assert LinearToken.objects.count() == 0
    assert Organization.objects.count() == 0


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"site_url": ""}, ValidationError, "site_url must not be empty"),
        ({"cloud_id": 7}, ValueError, "cloud_id must be a string"),
        ({"cloud_id": "c\x00"}, ValidationError, "cloud_id must not contain NUL"),
        ({"expires_at": dt.datetime(2030, 1, 1)}, ValidationError, "timezone-aware"),
    ],
)
def test_bad_confluence_store_input_is_refused(overrides: dict[str, Any], error: type, message: str) -> None:
    arguments: dict[str, Any] = {
        "cloud_id": "cloud-1",
        "site_url": "https://acme.atlassian.net",
        "access_token": ACCESS,
        "expires_at": timezone.now() + dt.timedelta(hours=1),
    }
    arguments.update(overrides)
    with pytest.raises(error, match=message):
        ConfluenceToken.objects.store("org-bad", **arguments)
    assert ConfluenceToken.objects.count() == 0
    assert Organization.objects.count() == 0


@pytest.mark.parametrize(("value", "error"), [("", ValidationError), (None, ValueError), (5, ValueError)])
def test_for_organization_refuses_a_bad_organization_id(value: Any, error: type) -> None:
    with pytest.raises(error, match="organization_id"):
        LinearToken.objects.for_organization(value)
    with pytest.raises(error, match="organization_id"):
        ConfluenceToken.objects.for_organization(value)


def test_refresh_of_an_unsaved_token_is_refused() -> None:
    with pytest.raises(ValueError, match="must be saved"):
        LinearToken(access_token=ACCESS).refresh(RecordingRefresher())


def test_deleting_an_organization_deletes_its_tokens() -> None:
    token = make_linear_token()
    make_confluence_token(organization=token.organization)
    token.organization.delete()
    assert (LinearToken.objects.count(), ConfluenceToken.objects.count()) == (0, 0)


# --- crash pages ---------------------------------------------------------------------------------


_CREDENTIALS = {"access_token": ACCESS, "refresh_token": REFRESH}
_IN_A_DAY = timezone.now() + dt.timedelta(days=1)


def crash_page_of(action: Callable[[], Any]) -> str:
    """The DEBUG technical 500 page for the DatabaseError ``action`` raises."""
    try:
        action()
    except DatabaseError:
        return technical_500_response(RequestFactory().get("/"), *sys.exc_info()).content.decode()
    pytest.fail("the injected failure did not happen")


def test_a_database_crash_in_store_shows_no_token_even_with_debug_on(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.DEBUG = True
    fail_statements(
        monkeypatch,
        lambda sql: DatabaseError("connection reset")
        if sql.startswith("INSERT INTO") and "accounts_lineartoken" in sql
        else None,
    )
    # The caller's own frame holds no token variable: the tokens come from a module-level map.
    page = crash_page_of(
        lambda: LinearToken.objects.store("org-crash", app_user_id="a", expires_at=_IN_A_DAY, **_CREDENTIALS)
    )

    assert "connection reset" in page and "in store" in page
    assert ACCESS not in page and REFRESH not in page


def test_a_database_crash_in_refresh_shows_no_token_even_with_debug_on(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.DEBUG = True
    token = store_linear("org-crash")
    _ = (token.access_token, token.refresh_token)

    def failing_save(self: Any, *args: Any, **kwargs: Any) -> None:
        raise DatabaseError("disk full")

    monkeypatch.setattr(LinearToken, "save", failing_save)
    page = crash_page_of(lambda: token.refresh(RecordingRefresher()))

    assert "disk full" in page and "in refresh" in page
    # Built, not written out: the page quotes the source lines around each frame, this test's too.
    refreshed = [f"refreshed-{kind}-{1:04d}" for kind in ("access", "refresh")]
    for secret in (ACCESS, REFRESH, *refreshed):
        assert secret not in page
