"""Tenant scoping for every ModelAdmin of the console (the rules are in :mod:`accounts.tenancy`).

:class:`TenantScopedAdminMixin` goes first in the bases of every registered ModelAdmin of accounts,
planning and sync. For a user limited to organizations it:

* filters ``get_queryset`` — the changelist, the change, delete and history pages, actions (Django
  filters the selected ids through it), autocomplete (Django's autocomplete view asks the target
  model's admin) and the bulk confirmation pages;
* answers 404 for an object the user may not see, and for a missing one (Django's default, a redirect
  with a message, is kept for unlimited users), so a prober cannot tell the two apart;
* limits foreign-key form fields and related-field list filters to the user's organizations' rows;
* refuses every permission on models that belong to no tenant (users, groups): a limited user could
  otherwise widen their own memberships.

``tests/security/test_tenant_scoping.py`` walks every URL of every registered ModelAdmin with two
reviewers of two organizations, so an admin registered without this mixin fails the suite.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import NotRelationField, get_fields_from_path, unquote
from django.core.exceptions import FieldDoesNotExist
from django.db.models import QuerySet
from django.http import Http404, HttpRequest

from accounts.tenancy import is_limited, is_tenant_owned, visible_to


class TenantRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """Django's related-field filter, offering only the related rows the user may see."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[Any]:
        related = field.related_model
        if not is_limited(request.user) or not is_tenant_owned(related):
            return super().field_choices(field, request, model_admin)
        queryset = visible_to(related._default_manager.all(), request.user)
        ordering = self.field_admin_ordering(field, request, model_admin)
        if ordering:
            queryset = queryset.order_by(*ordering)
        return [(obj.pk, str(obj)) for obj in queryset]


class TenantScopedAdminMixin:
    """ModelAdmin mixin: a user limited to organizations sees and acts on their rows only."""

    def tenant_allows(self, request: HttpRequest) -> bool:
        """Whether the user may use this admin at all: unlimited users, or a tenant-owned model."""
        return not is_limited(request.user) or is_tenant_owned(self.model)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        """The admin's rows, limited to the user's organizations."""
        return visible_to(super().get_queryset(request), request.user)  # type: ignore[misc]

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        """The object if the user may see it, else ``None`` (which the views turn into a 404).

        A NUL character cannot be in any stored key (PostgreSQL refuses it in text), so such an id is
        simply not found rather than sent to the database (a ``DataError``: a 500).
        """
        if "\x00" in str(object_id):
            return None
        return super().get_object(request, object_id, from_field)  # type: ignore[misc]

    def _get_obj_does_not_exist_redirect(self, request: HttpRequest, opts: Any, object_id: str) -> Any:
        """For a limited user, 404: the same answer for a missing row and another tenant's row.

        Unlimited users keep Django's redirect with a message (their missing row is just missing); an
        id with a NUL character is a 404 for everyone (it cannot exist).
        """
        if is_limited(request.user) or "\x00" in str(object_id):
            raise Http404(f"No {opts.verbose_name} with this id.")
        return super()._get_obj_does_not_exist_redirect(request, opts, object_id)  # type: ignore[misc]

    def _refuse_invisible(self, request: HttpRequest, object_id: str) -> None:
        """404 before any permission check when a limited user names a row they may not see.

        Django checks the delete (or change) permission before it looks at the row; for a read-only
        admin that would answer 403 for another tenant's row and 404 for a missing one.
        """
        if is_limited(request.user) and self.get_object(request, unquote(object_id)) is None:
            raise Http404("No such object.")

    def change_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> Any:
        self._refuse_invisible(request, object_id)
        return super().change_view(request, object_id, *args, **kwargs)  # type: ignore[misc]

    def delete_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> Any:
        self._refuse_invisible(request, object_id)
        return super().delete_view(request, object_id, *args, **kwargs)  # type: ignore[misc]

    def history_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> Any:
        self._refuse_invisible(request, object_id)
        return super().history_view(request, object_id, *args, **kwargs)  # type: ignore[misc]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.tenant_allows(request) and super().has_module_permission(request)  # type: ignore[misc]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.tenant_allows(request) and super().has_view_permission(request, obj)  # type: ignore[misc]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self.tenant_allows(request) and super().has_add_permission(request, *args)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.tenant_allows(request) and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.tenant_allows(request) and super().has_delete_permission(request, obj)  # type: ignore[misc]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        """Foreign keys to tenant-owned rows offer (and accept) only the user's organizations' rows."""
        related = db_field.related_model
        if "queryset" not in kwargs and is_limited(request.user) and is_tenant_owned(related):
            kwargs["queryset"] = visible_to(related._default_manager.all(), request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        """The admin's filters, with plain related-field filters replaced by tenant-aware ones."""
        filters = []
        for entry in super().get_list_filter(request):  # type: ignore[misc]
            # "field" or ("field", RelatedFieldListFilter); SimpleListFilter classes are left alone.
            if isinstance(entry, str):
                name, filter_class = entry, None
            elif isinstance(entry, tuple | list) and len(entry) == 2:
                name, filter_class = entry
            else:
                name, filter_class = None, None
            plain = filter_class in (None, admin.RelatedFieldListFilter)
            if isinstance(name, str) and plain:
                # The last field of the path ("organization", "planning_session__organization"): a
                # foreign key or a one-to-one (a Linear token's organization) offers related rows.
                try:
                    field = get_fields_from_path(self.model, name)[-1]  # type: ignore[attr-defined]
                except (FieldDoesNotExist, NotRelationField):
                    field = None
                if field is not None and field.is_relation and (field.many_to_one or field.one_to_one):
                    entry = (name, TenantRelatedFieldListFilter)
            filters.append(entry)
        return filters


class TenantScopedInlineMixin:
    """InlineModelAdmin mixin: foreign keys of inline rows offer only the user's organizations' rows."""

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        related = db_field.related_model
        if "queryset" not in kwargs and is_limited(request.user) and is_tenant_owned(related):
            kwargs["queryset"] = visible_to(related._default_manager.all(), request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]
