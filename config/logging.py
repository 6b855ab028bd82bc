"""Logging helpers used by ``LOGGING`` in settings and by ``config/gunicorn.conf.py``.

``RedactingFilter`` rewrites every record so that nothing that looks like a secret reaches a handler:
OAuth tokens (Linear ``lin_oauth_``/``lin_api_``, Atlassian JWT-like tokens), ``Bearer`` headers,
Fernet ciphertext, long high-entropy base64/hex runs and ``key=value`` pairs whose key names a secret.
It is attached to every handler, so a careless ``logger.info("%s", token)`` anywhere is still safe.

``JSONFormatter`` writes one JSON object per line for log shippers (``LOG_FORMAT=json``).

Only the standard library is imported here: gunicorn's master process loads this module before
Django is set up.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import math
import re
from collections import Counter
from typing import Any

#: What a redacted secret is replaced with.
REDACTED = "[REDACTED]"

# Every pattern either starts with a literal or may only start where a run of its characters starts
# (the lookbehinds), and repeats inside a key are bounded: a log line of a megabyte of junk is
# redacted in linear time instead of the quadratic backtracking an unanchored pattern would do.
# Order matters: specific shapes first, so that "Bearer <jwt>" keeps its "Bearer " prefix and a
# key=value pair keeps its key.
_LINEAR_TOKEN = re.compile(r"\blin_(?:oauth|api)_[A-Za-z0-9_\-]+")
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9\-._~+/]+=*")
# JWTs (Atlassian access tokens): three base64url segments separated by dots.
_JWT = re.compile(r"(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}")
# Fernet tokens are base64url of a payload starting with version byte 0x80: "gAAAAA...".
_FERNET = re.compile(r"\bgAAAAA[A-Za-z0-9_\-]+=*")
# key=value / key: value / "key": "value" where the key names a secret. The value is a quoted string
# or a run up to the next separator; a comma not followed by a space is part of it (FERNET_KEYS=a,b).
_SECRET_PAIR = re.compile(
    r"""(?ix)
    (?<![\w.\-"'])
    (?P<key>["']?[\w.\-]{0,64}?(?:token|secret|passw(?:or)?d|key|authorization|credential)[\w.\-]{0,64}["']?)
    (?P<sep>\s*[=:]\s*)
    (?P<scheme>(?:bearer|basic|token)\s+)?
    (?P<value>\[REDACTED\]|"[^"]*"|'[^']*'|(?:[^\s,;&)}\]]|,(?!\s))+)
    """
)
# Candidates for "long high-entropy run": base64 (standard and url-safe) or hex, 32+ characters.
_LONG_RUN = re.compile(r"[A-Za-z0-9+/_\-]{32,}={0,2}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]+")


def _entropy(value: str) -> float:
    """Shannon entropy of ``value`` in bits per character."""
    counts = Counter(value)
    length = len(value)
    return -sum(n / length * math.log2(n / length) for n in counts.values())


def _looks_random(run: str) -> bool:
    """Whether a 32+ character run is likely a secret rather than a path, UUID list or identifier."""
    # UUIDs (Linear ids, ``conflict-<uuid>``) are what operators search logs for: judge what is left
    # around them, which must be long enough on its own.
    core = _UUID.sub("", run.rstrip("=")).strip("-_")
    if len(core) < 32:
        return False
    if _HEX.fullmatch(core):
        return any(c.isdigit() for c in core) and any(c.isalpha() for c in core) and _entropy(core) >= 3.0
    # Random base64 of 32+ characters mixes upper case, lower case and digits and switches between
    # them at most characters; paths, URLs, CamelCase and snake_case names switch rarely.
    letters_digits = [c for c in core if c.isalnum()]
    classes = {_char_class(c) for c in letters_digits}
    if len(classes) < 2:
        return False
    letters = [c for c in letters_digits if c.isalpha()]
    if letters and {0, 1} <= classes:
        # CamelCase has one capital per word; random base64 letters are upper case about half the time.
        upper_share = sum(c.isupper() for c in letters) / len(letters)
        if not 0.2 <= upper_share <= 0.8:
            return False
    switches = sum(_char_class(a) != _char_class(b) for a, b in itertools.pairwise(letters_digits))
    return switches / (len(letters_digits) - 1) >= 0.3 and _entropy(core) >= 3.5


def _char_class(char: str) -> int:
    return 0 if char.isupper() else 1 if char.islower() else 2


def redact(text: str) -> str:
    """Return ``text`` with everything that looks like a token, key or password replaced."""
    if not text:
        return text
    text = _LINEAR_TOKEN.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    text = _FERNET.sub(REDACTED, text)
    text = _SECRET_PAIR.sub(_redact_pair, text)
    return _LONG_RUN.sub(lambda m: REDACTED if _looks_random(m.group(0)) else m.group(0), text)


def _redact_pair(match: re.Match[str]) -> str:
    value = match.group("value")
    quote = value[0] if len(value) > 1 and value[0] in "\"'" and value[-1] == value[0] else ""
    return f"{match.group('key')}{match.group('sep')}{match.group('scheme') or ''}{quote}{REDACTED}{quote}"


class RedactingFilter(logging.Filter):
    """Replace anything that looks like a secret in a record's message, arguments and traceback.

    The message is rendered (``msg % args``) first and the result redacted, so a secret hidden in any
    argument type (a dict, an exception, a model's ``repr``) is caught. Never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; always keep it."""
        try:
            message = record.getMessage()
        except Exception:  # a logging call must never raise: keep the format string, drop the args
            message = f"{record.msg} (log arguments dropped: they did not match the format)"
        record.msg = redact(str(message))
        record.args = None
        if record.exc_info and not record.exc_text:
            # Format the traceback now so the handler's formatter uses the redacted text.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, ``exc_info``."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a single line of JSON (non-ASCII escaped, so no stray line breaks)."""
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        payload: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "exc_info": record.exc_text or None,
        }
        if record.stack_info:
            payload["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(payload, ensure_ascii=True, default=str)


#: The loggers that get a :class:`RedactingPassThrough` when the project is a guest (``LOG_SETUP=guest``):
#: the project's packages and Django's.
GUEST_LOGGERS = ("accounts", "planning", "sync", "legacy", "console", "config", "django")


class RedactingPassThrough(logging.Handler):
    """Redacts each record in place on its way up to the host's handlers, and writes nothing itself.

    A logger's handlers see every record of its descendants before the records propagate further up,
    so one of these on ``accounts`` redacts what ``accounts.models`` logs before the host's root
    handlers format it. Where no ancestor up to the root has a handler, the record goes to
    ``logging.lastResort``, as it would without this handler.
    """

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(RedactingFilter())

    def handle(self, record: logging.LogRecord) -> bool:
        self.filter(record)
        last_resort = logging.lastResort
        if (
            last_resort is not None
            and record.levelno >= last_resort.level
            and not _has_handlers_above(logging.getLogger(record.name))
        ):
            last_resort.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() emits nothing
        pass


def _has_handlers_above(logger: logging.Logger) -> bool:
    """Whether a handler other than a RedactingPassThrough sees ``logger``'s records."""
    current: logging.Logger | None = logger
    while current is not None:
        if any(not isinstance(handler, RedactingPassThrough) for handler in current.handlers):
            return True
        current = current.parent if current.propagate else None  # type: ignore[assignment]
    return False


def install_guest_redaction(names: tuple[str, ...] = GUEST_LOGGERS) -> None:
    """Give each logger of ``names`` one :class:`RedactingPassThrough` (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(handler, RedactingPassThrough) for handler in logger.handlers):
            logger.addHandler(RedactingPassThrough())
