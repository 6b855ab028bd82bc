"""The SAFe planning hierarchy: program increments, planning sessions and what a session produced.

Two trees, both owned by an :class:`~accounts.models.Organization`:

* a **program increment** (PI) with the features, objectives and risks its teams committed to;
* a **planning session**: one run of the agent over a Confluence page, which produces **epics**,
  **features** (optionally under an epic, each with **stories**) and **enablers** (under a feature or
  the session), all addressed by their Linear ids and, when the parser gave one, their planning id.

Every rule the database can keep is a constraint here (ranges, choices, non-empty ids, uniqueness per
parent), so that agent code, the admin, the legacy import and a raw SQL session meet the same wall.

Timestamps: ``created_at`` and ``updated_at`` default to ``timezone.now`` instead of using
``auto_now_add``/``auto_now``, because those overwrite explicit values even in ``bulk_create`` and the
legacy import keeps the old rows' times. ``save()`` still bumps ``updated_at`` (see
:class:`TimestampedModel`); bulk writes set it themselves.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from accounts.validation import (
    MAX_ERROR_LENGTH,
    MAX_IDENTIFIER_LENGTH,
    clean_aware_datetime,
    clean_identifier,
    clean_text,
    describe_int,
)

logger = logging.getLogger(__name__)

#: Longest title accepted for a session, feature, story or enabler (Linear caps issue titles below this).
MAX_TITLE_LENGTH = 500
#: Longest Confluence page URL accepted.
MAX_URL_LENGTH = 2048
#: Longest progress message accepted (``set_progress``); it is a status line, not a log.
MAX_PROGRESS_MESSAGE_LENGTH = 1000
#: Longest warning or error code accepted (``add_warning``/``add_error``).
MAX_CODE_LENGTH = 100
#: Largest story-point estimate accepted for a feature or story.
MAX_STORY_POINTS = 1000

# A NUL escape that is not itself an escaped backslash followed by "u0000" (PostgreSQL's jsonb refuses it).
_JSON_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _id_field(verbose_name: str) -> models.CharField:
    return models.CharField(verbose_name, max_length=MAX_IDENTIFIER_LENGTH)


def _not_empty(field: str, name: str) -> models.CheckConstraint:
    return models.CheckConstraint(condition=~Q(**{field: ""}), name=name)


def _in_choices(field: str, choices: type[models.TextChoices], name: str) -> models.CheckConstraint:
    return models.CheckConstraint(condition=Q(**{f"{field}__in": choices.values}), name=name)


def _between(field: str, low: int, high: int, name: str) -> models.CheckConstraint:
    return models.CheckConstraint(condition=Q(**{f"{field}__gte": low, f"{field}__lte": high}), name=name)


class TimestampedModel(models.Model):
    """``created_at``/``updated_at`` that keep explicit values on insert (see the module docstring)."""

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save, bumping ``updated_at`` on every save of an existing row (as ``auto_now`` would)."""
        if not self._state.adding:
            self.updated_at = timezone.now()
            update_fields = kwargs.get("update_fields")
            # An empty update_fields means "save nothing" to Django: keep it that way.
            if update_fields and "updated_at" not in update_fields:
                kwargs["update_fields"] = [*update_fields, "updated_at"]
        super().save(*args, **kwargs)


# --- program increments -----------------------------------------------------------------------------


class ProgramIncrementQuerySet(models.QuerySet["ProgramIncrement"]):
    def for_organization(self, organization_id: Any) -> ProgramIncrementQuerySet:
        """The increments of the organization with this Linear id, latest start first."""
        organization_id = clean_identifier(organization_id, "organization_id")
        return self.filter(organization__linear_id=organization_id).order_by("-start_date", "-id")

    def current(self, organization_id: str, on: dt.date | None = None) -> ProgramIncrementQuerySet:
        """The organization's increments whose date range contains ``on`` (today by default), latest first.

        The organization (its Linear id) is required: one tenant's call never lists another's increments.
        """
        if on is None:
            on = timezone.localdate()
        elif isinstance(on, dt.datetime) or not isinstance(on, dt.date):
            raise ValueError(f"on must be a date, not {type(on).__name__}.")
        return self.for_organization(organization_id).filter(start_date__lte=on, end_date__gte=on)


class ProgramIncrementStatus(models.TextChoices):
    PLANNING = "planning", "Planning"
    EXECUTION = "execution", "Execution"
    COMPLETED = "completed", "Completed"


