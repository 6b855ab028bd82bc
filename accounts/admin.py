"""Admin for operators, organizations and their OAuth tokens.

Tokens are never shown: list and change pages show a masked hint (last four characters), the expiry
state and the owner. A superuser can replace a token through a write-only password field; nothing is
searchable by token, and the standard model permissions decide who sees the pages.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from accounts.admin_tenancy import TenantScopedAdminMixin
from accounts.admin_widgets import SafeAutocompleteMixin, SafeManyToManyMixin
from accounts.models import (
    ConfluenceToken,
    LinearToken,
    OAuthToken,
    OAuthTokenQuerySet,
    Organization,
    OrganizationMembership,
    TokenStatus,
    User,
    clean_token,
    status_for_expiry,
)
from accounts.services import offboard_organization
from accounts.tenancy import is_limited
from config.display import when


class OrganizationMembershipInline(SafeAutocompleteMixin, admin.TabularInline):
    """The organizations a staff user is limited to (none: every organization)."""

    model = OrganizationMembership
    fields = ["organization", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["organization"]
    extra = 0
    verbose_name = "organization access"
    verbose_name_plural = (
        "organization access (a staff user with none sees every organization; superusers always do)"
    )


@admin.register(User)
class OperatorAdmin(TenantScopedAdminMixin, SafeManyToManyMixin, UserAdmin):
    """Django's user admin; a tampered group/permission id is a form error, not a 500.

    Users belong to no tenant: only unlimited staff and superusers reach this page (a limited user
    could otherwise widen their own access).
    """

    inlines = [OrganizationMembershipInline]


admin.site.unregister(Group)


@admin.register(Group)
class OperatorGroupAdmin(TenantScopedAdminMixin, SafeManyToManyMixin, GroupAdmin):
    """Django's group admin; a tampered permission id is a form error, not a 500."""


#: The write-only form fields and the model fields they replace.
TOKEN_FORM_FIELDS = {"new_access_token": "access_token", "new_refresh_token": "refresh_token"}


class ExpiryStateFilter(admin.SimpleListFilter):
    """Filter tokens by expiry state, in SQL on ``expires_at``."""

    title = "expiry state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(status.value, status.label) for status in TokenStatus if status != TokenStatus.NONE]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() in (TokenStatus.EXPIRED, TokenStatus.EXPIRING, TokenStatus.VALID):
            return cast(OAuthTokenQuerySet, queryset).with_status(str(self.value()))
        return None


class ReauthorizationFilter(admin.SimpleListFilter):
    """Tokens whose refresh token the provider rejected (``reauthorization_required_at`` set)."""

    title = "re-authorization"
    parameter_name = "reauthorization"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("required", "required"), ("not_required", "not required")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() == "required":
            return cast(OAuthTokenQuerySet, queryset).needing_reauthorization()
        if self.value() == "not_required":
            return queryset.filter(reauthorization_required_at__isnull=True)
        return None


class TokenReplaceForm(forms.ModelForm):
    """Model form whose tokens are write-only: empty keeps the stored token, a value replaces it."""

    new_access_token = forms.CharField(
        label="Replace access token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Leave empty to keep the stored token. The value is never shown again.",
    )
    new_refresh_token = forms.CharField(
        label="Replace refresh token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Leave empty to keep the stored token. The value is never shown again.",
    )

    @sensitive_variables("value")
    def clean_new_access_token(self) -> str:
        """A new access token is required when adding a token; messages never quote it."""
        value = self.cleaned_data.get("new_access_token", "")
        if not value and self.instance.pk is None:
            raise ValidationError("A new token needs an access token.", code="required")
        return self._checked(value, "access token")

    @sensitive_variables("value")
    def clean_new_refresh_token(self) -> str:
        """An optional replacement refresh token."""
        return self._checked(self.cleaned_data.get("new_refresh_token", ""), "refresh token")

    @staticmethod
    @sensitive_variables("value")
    def _checked(value: str, name: str) -> str:
        if not value:
            return ""
        try:
            clean_token(value, name)
        except (ValueError, ValidationError) as exc:
            # Re-raise with our own message only: no value in it, in the form or in a log.
            raise ValidationError(f"The {name} is not valid: {getattr(exc, 'message', exc)}") from None
        return value


