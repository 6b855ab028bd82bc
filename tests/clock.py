"""The tests' clock: a fixed instant, never the day a test happens to run.

A test whose outcome depends on "now" (an expiry, a "past 7 days" filter, "the newer row wins", an age
that reaches back to year 1) takes the ``clock`` fixture (``tests/conftest.py``), which stops the
process clock at :data:`FROZEN_NOW` until the test moves it with ``clock.advance(minutes=5)``; inside a
hypothesis test, ``with frozen_clock():`` does the same. Every other instant is written relative to
it. Literal dates are fine only where nothing compares them with now.

``make test`` proves the rule: it runs the SQLite suite again with the whole process clock shifted
years ahead and back (libfaketime), where a test that leans on the real date fails.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import time_machine

#: The instant every clock-dependent test starts at.
FROZEN_NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


class Clock:
    """The stopped process clock: ``timezone.now()``, ``datetime.now()`` and ``time.time()`` all
    answer :attr:`now` until :meth:`advance` moves it (monotonic clocks keep running, so timeouts
    still work)."""

    def __init__(self, traveller: time_machine.Coordinates, start: dt.datetime) -> None:
        self._traveller = traveller
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        """Move the clock on by ``timedelta(**delta)``; returns the new now."""
        return self.move_to(self.now + dt.timedelta(**delta))

    def move_to(self, when: dt.datetime) -> dt.datetime:
        """Stop the clock at ``when`` (an aware datetime, earlier or later); returns it."""
        self.now = when
        self._traveller.move_to(when)
        return when


@contextmanager
def frozen_clock(at: dt.datetime = FROZEN_NOW) -> Iterator[Clock]:
    """Stop the process clock at ``at`` for the block."""
    with time_machine.travel(at, tick=False) as traveller:
        yield Clock(traveller, at)
