"""Fixtures of the sync tests."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone


class Clock:
    """A controllable ``timezone.now``: fixed until ``advance`` moves it."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Patch ``django.utils.timezone.now`` (which sync's write methods call) with a fixed clock."""
    fixed = Clock()
    monkeypatch.setattr(timezone, "now", fixed)
    return fixed


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_user(username="alice")


@pytest.fixture
def other_operator(db):
    return get_user_model().objects.create_user(username="bob")
