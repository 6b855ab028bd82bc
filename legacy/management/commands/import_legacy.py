"""``manage.py import_legacy``: bring a deployment of the old TypeScript system over, in one transaction."""

from __future__ import annotations

import argparse
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from legacy.services import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, LegacyImportError, TableStats, import_legacy
from legacy.sources import SourceError


def _batch_size(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number.") from None
    if not 1 <= number <= MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_BATCH_SIZE} (got {value}).")
    return number


class Command(BaseCommand):
    help = (
        "Import the old deployment's PostgreSQL database (read-only) and, optionally, its SQLite sync "
        "file into the new models, in one transaction. Run with --dry-run first: it does all the work, "
        "prints the report and rolls back."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--source-url",
            required=True,
            help="postgres://user:password@host:port/dbname of the old database.",
        )
        parser.add_argument("--sqlite-file", help="The old SQLite sync file (data/sync.db), if there is one.")
        parser.add_argument("--dry-run", action="store_true", help="Do everything, report, then roll back.")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="Leave out (and list) rows the new rules reject instead of stopping.",
        )
        parser.add_argument(
            "--batch-size",
            type=_batch_size,
            default=DEFAULT_BATCH_SIZE,
            help=f"Rows per fetch and bulk insert (default {DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--source-name",
            help="Label of the old database in the import map (default: its URL without credentials). Pass "
            "the same label on every run if the old database moves to another host between runs.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()

        def progress(stats: TableStats) -> None:
            self.stdout.write(
                f"  {stats.table}: {stats.read} rows read, {stats.imported} imported, {stats.merged} merged, "
                f"{stats.skipped} skipped, {stats.already} already imported"
            )

        try:
            report = import_legacy(
                source_url=options["source_url"],
                sqlite_file=options.get("sqlite_file"),
                dry_run=options["dry_run"],
                skip_invalid=options["skip_invalid"],
                batch_size=options["batch_size"],
                source_name=options.get("source_name"),
                progress=progress,
            )
        except LegacyImportError as exc:
            self.stdout.write(exc.report.as_text())
            raise CommandError(str(exc)) from None
        except SourceError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(report.as_text())
        elapsed = time.perf_counter() - started
        rows = report.total("read")
        self.stdout.write(
            f"{rows} old rows in {elapsed:.1f} s ({rows / elapsed if elapsed else 0:.0f} rows/s)."
        )
        if report.dry_run:
            self.stdout.write(self.style.WARNING("Dry run: nothing was written."))
        else:
            self.stdout.write(self.style.SUCCESS("Import committed."))
