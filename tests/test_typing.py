"""The public API's types hold: mypy (with django-stubs, configured in pyproject.toml) refuses wrong calls.

The issue's example — ``store(123, access_token=1, expires_at="tomorrow")`` passed mypy when every
parameter was ``Any`` — must now be an error, and the precise return types must reach agent code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

AGENT_CODE = """
import datetime as dt
from accounts.models import ConfluenceToken, LinearToken
from sync.models import SyncHistory

LinearToken.objects.store(123, access_token=1, app_user_id="u", expires_at="tomorrow")

async def refresher(refresh_token: str) -> tuple[str, str | None, dt.datetime]:
    raise NotImplementedError

def check(token: LinearToken, confluence: ConfluenceToken) -> None:
    reveal_type(token.refresh(refresher))
    reveal_type(confluence.refresh(lambda r: ("a", None, dt.datetime.now(dt.UTC))))
    reveal_type(LinearToken.objects.access_token("org", refresher))
    reveal_type(LinearToken.objects.for_organization("org"))
    SyncHistory.objects.record("p", "t", success="yes")

async def acheck() -> None:
    reveal_type(await LinearToken.objects.aaccess_token("org", refresher))
    reveal_type(await SyncHistory.objects.arecord("p", "t", success=True))
"""


def test_mypy_refuses_wrong_types_and_reports_precise_ones(tmp_path):
    snippet = tmp_path / "agent_code.py"
    snippet.write_text(AGENT_CODE)
    env = {**os.environ, "DEBUG": "true"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "cache"),
            str(snippet),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith(str(snippet))]
    errors = [line for line in lines if line.startswith("error:")]
    notes = [line for line in lines if line.startswith("note: Revealed type")]
    assert any(
        'Argument 1 to "store" of "LinearTokenManager" has incompatible type "int"' in e for e in errors
    ), errors
    assert any('Argument "access_token" to "store"' in e and '"int"' in e for e in errors), errors
    assert any('Argument "expires_at" to "store"' in e and '"str"' in e for e in errors), errors
    assert any('Argument "success" to "record"' in e for e in errors), errors
    assert len(errors) == 4, errors
    assert notes == [
        'note: Revealed type is "accounts.models.LinearToken"',
        'note: Revealed type is "accounts.models.ConfluenceToken"',
        'note: Revealed type is "str"',
        'note: Revealed type is "accounts.models.LinearToken | None"',
        'note: Revealed type is "str"',
        'note: Revealed type is "sync.models.history.SyncHistory"',
    ], notes
