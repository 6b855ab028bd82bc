"""Helpers for the concurrency and fault tests: start N real threads together, collect what each did.

Each worker opens its own database connection (Django gives every thread one) and closes it when done,
so a test never leaks connections into the next one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection

#: Writers per case; the issue asks for at least 16.
WRITERS = 16
#: Seconds a worker may wait at the barrier or a test for its workers before the test fails.
TIMEOUT = 60


@dataclass
class Outcome:
    """What one worker returned or raised."""

    index: int
    result: Any = None
    error: BaseException | None = None


def run_together(work: Callable[[int], Any], writers: int = WRITERS, barrier: Any = None) -> list[Outcome]:
    """Run ``work(i)`` for i in 0..writers-1 in real threads released together by a barrier.

    ``barrier`` is a new ``threading.Barrier(writers)`` unless given: a ``multiprocessing`` one releases the
    threads of several processes together.
    """
    if barrier is None:
        barrier = threading.Barrier(writers)
    outcomes = [Outcome(i) for i in range(writers)]

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=TIMEOUT)
            outcomes[i].result = work(i)
        except BaseException as exc:  # reported to the test, which decides what is expected
            outcomes[i].error = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    stuck = [i for i, thread in enumerate(threads) if thread.is_alive()]
    assert not stuck, f"workers {stuck} did not finish within {TIMEOUT}s (deadlock or lock wait?)"
    return outcomes


def errors(outcomes: list[Outcome]) -> list[tuple[int, BaseException]]:
    """The (index, exception) of every worker that raised."""
    return [(o.index, o.error) for o in outcomes if o.error is not None]


def assert_no_errors(outcomes: list[Outcome]) -> None:
    """Fail listing each worker's exception (type and message) if any raised."""
    failed = errors(outcomes)
    assert not failed, "\n".join(f"writer {i}: {type(e).__name__}: {e}" for i, e in failed)
