"""Fixtures of the accounts tests: Fernet keys, raw ciphertext access, an hour from now."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.db import connection, models
from django.utils import timezone
from fernet_fields import hkdf

OLD_KEY = "accounts-test-old-key-0123456789"
NEW_KEY = "accounts-test-new-key-9876543210"
OTHER_KEY = "accounts-test-unrelated-key-000"


def fernet_of(key: str) -> Fernet:
    """The Fernet one FERNET_KEYS entry stands for (the settings derive keys with HKDF)."""
    return Fernet(hkdf.derive_fernet_key(key))


def raw_column(model: type[models.Model], pk: Any, column: str) -> bytes | None:
    """The stored bytes of ``column`` read with SQL, past every ORM conversion."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {connection.ops.quote_name(column)} FROM {table} WHERE id = %s", [pk])
        (value,) = cursor.fetchone()
    return None if value is None else bytes(value)


@pytest.fixture
def old_key(settings: Any) -> str:
    """FERNET_KEYS is just the old key."""
    settings.FERNET_KEYS = [OLD_KEY]
    return OLD_KEY


@pytest.fixture
def in_an_hour() -> dt.datetime:
    return timezone.now() + dt.timedelta(hours=1)
