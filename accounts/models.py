"""Organizations (the tenants) and the operators who log in to the admin."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractUser
from django.db import models

from accounts.validation import clean_identifier


class User(AbstractUser):
    """An operator of the admin console.

    A project-owned user model from the start, as Django recommends, so that fields can be added later
    without a painful swap. It adds nothing yet.
    """

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"


class OrganizationQuerySet(models.QuerySet["Organization"]):
    def ensure(self, linear_id: Any, *, name: str = "") -> Organization:
        """Return the organization with this Linear organization id, creating it on first use.

        Race-safe: ``get_or_create`` is backed by the unique constraint on ``linear_id``.
        """
        linear_id = clean_identifier(linear_id, "organization_id")
        organization, _ = self.get_or_create(linear_id=linear_id, defaults={"name": name})
        return organization

    def by_linear_id(self, linear_id: Any) -> Organization | None:
        """The organization with this Linear organization id, or ``None``."""
        linear_id = clean_identifier(linear_id, "organization_id")
        return self.filter(linear_id=linear_id).first()


class Organization(models.Model):
    """The tenant: a Linear workspace, addressed everywhere by its Linear organization id."""

    linear_id = models.CharField(
        "Linear organization id",
        max_length=255,
        help_text="The Linear organization id agent code uses to address this tenant.",
    )
    name = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["linear_id"]
        constraints = [
            models.UniqueConstraint(fields=["linear_id"], name="accounts_organization_linear_id_uniq"),
            models.CheckConstraint(
                condition=~models.Q(linear_id=""), name="accounts_organization_linear_id_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.linear_id
