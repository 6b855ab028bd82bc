"""Code run in child processes (multiprocessing 'spawn') by the multi-process concurrency tests.

Kept out of the test modules so that a spawned child imports nothing but Django, this file and the
thread helpers of ``tests.reliability.concurrency``.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any


def refresh_in_process(db_name: str, organization_id: str, threads: int, barrier: Any, results: Any) -> None:
    """Set Django up on the test database, then refresh the Linear token from ``threads`` threads.

    Puts ``(spent refresh token, issued refresh token)`` for every refresher call, and the error type
    name of every failed thread, on ``results``.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connections
    from django.utils import timezone

    from accounts.models import LinearToken
    from tests.reliability.concurrency import run_together

    # The child reads the same settings as the parent; only the test database's name differs.
    connections["default"].settings_dict["NAME"] = db_name
    pid = os.getpid()

    def work(index: int) -> LinearToken:
        def refresher(refresh_token: str) -> tuple[str, str, dt.datetime]:
            issued = f"refresh-{pid}-{index}"
            results.put(("call", refresh_token, issued))
            return f"access-{pid}-{index}", issued, timezone.now() + dt.timedelta(hours=1)

        return LinearToken.objects.for_organization(organization_id).refresh(refresher)

    for outcome in run_together(work, threads, barrier=barrier):
        if outcome.error is not None:  # reported to the parent, which fails the test with it
            results.put(("error", type(outcome.error).__name__, str(outcome.error)))
    results.put(("done", pid, ""))