class ProgramIncrement(TimestampedModel):
    """A SAFe program increment (the Linear cycle the agent plans into)."""

    Status = ProgramIncrementStatus

    # The composite (organization, pi_id) unique index serves lookups by organization.
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="program_increments", db_index=False
    )
    pi_id = _id_field("PI id")
    name = models.CharField(max_length=255, blank=True, default="")
    start_date = models.DateField()
    end_date = models.DateField()
    description = models.TextField(blank=True, default="")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PLANNING)

    objects = ProgramIncrementQuerySet.as_manager()

    class Meta:
        ordering = ["-start_date", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "pi_id"], name="planning_pi_org_pi_id_uniq"),
            _not_empty("pi_id", "planning_pi_pi_id_not_empty"),
            models.CheckConstraint(
                condition=Q(end_date__gte=models.F("start_date")), name="planning_pi_end_after_start"
            ),
            _in_choices("status", ProgramIncrementStatus, "planning_pi_status_valid"),
        ]
        indexes = [
            models.Index(fields=["organization", "-start_date"], name="planning_pi_org_start_idx"),
            models.Index(fields=["start_date", "end_date"], name="planning_pi_dates_idx"),
            models.Index(fields=["status"], name="planning_pi_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.pi_id} {self.name}".strip() if self.name else self.pi_id

    def clean(self) -> None:
        """Repeat the date-range rule with a friendly message for forms."""
        super().clean()
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValidationError({"end_date": "The end date must not be before the start date."})


class PIWorkStatus(models.TextChoices):
    """Status of a PI feature or objective (the old code's ``in-progress`` imports as ``in_progress``)."""

    PLANNED = "planned", "Planned"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"


class PIFeature(models.Model):
    """A Linear feature a team committed to in a program increment, with its confidence vote."""

    Status = PIWorkStatus

    program_increment = models.ForeignKey(
        ProgramIncrement, on_delete=models.CASCADE, related_name="features", db_index=False
    )
    feature_id = _id_field("Linear feature id")
    team_id = models.CharField("Linear team id", max_length=MAX_IDENTIFIER_LENGTH, blank=True, default="")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PLANNED)
    confidence = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(5)], help_text="1 (low) to 5 (high)."
    )

    class Meta:
        verbose_name = "PI feature"
        ordering = ["program_increment_id", "feature_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["program_increment", "feature_id"], name="planning_pifeature_pi_feature_uniq"
            ),
            _not_empty("feature_id", "planning_pifeature_feature_id_not_empty"),
            _in_choices("status", PIWorkStatus, "planning_pifeature_status_valid"),
            _between("confidence", 1, 5, "planning_pifeature_confidence_1_5"),
        ]

    def __str__(self) -> str:
        return self.feature_id


class PIObjective(models.Model):
    """A team's PI objective with its business value (1–10)."""

    Status = PIWorkStatus

    program_increment = models.ForeignKey(
        ProgramIncrement, on_delete=models.CASCADE, related_name="objectives", db_index=False
    )
    objective_id = _id_field("objective id")
    team_id = models.CharField("Linear team id", max_length=MAX_IDENTIFIER_LENGTH, blank=True, default="")
    description = models.TextField(blank=True, default="")
    business_value = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(10)], help_text="1 to 10."
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PLANNED)

    class Meta:
        verbose_name = "PI objective"
        ordering = ["program_increment_id", "objective_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["program_increment", "objective_id"], name="planning_piobjective_pi_obj_uniq"
            ),
            _not_empty("objective_id", "planning_piobjective_id_not_empty"),
            _in_choices("status", PIWorkStatus, "planning_piobjective_status_valid"),
            _between("business_value", 1, 10, "planning_piobjective_value_1_10"),
        ]

    def __str__(self) -> str:
        return self.objective_id


class PIRiskStatus(models.TextChoices):
    """ROAM status of a PI risk."""

    IDENTIFIED = "identified", "Identified"
    MITIGATED = "mitigated", "Mitigated"
    ACCEPTED = "accepted", "Accepted"
    AVOIDED = "avoided", "Avoided"


class PIRisk(models.Model):
    """A risk raised for a program increment (ROAM status, impact and likelihood 1–5)."""

    Status = PIRiskStatus

    program_increment = models.ForeignKey(
        ProgramIncrement, on_delete=models.CASCADE, related_name="risks", db_index=False
    )
    risk_id = _id_field("risk id")
    description = models.TextField(blank=True, default="")
    impact = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(5)], help_text="1 to 5."
    )
    likelihood = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(5)], help_text="1 to 5."
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.IDENTIFIED)
    mitigation_plan = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = "PI risk"
        ordering = ["program_increment_id", "risk_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["program_increment", "risk_id"], name="planning_pirisk_pi_risk_uniq"
            ),
            _not_empty("risk_id", "planning_pirisk_risk_id_not_empty"),
            _in_choices("status", PIRiskStatus, "planning_pirisk_status_valid"),
            _between("impact", 1, 5, "planning_pirisk_impact_1_5"),
            _between("likelihood", 1, 5, "planning_pirisk_likelihood_1_5"),
        ]

    def __str__(self) -> str:
        return self.risk_id


# --- planning sessions ------------------------------------------------------------------------------


class PlanningSessionQuerySet(models.QuerySet["PlanningSession"]):
    def newest_first(self) -> PlanningSessionQuerySet:
        """Newest first; the id breaks ties between sessions started in the same instant."""
        return self.order_by("-created_at", "-id")

    def for_organization(self, organization_id: Any) -> PlanningSessionQuerySet:
        """The sessions of the organization with this Linear id, newest first (empty if unknown)."""
        organization_id = clean_identifier(organization_id, "organization_id")
        return self.filter(organization__linear_id=organization_id).newest_first()

    def pending(self) -> PlanningSessionQuerySet:
        """Sessions not yet picked up."""
        return self.filter(status=PlanningSession.Status.PENDING)

    def in_progress(self) -> PlanningSessionQuerySet:
        """Sessions the agent is processing now."""
        return self.filter(status=PlanningSession.Status.PROCESSING)

    def completed(self) -> PlanningSessionQuerySet:
        """Sessions that finished successfully."""
        return self.filter(status=PlanningSession.Status.COMPLETED)

    def failed(self) -> PlanningSessionQuerySet:
        """Sessions that ended with an error."""
        return self.filter(status=PlanningSession.Status.FAILED)


