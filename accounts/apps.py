from django.apps import AppConfig
from django.conf import settings


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
    verbose_name = "Accounts and tokens"

    def ready(self) -> None:
        # A guest in someone else's process (LOG_SETUP=guest, config/settings.py): the host's logging
        # stays as it is, and the project's and Django's records reach its handlers redacted.
        if getattr(settings, "LOG_SETUP", "project") == "guest":
            from config.logging import install_guest_redaction

            install_guest_redaction()
