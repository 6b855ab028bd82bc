"""Models of the planning app."""

from django.db import models  # noqa: F401
