"""Key rotation interrupted by a failure: committed batches stay rotated, the failed batch is untouched,
and a re-run completes. Runs on both engines.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography.fernet import InvalidToken
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from accounts.fields import EncryptedTokenField, EncryptedValue
from accounts.models import ConfluenceToken, LinearToken

OLD_KEY = "old-fernet-key-material-for-rotation-tests-0123456789"
NEW_KEY = "new-fernet-key-material-for-rotation-tests-9876543210"
EXPIRES = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
FIELD: EncryptedTokenField = LinearToken._meta.get_field("access_token")

pytestmark = pytest.mark.django_db


class Boom(RuntimeError):
    """The injected failure."""


def raw_tokens(model: type) -> dict[int, tuple[bytes, bytes | None]]:
    """{row id: (access ciphertext, refresh ciphertext)} exactly as stored."""
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, access_token, refresh_token FROM {table} ORDER BY id")
        return {
            row_id: (bytes(access), bytes(refresh) if refresh is not None else None)
            for row_id, access, refresh in cursor.fetchall()
        }


def under_new_key_only(ciphertext: bytes) -> bool:
    with override_settings(FERNET_KEYS=[NEW_KEY]):
        try:
            FIELD.fernet.decrypt(ciphertext)
        except InvalidToken:
            return False
        return True


@pytest.fixture
def old_tokens() -> dict[str, list[int]]:
    """Seven Linear and two Confluence tokens encrypted with the old key only."""
    with override_settings(FERNET_KEYS=[OLD_KEY]):
        linear = [
            LinearToken.objects.store(
                f"org-{i}",
                access_token=f"access-{i}",
                refresh_token=f"refresh-{i}",
                app_user_id="app",
                expires_at=EXPIRES,
            ).pk
            for i in range(7)
        ]
        confluence = [
            ConfluenceToken.objects.store(
                f"org-{i}",
                cloud_id="c",
                site_url="https://acme.atlassian.net",
                access_token=f"conf-{i}",
                expires_at=EXPIRES,
            ).pk
            for i in range(2)
        ]
    return {"linear": linear, "confluence": confluence}


def test_failed_batch_rolls_back_earlier_batches_stay_rotated_and_rerun_completes(old_tokens, monkeypatch):
    before = raw_tokens(LinearToken)
    before_confluence = raw_tokens(ConfluenceToken)
    calls = {"n": 0}
    original = EncryptedTokenField.rotate_ciphertext

    def failing_rotate(self: EncryptedTokenField, ciphertext: bytes) -> bytes:
        calls["n"] += 1
        # Batches of 3 rows with 2 tokens each: call 9 is the 5th row, in the middle of batch 2, after
        # the 4th row of that batch was already rewritten in the same transaction.
        if calls["n"] == 9:
            raise Boom("injected failure while rotating")
        return original(self, ciphertext)

    monkeypatch.setattr(EncryptedTokenField, "rotate_ciphertext", failing_rotate)
    with override_settings(FERNET_KEYS=[NEW_KEY, OLD_KEY]), pytest.raises(Boom):
        call_command("rotate_token_keys", "--batch-size", "3", stdout=_Sink())

    after = raw_tokens(LinearToken)
    ids = old_tokens["linear"]
    for pk in ids[:3]:  # batch 1: committed, under the new key, same tokens
        assert after[pk] != before[pk]
        assert all(under_new_key_only(c) for c in after[pk])
    for pk in ids[3:]:  # batch 2 (failed, rolled back) and the batches never reached
        assert after[pk] == before[pk]
    assert raw_tokens(ConfluenceToken) == before_confluence

    monkeypatch.undo()
    with override_settings(FERNET_KEYS=[NEW_KEY, OLD_KEY]):
        out = _Sink()
        call_command("rotate_token_keys", "--batch-size", "3", stdout=out)
    assert "Rewritten: 6. Already current: 3. Could not be decrypted: 0." in out.text

    every = {**raw_tokens(LinearToken), **{-pk: v for pk, v in raw_tokens(ConfluenceToken).items()}}
    assert all(under_new_key_only(c) for pair in every.values() for c in pair if c is not None)
    with override_settings(FERNET_KEYS=[NEW_KEY]):
        tokens = list(LinearToken.objects.all())
        assert sorted(t.access_token for t in tokens) == [f"access-{i}" for i in range(7)]
        assert sorted(t.refresh_token for t in tokens) == [f"refresh-{i}" for i in range(7)]
        assert sorted(t.access_token for t in ConfluenceToken.objects.all()) == ["conf-0", "conf-1"]


def test_rotation_never_builds_a_plaintext_value(old_tokens, monkeypatch):
    """The rotation reads ciphertext only: decrypting a token while it runs is a failure."""

    def no_decrypt(self: Any, instance: Any, value: EncryptedValue) -> str:
        raise AssertionError("rotation decrypted a token into plaintext")

    monkeypatch.setattr(EncryptedTokenField, "decrypt_for", no_decrypt)
    with override_settings(FERNET_KEYS=[NEW_KEY, OLD_KEY]):
        call_command("rotate_token_keys", stdout=_Sink())
    # Every row of the fixture was rewritten under the new key (an empty table would make all() true).
    pairs = [*raw_tokens(LinearToken).values(), *raw_tokens(ConfluenceToken).values()]
    assert len(pairs) == len(old_tokens["linear"]) + len(old_tokens["confluence"])
    assert all(under_new_key_only(c) for pair in pairs for c in pair if c is not None)


class _Sink:
    """A stdout that keeps what the command wrote."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, value: str) -> None:
        self.text += value

    def flush(self) -> None:
        pass
