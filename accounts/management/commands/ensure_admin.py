"""Create the first admin login once, printing its random password a single time."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Create a superuser with a random password if no superuser exists yet, and print the "
        "password once. The password is stored only as Django's salted hash."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin", help="Login name (default: admin).")

    def handle(self, *args, username: str, **options):
        user_model = get_user_model()
        if user_model.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin user already exists; not creating another.")
            return
        if user_model.objects.filter(username=username).exists():
            raise CommandError(
                f"A non-superuser named {username!r} exists; pass --username to choose another name."
            )
        password = secrets.token_urlsafe(18)
        user_model.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.SUCCESS("Created the admin login (shown once, write it down):")
            + f"\n    username: {username}\n    password: {password}\n"
        )
