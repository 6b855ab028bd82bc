"""An old deployment to import, holding known long plaintext tokens; shared by reliability and security.

Re-exports the legacy suite's scratch-database fixtures (``old_db``, ``pg_admin_url``, ``sqlite_sync``):
a conftest that imports this module's names gets them all.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.legacy import old_data
from tests.legacy.conftest import old_db, pg_admin_url, sqlite_sync  # noqa: F401 - fixtures, re-exported

OLD_LINEAR_ACCESS = "lin_oauth_old_system_4e1d9c2b7a6f5e3d8c0b1a2f9e8d7c6b"
OLD_LINEAR_REFRESH = "lin_refresh_old_system_Tk3Gh8Jw2Qp6Zr9Vb4Nx7Mc1Ls5"
OLD_CONFLUENCE_ACCESS = "eyJhbGciOiJSUzI1NiJ9.eyJvbGQiOiJjb25mbHVlbmNlIn0.b2xkLXNpZ25hdHVyZS1ieXRlcw"
OLD_TOKENS = (OLD_LINEAR_ACCESS, OLD_LINEAR_REFRESH, OLD_CONFLUENCE_ACCESS)
#: A password in the source URL (the local server trusts every connection, so any password works).
SOURCE_PASSWORD = "Old-Db-Pa55word-7Qx2Lm9Vz4"


@pytest.fixture
def deployment(old_db: Any, sqlite_sync: Any) -> dict[str, Any]:  # noqa: F811 - the re-exported fixtures
    """The legacy suite's second-shape deployment, its tokens replaced by the known plaintexts."""
    path, sqlite = sqlite_sync
    old_data.fill_second_shape(old_db.conn, sqlite)
    old_db.conn.execute(
        "UPDATE linear_tokens SET access_token = %s, refresh_token = %s WHERE id = 1",
        [OLD_LINEAR_ACCESS, OLD_LINEAR_REFRESH],
    )
    old_db.conn.execute(
        "UPDATE confluence_tokens SET access_token = %s WHERE id = 1", [OLD_CONFLUENCE_ACCESS]
    )
    url_with_password = old_db.url.replace(
        "postgresql://postgres@", f"postgresql://postgres:{SOURCE_PASSWORD}@"
    )
    assert SOURCE_PASSWORD in url_with_password
    return {"url": url_with_password, "sqlite_file": str(path), "db": old_db}