class PlanningSessionManager(models.Manager["PlanningSession"]):
    #: Keyword arguments :meth:`start` accepts besides the required ones.
    START_FIELDS = frozenset({"confluence_document_id", "epic_id", "program_increment"})

    def start(
        self, organization_id: Any, *, confluence_page_url: Any, planning_title: Any, **fields: Any
    ) -> PlanningSession:
        """Create a pending session for the organization with this Linear id (created on first use).

        Optional ``fields``: ``confluence_document_id``, ``epic_id``, ``program_increment`` (a
        :class:`ProgramIncrement` of the same organization, or ``None``). Every argument is checked
        before anything is written.
        """
        unknown = set(fields) - self.START_FIELDS
        if unknown:
            raise TypeError(f"start() got unexpected keyword arguments: {', '.join(sorted(unknown))}.")
        organization_id = clean_identifier(organization_id, "organization_id")
        url = clean_text(confluence_page_url, "confluence_page_url", max_length=MAX_URL_LENGTH)
        try:
            URLValidator(schemes=["http", "https"])(url)
        except ValidationError:
            # The value is not echoed: a pasted URL may carry a token in its query string.
            raise ValidationError(
                "confluence_page_url must be an http(s) URL such as https://<site>/wiki/spaces/...",
                code="invalid",
            ) from None
        values: dict[str, Any] = {
            "confluence_page_url": url,
            "planning_title": clean_text(planning_title, "planning_title", max_length=MAX_TITLE_LENGTH),
            "confluence_document_id": clean_identifier(
                fields.get("confluence_document_id"), "confluence_document_id", required=False
            ),
            "epic_id": clean_identifier(fields.get("epic_id"), "epic_id", required=False),
        }
        pi = fields.get("program_increment")
        if pi is not None:
            if not isinstance(pi, ProgramIncrement):
                raise ValueError(f"program_increment must be a ProgramIncrement, not {type(pi).__name__}.")
            if pi.pk is None:
                raise ValueError("program_increment must be saved first.")
        with transaction.atomic():
            organization = Organization.objects.ensure(organization_id)
            if pi is not None and pi.organization_id != organization.pk:
                raise ValidationError(
                    f"program_increment {pi.pi_id!r} belongs to another organization than "
                    f"{organization_id!r}.",
                    code="invalid",
                )
            session = self.create(organization=organization, program_increment=pi, **values)
        logger.info("planning session %s started for organization %s", session.pk, organization.pk)
        return session

    async def astart(
        self, organization_id: Any, *, confluence_page_url: Any, planning_title: Any, **fields: Any
    ) -> PlanningSession:
        """Async twin of :meth:`start`."""
        return await sync_to_async(self.start)(
            organization_id, confluence_page_url=confluence_page_url, planning_title=planning_title, **fields
        )


class PlanningSessionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class PlanningSession(TimestampedModel):
    """One run of the planning agent over a Confluence page.

    Status moves pending → processing → completed, or to failed from pending or processing, and back
    from failed to pending by :meth:`retry` (the next ``attempt``); the transition methods refuse any
    other move and are race-safe (a conditional ``UPDATE``). Warnings and errors are kept in
    :class:`SessionMessage` (``session.messages``); what the session produced in :class:`Epic`,
    :class:`Feature`, :class:`Story` and :class:`Enabler` rows, whose planning ids make the id map
    (:meth:`linear_id_for`, :meth:`id_map`).
    """

    Status = PlanningSessionStatus

    # The composite (organization, -created_at) index serves lookups by organization.
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="planning_sessions", db_index=False
    )
    program_increment = models.ForeignKey(
        ProgramIncrement,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="planning_sessions",
    )
    confluence_page_url = models.URLField("Confluence page URL", max_length=MAX_URL_LENGTH)
    confluence_document_id = models.CharField(
        "Confluence document id", max_length=MAX_IDENTIFIER_LENGTH, blank=True, default=""
    )
    planning_title = models.CharField(max_length=MAX_TITLE_LENGTH)
    epic_id = models.CharField("Linear epic id", max_length=MAX_IDENTIFIER_LENGTH, blank=True, default="")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(100)], help_text="Percent, 0 to 100."
    )
    error = models.TextField(blank=True, default="")
    # Database defaults too, so that writers outside Django (the old agent's SQL) keep working.
    progress_message = models.CharField(
        max_length=MAX_PROGRESS_MESSAGE_LENGTH, blank=True, default="", db_default=""
    )
    attempt = models.PositiveIntegerField(
        default=1, db_default=1, help_text="1 for the first run; retry() adds one."
    )

    objects = PlanningSessionManager.from_queryset(PlanningSessionQuerySet)()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            _not_empty("confluence_page_url", "planning_session_page_url_not_empty"),
            _not_empty("planning_title", "planning_session_title_not_empty"),
            _in_choices("status", PlanningSessionStatus, "planning_session_status_valid"),
            _between("progress", 0, 100, "planning_session_progress_0_100"),
            # What the transitions do, kept for every writer: a pending session has not started, a
            # completed one is done, and only a failed one has an error. (A failed one may have none:
            # the old schema had no error column.)
            models.CheckConstraint(
                condition=~Q(status=PlanningSessionStatus.PENDING) | Q(progress=0),
                name="planning_session_pending_at_0",
            ),
            models.CheckConstraint(
                condition=~Q(status=PlanningSessionStatus.COMPLETED) | Q(progress=100),
                name="planning_session_completed_at_100",
            ),
            models.CheckConstraint(
                condition=Q(error="") | Q(status=PlanningSessionStatus.FAILED),
                name="planning_session_error_only_when_failed",
            ),
            models.CheckConstraint(condition=Q(attempt__gte=1), name="planning_session_attempt_from_1"),
        ]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="planning_session_org_new_idx"),
            models.Index(fields=["status", "-created_at"], name="planning_session_status_idx"),
            models.Index(fields=["-created_at"], name="planning_session_created_idx"),
            models.Index(fields=["epic_id"], name="planning_session_epic_idx"),
        ]

    def __str__(self) -> str:
        return self.planning_title

    def clean(self) -> None:
        """Refuse a program increment of another organization (a rule no single-table constraint keeps)."""
        super().clean()
        if (
            self.program_increment_id is not None
            and self.organization_id is not None
            and self.program_increment.organization_id != self.organization_id
        ):
            raise ValidationError(
                {"program_increment": "This program increment belongs to another organization."}
            )

    # --- transitions ---------------------------------------------------------------------------

    def _transition(self, allowed_from: tuple[str, ...], to: str, **changes: Any) -> None:
        """Move to ``to`` if the row's current status is one of ``allowed_from``, atomically.

        The status test is in the ``UPDATE``'s ``WHERE``, so two workers racing for the same move
        cannot both win: the loser sees 0 rows and gets the error naming the status it found.
        """
        # Plain strings, so that messages read 'processing', not PlanningSessionStatus.PROCESSING.
        allowed_from, to = tuple(str(status) for status in allowed_from), str(to)
        now = timezone.now()
        updated = type(self)._base_manager.filter(pk=self.pk, status__in=allowed_from).update(
            status=to, updated_at=now, **changes
        )
        if updated != 1:
            current = type(self)._base_manager.filter(pk=self.pk).values_list("status", flat=True).first()
            if current is None:
                raise ValidationError(f"Planning session {self.pk} does not exist.", code="missing")
            self.status = current
            raise ValidationError(
                f"Planning session {self.pk} cannot move from {current!r} to {to!r} "
                f"(only from {' or '.join(repr(s) for s in allowed_from)}).",
                code="invalid_transition",
            )
        self.status = to
        self.updated_at = now
        for name, value in changes.items():
            setattr(self, name, value)

    def mark_in_progress(self) -> None:
        """pending → processing: the agent picked the session up."""
        self._transition((self.Status.PENDING,), self.Status.PROCESSING)

    async def amark_in_progress(self) -> None:
        """Async twin of :meth:`mark_in_progress`."""
        await sync_to_async(self.mark_in_progress)()

    def set_progress(self, percent: int, message: str = "") -> None:
        """Record progress (0–100) and what the agent is doing now, while processing.

        Progress never goes backwards: refusing a lower value keeps a late, out-of-order update from a
        slow worker from rewinding the bar; setting the current value again is allowed (with a new
        ``message``, or to clear it with ``""``).
        """
        if isinstance(percent, bool) or not isinstance(percent, int):
            raise ValueError(f"percent must be an integer, not {type(percent).__name__}.")
        if not 0 <= percent <= 100:
            raise ValidationError(
                f"percent must be between 0 and 100 (got {describe_int(percent)}).", code="range"
            )
        message = clean_text(message, "message", required=False, max_length=MAX_PROGRESS_MESSAGE_LENGTH)
        now = timezone.now()
        updated = (
            type(self)
            ._base_manager.filter(pk=self.pk, status=self.Status.PROCESSING, progress__lte=percent)
            .update(progress=percent, progress_message=message, updated_at=now)
        )
        if updated != 1:
            row = type(self)._base_manager.filter(pk=self.pk).values("status", "progress").first()
            if row is None:
                raise ValidationError(f"Planning session {self.pk} does not exist.", code="missing")
            self.status, self.progress = row["status"], row["progress"]
            if row["status"] != self.Status.PROCESSING:
                raise ValidationError(
                    f"Planning session {self.pk} is {row['status']!r}: progress can only be set while "
                    f"'processing'.",
                    code="invalid_transition",
                )
            raise ValidationError(
                f"Planning session {self.pk} is at {row['progress']}%: progress cannot go back to "
                f"{percent}%.",
                code="progress_backwards",
            )
        self.progress = percent
        self.progress_message = message
        self.updated_at = now

    async def aset_progress(self, percent: int, message: str = "") -> None:
        """Async twin of :meth:`set_progress`."""
        await sync_to_async(self.set_progress)(percent, message)

    def mark_completed(self) -> None:
        """processing → completed, with progress 100."""
        self._transition((self.Status.PROCESSING,), self.Status.COMPLETED, progress=100)

    async def amark_completed(self) -> None:
        """Async twin of :meth:`mark_completed`."""
        await sync_to_async(self.mark_completed)()

    def mark_failed(self, error: str) -> None:
        """pending or processing → failed, recording the error message (required).

        The error is also appended to the session's messages (a fatal error of the current attempt),
        so that a :meth:`retry` keeps it.
        """
        self.add_error(error, fatal=True)

    async def amark_failed(self, error: str) -> None:
        """Async twin of :meth:`mark_failed`."""
        await sync_to_async(self.mark_failed)(error)

    def retry(self) -> None:
        """failed → pending again, for another attempt: ``attempt`` + 1, progress and error cleared.

        The warnings and errors of earlier attempts stay in :attr:`messages`, each marked with the
        attempt it belongs to. Race-safe like the other transitions: of two concurrent retries one
        wins and the other gets a ``ValidationError`` (the session is no longer failed).
        """
        with transaction.atomic():
            self._transition(
                (self.Status.FAILED,),
                self.Status.PENDING,
                progress=0,
                progress_message="",
                error="",
                attempt=models.F("attempt") + 1,
            )
            self.attempt = type(self)._base_manager.filter(pk=self.pk).values_list("attempt", flat=True).get()
        logger.info("planning session %s: retry, attempt %s", self.pk, self.attempt)

    async def aretry(self) -> None:
        """Async twin of :meth:`retry`."""
        await sync_to_async(self.retry)()

    # --- warnings and errors -------------------------------------------------------------------

    def add_warning(
        self, message: str, *, code: str = "", details: Any = None, at: dt.datetime | None = None
    ) -> SessionMessage:
        """Append a warning to the session's messages; the status does not change.

        ``code`` is a short machine-readable tag (``"missing_estimate"``), ``details`` any JSON value,
        ``at`` the time to record (now by default).
        """
        return self._append(SessionMessage.Level.WARNING, message, code=code, details=details, at=at)

    async def aadd_warning(
        self, message: str, *, code: str = "", details: Any = None, at: dt.datetime | None = None
    ) -> SessionMessage:
        """Async twin of :meth:`add_warning`."""
        return await sync_to_async(self.add_warning)(message, code=code, details=details, at=at)

    def add_error(
        self,
        message: str,
        *,
        code: str = "",
        details: Any = None,
        fatal: bool = True,
        at: dt.datetime | None = None,
    ) -> SessionMessage:
        """Append an error; a fatal one (the default) also fails the session, as :meth:`mark_failed`.

        A fatal error is refused (``ValidationError``, nothing written) unless the session is pending
        or processing; the session's ``error`` becomes ``message``. A non-fatal error only appends.
        """
        if not isinstance(fatal, bool):
            raise ValueError(f"fatal must be a bool, not {type(fatal).__name__}.")
        return self._append(
            SessionMessage.Level.ERROR, message, code=code, details=details, at=at, fatal=fatal
        )

    async def aadd_error(
        self,
        message: str,
        *,
        code: str = "",
        details: Any = None,
        fatal: bool = True,
        at: dt.datetime | None = None,
    ) -> SessionMessage:
        """Async twin of :meth:`add_error`."""
        return await sync_to_async(self.add_error)(message, code=code, details=details, fatal=fatal, at=at)

    def _append(
        self,
        level: str,
        message: Any,
        *,
        code: Any,
        details: Any,
        at: dt.datetime | None,
        fatal: bool = False,
    ) -> SessionMessage:
        name = "error" if fatal and level == SessionMessage.Level.ERROR else "message"
        message = clean_text(message, name, max_length=MAX_ERROR_LENGTH)
        code = clean_text(code, "code", required=False, max_length=MAX_CODE_LENGTH)
        details = clean_details(details)
        at = clean_aware_datetime(at, "at", required=False) or timezone.now()
        with transaction.atomic():
            if fatal:
                self._transition(
                    (self.Status.PENDING, self.Status.PROCESSING), self.Status.FAILED, error=message
                )
            attempt = type(self)._base_manager.filter(pk=self.pk).values_list("attempt", flat=True).first()
            if attempt is None:
                raise ValidationError(f"Planning session {self.pk} does not exist.", code="missing")
            entry = SessionMessage.objects.create(
                planning_session_id=self.pk,
                level=level,
                message=message,
                code=code,
                details=details,
                fatal=fatal,
                attempt=attempt,
                created_at=at,
            )
        self.attempt = attempt
        return entry

    # --- planning id → Linear id ---------------------------------------------------------------

    def linear_id_for(self, item_type: str, planning_id: str) -> str | None:
        """The Linear id stored for the planning item ``planning_id`` of this type, or ``None``.

        ``item_type`` is ``"epic"``, ``"feature"``, ``"story"`` or ``"enabler"``; the planning id is
        the ``id`` the parser gave the item in the Confluence document.
        """
        model, linear_field, session_path = _item_model(item_type)
        planning_id = clean_identifier(planning_id, "planning_id")
        return (
            model._default_manager.filter(**{session_path: self.pk}, planning_id=planning_id)
            .values_list(linear_field, flat=True)
            .first()
        )

    async def alinear_id_for(self, item_type: str, planning_id: str) -> str | None:
        """Async twin of :meth:`linear_id_for`."""
        return await sync_to_async(self.linear_id_for)(item_type, planning_id)

    def id_map(self) -> dict[str, dict[str, str]]:
        """``{"epic": {planning_id: linear_id}, "feature": {...}, "story": {...}, "enabler": {...}}``.

        Every item type is a key (an empty dict when the session has none); items saved without a
        planning id (the flat shape, or rows imported from the old system) are not in it. One query.
        """
        parts = [
            model._default_manager.filter(**{session_path: self.pk})
            .exclude(planning_id="")
            .order_by()
            .values_list(models.Value(str(item_type)), "planning_id", linear_field)
            for item_type, (model, linear_field, session_path) in _ITEM_MODELS.items()
        ]
        result: dict[str, dict[str, str]] = {str(item_type): {} for item_type in ItemType}
        for item_type, planning_id, linear_id in parts[0].union(*parts[1:], all=True):
            result[item_type][planning_id] = linear_id
        return result

    async def aid_map(self) -> dict[str, dict[str, str]]:
        """Async twin of :meth:`id_map`."""
        return await sync_to_async(self.id_map)()


