"""Admin widgets shared by the apps' admins (planning imports these; accounts imports nothing else's)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import ValidationError
from django.db import connections
from django.http import HttpRequest


def _storable_key(target: Any, item: Any, using: str) -> bool:
    """Whether ``item`` is a value the key field ``target`` can hold (type and integer range)."""
    try:
        python = target.to_python(item)
    except ValidationError:
        return False
    if isinstance(python, int):
        low, high = connections[using].ops.integer_field_range(target.get_internal_type())
        return (low is None or python >= low) and (high is None or python <= high)
    return True


class SafeAutocompleteSelect(AutocompleteSelect):
    """``AutocompleteSelect`` that ignores posted values the related key cannot hold.

    When a form is shown again with errors, Django's widget looks up the selected objects with every
    posted value; a value that is not a valid key (a tampered POST: ``"abc"`` for an integer id, or an
    integer beyond the column's range) raises ``ValueError``/``OverflowError`` there, a 500 instead of the
    form's own "Select a valid choice" error. Such values can match no row, so they are dropped.
    """

    def optgroups(self, name: str, value: list[Any], attr: Any = None) -> list[Any]:
        return super().optgroups(name, [item for item in value if self._storable(item)], attr)

    def _storable(self, item: Any) -> bool:
        return _storable_key(self.field.target_field, item, self.db or "default")


class SafeAutocompleteMixin:
    """ModelAdmin mixin: the ``autocomplete_fields`` foreign keys use :class:`SafeAutocompleteSelect`."""

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "widget" not in kwargs and db_field.name in self.get_autocomplete_fields(request):
            kwargs["widget"] = SafeAutocompleteSelect(db_field, self.admin_site, using=kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class SafeModelMultipleChoiceField(forms.ModelMultipleChoiceField):
    """``ModelMultipleChoiceField`` whose out-of-range keys are a form error, not a database error.

    Django queries ``pk__in`` with every posted value; on SQLite an integer beyond 64 bits raises
    ``OverflowError`` while binding (a 500). Such a value can match no row: "Select a valid choice".
    """

    def _check_values(self, value: Any) -> Any:
        key = self.to_field_name or "pk"
        target = self.queryset.model._meta.pk if key == "pk" else self.queryset.model._meta.get_field(key)
        for item in value:
            if isinstance(item, (str, int)) and not _storable_key(target, item, self.queryset.db):
                raise ValidationError(
                    self.error_messages["invalid_pk_value"], code="invalid_pk_value", params={"pk": item}
                )
        return super()._check_values(value)


class SafeManyToManyMixin:
    """ModelAdmin mixin: many-to-many fields use :class:`SafeModelMultipleChoiceField`."""

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        kwargs.setdefault("form_class", SafeModelMultipleChoiceField)
        return super().formfield_for_manytomany(db_field, request, **kwargs)
