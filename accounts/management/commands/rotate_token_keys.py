"""Re-encrypt every stored OAuth token with the first key of FERNET_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, RotationProgress, rotate_token_keys


class Command(BaseCommand):
    help = (
        "Re-encrypt every Linear and Confluence token with the first key of FERNET_KEYS, in batches, one "
        "transaction per batch. Safe to re-run and to interrupt. To rotate: put the new key first in "
        "FERNET_KEYS (keep the old ones after it), run this, then drop the old keys."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"Rows per transaction (default {DEFAULT_BATCH_SIZE}).",
        )

    def handle(self, *args: Any, batch_size: int, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1 (got {batch_size}).")
        if batch_size > MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be at most {MAX_BATCH_SIZE} (got {batch_size}).")

        def report(progress: RotationProgress) -> None:
            self.stdout.write(f"{progress.table}: {progress.done}/{progress.total} rows checked")

        result = rotate_token_keys(batch_size=batch_size, on_progress=report)
        self.stdout.write(
            f"Rewritten: {result.rewritten}. Already current: {result.already_current}. "
            f"Could not be decrypted: {result.undecryptable_rows}."
        )
        for item in result.undecryptable:
            self.stdout.write(f"  cannot decrypt: {item}")
        if result.undecryptable:
            raise CommandError(
                f"{result.undecryptable_rows} token row(s) could not be decrypted with any key of "
                "FERNET_KEYS (listed above); add the key they were encrypted with, or store new tokens "
                "for them."
            )
        self.stdout.write(self.style.SUCCESS("Every token is encrypted with the first key of FERNET_KEYS."))
