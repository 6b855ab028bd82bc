"""Delete cached Linear issues that were not refreshed for a given time."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from sync.models import LinearIssueCache

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str) -> dt.timedelta:
    """Parse ``30m``, ``12h``, ``7d`` (also ``s`` and ``w``) into a timedelta, or raise ``ValueError``."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(
            f"{value!r} is not a duration: write a whole number and a unit, e.g. 30m, 12h, 7d "
            "(units: s, m, h, d, w)."
        )
    amount, unit = int(match.group(1)), match.group(2).lower()
    try:
        return dt.timedelta(**{_UNITS[unit]: amount})
    except OverflowError as exc:
        raise ValueError(f"{value!r} is too long a duration.") from exc


class Command(BaseCommand):
    help = "Delete cached Linear issues last updated longer ago than --older-than (e.g. 30m, 12h, 7d)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            required=True,
            help="Age of the entries to delete: a number and a unit (s, m, h, d, w), e.g. 7d.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            age = parse_duration(options["older_than"])
            cutoff = timezone.now() - age
        except OverflowError as exc:
            raise CommandError(f"--older-than: {options['older_than']!r} reaches before year 1.") from exc
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}") from exc
        # The filter older_than(age) applies, with the cutoff computed once so the report shows it exactly.
        deleted, _ = LinearIssueCache.objects.filter(last_updated__lt=cutoff).delete()
        self.stdout.write(
            f"Deleted {deleted} cached Linear issue(s) last updated before {cutoff.isoformat()}."
        )
