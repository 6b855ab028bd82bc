"""Delete an organization and everything that belongs to it (offboarding a customer)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import offboard_organization


class Command(BaseCommand):
    help = (
        "Delete the organization with this Linear organization id and every row that belongs to it "
        "(tokens, planning sessions and increments, sync states, history, conflicts, cached issues) in one "
        "transaction, and print what was removed per model. The conflict resolution log keeps its "
        "entries, with the organization's name recorded. --dry-run reports the same counts and deletes "
        "nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("linear_id", help="The organization's Linear organization id.")
        parser.add_argument("--dry-run", action="store_true", help="Report what would go; delete nothing.")

    def handle(self, *args: Any, linear_id: str, dry_run: bool, **options: Any) -> None:
        try:
            result = offboard_organization(linear_id, dry_run=dry_run)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        label = f"{result.name} ({result.linear_id})" if result.name else result.linear_id
        self.stdout.write(f"Organization {label}:")
        for line in result.lines():
            self.stdout.write(f"  {line}")
        if dry_run:
            self.stdout.write(self.style.WARNING("Dry run: nothing was deleted."))
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Offboarded {label}: {result.total_deleted} rows deleted in one transaction."
                )
            )
