"""Admin console for program increments, planning sessions and what the sessions produced.

Changelists run a fixed number of queries whatever the number of rows (``list_select_related``,
annotations instead of per-row lookups) and skip the full ``COUNT(*)`` on the big tables.
Django has no nested inlines: a session shows its features and enablers inline, each feature links to
its own page, where its stories are inline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.forms import BaseInlineFormSet, Textarea
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from accounts.admin_tenancy import TenantScopedAdminMixin, TenantScopedInlineMixin
from accounts.admin_widgets import SafeAutocompleteMixin
from config.display import when
from config.logging import redact
from planning.models import (
    Enabler,
    Epic,
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
    fields = ["feature_id", "title", "description", "planning_id", "epic", "story_count"]
    # The parser's id and the epic come from save_planning_result; read-only here, so that the
    # form posts no more fields than before.
    readonly_fields = ["planning_id", "epic", "story_count"]
    formfield_overrides = COMPACT_TEXT
    show_change_link = True  # stories are edited on the feature's own page
    formset = linear_id_formset("feature_id")
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[Feature]:
        return _with_story_count(super().get_queryset(request)).select_related("epic")

    @admin.display(description="stories")
    def story_count(self, feature: Feature) -> int:
        return getattr(feature, "num_stories", 0)


class EnablerInline(TenantScopedInlineMixin, admin.TabularInline):
    model = Enabler
    fields = ["enabler_id", "title", "enabler_type", "description", "planning_id", "planning_feature"]
    readonly_fields = ["planning_id", "planning_feature"]
    formfield_overrides = COMPACT_TEXT
    formset = linear_id_formset("enabler_id")
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[Enabler]:
        return super().get_queryset(request).select_related("planning_feature")


#: Newest messages shown on a session's page; the rest are counted.
MESSAGES_SHOWN = 100


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
    # Warnings and errors, epics and the id map are shown as read-only tables rather than inline
    # formsets: the messages are append-only, the epics and the map are what the agent saved, and a
    # formset would add management-form fields every POST of this page must then carry.
    readonly_fields = [
        "status",
        "retry_button",
        "attempt",
        "progress_bar",
        "progress_message",
        "error_text",
        "messages_list",
        "epics_list",
        "id_map_list",
        "created_at",
        "updated_at",
    ]
    fields = [
        "organization",
        "program_increment",
        "planning_title",
        "confluence_page_url",
        "confluence_document_id",
        "epic_id",
        "status",
        "retry_button",
        "attempt",
        "progress_bar",
        "progress_message",
        "error_text",
        "messages_list",
        "epics_list",
        "id_map_list",
        "created_at",
        "updated_at",
    ]
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    list_per_page = 50
    inlines = [FeatureInline, EnablerInline]
    actions = ["mark_failed", "retry_sessions"]
    # Confluence is served over https; also Django 6's default, chosen now to silence its warning.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="created", ordering="created_at")
    def created(self, session: PlanningSession) -> str:
        return when(session.created_at)

    @admin.display(description="error")
    def error_text(self, session: PlanningSession) -> str:
        """The error as stored, with anything that looks like a token redacted (it may quote one)."""
        return redact(session.error) or "—"

    def get_fields(
        self, request: HttpRequest, obj: PlanningSession | None = None
    ) -> Sequence[str | Sequence[str]]:
        """The change page's fields; the retry button only for those who may change the session."""
        fields = list(super().get_fields(request, obj))
        if obj is None or not self.has_change_permission(request, obj):
            fields.remove("retry_button")
        return fields

    @admin.display(description="retry")
    def retry_button(self, session: PlanningSession) -> str:
        """A button that retries a failed session (posts to :meth:`retry_view`); nothing otherwise."""
        if session.pk is None or session.status != PlanningSession.Status.FAILED:
            return "—"
        url = reverse("admin:planning_planningsession_retry", args=[session.pk])
        return format_html(
            '<button type="submit" formaction="{}" formnovalidate class="button">Retry (attempt {})</button>',
            url,
            session.attempt + 1,
        )

    @admin.display(description="warnings and errors")
    def messages_list(self, session: PlanningSession) -> str:
        """The session's warnings and errors, newest first, with codes and attempts (text redacted)."""
        if session.pk is None:
            return "—"
        shown = list(session.messages.newest_first()[: MESSAGES_SHOWN + 1])
        if not shown:
            return "—"
        more = ""
        if len(shown) > MESSAGES_SHOWN:
            shown = shown[:MESSAGES_SHOWN]
            more = format_html("<p>Only the newest {} are shown.</p>", MESSAGES_SHOWN)
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    date_format(timezone.localtime(entry.created_at), "DATETIME_FORMAT"),
                    entry.level + (" (fatal)" if entry.fatal else ""),
                    entry.code or "—",
                    entry.attempt,
                    redact(entry.message),
                    redact(json.dumps(entry.details)) if entry.details is not None else "",
                )
                for entry in shown
            ),
        )
        return format_html(
            '<table class="session-messages"><thead><tr><th>time</th><th>level</th><th>code</th>'
            "<th>attempt</th><th>message</th><th>details</th></tr></thead><tbody>{}</tbody></table>{}",
            rows,
            more,
        )

    @admin.display(description="epics")
    def epics_list(self, session: PlanningSession) -> str:
        """The session's epics with their Linear and planning ids and number of features."""
        if session.pk is None:
            return "—"
        epics = list(
            Epic.objects.filter(planning_session=session)
            .annotate(num_features=Count("features"))
            .order_by("epic_id")
            .values_list("epic_id", "planning_id", "title", "num_features")
        )
        if not epics:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((epic_id, planning_id or "—", title, n) for epic_id, planning_id, title, n in epics),
        )
        return format_html(
            '<table class="session-epics"><thead><tr><th>Linear id</th><th>planning id</th><th>title</th>'
            "<th>features</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="planning id → Linear id")
    def id_map_list(self, session: PlanningSession) -> str:
        """The planning-id → Linear-id map of :meth:`PlanningSession.id_map`, one row per item."""
        if session.pk is None:
            return "—"
        rows = [
            (item_type, planning_id, linear_id)
            for item_type, mapping in session.id_map().items()
            for planning_id, linear_id in sorted(mapping.items())
        ]
        if not rows:
            return "—"
        return format_html(
            '<table class="session-id-map"><thead><tr><th>type</th><th>planning id</th><th>Linear id</th>'
            "</tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    def get_urls(self) -> list[URLPattern]:
        """The change page's retry button posts to ``<id>/retry/``."""
        retry = path(
            "<path:object_id>/retry/",
            self.admin_site.admin_view(self.retry_view),
            name="planning_planningsession_retry",
        )
        return [retry, *super().get_urls()]

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: retry one failed session through :meth:`PlanningSession.retry`, back to its page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        session = self.get_object(request, object_id)
        if session is None or not self.has_change_permission(request, session):
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        try:
            session.retry()
        except ValidationError as exc:
            self.message_user(request, exc.messages[0], messages.WARNING)
        else:
            done = f"Session {session.pk} is pending again (attempt {session.attempt})."
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:planning_planningsession_change", args=[session.pk]))

    @admin.action(description="Retry selected failed sessions")
    def retry_sessions(self, request: HttpRequest, queryset: QuerySet[PlanningSession]) -> None:
        """Retry failed sessions through the model transition; report the ones refused."""
        retried, refused = 0, []
        for session in queryset:
            try:
                session.retry()
                retried += 1
            except ValidationError as exc:
                refused.append(exc.messages[0])
        if retried:
            self.message_user(request, f"{retried} session(s) retried.", messages.SUCCESS)
        for message in refused:
            self.message_user(request, message, messages.WARNING)

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


class SessionOrganizationMixin:
    """The organization of a row's planning session: a column (joined, no query per row) and a filter."""

    @admin.display(description="organization", ordering="planning_session__organization__name")
    def organization(self, obj: Feature | Enabler) -> str:
        organization = obj.planning_session.organization
        return format_html('<span title="{}">{}</span>', organization.linear_id, organization)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Feature | Enabler) -> str:
        return when(obj.created_at)


@admin.register(Feature)
class FeatureAdmin(TenantScopedAdminMixin, SessionOrganizationMixin, ExactIdSearchMixin, admin.ModelAdmin):
    list_display = ["feature_id", "title", "organization", "planning_session", "story_count", "created"]
    list_filter = ["planning_session__organization"]
    list_select_related = ["planning_session__organization"]
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
class EnablerAdmin(TenantScopedAdminMixin, SessionOrganizationMixin, ExactIdSearchMixin, admin.ModelAdmin):
    list_display = ["enabler_id", "title", "enabler_type", "organization", "planning_session", "created"]
    list_filter = ["enabler_type", "planning_session__organization"]
    list_select_related = ["planning_session__organization"]
    search_fields = ["title"]
    exact_search_fields = ("enabler_id",)
    raw_id_fields = ["planning_session"]
    readonly_fields = ["created_at", "updated_at"]
    ordering = ["-id"]
    show_full_result_count = False
    formfield_overrides = COMPACT_TEXT
