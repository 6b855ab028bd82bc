from django.apps import AppConfig


class SyncConfig(AppConfig):
    verbose_name = "Sync"
    default_auto_field = "django.db.models.BigAutoField"
    name = "sync"
