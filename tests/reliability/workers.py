"""Code run in child processes (multiprocessing 'spawn') by the multi-process concurrency tests.

Kept out of the test modules so that a spawned child imports nothing but Django and this file.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from typing import Any


def refresh_in_process(db_name: str, organization_id: str, threads: int, barrier: Any, results: Any) -> None:
    """Set Django up on the test database, then refresh the Linear token from ``threads`` threads.

    Puts ``(spent refresh token, issued refresh token)`` for every refresher call, and the error type
    name of every failed thread, on ``results``.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection, connections
    from django.utils import timezone

    from accounts.models import LinearToken

    # The child reads the same settings as the parent; only the test database's name differs.
    connections["default"].settings_dict["NAME"] = db_name
    pid = os.getpid()

    def work(index: int) -> None:
        def refresher(refresh_token: str) -> tuple[str, str, dt.datetime]:
            issued = f"refresh-{pid}-{index}"
            results.put(("call", refresh_token, issued))
            return f"access-{pid}-{index}", issued, timezone.now() + dt.timedelta(hours=1)

        try:
            barrier.wait(timeout=60)
            LinearToken.objects.for_organization(organization_id).refresh(refresher)
        except Exception as exc:  # reported to the parent, which fails the test with it
            results.put(("error", type(exc).__name__, str(exc)))
        finally:
            connection.close()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put(("done", pid, ""))
