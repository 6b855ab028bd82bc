"""Separate worker processes (as gunicorn or several agents run them) refresh one token at once."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import queue

import pytest
from django.db import connection

from accounts.models import LinearToken
from tests.reliability.workers import refresh_in_process

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PROCESSES = 4
THREADS_PER_PROCESS = 4


def test_refresh_from_four_processes_of_four_threads_spends_each_refresh_token_once():
    LinearToken.objects.store(
        "org-mp",
        access_token="access-0",
        refresh_token="refresh-0",
        app_user_id="a",
        expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    )
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES * THREADS_PER_PROCESS)
    results = ctx.Queue()
    db_name = connection.settings_dict["NAME"]
    processes = [
        ctx.Process(
            target=refresh_in_process, args=(db_name, "org-mp", THREADS_PER_PROCESS, barrier, results)
        )
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    calls, failures, done = [], [], 0
    try:
        while done < PROCESSES:
            kind, first, second = results.get(timeout=120)
            if kind == "call":
                calls.append((first, second))
            elif kind == "error":
                failures.append(f"{first}: {second}")
            else:
                done += 1
    except queue.Empty:
        pytest.fail(f"only {done} of {PROCESSES} worker processes finished")
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()

    assert failures == []
    assert calls, "no worker refreshed the token"
    assert [p.exitcode for p in processes] == [0] * PROCESSES
    spent = [spent for spent, _ in calls]
    assert len(spent) == len(set(spent)), f"a refresh token was spent twice: {calls}"
    # The calls form one chain starting at the stored token; the row holds the end of it.
    issued = dict(calls)
    chain, current = [], "refresh-0"
    while current in issued:
        chain.append(current)
        current = issued[current]
    assert len(chain) == len(calls)
    stored = LinearToken.objects.get()
    assert stored.refresh_token == current
