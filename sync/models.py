"""Models of the sync app."""

from django.db import models  # noqa: F401
