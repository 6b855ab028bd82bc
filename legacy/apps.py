from django.apps import AppConfig


class LegacyConfig(AppConfig):
    verbose_name = "Legacy import"
    default_auto_field = "django.db.models.BigAutoField"
    name = "legacy"
