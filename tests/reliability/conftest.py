"""Fixtures of the reliability suite: the old deployment the import fault tests import."""

from tests.reliability.legacy_fixtures import deployment, old_db, pg_admin_url, sqlite_sync  # noqa: F401
