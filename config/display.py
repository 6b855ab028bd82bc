"""How the console writes values for people: one date format, with the time zone, on every screen."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django.utils.formats import date_format

#: Every date and time the console shows: ``2026-12-04 15:20 UTC`` (the zone of ``TIME_ZONE``).
DATETIME_FORMAT = "Y-m-d H:i T"


def when(value: dt.datetime | None, *, empty: str = "—") -> str:
    """``value`` in the console's one format, in the configured time zone; ``empty`` for ``None``."""
    if value is None:
        return empty
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return date_format(value, DATETIME_FORMAT)
