"""Fixtures of the sync tests."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_user(username="alice")


@pytest.fixture
def other_operator(db):
    return get_user_model().objects.create_user(username="bob")