class AppendOnlyError(PermissionDenied):
    """An update or delete of a :class:`SessionMessage`: a session's messages are append-only."""


class SessionMessageLevel(models.TextChoices):
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"


class SessionMessageQuerySet(models.QuerySet["SessionMessage"]):
    """A session's warnings and errors. ``update()`` and ``delete()`` refuse: the list is append-only.

    (Deleting a session still deletes its messages: Django's collector does not go through here.)
    """

    def update(self, **kwargs: Any) -> int:
        """Refused: session messages are append-only."""
        raise AppendOnlyError("Planning session messages are append-only: they cannot be updated.")

    def delete(self) -> tuple[int, dict[str, int]]:
        """Refused: session messages are append-only."""
        raise AppendOnlyError("Planning session messages are append-only: they cannot be deleted.")

    def newest_first(self) -> SessionMessageQuerySet:
        """Newest first; the id breaks ties between messages of the same instant."""
        return self.order_by("-created_at", "-id")

    def warnings(self) -> SessionMessageQuerySet:
        """Only warnings."""
        return self.filter(level=SessionMessageLevel.WARNING)

    def errors(self) -> SessionMessageQuerySet:
        """Only errors (fatal and not)."""
        return self.filter(level=SessionMessageLevel.ERROR)

    def for_attempt(self, attempt: int) -> SessionMessageQuerySet:
        """The messages of one attempt (1 for the first run, 2 after one retry, ...)."""
        if isinstance(attempt, bool) or not isinstance(attempt, int):
            raise ValueError(f"attempt must be an integer, not {type(attempt).__name__}.")
        return self.filter(attempt=attempt)


