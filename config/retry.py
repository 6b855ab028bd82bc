"""Retry a unit of database work on transient errors: lost connection, serialization failure, deadlock.

A killed or dropped connection leaves the thread's Django connection object broken: every later call
fails with "the connection is closed" until something closes it (Django does so only between requests).
:func:`retry_transient` closes a broken connection before it tries again, so agent code outside a request
(a worker loop, a management command) recovers on its own. It retries only what is safe to retry: a whole
unit of work, never a part of a transaction that is still open.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: SQLSTATEs that mean "try the same transaction again": serialization failure, deadlock detected.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
#: SQLSTATE classes and codes of a lost connection (08: connection exception; 57P0x: server shut down).
_CONNECTION_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})

DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF = 0.1
#: The longest pause between two attempts, whatever ``backoff`` and the attempt number make.
MAX_BACKOFF = 5.0
#: The most attempts accepted: a retry loop is a short wait for a transient fault, not a poll.
MAX_ATTEMPTS = 10


def is_transient(error: BaseException, *, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether ``error`` is a database error that the same unit of work may succeed after.

    True for Django's ``InterfaceError`` (the connection is closed), and for its ``OperationalError``
    when the driver reports a serialization failure (40001), a deadlock (40P01), a lost connection
    (SQLSTATE class 08, 57P01-57P03, or a connection that is no longer usable) or, on SQLite, a locked
    database. Everything else (``IntegrityError``, ``DataError``, ``ValidationError``...) is not.
    """
    if isinstance(error, InterfaceError):
        return True
    if not isinstance(error, OperationalError):
        return False
    sqlstate = getattr(error.__cause__, "sqlstate", None)
    if sqlstate in RETRYABLE_SQLSTATES or sqlstate in _CONNECTION_SQLSTATES:
        return True
    if sqlstate:
        return sqlstate.startswith("08")
    connection = connections[using]
    if connection.vendor == "sqlite":
        return "database is locked" in str(error)
    # No sqlstate: an error of the driver, not the server. Transient when it lost the server (or never
    # reached it): the connection is gone or closed.
    raw = connection.connection
    return raw is None or bool(getattr(raw, "closed", False))


def close_if_broken(using: str = DEFAULT_DB_ALIAS) -> None:
    """Close the thread's connection to ``using`` if an error left it unusable; the next query reconnects.

    Outside a transaction only (Django refuses to close a connection inside ``atomic()``).
    """
    connection = connections[using]
    if connection.in_atomic_block:
        return
    # Django's own between-requests clean-up: closes the connection when an error occurred on it and it
    # no longer answers, or when it outlived CONN_MAX_AGE.
    connection.close_if_unusable_or_obsolete()


def _check(attempts: int, backoff: float) -> None:
    if isinstance(attempts, bool) or not isinstance(attempts, int):
        raise ValueError(f"attempts must be an integer, not {type(attempts).__name__}.")
    if not 1 <= attempts <= MAX_ATTEMPTS:
        raise ValueError(f"attempts must be between 1 and {MAX_ATTEMPTS} (got {attempts}).")
    if isinstance(backoff, bool) or not isinstance(backoff, int | float) or not 0 <= backoff <= MAX_BACKOFF:
        raise ValueError(f"backoff must be a number of seconds between 0 and {MAX_BACKOFF}.")


def _pause(backoff: float, attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): doubling, capped, up to 10 % jitter."""
    base = min(MAX_BACKOFF, backoff * 2 ** (attempt - 1))
    return base * (1 + random.random() / 10)


def _in_transaction(using: str) -> bool:
    return connections[using].in_atomic_block


def retry_transient(
    func: Callable[[], T],
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    backoff: float = DEFAULT_BACKOFF,
    using: str = DEFAULT_DB_ALIAS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``func()``; on a transient database error close a broken connection, wait and call it again.

    At most ``attempts`` calls in all (1-10); the waits double from ``backoff`` seconds (at most
    ``MAX_BACKOFF``, plus up to 10 % jitter). The last error is raised when every attempt failed, and
    any other exception at once. ``func`` must be a whole unit of work that is safe to repeat (every write
    of this project's API is: each is its own transaction, or one statement): called inside an open
    ``transaction.atomic()`` block, nothing is retried, because the transaction is already lost and only
    its owner can start it again.
    """
    _check(attempts, backoff)
    for attempt in range(1, attempts + 1):
        try:
            return func()
        except (OperationalError, InterfaceError) as error:
            if _in_transaction(using) or attempt == attempts or not is_transient(error, using=using):
                raise
            close_if_broken(using)
            pause = _pause(backoff, attempt)
            logger.warning(
                "Transient database error (%s), attempt %d of %d; retrying in %.2f s",
                type(error).__name__,
                attempt,
                attempts,
                pause,
            )
            sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def retrying(
    *, attempts: int = DEFAULT_ATTEMPTS, backoff: float = DEFAULT_BACKOFF, using: str = DEFAULT_DB_ALIAS
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator form of :func:`retry_transient`: each call of the function is retried as one unit."""
    _check(attempts, backoff)

    def decorate(function: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(function)
        def wrapper(*args: object, **kwargs: object) -> T:
            return retry_transient(
                lambda: function(*args, **kwargs), attempts=attempts, backoff=backoff, using=using
            )

        return wrapper

    return decorate


async def aretry_transient(
    func: Callable[[], Awaitable[T]],
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    backoff: float = DEFAULT_BACKOFF,
    using: str = DEFAULT_DB_ALIAS,
) -> T:
    """Async twin of :func:`retry_transient`: ``func`` returns an awaitable, e.g. an async ORM call.

    The broken connection is closed on the thread that runs the ORM for async code (``sync_to_async``).
    """
    _check(attempts, backoff)
    for attempt in range(1, attempts + 1):
        try:
            return await func()
        except (OperationalError, InterfaceError) as error:
            transient = await sync_to_async(is_transient)(error, using=using)
            in_transaction = await sync_to_async(_in_transaction)(using)
            if in_transaction or attempt == attempts or not transient:
                raise
            await sync_to_async(close_if_broken)(using)
            await asyncio.sleep(_pause(backoff, attempt))
    raise AssertionError("unreachable")  # pragma: no cover
