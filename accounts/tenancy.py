"""Tenant scoping: which organizations' rows a user may see, and which rows belong to an organization.

A staff user can be limited to organizations with :class:`accounts.models.OrganizationMembership`
rows. The rules, in one place:

* superusers are never limited;
* a staff user with no membership is not limited (the console's behaviour before memberships);
* a staff user with memberships sees only the rows of those organizations. Rows with no organization
  (imported from the old system) belong to no tenant and are shown only to unlimited users.

Which rows belong to an organization is answered per model by :func:`owned_by`:

* a QuerySet that defines ``owned_by(organization_ids)`` says it itself (the conflict resolution log,
  tied to a tenant through its conflict's id rather than a foreign key);
* otherwise the shortest chain of forward foreign keys from the model to ``Organization`` is used
  (``organization``, ``planning_session__organization``, ...), found once per model by introspection;
* a model with neither is not tenant-owned (:func:`is_tenant_owned` is false): limited users get no
  access to it at all in the admin.

``accounts`` imports neither ``planning`` nor ``sync``: everything here works from ``_meta``.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable
from typing import Any, TypeVar

from django.db import models

from accounts.models import Organization, OrganizationMembership

_QS = TypeVar("_QS", bound=models.QuerySet)

#: Attribute under which :func:`organization_ids_for` caches its answer on the user object (one
#: query per request: the admin builds a new ``request.user`` for each request).
_CACHE_ATTRIBUTE = "_tenancy_organization_ids"


def organization_ids_for(user: Any) -> frozenset[int] | None:
    """The primary keys of the organizations ``user`` is limited to, or ``None`` for no limit.

    ``None`` for superusers and for staff without memberships; an empty set for an anonymous or
    inactive user (who sees nothing).
    """
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return frozenset()
    if user.is_superuser:
        return None
    cached = getattr(user, _CACHE_ATTRIBUTE, False)
    if cached is not False:
        return cached
    ids = frozenset(
        OrganizationMembership.objects.filter(user_id=user.pk).values_list("organization_id", flat=True)
    )
    result = ids or None
    setattr(user, _CACHE_ATTRIBUTE, result)
    return result


def is_limited(user: Any) -> bool:
    """Whether ``user`` sees only some organizations' rows."""
    return organization_ids_for(user) is not None


@functools.cache
def organization_path(model: type[models.Model]) -> str | None:
    """The lookup from ``model`` to its organization's primary key, or ``None`` if it has none.

    ``"pk"`` for Organization itself; otherwise the shortest chain of forward foreign keys (or
    one-to-one fields) ending at Organization, e.g. ``"planning_session__organization"``.
    """
    if model is Organization or issubclass(model, Organization):
        return "pk"
    queue: deque[tuple[type[models.Model], str]] = deque([(model, "")])
    seen = {model}
    while queue:
        current, prefix = queue.popleft()
        for field in current._meta.concrete_fields:
            if not field.is_relation or not (field.many_to_one or field.one_to_one):
                continue
            target = field.related_model
            path = f"{prefix}{field.name}"
            if target is Organization:
                return path
            if target not in seen:
                seen.add(target)
                queue.append((target, f"{path}__"))
    return None


def is_tenant_owned(model: type[models.Model]) -> bool:
    """Whether rows of ``model`` belong to organizations (an ``owned_by`` method or a path to one)."""
    return callable(getattr(model._default_manager.all(), "owned_by", None)) or (
        organization_path(model) is not None
    )


def owned_by(queryset: _QS, organization_ids: Iterable[int]) -> _QS:
    """The rows of ``queryset`` that belong to one of the organizations (by primary key).

    Raises ``TypeError`` for a model that is not tenant-owned: asking which of its rows belong to a
    tenant is a programming error, not an empty answer.
    """
    ids = sorted(set(organization_ids))
    method = getattr(queryset, "owned_by", None)
    if callable(method):
        return method(ids)
    path = organization_path(queryset.model)
    if path is None:
        raise TypeError(f"{queryset.model._meta.label} has no organization: its rows belong to no tenant.")
    return queryset.filter(**{f"{path}__in": ids})


def visible_to(queryset: _QS, user: Any) -> _QS:
    """The rows of ``queryset`` that ``user`` may see: all of them, or their organizations' rows.

    For a model that is not tenant-owned, a limited user sees nothing.
    """
    ids = organization_ids_for(user)
    if ids is None:
        return queryset
    if not ids or not is_tenant_owned(queryset.model):
        return queryset.none()
    return owned_by(queryset, ids)
