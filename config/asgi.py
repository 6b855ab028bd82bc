"""ASGI entry point."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The project's own process: it configures logging (root logger included), see LOG_SETUP.
os.environ.setdefault("LOG_SETUP", "project")

application = get_asgi_application()