class SessionMessage(models.Model):
    """A warning or error a planning session recorded (the old session manager's two lists).

    Append-only: ``save()`` of an existing entry, ``delete()`` and the queryset's ``update()`` and
    ``delete()`` raise :class:`AppendOnlyError`.
    """

    Level = SessionMessageLevel

    planning_session = models.ForeignKey(
        PlanningSession, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    level = models.CharField(max_length=10, choices=Level.choices)
    message = models.TextField()
    code = models.CharField(max_length=MAX_CODE_LENGTH, blank=True, default="")
    details = models.JSONField(null=True, blank=True)
    fatal = models.BooleanField(default=False, help_text="This error failed the session.")
    attempt = models.PositiveIntegerField(default=1, help_text="The session's attempt it belongs to.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = SessionMessageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            _in_choices("level", SessionMessageLevel, "planning_sessionmessage_level_valid"),
            _not_empty("message", "planning_sessionmessage_message_not_empty"),
            models.CheckConstraint(
                condition=Q(fatal=False) | Q(level=SessionMessageLevel.ERROR),
                name="planning_sessionmessage_fatal_is_error",
            ),
            models.CheckConstraint(
                condition=Q(attempt__gte=1), name="planning_sessionmessage_attempt_from_1"
            ),
        ]
        indexes = [
            models.Index(
                fields=["planning_session", "-created_at", "-id"], name="planning_sessionmsg_new_idx"
            ),
        ]

    def __str__(self) -> str:
        code = f" [{self.code}]" if self.code else ""
        return f"{self.level}{code}: {self.message[:80]}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Insert only: an existing entry cannot be changed."""
        if not self._state.adding:
            raise AppendOnlyError("Planning session messages are append-only: they cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        """Refused: session messages are append-only."""
        raise AppendOnlyError("Planning session messages are append-only: they cannot be deleted.")


def clean_json_value(value: Any, name: str, *, max_length: int = MAX_ERROR_LENGTH) -> Any:
    """Return ``value`` if it is storable JSON of at most ``max_length`` characters, else raise.

    Refused (``ValidationError`` naming ``name``): what ``json`` cannot serialise, NaN and infinities,
    NUL characters (PostgreSQL's ``jsonb`` refuses them) and values too long once serialised.
    """
    try:
        dumped = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name} is not valid JSON: {exc}.", code="invalid_json") from exc
    except RecursionError as exc:
        raise ValidationError(f"{name} is nested too deeply.", code="invalid_json") from exc
    if "\\u0000" in dumped and _JSON_NUL_ESCAPE.search(dumped):
        raise ValidationError(f"{name} must not contain NUL characters.", code="invalid_json")
    if len(dumped) > max_length:
        raise ValidationError(
            f"{name} is {len(dumped)} characters long as JSON; at most {max_length} are allowed.",
            code="max_length",
        )
    return value


def clean_details(value: Any) -> Any:
    """Return a warning's or error's ``details`` (any JSON value, or ``None``) if it can be stored."""
    if value is None:
        return None
    return clean_json_value(value, "details")


# --- what a session produced -----------------------------------------------------------------------


class Priority(models.IntegerChoices):
    """Linear's issue priorities (0 none, 1 urgent … 4 low)."""

    NONE = 0, "No priority"
    URGENT = 1, "Urgent"
    HIGH = 2, "High"
    MEDIUM = 3, "Medium"
    LOW = 4, "Low"


def _planning_id_field() -> models.CharField:
    return models.CharField(
        "planning id",
        max_length=MAX_IDENTIFIER_LENGTH,
        blank=True,
        default="",
        db_default="",
        help_text="The item's id in the parsed Confluence document (the old parser's id).",
    )


def _labels_field() -> models.JSONField:
    return models.JSONField(
        default=list, db_default=[], blank=True, help_text="Label names, a list of strings."
    )


def _attributes_field() -> models.JSONField:
    return models.JSONField(
        default=dict, db_default={}, blank=True, help_text="The parser's other attributes."
    )


def _unique_planning_id(parent: str, name: str) -> models.UniqueConstraint:
    return models.UniqueConstraint(fields=[parent, "planning_id"], condition=~Q(planning_id=""), name=name)


def _optional_between(field: str, low: int, high: int, name: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__gte": low, f"{field}__lte": high}),
        name=name,
    )


class Epic(TimestampedModel):
    """An epic a session produced: the top of the parsed hierarchy (features may sit under one)."""

    planning_session = models.ForeignKey(
        PlanningSession, on_delete=models.CASCADE, related_name="epics", db_index=False
    )
    epic_id = _id_field("Linear epic id")
    planning_id = _planning_id_field()
    title = models.CharField(max_length=MAX_TITLE_LENGTH)
    description = models.TextField(blank=True, default="")
    labels = _labels_field()
    attributes = _attributes_field()

    class Meta:
        ordering = ["planning_session_id", "epic_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["planning_session", "epic_id"], name="planning_epic_session_id_uniq"
            ),
            _unique_planning_id("planning_session", "planning_epic_session_planning_id_uniq"),
            _not_empty("epic_id", "planning_epic_epic_id_not_empty"),
            _not_empty("title", "planning_epic_title_not_empty"),
        ]
        indexes = [models.Index(fields=["epic_id"], name="planning_epic_linear_id_idx")]

    def __str__(self) -> str:
        return f"{self.epic_id}: {self.title}"


class Feature(TimestampedModel):
    """A feature the agent parsed from the page and created in Linear (old ``planning_features``)."""

    Priority = Priority

    # The (session, feature_id) unique index serves lookups by session.
    planning_session = models.ForeignKey(
        PlanningSession, on_delete=models.CASCADE, related_name="features", db_index=False
    )
    epic = models.ForeignKey(Epic, on_delete=models.SET_NULL, null=True, blank=True, related_name="features")
    feature_id = _id_field("Linear feature id")
    planning_id = _planning_id_field()
    title = models.CharField(max_length=MAX_TITLE_LENGTH)
    description = models.TextField(blank=True, default="")
    story_points = models.PositiveSmallIntegerField(null=True, blank=True)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, null=True, blank=True)
    acceptance_criteria = models.JSONField(
        default=list, db_default=[], blank=True, help_text="A list of strings."
    )
    labels = _labels_field()
    attributes = _attributes_field()

    class Meta:
        ordering = ["planning_session_id", "feature_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["planning_session", "feature_id"], name="planning_feature_session_id_uniq"
            ),
            _unique_planning_id("planning_session", "planning_feature_session_planning_id_uniq"),
            _not_empty("feature_id", "planning_feature_feature_id_not_empty"),
            _not_empty("title", "planning_feature_title_not_empty"),
            _optional_between("story_points", 0, MAX_STORY_POINTS, "planning_feature_story_points_range"),
            _optional_between("priority", 0, 4, "planning_feature_priority_0_4"),
        ]
        indexes = [models.Index(fields=["feature_id"], name="planning_feature_linear_id_idx")]

    def __str__(self) -> str:
        return f"{self.feature_id}: {self.title}"


