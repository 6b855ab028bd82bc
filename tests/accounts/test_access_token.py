"""One call for a usable token, re-authorization state, OAuth responses, async refreshers, clean errors.

Runs on both engines; the concurrency cases are in ``test_async_tokens.py`` (PostgreSQL).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import traceback
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.fields import TokenDecryptionError
from accounts.models import (
    ConfluenceToken,
    LinearToken,
    ReauthorizationRequired,
    RefreshRejected,
    TokenRefreshError,
)
from tests.accounts.conftest import NEW_KEY, OTHER_KEY

pytestmark = pytest.mark.django_db

ACCESS = "lin_oauth_access_PLAINTEXT_aaaa1111"
REFRESH = "lin_oauth_refresh_PLAINTEXT_bbbb2222"
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def store_linear(
    organization_id: str = "org-at", *, expires_in: dt.timedelta, **overrides: Any
) -> LinearToken:
    fields: dict[str, Any] = {
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "app_user_id": "app-user-1",
        "expires_at": timezone.now() + expires_in,
    }
    fields.update(overrides)
    return LinearToken.objects.store(organization_id, **fields)


class Provider:
    """A refresher that counts its calls and hands out numbered tokens."""

    def __init__(self, *, lifetime: dt.timedelta = dt.timedelta(hours=1)) -> None:
        self.given: list[str] = []
        self.lifetime = lifetime

    def __call__(self, refresh_token: str) -> tuple[str, str | None, dt.datetime]:
        self.given.append(refresh_token)
        n = len(self.given)
        return f"access-{n}", f"refresh-{n}", timezone.now() + self.lifetime


def leaks(exc: BaseException, *secrets: str) -> list[str]:
    """Every place a secret shows up in ``exc``: str, repr, args, its chain and its formatted traceback."""
    found = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts = [str(current), repr(current), repr(current.args)]
        for secret in secrets:
            if any(secret in text for text in texts):
                found.append(f"{type(current).__name__} holds {secret}")
        current = current.__cause__ or current.__context__
    formatted = "".join(traceback.format_exception(exc))
    found += [f"traceback holds {secret}" for secret in secrets if secret in formatted]
    return found


# --- access_token --------------------------------------------------------------------------------


def test_access_token_returns_the_stored_token_without_calling_the_provider(django_assert_num_queries):
    store_linear(expires_in=dt.timedelta(hours=2))
    provider = Provider()
    with django_assert_num_queries(1):
        assert LinearToken.objects.access_token("org-at", provider) == ACCESS
    assert provider.given == []


def test_access_token_refreshes_a_token_about_to_expire_once_and_stores_it():
    store_linear(expires_in=dt.timedelta(seconds=30))  # inside the default 60 s leeway
    provider = Provider()
    assert LinearToken.objects.access_token("org-at", provider) == "access-1"
    assert LinearToken.objects.access_token("org-at", provider) == "access-1"  # fresh now: no call
    assert provider.given == [REFRESH]
    row = LinearToken.objects.get(organization__linear_id="org-at")
    assert (row.access_token, row.refresh_token) == ("access-1", "refresh-1")


def test_access_token_leeway_decides_what_is_about_to_expire():
    store_linear(expires_in=dt.timedelta(minutes=10))
    provider = Provider()
    assert LinearToken.objects.access_token("org-at", provider, leeway=dt.timedelta(minutes=5)) == ACCESS
    assert LinearToken.objects.access_token("org-at", provider, leeway=dt.timedelta(minutes=15)) == "access-1"
    assert provider.given == [REFRESH]


def test_access_token_refuses_a_leeway_that_is_not_a_timedelta():
    store_linear(expires_in=dt.timedelta(hours=1))
    with pytest.raises(ValueError, match="leeway must be a timedelta, not int"):
        LinearToken.objects.access_token("org-at", Provider(), leeway=60)  # type: ignore[arg-type]


def test_access_token_without_a_stored_token_requires_authorization():
    with pytest.raises(
        ReauthorizationRequired, match="No Linear token is stored for organization 'org-none'"
    ):
        LinearToken.objects.access_token("org-none", Provider())


def test_access_token_of_a_token_without_refresh_token_requires_authorization():
    store_linear(expires_in=dt.timedelta(seconds=10), refresh_token=None)
    with pytest.raises(ReauthorizationRequired, match="has no refresh token"):
        LinearToken.objects.access_token("org-at", Provider())


def test_confluence_access_token_picks_the_cloud_id():
    for cloud, access in (("cloud-a", "conf-access-a"), ("cloud-b", "conf-access-b")):
        ConfluenceToken.objects.store(
            "org-at",
            cloud_id=cloud,
            site_url=f"https://{cloud}.atlassian.net",
            access_token=access,
            refresh_token=f"conf-refresh-{cloud}",
            expires_at=timezone.now()
            + (dt.timedelta(seconds=5) if cloud == "cloud-b" else dt.timedelta(hours=1)),
        )
    provider = Provider()
    assert ConfluenceToken.objects.access_token("org-at", provider, cloud_id="cloud-a") == "conf-access-a"
    assert ConfluenceToken.objects.access_token("org-at", provider, cloud_id="cloud-b") == "access-1"
    assert provider.given == ["conf-refresh-cloud-b"]
    assert ConfluenceToken.objects.get(cloud_id="cloud-a").access_token == "conf-access-a"
    with pytest.raises(ReauthorizationRequired, match="No Confluence token"):
        ConfluenceToken.objects.access_token("org-at", provider, cloud_id="cloud-c")


# --- async refreshers from sync code ------------------------------------------------------------------


def test_refresh_accepts_an_async_refresher():
    token = store_linear(expires_in=dt.timedelta(hours=1))
    given = []

    async def refresher(refresh_token: str) -> tuple[str, str | None, dt.datetime]:
        await asyncio.sleep(0)
        given.append(refresh_token)
        return "async-access", None, T0 + dt.timedelta(days=3650)

    assert token.refresh(refresher) is token
    assert given == [REFRESH]
    row = LinearToken.objects.get(pk=token.pk)
    assert (row.access_token, row.refresh_token, row.expires_at) == (
        "async-access",
        REFRESH,
        T0 + dt.timedelta(days=3650),
    )


def test_access_token_accepts_an_async_refresher():
    store_linear(expires_in=dt.timedelta(seconds=1))

    async def refresher(refresh_token: str) -> tuple[str, str | None, dt.datetime]:
        return "async-access", "async-refresh", timezone.now() + dt.timedelta(hours=1)

    assert LinearToken.objects.access_token("org-at", refresher) == "async-access"
    assert LinearToken.objects.get(organization__linear_id="org-at").refresh_token == "async-refresh"


# --- re-authorization -----------------------------------------------------------------------------------


def rejecting(calls: list[str]):
    def refresher(refresh_token: str) -> tuple[str, str | None, dt.datetime]:
        calls.append(refresh_token)
        raise RefreshRejected(f"invalid_grant for {refresh_token}")

    return refresher


def test_a_rejected_refresh_marks_the_token_and_later_calls_do_not_reach_the_provider():
    token = store_linear(expires_in=dt.timedelta(seconds=5))
    calls: list[str] = []
    before = timezone.now()
    with pytest.raises(ReauthorizationRequired) as raised:
        LinearToken.objects.access_token("org-at", rejecting(calls))
    assert calls == [REFRESH]
    assert leaks(raised.value, REFRESH, ACCESS) == []
    row = LinearToken.objects.get(pk=token.pk)
    assert row.reauthorization_required_at is not None and row.reauthorization_required_at >= before
    assert row.needs_reauthorization() is True
    assert (row.access_token, row.refresh_token) == (ACCESS, REFRESH)  # the old grant is kept, unused

    provider = Provider()
    with pytest.raises(ReauthorizationRequired, match="needs re-authorization"):
        LinearToken.objects.access_token("org-at", provider)
    with pytest.raises(ReauthorizationRequired, match="needs re-authorization"):
        row.refresh(provider)
    # Even a token that has not expired yet is not handed out: the grant is known to be dead.
    LinearToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() + dt.timedelta(hours=5))
    with pytest.raises(ReauthorizationRequired):
        LinearToken.objects.access_token("org-at", provider)
    assert provider.given == [] and calls == [REFRESH]


def test_reauthorization_required_is_a_token_refresh_error():
    assert issubclass(ReauthorizationRequired, TokenRefreshError)


def test_refresh_of_a_rejected_token_loaded_before_the_mark_raises_without_calling_the_provider():
    token = store_linear(expires_in=dt.timedelta(hours=1))
    stale = LinearToken.objects.get(pk=token.pk)
    with pytest.raises(ReauthorizationRequired):
        token.refresh(rejecting([]))
    provider = Provider()
    with pytest.raises(ReauthorizationRequired):
        stale.refresh(provider)
    assert provider.given == []
    assert stale.reauthorization_required_at is not None  # updated to the stored row


def test_store_clears_the_reauthorization_mark():
    token = store_linear(expires_in=dt.timedelta(seconds=5))
    with pytest.raises(ReauthorizationRequired):
        token.refresh(rejecting([]))
    stored = store_linear(expires_in=dt.timedelta(hours=1), access_token="lin_new_grant_access")
    assert stored.pk == token.pk and stored.reauthorization_required_at is None
    assert LinearToken.objects.get(pk=token.pk).reauthorization_required_at is None
    assert LinearToken.objects.access_token("org-at", Provider()) == "lin_new_grant_access"


def test_store_oauth_response_clears_the_confluence_mark():
    token = ConfluenceToken.objects.store(
        "org-at",
        cloud_id="cloud-1",
        site_url="https://acme.atlassian.net",
        access_token="conf-access",
        refresh_token="conf-refresh",
        expires_at=timezone.now(),
    )
    with pytest.raises(ReauthorizationRequired):
        ConfluenceToken.objects.access_token("org-at", rejecting([]), cloud_id="cloud-1")
    assert ConfluenceToken.objects.get(pk=token.pk).needs_reauthorization()
    ConfluenceToken.objects.store_oauth_response(
        "org-at",
        {"access_token": "conf-access-2", "refresh_token": "conf-refresh-2", "expires_in": 3600},
        cloud_id="cloud-1",
        site_url="https://acme.atlassian.net",
    )
    assert not ConfluenceToken.objects.get(pk=token.pk).needs_reauthorization()
    assert ConfluenceToken.objects.needing_reauthorization().count() == 0


def test_needing_reauthorization_lists_only_marked_tokens():
    marked = store_linear("org-marked", expires_in=dt.timedelta(seconds=5))
    store_linear("org-fine", expires_in=dt.timedelta(seconds=5))
    with pytest.raises(ReauthorizationRequired):
        marked.refresh(rejecting([]))
    assert list(LinearToken.objects.needing_reauthorization()) == [marked]


# --- OAuth responses ---------------------------------------------------------------------------------------


def test_store_oauth_response_takes_linears_json():
    response = {
        "access_token": "lin_oauth_from_response",
        "token_type": "Bearer",
        "expires_in": 86399,
        "scope": ["read", "write", "issues:create"],
        "refresh_token": "lin_refresh_from_response",
    }
    token = LinearToken.objects.store_oauth_response("org-oauth", response, app_user_id="app-1", at=T0)
    row = LinearToken.objects.get(pk=token.pk)
    assert (row.access_token, row.refresh_token, row.expires_at, row.scope, row.app_user_id) == (
        "lin_oauth_from_response",
        "lin_refresh_from_response",
        T0 + dt.timedelta(seconds=86399),
        "read write issues:create",
        "app-1",
    )
    assert row.organization.linear_id == "org-oauth"


def test_store_oauth_response_takes_atlassians_json_without_refresh_token():
    response = {
        "access_token": "eyJatlassian",
        "expires_in": 3600,
        "scope": "read:confluence-content.all offline_access",
    }
    token = ConfluenceToken.objects.store_oauth_response(
        "org-oauth", response, cloud_id="cloud-9", site_url="https://acme.atlassian.net", at=T0
    )
    row = ConfluenceToken.objects.get(pk=token.pk)
    assert (row.access_token, row.refresh_token, row.expires_at, row.scope, row.cloud_id) == (
        "eyJatlassian",
        None,
        T0 + dt.timedelta(hours=1),
        "read:confluence-content.all offline_access",
        "cloud-9",
    )


def test_store_oauth_response_defaults_expiry_to_now_plus_expires_in():
    before = timezone.now()
    token = LinearToken.objects.store_oauth_response(
        "org-oauth", {"access_token": "a" * 20, "expires_in": 600}, app_user_id="app-1"
    )
    assert (
        before + dt.timedelta(seconds=600) <= token.expires_at <= timezone.now() + dt.timedelta(seconds=600)
    )
    assert token.scope == ""


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        ("not a mapping", ValueError, "response must be a mapping (the token endpoint's JSON), not str."),
        ({"expires_in": 60}, ValidationError, "response has no access_token."),
        ({"access_token": "lin_secret_abcdef"}, ValidationError, "response has no expires_in."),
        (
            {"access_token": "lin_secret_abcdef", "expires_in": "3600"},
            ValueError,
            "response['expires_in'] must be an integer (seconds), not str.",
        ),
        (
            {"access_token": "lin_secret_abcdef", "expires_in": True},
            ValueError,
            "response['expires_in'] must be an integer (seconds), not bool.",
        ),
        (
            {"access_token": "lin_secret_abcdef", "expires_in": 0},
            ValidationError,
            "response['expires_in'] must be positive (got 0).",
        ),
        (
            {"access_token": "lin_secret_abcdef", "expires_in": 10**30},
            ValidationError,
            f"response['expires_in'] is too large (got {10**30}).",
        ),
        (
            {"access_token": "", "expires_in": 60},
            ValidationError,
            "response['access_token'] must not be empty.",
        ),
        (
            {"access_token": 12345, "expires_in": 60},
            ValueError,
            "response['access_token'] must be a string, not int.",
        ),
        (
            {"access_token": "lin_secret_abcdef", "refresh_token": "lin_\udce9secret", "expires_in": 60},
            ValidationError,
            "response['refresh_token'] must be valid Unicode text (it holds a lone surrogate).",
        ),
        (
            {"access_token": "lin_secret_abcdef", "expires_in": 60, "scope": ["read", 7]},
            ValueError,
            "response['scope'] must hold strings, not int.",
        ),
    ],
)
def test_store_oauth_response_refuses_bad_responses_before_writing(response, error, message):
    with pytest.raises(error) as raised:
        LinearToken.objects.store_oauth_response("org-oauth", response, app_user_id="app-1", at=T0)
    text = raised.value.messages[0] if isinstance(raised.value, ValidationError) else str(raised.value)
    assert text == message
    assert leaks(raised.value, "secret") == []
    assert not LinearToken.objects.exists()


# --- issue 18 item 10: an undecryptable refresh token ------------------------------------------------------


def test_refresh_with_a_key_that_cannot_decrypt_raises_token_decryption_error(settings):
    settings.FERNET_KEYS = [OTHER_KEY]
    token = store_linear(expires_in=dt.timedelta(seconds=5))
    settings.FERNET_KEYS = [NEW_KEY]
    loaded = LinearToken.objects.get(pk=token.pk)
    provider = Provider()
    with pytest.raises(TokenDecryptionError) as raised:
        loaded.refresh(provider)
    assert str(raised.value).startswith(
        f"accounts.LinearToken.refresh_token of row id={token.pk} cannot be decrypted"
    )
    with pytest.raises(TokenDecryptionError):
        LinearToken.objects.access_token("org-at", provider)
    assert provider.given == []
    settings.FERNET_KEYS = [OTHER_KEY]
    assert LinearToken.objects.get(pk=token.pk).refresh_token == REFRESH  # unchanged


# --- issue 18 item 12: no token in any exception that leaves the project -----------------------------------


def test_a_token_with_a_lone_surrogate_is_refused_without_the_token_in_the_error():
    secret = "lin_oauth_SURROGATE_\udce9_secret"
    with pytest.raises(ValidationError) as raised:
        store_linear(expires_in=dt.timedelta(hours=1), access_token=secret)
    assert raised.value.messages == ["access_token must be valid Unicode text (it holds a lone surrogate)."]
    assert raised.value.__context__ is None and raised.value.__cause__ is None
    assert leaks(raised.value, "SURROGATE") == []
    assert not LinearToken.objects.exists()


def test_a_refresher_returning_a_lone_surrogate_is_a_clean_refresh_error():
    token = store_linear(expires_in=dt.timedelta(hours=1))
    returned = ("lin_SURROGATE_\udce9_access", None, timezone.now())
    with pytest.raises(TokenRefreshError) as raised:
        token.refresh(lambda _r: returned)
    assert "lone surrogate" in str(raised.value)
    assert leaks(raised.value, "SURROGATE", REFRESH) == []


@pytest.mark.parametrize("kind", [asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit])
def test_a_refresher_raising_a_base_exception_passes_it_on_without_the_token(kind):
    token = store_linear(expires_in=dt.timedelta(hours=1))

    def refresher(refresh_token: str) -> tuple[str, str | None, dt.datetime]:
        raise kind(f"cancelled while posting {refresh_token}")

    with pytest.raises(kind) as raised:
        token.refresh(refresher)
    assert raised.value.args == ()
    assert raised.value.__context__ is None and raised.value.__cause__ is None
    assert leaks(raised.value, REFRESH, ACCESS) == []
    assert LinearToken.objects.get(pk=token.pk).access_token == ACCESS  # rolled back, nothing written


def test_a_base_exception_that_needs_arguments_becomes_a_clean_refresh_error():
    class Abort(BaseException):
        def __init__(self, detail: str) -> None:
            super().__init__(detail)

    token = store_linear(expires_in=dt.timedelta(hours=1))

    def refresher(refresh_token: str) -> tuple[str, str | None, dt.datetime]:
        raise Abort(refresh_token)

    with pytest.raises(TokenRefreshError, match="was interrupted: the refresher raised Abort") as raised:
        token.refresh(refresher)
    assert leaks(raised.value, REFRESH) == []


def test_an_async_refresher_raising_cancelled_error_is_cancelled_cleanly():
    token = store_linear(expires_in=dt.timedelta(hours=1))

    async def refresher(refresh_token: str) -> tuple[str, str | None, dt.datetime]:
        raise asyncio.CancelledError(refresh_token)

    with pytest.raises(asyncio.CancelledError) as raised:
        token.refresh(refresher)
    assert leaks(raised.value, REFRESH) == []


def test_refresh_rejected_message_is_not_kept():
    token = store_linear(expires_in=dt.timedelta(hours=1))
    with pytest.raises(ReauthorizationRequired) as raised:
        token.refresh(rejecting([]))
    assert leaks(raised.value, REFRESH, "invalid_grant") == []
