"""Admin console for program increments, planning sessions and what the sessions produced.

Changelists run a fixed number of queries whatever the number of rows (``list_select_related``,
annotations instead of per-row lookups) and skip the full ``COUNT(*)`` on the big tables.
Django has no nested inlines: a session shows its features and enablers inline, each feature links to
its own page, where its stories are inline.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.forms import BaseInlineFormSet, Textarea
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

from accounts.admin_tenancy import TenantScopedAdminMixin, TenantScopedInlineMixin
from accounts.admin_widgets import SafeAutocompleteMixin
from config.logging import redact
from planning.models import (
    Enabler,
    Feature,
    PIFeature,
    PIObjective,
    PIRisk,
    PlanningSession,
    ProgramIncrement,
    Story,
)

# Descriptions are long text: a short textarea keeps tabular inlines readable.
COMPACT_TEXT = {models.TextField: {"widget": Textarea(attrs={"rows": 2, "cols": 36})}}


def _with_story_count(features: QuerySet[Feature]) -> QuerySet[Feature]:
    """Annotate each feature's number of stories as ``num_stories``.

    A correlated subquery runs for the shown page only, unlike a ``GROUP BY`` over a join, and keeps
    the changelist at one query.
    """
    per_feature = (
        Story.objects.filter(planning_feature=OuterRef("pk"))
        .order_by()
        .values("planning_feature")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return features.annotate(num_stories=Coalesce(Subquery(per_feature, output_field=IntegerField()), 0))


class LinearIdInlineFormSet(BaseInlineFormSet):
    """Inline formset that refuses a Linear id the parent already holds in a row outside the formset.

    Django leaves the inline foreign key out of model validation, so a ``UniqueConstraint`` on
    (parent, id) is not checked by the form and would surface as an ``IntegrityError`` (a 500).
    Duplicates inside the formset are already caught by the formset's own ``validate_unique``.
    """

    linear_id_field = ""

    def clean(self) -> None:
        super().clean()
        field = self.linear_id_field
        wanted: dict[str, Any] = {}
        for form in self.forms:
            if form in self.deleted_forms or not form.has_changed() or not hasattr(form, "cleaned_data"):
                continue
            value = form.cleaned_data.get(field)
            if value:
                wanted[value] = form
        if not wanted or self.instance.pk is None:
            return
        in_formset = [form.instance.pk for form in self.forms if form.instance.pk is not None]
        taken = (
            self.model._default_manager.filter(**{self.fk.name: self.instance, f"{field}__in": list(wanted)})
            .exclude(pk__in=in_formset)
            .values_list(field, flat=True)
        )
        for value in taken:
            label = self.model._meta.get_field(field).verbose_name
            wanted[value].add_error(field, f"{label.capitalize()} {value!r} is already used here.")


def linear_id_formset(field: str) -> type[LinearIdInlineFormSet]:
    """A :class:`LinearIdInlineFormSet` checking ``field``."""
    return type(f"{field}InlineFormSet", (LinearIdInlineFormSet,), {"linear_id_field": field})


class ExactIdSearchMixin:
    """Admin search that also matches Linear ids exactly (``=``), so the id indexes are used.

    Django's ``=field`` search is ``iexact``, which PostgreSQL cannot answer from a plain index.
    """

    exact_search_fields: tuple[str, ...] = ()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        matches, may_have_duplicates = super().get_search_results(  # type: ignore[misc]
            request, queryset, search_term
        )
        term = search_term.strip()
        if not term or not self.exact_search_fields:
            return matches, may_have_duplicates
        exact = Q()
        for field in self.exact_search_fields:
            exact |= Q(**{field: term})
        return matches | queryset.filter(exact), may_have_duplicates


# --- program increments ------------------------------------------------------------------------------


class PIFeatureInline(TenantScopedInlineMixin, admin.TabularInline):
    model = PIFeature
    fields = ["feature_id", "team_id", "status", "confidence"]
    formset = linear_id_formset("feature_id")
    extra = 0


class PIObjectiveInline(TenantScopedInlineMixin, admin.TabularInline):
    model = PIObjective
    fields = ["objective_id", "team_id", "description", "business_value", "status"]
    formfield_overrides = COMPACT_TEXT
    formset = linear_id_formset("objective_id")
    extra = 0


class PIRiskInline(TenantScopedInlineMixin, admin.TabularInline):
    model = PIRisk
    fields = ["risk_id", "description", "impact", "likelihood", "status", "mitigation_plan"]
    formfield_overrides = COMPACT_TEXT
    formset = linear_id_formset("risk_id")
    extra = 0


@admin.register(ProgramIncrement)
class ProgramIncrementAdmin(TenantScopedAdminMixin, SafeAutocompleteMixin, admin.ModelAdmin):
    list_display = ["pi_id", "name", "organization", "start_date", "end_date", "status"]
    list_filter = ["status", "organization"]
    list_select_related = ["organization"]
    search_fields = ["pi_id", "name"]
    autocomplete_fields = ["organization"]
    readonly_fields = ["created_at", "updated_at"]
    ordering = ["-start_date", "-id"]
    inlines = [PIFeatureInline, PIObjectiveInline, PIRiskInline]


# --- planning sessions -------------------------------------------------------------------------------


class FeatureInline(TenantScopedInlineMixin, admin.TabularInline):
    model = Feature
    fields = ["feature_id", "title", "description", "story_count"]
    readonly_fields = ["story_count"]
    formfield_overrides = COMPACT_TEXT
    show_change_link = True  # stories are edited on the feature's own page
    formset = linear_id_formset("feature_id")
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[Feature]:
        return _with_story_count(super().get_queryset(request))

    @admin.display(description="stories")
    def story_count(self, feature: Feature) -> int:
        return getattr(feature, "num_stories", 0)


class EnablerInline(TenantScopedInlineMixin, admin.TabularInline):
    model = Enabler
    fields = ["enabler_id", "title", "enabler_type", "description"]
    formfield_overrides = COMPACT_TEXT
    formset = linear_id_formset("enabler_id")
    extra = 0


@admin.register(PlanningSession)
class PlanningSessionAdmin(
    TenantScopedAdminMixin, SafeAutocompleteMixin, ExactIdSearchMixin, admin.ModelAdmin
):
    list_display = [
        "planning_title",
        "organization",
        "program_increment",
        "status",
        "progress_bar",
        "created",
    ]
    list_filter = ["status", "organization", "program_increment"]
    list_select_related = ["organization", "program_increment"]
    # Text search; the epic and feature/story/enabler ids are matched exactly in get_search_results.
    search_fields = ["planning_title", "confluence_page_url"]
    exact_search_fields = ("epic_id",)
    search_help_text = "Title, Confluence page URL, or an exact Linear epic, feature, story or enabler id."
    autocomplete_fields = ["organization", "program_increment"]
    # Status and progress move only through the model's transitions (the agent's path, race-safe).
    readonly_fields = ["status", "progress_bar", "error_text", "created_at", "updated_at"]
    fields = [
        "organization",
        "program_increment",
        "planning_title",
        "confluence_page_url",
        "confluence_document_id",
        "epic_id",
        "status",
        "progress_bar",
        "error_text",
        "created_at",
        "updated_at",
    ]
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    list_per_page = 50
    inlines = [FeatureInline, EnablerInline]
    actions = ["mark_failed"]
    # Confluence is served over https; also Django 6's default, chosen now to silence its warning.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="created", ordering="created_at")
    def created(self, session: PlanningSession) -> str:
        return date_format(timezone.localtime(session.created_at), "SHORT_DATE_FORMAT")

    @admin.display(description="error")
    def error_text(self, session: PlanningSession) -> str:
        """The error as stored, with anything that looks like a token redacted (it may quote one)."""
        return redact(session.error) or "—"

    @admin.display(description="progress", ordering="progress")
    def progress_bar(self, session: PlanningSession) -> str:
        return format_html(
            '<span style="white-space:nowrap"><progress value="{}" max="100" style="width:6em" '
            'aria-label="{}% done">{}%</progress> {}%</span>',
            session.progress,
            session.progress,
            session.progress,
            session.progress,
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[PlanningSession], search_term: str
    ) -> tuple[QuerySet[PlanningSession], bool]:
        """Text search, or sessions that produced a feature, story or enabler with this exact Linear id.

        ``Exists`` subqueries, not joins, so a session with many matching rows is listed once and the
        changelist needs no ``DISTINCT``.
        """
        matches, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not term:
            return matches, may_have_duplicates
        session = OuterRef("pk")
        by_linear_id = queryset.filter(
            Exists(Feature.objects.filter(planning_session=session, feature_id=term))
            | Exists(Story.objects.filter(planning_feature__planning_session=session, story_id=term))
            | Exists(Enabler.objects.filter(planning_session=session, enabler_id=term))
        )
        return matches | by_linear_id, may_have_duplicates

    mark_failed_template = "admin/planning/planningsession/mark_failed_confirmation.html"

    @admin.action(description="Mark selected sessions as failed", permissions=["change"])
    def mark_failed(
        self, request: HttpRequest, queryset: QuerySet[PlanningSession]
    ) -> TemplateResponse | None:
        """Confirm (which sessions fail, which are left alone and why), then fail them through the model
        transition, reporting each outcome by title."""
        sessions = list(queryset.select_related("organization").order_by("-created_at", "-id"))
        open_statuses = (PlanningSession.Status.PENDING, PlanningSession.Status.PROCESSING)
        will_fail = [session for session in sessions if session.status in open_statuses]
        left_alone = [session for session in sessions if session.status not in open_statuses]
        if request.POST.get("post") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": "Mark selected sessions as failed?",
                "subtitle": None,
                "opts": self.opts,
                "queryset": sessions,
                "will_fail": will_fail,
                "left_alone": left_alone,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            request.current_app = self.admin_site.name
            return TemplateResponse(request, self.mark_failed_template, context)
        reason = " ".join(request.POST.get("reason", "").split())[:500]
        error = f"Marked as failed in the admin by {request.user}" + (f": {reason}" if reason else ".")
        failed, refused = [], []
        for session in will_fail:
            try:
                session.mark_failed(error)
            except ValidationError as exc:  # moved on meanwhile (the agent finished it)
                refused.append(f"“{session.planning_title}” ({exc.messages[0]})")
            else:
                failed.append(f"“{session.planning_title}”")
        if failed:
            noun = "session" if len(failed) == 1 else "sessions"
            self.message_user(
                request, f"Marked {len(failed)} {noun} as failed: {', '.join(failed)}.", messages.SUCCESS
            )
        for session in left_alone:
            refused.append(
                f"“{session.planning_title}” (already {session.get_status_display().lower()}: "
                "only pending or processing sessions can be marked as failed)"
            )
        if refused:
            self.message_user(request, f"Left alone: {'; '.join(refused)}.", messages.WARNING)
        return None


class StoryInline(TenantScopedInlineMixin, admin.TabularInline):
    model = Story
    fields = ["story_id", "title", "description"]
    formfield_overrides = COMPACT_TEXT
    formset = linear_id_formset("story_id")
    extra = 0


@admin.register(Feature)
class FeatureAdmin(TenantScopedAdminMixin, ExactIdSearchMixin, admin.ModelAdmin):
    list_display = ["feature_id", "title", "planning_session", "story_count", "created_at"]
    list_select_related = ["planning_session"]
    search_fields = ["title"]
    exact_search_fields = ("feature_id",)
    raw_id_fields = ["planning_session"]
    readonly_fields = ["created_at", "updated_at"]
    ordering = ["-id"]  # the primary key index; created_at is not indexed on this table
    show_full_result_count = False
    inlines = [StoryInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Feature]:
        return _with_story_count(super().get_queryset(request))

    @admin.display(description="stories", ordering="num_stories")
    def story_count(self, feature: Feature) -> int:
        return getattr(feature, "num_stories", 0)


@admin.register(Enabler)
class EnablerAdmin(TenantScopedAdminMixin, ExactIdSearchMixin, admin.ModelAdmin):
    list_display = ["enabler_id", "title", "enabler_type", "planning_session", "created_at"]
    list_filter = ["enabler_type"]
    list_select_related = ["planning_session"]
    search_fields = ["title"]
    exact_search_fields = ("enabler_id",)
    raw_id_fields = ["planning_session"]
    readonly_fields = ["created_at", "updated_at"]
    ordering = ["-id"]
    show_full_result_count = False
    formfield_overrides = COMPACT_TEXT