class Story(TimestampedModel):
    """A story of a feature (old ``planning_stories``)."""

    Priority = Priority

    planning_feature = models.ForeignKey(
        Feature, on_delete=models.CASCADE, related_name="stories", db_index=False
    )
    story_id = _id_field("Linear story id")
    planning_id = _planning_id_field()
    title = models.CharField(max_length=MAX_TITLE_LENGTH)
    description = models.TextField(blank=True, default="")
    story_points = models.PositiveSmallIntegerField(null=True, blank=True)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, null=True, blank=True)
    acceptance_criteria = models.JSONField(
        default=list, db_default=[], blank=True, help_text="A list of strings."
    )
    labels = _labels_field()
    attributes = _attributes_field()

    class Meta:
        verbose_name_plural = "stories"
        ordering = ["planning_feature_id", "story_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["planning_feature", "story_id"], name="planning_story_feature_id_uniq"
            ),
            # Unique per feature here; per session (across features) the service keeps it.
            _unique_planning_id("planning_feature", "planning_story_feature_planning_id_uniq"),
            _not_empty("story_id", "planning_story_story_id_not_empty"),
            _not_empty("title", "planning_story_title_not_empty"),
            _optional_between("story_points", 0, MAX_STORY_POINTS, "planning_story_story_points_range"),
            _optional_between("priority", 0, 4, "planning_story_priority_0_4"),
        ]
        indexes = [models.Index(fields=["story_id"], name="planning_story_linear_id_idx")]

    def __str__(self) -> str:
        return f"{self.story_id}: {self.title}"