class OAuthTokenAdmin(TenantScopedAdminMixin, SafeAutocompleteMixin, admin.ModelAdmin):
    """What both token admins share: masked hints, expiry state, owner, write-only replacement."""

    form = TokenReplaceForm
    list_select_related = ["organization"]
    autocomplete_fields = ["organization"]
    list_filter = [ExpiryStateFilter, ReauthorizationFilter, "organization"]
    # The model's token fields are never form fields: their values would end up in the page.
    exclude = ["access_token", "refresh_token"]
    readonly_fields = [
        "access_token_hint",
        "refresh_token_hint",
        "expiry_state",
        "reauthorization",
        "created_at",
        "updated_at",
    ]
    show_full_result_count = False
    ordering = ["organization__linear_id"]
    #: The fields that say whose token it is, first on the change page (set by each token admin).
    owner_fields: list[str]

    @admin.display(description="access token")
    def access_token_hint(self, obj: OAuthToken) -> str:
        return obj.token_hint("access_token") if obj.pk else "—"

    @admin.display(description="refresh token")
    def refresh_token_hint(self, obj: OAuthToken) -> str:
        return obj.token_hint("refresh_token") if obj.pk else "—"

    @admin.display(description="expiry state")
    def expiry_state(self, obj: OAuthToken) -> str:
        return obj.status().label if obj.pk else "—"

    @admin.display(description="re-authorization", ordering="reauthorization_required_at")
    def reauthorization(self, obj: OAuthToken) -> str:
        """ "required since <when>" once the provider rejected the refresh token, else "—"."""
        required_at = obj.reauthorization_required_at
        return f"required since {when(required_at)}" if required_at else "—"

    @admin.display(description="organization", ordering="organization__name")
    def owner(self, obj: OAuthToken) -> str:
        """The organization's name, its Linear id on hover."""
        return format_html('<span title="{}">{}</span>', obj.organization.linear_id, obj.organization)

    @admin.display(description="expires", ordering="expires_at")
    def expires(self, obj: OAuthToken) -> str:
        """``expires_at`` in the console's date format."""
        return when(obj.expires_at)

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, obj: OAuthToken) -> str:
        """``updated_at`` in the console's date format."""
        return when(obj.updated_at)

    def _titled(self, request: HttpRequest, object_id: str | None, extra_context: dict | None) -> dict:
        """Page title by organization name ("Linear token of Northwind Traders"), not by a Linear id."""
        obj = self.get_object(request, object_id) if object_id else None
        if obj is None:
            return extra_context or {}
        return {"subtitle": f"{self.opts.verbose_name} of {obj.organization}", **(extra_context or {})}

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict | None = None
    ) -> HttpResponse:
        """The history page, titled by the organization's name."""
        return super().history_view(request, object_id, self._titled(request, object_id, extra_context))

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = [
            (None, {"fields": self.owner_fields}),
            (
                "Token",
                {
                    "fields": [
                        "access_token_hint",
                        "refresh_token_hint",
                        "expiry_state",
                        "expires_at",
                        "reauthorization",
                    ]
                },
            ),
            ("History", {"fields": ["created_at", "updated_at"]}),
        ]
        if request.user.is_superuser:
            fieldsets.insert(2, ("Replace tokens", {"fields": list(TOKEN_FORM_FIELDS)}))
        return fieldsets

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Adding a token means typing it in, which only superusers may do.
        return request.user.is_superuser and super().has_add_permission(request)

    # The add and change views receive a typed token: its value stays out of the DEBUG page and the error
    # report (config.errors.SensitiveRequestExceptionReporterFilter cleans such requests in both modes).
    @method_decorator(sensitive_post_parameters(*TOKEN_FORM_FIELDS))
    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        return super().add_view(request, form_url, extra_context)

    @method_decorator(sensitive_post_parameters(*TOKEN_FORM_FIELDS))
    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """The change page, titled by the organization's name."""
        return super().change_view(
            request, object_id, form_url, self._titled(request, object_id, extra_context)
        )

    @sensitive_variables("value")
    def save_model(self, request: HttpRequest, obj: OAuthToken, form: forms.ModelForm, change: bool) -> None:
        for form_field, model_field in TOKEN_FORM_FIELDS.items():
            value = form.cleaned_data.get(form_field) if request.user.is_superuser else ""
            if value:
                setattr(obj, model_field, value)
        super().save_model(request, obj, form, change)


@admin.register(LinearToken)
class LinearTokenAdmin(OAuthTokenAdmin):
    list_display = [
        "owner",
        "app_user_id",
        "access_token_hint",
        "refresh_token_hint",
        "expiry_state",
        "expires",
        "reauthorization",
        "updated",
    ]
    search_fields = ["organization__linear_id", "organization__name", "app_user_id"]
    owner_fields = ["organization", "app_user_id", "scope"]


