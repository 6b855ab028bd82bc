"""Fixtures of the planning tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def admin_client(client, django_user_model):
    """A client logged in as a superuser, without hashing a password (PBKDF2 costs ~0.7 s a test)."""
    user = django_user_model.objects.create_superuser(username="planner", email="", password=None)
    client.force_login(user)
    return client
