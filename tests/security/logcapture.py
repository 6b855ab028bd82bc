"""A capturing log handler that sees every record before any filter (such as the redacting one) does."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

_STANDARD = set(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__) | {
    "message",
    "asctime",
}


class RawCapture(logging.Handler):
    """Keeps, per record, its logger, raw message, raw arguments, rendered message, traceback and extras."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.names: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        # Rendered now: a filter further down the chain may rewrite the record in place.
        parts = [record.name, str(record.msg), repr(record.args)]
        try:
            parts.append(record.getMessage())
        except (TypeError, ValueError):
            parts.append("<message did not render>")
        if record.exc_info and record.exc_info[1] is not None:
            parts.append("".join(traceback.format_exception(record.exc_info[1])))
        extras = {key: value for key, value in record.__dict__.items() if key not in _STANDARD}
        parts.append(repr(extras))
        self.names.add(record.name)
        self.texts.append("\n".join(parts))

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


@contextmanager
def every_logger_at_debug() -> Iterator[RawCapture]:
    """Every logger at DEBUG (SQL with parameters included), captured first in line, then restored."""
    capture = RawCapture()
    root = logging.getLogger()
    loggers = [
        root,
        *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)),
    ]
    # Loggers that exist only once first used: create them now so they are set too.
    loggers += [
        logging.getLogger(name)
        for name in (
            "django.db.backends",
            "django.request",
            "accounts",
            "sync",
            "planning",
            "legacy",
            "console",
        )
    ]
    saved = [(lg, lg.level, lg.disabled) for lg in loggers]
    root.handlers.insert(0, capture)
    non_propagating = [lg for lg in loggers if not lg.propagate and lg is not root]
    for lg in non_propagating:
        lg.handlers.insert(0, capture)
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.disabled = False
    previous_force = connection.force_debug_cursor
    connection.force_debug_cursor = True  # pytest-django runs with DEBUG off: make Django log every query
    try:
        yield capture
    finally:
        connection.force_debug_cursor = previous_force
        root.removeHandler(capture)
        for lg in non_propagating:
            lg.removeHandler(capture)
        for lg, level, disabled in saved:
            lg.setLevel(level)
            lg.disabled = disabled