@admin.register(ConfluenceToken)
class ConfluenceTokenAdmin(OAuthTokenAdmin):
    # The cloud id (a UUID) is on the token's page: with it the list did not fit a laptop screen.
    list_display = [
        "owner",
        "site_url",
        "access_token_hint",
        "refresh_token_hint",
        "expiry_state",
        "expires",
        "reauthorization",
        "updated",
    ]
    search_fields = ["organization__linear_id", "organization__name", "cloud_id", "site_url"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # Atlassian sites are https
    owner_fields = ["organization", "cloud_id", "site_url", "scope"]


@admin.register(Organization)
class OrganizationAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = ["name_or_id", "linear_id", "linear_token_status", "confluence_token_status", "created"]
    search_fields = ["linear_id", "name"]
    readonly_fields = [
        "related_lists",
        "linear_token_status",
        "confluence_token_status",
        "created_at",
        "updated_at",
    ]

    fields = [
        "linear_id",
        "name",
        "related_lists",
        "linear_token_status",
        "confluence_token_status",
        "created_at",
        "updated_at",
    ]

    #: (label, admin changelist URL name, query parameter naming the organization's key).
    RELATED_LISTS = [
        ("Linear token", "admin:accounts_lineartoken_changelist", "organization__id__exact"),
        ("Confluence tokens", "admin:accounts_confluencetoken_changelist", "organization__id__exact"),
        ("Program increments", "admin:planning_programincrement_changelist", "organization__id__exact"),
        ("Planning sessions", "admin:planning_planningsession_changelist", "organization__id__exact"),
        ("Sync states", "admin:sync_syncstate_changelist", "organization"),
        ("Conflicts", "admin:sync_conflict_changelist", "organization"),
        ("Sync history", "admin:sync_synchistory_changelist", "organization"),
        ("Cached Linear issues", "admin:sync_linearissuecache_changelist", "organization"),
    ]

    @admin.display(description="name", ordering="name")
    def name_or_id(self, obj: Organization) -> str:
        """The name (the Linear id when it has none)."""
        return str(obj)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Organization) -> str:
        """``created_at`` in the console's date format."""
        return when(obj.created_at)

    @admin.display(description="this organization's")
    def related_lists(self, obj: Organization) -> str:
        """Links to the lists of the organization's tokens, planning and sync rows (filtered to it)."""
        if obj.pk is None:
            return "—"
        return format_html_join(
            " · ",
            '<a href="{}?{}={}">{}</a>',
            ((reverse(name), parameter, obj.pk, label) for label, name, parameter in self.RELATED_LISTS),
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A user limited to organizations could not see the organization they add.
        return not is_limited(request.user) and super().has_add_permission(request)

    # Offboarding ---------------------------------------------------------------------------------

    offboard_template = "admin/accounts/organization/offboard_confirmation.html"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Superusers only: deleting an organization offboards a customer (every row of theirs goes)."""
        return request.user.is_superuser and super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        """No bulk "delete selected": offboarding is one organization at a time, with its summary."""
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        """Offboard through ``accounts.services.offboard_organization``: GET shows what would go (a dry
        run), POST deletes it and reports the same summary. Django's own delete page refused (the
        planning and sync rows protect their organization)."""
        organization = self.get_object(request, unquote(object_id))
        if organization is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_delete_permission(request, organization):
            raise PermissionDenied
        if request.method == "POST":
            name = str(organization)
            self.log_deletions(request, Organization.objects.filter(pk=organization.pk))
            result = offboard_organization(organization.linear_id)
            self.message_user(
                request,
                f"Offboarded {name}: " + "; ".join(result.lines()) + ".",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(reverse(f"{self.admin_site.name}:accounts_organization_changelist"))
        preview = offboard_organization(organization.linear_id, dry_run=True)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Offboard {organization}?",
            "subtitle": None,
            "opts": self.opts,
            "object": organization,
            "summary": preview.lines(),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.offboard_template, context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Organization]:
        # Expiry dates come as subqueries: no token (ciphertext) is loaded to show a status.
        linear = LinearToken.objects.filter(organization=OuterRef("pk")).values("expires_at")[:1]
        confluence = (
            ConfluenceToken.objects.filter(organization=OuterRef("pk"))
            .order_by("expires_at")
            .values("expires_at")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                linear_token_expires_at=Subquery(linear),
                confluence_token_expires_at=Subquery(confluence[:1]),
            )
        )

    @admin.display(description="Linear token", ordering="linear_token_expires_at")
    def linear_token_status(self, obj: Organization) -> str:
        return status_for_expiry(getattr(obj, "linear_token_expires_at", None)).label

    @admin.display(description="Confluence token (earliest expiry)", ordering="confluence_token_expires_at")
    def confluence_token_status(self, obj: Organization) -> str:
        return status_for_expiry(getattr(obj, "confluence_token_expires_at", None)).label
