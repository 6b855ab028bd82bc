"""Key rotation: rotate_token_keys re-encrypts every token with the first key, in batches, re-runnable."""

from __future__ import annotations

import io
from typing import Any

import pytest
from cryptography.fernet import InvalidToken
from django.core.management import CommandError, call_command

from accounts.models import ConfluenceToken, LinearToken
from accounts.services import RotationProgress, RotationResult, UndecryptableToken, rotate_token_keys
from tests.accounts.conftest import NEW_KEY, OLD_KEY, OTHER_KEY, fernet_of, raw_column
from tests.factories import make_confluence_token, make_linear_token

pytestmark = pytest.mark.django_db


def test_rotation_re_encrypts_every_token_with_the_first_key(settings: Any) -> None:
    settings.FERNET_KEYS = [OLD_KEY]
    linear = [make_linear_token(access_token=f"linear-access-{i:04d}") for i in range(3)]
    no_refresh = make_linear_token(access_token="linear-access-norefresh", refresh_token=None)
    confluence = make_confluence_token(access_token="conf-access-0001", refresh_token="conf-refresh-0001")
    updated_at = LinearToken.objects.get(pk=linear[0].pk).updated_at
    settings.FERNET_KEYS = [NEW_KEY, OLD_KEY]
    progress: list[RotationProgress] = []

    result = rotate_token_keys(batch_size=2, on_progress=progress.append)

    assert (result.rewritten, result.already_current, result.undecryptable) == (5, 0, [])
    assert progress == [
        RotationProgress("accounts_lineartoken", 2, 4),
        RotationProgress("accounts_lineartoken", 4, 4),
        RotationProgress("accounts_confluencetoken", 1, 1),
    ]
    for i, token in enumerate(linear):
        stored = raw_column(LinearToken, token.pk, "access_token")
        assert fernet_of(NEW_KEY).decrypt(stored) == f"linear-access-{i:04d}".encode()
        with pytest.raises(InvalidToken):
            fernet_of(OLD_KEY).decrypt(stored)
        assert fernet_of(NEW_KEY).decrypt(raw_column(LinearToken, token.pk, "refresh_token")) == (
            token.refresh_token.encode()
        )
    assert raw_column(LinearToken, no_refresh.pk, "refresh_token") is None
    assert fernet_of(NEW_KEY).decrypt(raw_column(ConfluenceToken, confluence.pk, "refresh_token")) == (
        b"conf-refresh-0001"
    )
    assert LinearToken.objects.get(pk=linear[0].pk).updated_at == updated_at

    settings.FERNET_KEYS = [NEW_KEY]  # the old key can go now
    assert LinearToken.objects.get(pk=linear[2].pk).access_token == "linear-access-0002"
    assert ConfluenceToken.objects.get(pk=confluence.pk).access_token == "conf-access-0001"


def test_a_second_run_rewrites_nothing(settings: Any, django_assert_num_queries: Any) -> None:
    settings.FERNET_KEYS = [OLD_KEY]
    tokens = [make_linear_token() for _ in range(4)]
    settings.FERNET_KEYS = [NEW_KEY, OLD_KEY]
    rotate_token_keys()
    before = [raw_column(LinearToken, token.pk, "access_token") for token in tokens]

    # Two counts; per batch of LinearToken (two) the batch's ids, then the locking SELECT between
    # SAVEPOINT and RELEASE (the test runs in a transaction); one ids query finds the end of each
    # table: 2 + 2 * 4 + 2 queries, and no UPDATE.
    with django_assert_num_queries(12) as captured:
        result = rotate_token_keys(batch_size=3)

    assert (result.rewritten, result.already_current, result.undecryptable) == (0, 4, [])
    assert not [query for query in captured.captured_queries if query["sql"].startswith("UPDATE")]
    assert [raw_column(LinearToken, token.pk, "access_token") for token in tokens] == before


def test_undecryptable_rows_are_reported_by_table_id_and_field(settings: Any) -> None:
    settings.FERNET_KEYS = [OTHER_KEY]
    lost = make_linear_token(access_token="lost-access-token-1")
    settings.FERNET_KEYS = [OLD_KEY]
    fine = make_linear_token()
    half = make_confluence_token(refresh_token=None)
    settings.FERNET_KEYS = [NEW_KEY, OLD_KEY]
    lost_ciphertext = raw_column(LinearToken, lost.pk, "access_token")

    result = rotate_token_keys()

    assert result.rewritten == 2
    assert result.already_current == 0
    assert result.undecryptable == [
        UndecryptableToken("accounts_lineartoken", lost.pk, "access_token"),
        UndecryptableToken("accounts_lineartoken", lost.pk, "refresh_token"),
    ]
    assert result.undecryptable_rows == 1
    assert raw_column(LinearToken, lost.pk, "access_token") == lost_ciphertext  # left alone
    assert LinearToken.objects.get(pk=fine.pk).access_token == fine.access_token
    assert ConfluenceToken.objects.get(pk=half.pk).access_token == half.access_token


def test_rotation_refuses_a_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        rotate_token_keys(batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        rotate_token_keys(batch_size="10")


def test_rotation_of_an_empty_database_reports_zero() -> None:
    assert rotate_token_keys() == RotationResult(rewritten=0, already_current=0, undecryptable=[])


def test_command_shows_progress_and_counts(settings: Any) -> None:
    settings.FERNET_KEYS = [OLD_KEY]
    make_linear_token()
    make_linear_token()
    make_confluence_token()
    settings.FERNET_KEYS = [NEW_KEY, OLD_KEY]
    out = io.StringIO()

    call_command("rotate_token_keys", "--batch-size", "1", stdout=out)

    assert out.getvalue().splitlines() == [
        "accounts_lineartoken: 1/2 rows checked",
        "accounts_lineartoken: 2/2 rows checked",
        "accounts_confluencetoken: 1/1 rows checked",
        "Rewritten: 3. Already current: 0. Could not be decrypted: 0.",
        "Every token is encrypted with the first key of FERNET_KEYS.",
    ]
    again = io.StringIO()
    call_command("rotate_token_keys", stdout=again)
    assert "Rewritten: 0. Already current: 3. Could not be decrypted: 0." in again.getvalue()


def test_command_fails_naming_undecryptable_rows_without_values(settings: Any) -> None:
    settings.FERNET_KEYS = [OTHER_KEY]
    lost = make_confluence_token(access_token="lost-conf-token-99", refresh_token=None)
    settings.FERNET_KEYS = [NEW_KEY]
    out = io.StringIO()

    with pytest.raises(CommandError, match=r"1 token row\(s\) could not be decrypted"):
        call_command("rotate_token_keys", stdout=out)

    text = out.getvalue()
    assert f"  cannot decrypt: accounts_confluencetoken id={lost.pk} (access_token)" in text
    assert "lost-conf-token-99" not in text
    assert raw_column(ConfluenceToken, lost.pk, "access_token").decode() not in text


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "at least 1 \\(got 0\\)"), ("-3", "at least 1"), (str(2**31), "at most 2147483647")],
)
def test_command_refuses_a_bad_batch_size(value: str, message: str) -> None:
    with pytest.raises(CommandError, match=f"--batch-size must be {message}"):
        call_command("rotate_token_keys", "--batch-size", value, stdout=io.StringIO())
