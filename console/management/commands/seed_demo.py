"""Load the demo world (three organizations with tokens, PIs, sessions, conflicts and sync history)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from console.demo import ORGANIZATIONS, seed_demo


class Command(BaseCommand):
    help = (
        "Load a realistic demo world through the public APIs: organizations with (fake) tokens, program "
        "increments, planning sessions in every status, conflicts, sync state and history. Idempotent: "
        "when the demo data is present it writes nothing. Refuses to run with DEBUG off unless "
        "--allow-production is given."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--allow-production",
            action="store_true",
            help="Load the demo data even with DEBUG off (a staging database, never a real one).",
        )

    def handle(self, *args, allow_production: bool, **options):
        if not settings.DEBUG and not allow_production:
            raise CommandError(
                "seed_demo writes fake organizations and tokens; with DEBUG off it needs "
                "--allow-production (use it on a staging database only)."
            )
        if seed_demo():
            names = ", ".join(org.name for org in ORGANIZATIONS)
            self.stdout.write(self.style.SUCCESS(f"Demo data loaded: {names}."))
        else:
            self.stdout.write("Demo data already present; nothing to do.")