class EnablerType(models.TextChoices):
    """The union of the old extractor's, the old docs' and SAFe's enabler vocabularies."""

    ARCHITECTURE = "architecture", "Architecture"
    INFRASTRUCTURE = "infrastructure", "Infrastructure"
    COMPLIANCE = "compliance", "Compliance"
    EXPLORATION = "exploration", "Exploration"
    TECHNICAL_DEBT = "technical_debt", "Technical debt"
    RESEARCH = "research", "Research"


class Enabler(TimestampedModel):
    """An enabler (architecture, infrastructure, ... work) a session produced (old ``planning_enablers``)."""

    Type = EnablerType

    planning_session = models.ForeignKey(
        PlanningSession, on_delete=models.CASCADE, related_name="enablers", db_index=False
    )
    planning_feature = models.ForeignKey(
        Feature,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="enablers",
        help_text="The feature the enabler belongs to; empty for a session-level enabler.",
    )
    enabler_id = _id_field("Linear enabler id")
    planning_id = _planning_id_field()
    title = models.CharField(max_length=MAX_TITLE_LENGTH)
    description = models.TextField(blank=True, default="")
    enabler_type = models.CharField(max_length=20, choices=Type.choices)
    labels = _labels_field()
    attributes = _attributes_field()

    class Meta:
        ordering = ["planning_session_id", "enabler_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["planning_session", "enabler_id"], name="planning_enabler_session_id_uniq"
            ),
            _unique_planning_id("planning_session", "planning_enabler_session_planning_id_uniq"),
            _not_empty("enabler_id", "planning_enabler_enabler_id_not_empty"),
            _not_empty("title", "planning_enabler_title_not_empty"),
            _in_choices("enabler_type", EnablerType, "planning_enabler_type_valid"),
        ]
        indexes = [
            models.Index(fields=["enabler_id"], name="planning_enabler_linear_id_idx"),
            # The admin's enabler-type filter.
            models.Index(fields=["enabler_type"], name="planning_enabler_type_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.enabler_id}: {self.title}"

    @staticmethod
    def normalise_type(value: str) -> str:
        """Map the old vocabularies' spellings (``Technical Debt``, ``technical-debt``) to a value."""
        return "_".join(value.strip().lower().replace("-", " ").split())


class ItemType(models.TextChoices):
    """The kinds of planning item the id map knows (the old session manager's result maps)."""

    EPIC = "epic", "Epic"
    FEATURE = "feature", "Feature"
    STORY = "story", "Story"
    ENABLER = "enabler", "Enabler"


#: item type → (model, Linear id field, lookup from the model to its session's pk)
_ITEM_MODELS: dict[str, tuple[type[models.Model], str, str]] = {
    ItemType.EPIC: (Epic, "epic_id", "planning_session"),
    ItemType.FEATURE: (Feature, "feature_id", "planning_session"),
    ItemType.STORY: (Story, "story_id", "planning_feature__planning_session"),
    ItemType.ENABLER: (Enabler, "enabler_id", "planning_session"),
}


def _item_model(item_type: Any) -> tuple[type[models.Model], str, str]:
    if not isinstance(item_type, str):
        raise ValueError(f"item_type must be a string, not {type(item_type).__name__}.")
    try:
        return _ITEM_MODELS[item_type]
    except KeyError:
        raise ValidationError(
            f"item_type must be one of {', '.join(ItemType.values)} (got {item_type!r}).",
            code="invalid_choice",
        ) from None
