"""Models of the legacy app."""

from django.db import models  # noqa: F401
