"""The legacy import moves plaintext tokens of the old system into ciphertext without writing them (or
the old database's password) to a log, the report, the import map or a dump.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

from accounts.models import ConfluenceToken, LinearToken
from tests.reliability.legacy_fixtures import (
    OLD_CONFLUENCE_ACCESS,
    OLD_LINEAR_ACCESS,
    OLD_LINEAR_REFRESH,
    OLD_TOKENS,
    SOURCE_PASSWORD,
)
from tests.security.conftest import leaked
from tests.security.logcapture import every_logger_at_debug

pytestmark = pytest.mark.django_db

SECRETS = (*OLD_TOKENS, SOURCE_PASSWORD)


def test_import_logs_reports_maps_and_dumps_no_secret(deployment):
    out = io.StringIO()
    with every_logger_at_debug() as logs:
        call_command(
            "import_legacy",
            f"--source-url={deployment['url']}",
            f"--sqlite-file={deployment['sqlite_file']}",
            stdout=out,
        )
    assert "Import committed." in out.getvalue()
    assert "django.db.backends" in logs.names and any(n.startswith("legacy") for n in logs.names)
    dumps = {}
    for app in ("legacy", "accounts"):
        dump = io.StringIO()
        call_command("dumpdata", app, stdout=dump)
        dumps[app] = dump.getvalue()

    for where, text in {"log records": logs.text, "the command output": out.getvalue(), **dumps}.items():
        found = leaked(text, SECRETS)
        assert not found, f"{[s[:10] + '…' for s in found]} in {where}"
    # The tokens did arrive, encrypted.
    linear = LinearToken.objects.get(pk=_pk_of(LinearToken, OLD_LINEAR_ACCESS))
    assert linear.refresh_token == OLD_LINEAR_REFRESH
    assert _pk_of(ConfluenceToken, OLD_CONFLUENCE_ACCESS)
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token FROM accounts_lineartoken")
        stored = b"".join(bytes(row[0]) for row in cursor.fetchall())
    assert OLD_LINEAR_ACCESS.encode() not in stored


def _pk_of(model: type, access_token: str) -> int:
    """The row holding ``access_token`` (decrypting each; the tables are tiny)."""
    matches = [token.pk for token in model.objects.all() if token.access_token == access_token]
    assert len(matches) == 1
    return matches[0]
