"""``manage.py import_legacy`` with bad arguments: a CommandError naming the problem, never a traceback of
another kind, never the source password, and nothing imported.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from hypothesis import given

from legacy.models import ImportedRow
from tests.legacy.test_import import TARGET_MODELS
from tests.reliability.legacy_fixtures import SOURCE_PASSWORD
from tests.reliability.strategies import FUZZ, TEXT

pytestmark = pytest.mark.django_db

P = SOURCE_PASSWORD


BAD_URLS = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("mysql://root:secret@localhost/db", id="mysql"),
    pytest.param("not a url", id="not-a-url"),
    pytest.param("postgres:/missing-slashes", id="missing-slashes"),
    pytest.param(f"postgresql://postgres:{P}@[::1/db", id="unclosed-ipv6"),
    pytest.param(f"postgresql://postgres:{P}@127.0.0.1:abc/db", id="port-not-a-number"),
    pytest.param(f"postgresql://postgres:{P}@127.0.0.1:99999/db", id="port-out-of-range"),
    pytest.param(f"postgresql://postgres:{P}@127.0.0.1:1/db", id="nothing-listens"),
    pytest.param(f"postgresql://postgres:{P}@127.0.0.1:5432/db?sslmode=bogus", id="bad-option"),
    pytest.param(f"postgresql://postgres:{P}@127.0.0.1:5432/no_such_database_here", id="no-such-db"),
    pytest.param(f"postgresql://postgres:{P}@127.0.0.1:5432/db\x00", id="nul"),
    pytest.param("postgresql://" + "h" * 5000 + "/db", id="huge-host"),
]


def run(*args: str) -> tuple[bool, str, str]:
    """``(ok, CommandError message or "", stdout)``."""
    out = io.StringIO()
    try:
        call_command("import_legacy", *args, stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        return False, str(exc), out.getvalue()
    return True, "", out.getvalue()


def nothing_imported() -> bool:
    return all(not model._base_manager.exists() for model in TARGET_MODELS)


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_source_url_is_a_command_error_without_the_password(url):
    ok, message, out = run(f"--source-url={url}")
    assert not ok
    # Says where the problem is: the option, or the old database it could not reach.
    assert "source-url" in message or message.startswith("Cannot connect to the old database "), message
    assert P not in message and P not in out
    assert nothing_imported()


@FUZZ
@given(url=TEXT.filter(lambda text: not text.startswith(("postgres://", "postgresql://"))))
def test_any_source_url_text_is_a_command_error(url):
    # Only text that is not a PostgreSQL URL: "postgresql://" + almost anything reaches a local server.
    ok, message, _ = run(f"--source-url={url}")
    assert not ok and message.strip()
    assert not ImportedRow.objects.exists()


@pytest.mark.parametrize(
    "sqlite_file",
    [
        pytest.param("/nonexistent/sync.db", id="missing"),
        pytest.param("{tmp}", id="directory"),
        pytest.param("{tmp}/not-sqlite.db", id="not-sqlite"),
        pytest.param(
            "bad\x00path.db",
            id="nul",
        ),
        pytest.param(
            "x" * 5000,
            id="huge",
        ),
    ],
)
def test_bad_sqlite_file_is_a_command_error(sqlite_file, deployment, tmp_path):
    (tmp_path / "not-sqlite.db").write_text("CREATE TABLE this is not a database file\n" * 100)
    sqlite_file = sqlite_file.replace("{tmp}", str(tmp_path))
    ok, message, _ = run(f"--source-url={deployment['url']}", f"--sqlite-file={sqlite_file}")
    assert not ok and message.strip()
    assert P not in message
    assert nothing_imported()


@pytest.mark.parametrize(
    "size",
    [
        "0",
        "-1",
        "abc",
        "1e3",
        "",
        "99999999999999999999999",
    ],
)
def test_bad_batch_size_is_a_command_error(size, deployment):
    ok, message, _ = run(f"--source-url={deployment['url']}", f"--batch-size={size}")
    assert not ok and "batch-size" in message
    assert nothing_imported()


def test_the_report_and_map_never_show_the_source_password(deployment):
    ok, message, out = run(f"--source-url={deployment['url']}", f"--sqlite-file={deployment['sqlite_file']}")
    assert ok, message
    assert P not in out
    assert ImportedRow.objects.exists()
    dump = io.StringIO()
    call_command("dumpdata", "legacy", stdout=dump)
    assert P not in dump.getvalue()
