"""Management commands given bad arguments: success or a CommandError saying what was wrong, never a
traceback of another kind, and nothing deleted or rewritten by a refused run.
"""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from hypothesis import given
from hypothesis import strategies as st

from accounts.models import LinearToken
from sync.management.commands.purge_issue_cache import parse_duration
from sync.models import LinearIssueCache
from tests.reliability.strategies import FUZZ, TEXT

pytestmark = pytest.mark.django_db

EXPIRES = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def run(*args: str, **options: object) -> tuple[bool, str]:
    """Run a command in a savepoint: ``(True, stdout)`` or ``(False, CommandError message)``."""
    out = io.StringIO()
    try:
        with transaction.atomic():
            call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    except CommandError as exc:
        assert str(exc).strip()
        return False, str(exc)
    return True, out.getvalue()


DURATIONS = st.one_of(
    TEXT,
    st.builds("{}{}".format, st.integers(min_value=-(10**30), max_value=10**30), st.sampled_from("smhdwxD ")),
    st.sampled_from(
        ["7d", "0s", "999999999d", "1000000d", "99999999999w", "1" * 5000 + "d", "-1d", "1.5h", "d"]
    ),
)


@FUZZ
@given(value=DURATIONS)
def test_purge_issue_cache_older_than(value):
    LinearIssueCache.objects.upsert_many("org-purge", [{"id": "ISS-1"}])
    ok, message = run("purge_issue_cache", f"--older-than={value}")
    # The entry was written just now: only a zero duration reaches it; a refused run deletes nothing.
    reached = ok and parse_duration(value) == dt.timedelta(0)
    if ok:
        assert message.startswith(f"Deleted {1 if reached else 0} ")
    else:
        assert "--older-than" in message or "older-than" in message
    assert LinearIssueCache.objects.filter(linear_issue_id="ISS-1").exists() is not reached


def test_purge_issue_cache_without_older_than_is_a_command_error():
    ok, message = run("purge_issue_cache")
    assert not ok and "older-than" in message


#: Above the largest batch the service accepts (a 32-bit signed integer).
TOO_LARGE = ["2147483648", "9" * 40]

BATCH_SIZES = st.one_of(
    TEXT,
    st.integers().map(str),
    st.sampled_from(["0", "-1", "1e3", "2147483647", *TOO_LARGE, "", "1_000", "0x10"]),
)


@FUZZ
@given(value=BATCH_SIZES)
def test_rotate_token_keys_batch_size_from_the_command_line(value):
    token = LinearToken.objects.store("org-rot", access_token="access", app_user_id="a", expires_at=EXPIRES)
    ok, message = run("rotate_token_keys", f"--batch-size={value}")
    if not ok:
        assert "batch-size" in message or "batch_size" in message
    assert LinearToken.objects.get(pk=token.pk).access_token == "access"


@pytest.mark.parametrize("value", TOO_LARGE)
def test_rotate_token_keys_too_large_batch_size_is_a_command_error(value):
    ok, message = run("rotate_token_keys", f"--batch-size={value}")
    assert not ok and "batch" in message


@pytest.mark.parametrize("value", [0, -1, -(2**40)])
def test_rotate_token_keys_batch_size_from_code(value):
    ok, message = run("rotate_token_keys", batch_size=value)
    assert not ok and "batch" in message
